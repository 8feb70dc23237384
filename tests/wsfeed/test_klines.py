"""Kline periods against the calendar (datetime as the reference model)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsfeed.klines import FIXED_MS, INTERVALS, period

TS = st.integers(min_value=0, max_value=4_102_444_800_000)  # 1970 .. 2100


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def test_intervals_are_the_contracts():
    assert INTERVALS == tuple("1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1M".split())


@given(TS)
def test_month_candles_follow_the_calendar(ts):
    dt = datetime.fromtimestamp(ts / 1000, UTC)
    start = dt.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    nxt = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    assert period("1M", ts) == (ms(start), ms(nxt) - 1)


@given(TS)
def test_week_candles_start_on_monday(ts):
    dt = datetime.fromtimestamp(ts / 1000, UTC)
    monday = (dt - timedelta(days=dt.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    assert period("1w", ts) == (ms(monday), ms(monday + timedelta(days=7)) - 1)


@pytest.mark.parametrize("interval", list(FIXED_MS))
@given(ts=TS)
def test_fixed_candles_hold_the_time_and_are_aligned(interval, ts):
    start, end = period(interval, ts)
    assert start <= ts <= end and start % FIXED_MS[interval] == 0 and end - start + 1 == FIXED_MS[interval]


def test_unknown_interval_is_refused_naming_it():
    with pytest.raises(ValueError, match="'2w'"):
        period("2w", 0)
