"""Kline intervals of the contract and the time period each trade falls in.

``INTERVALS`` lists the contract's intervals (API.md: ``1s 1m 3m 5m 15m 30m 1h
2h 4h 6h 8h 12h 1d 3d 1w 1M``). ``period(interval, ts)`` gives the open time and
the close time (inclusive, ``next open - 1``) in ms of the candle holding
``ts``: fixed-length intervals are aligned on the Unix epoch, ``1w`` on Monday
00:00 UTC and ``1M`` on the first day of the calendar month (as Binance does).
Integers only; nothing here does I/O.
"""

from __future__ import annotations

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY
_MONDAY_OFFSET = 4 * DAY  # 1970-01-01 was a Thursday; 1970-01-05 a Monday

FIXED_MS: dict[str, int] = {
    "1s": SECOND,
    "1m": MINUTE,
    "3m": 3 * MINUTE,
    "5m": 5 * MINUTE,
    "15m": 15 * MINUTE,
    "30m": 30 * MINUTE,
    "1h": HOUR,
    "2h": 2 * HOUR,
    "4h": 4 * HOUR,
    "6h": 6 * HOUR,
    "8h": 8 * HOUR,
    "12h": 12 * HOUR,
    "1d": DAY,
    "3d": 3 * DAY,
}
INTERVALS: tuple[str, ...] = (*FIXED_MS, "1w", "1M")


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (integer arithmetic)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(z: int) -> tuple[int, int]:
    """(year, month) of the day ``z`` days after 1970-01-01."""
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    m = mp + (3 if mp < 10 else -9)
    return y + (m <= 2), m


def period(interval: str, ts: int) -> tuple[int, int]:
    """(open time, close time) in ms of the ``interval`` candle holding ``ts`` (ms)."""
    size = FIXED_MS.get(interval)
    if size is not None:
        start = ts - ts % size
        return start, start + size - 1
    if interval == "1w":
        start = ts - (ts - _MONDAY_OFFSET) % WEEK
        return start, start + WEEK - 1
    if interval == "1M":
        y, m = _civil_from_days(ts // DAY)
        start = _days_from_civil(y, m, 1) * DAY
        ny, nm = (y + 1, 1) if m == 12 else (y, m + 1)
        return start, _days_from_civil(ny, nm, 1) * DAY - 1
    raise ValueError(f"unknown kline interval {interval!r}")
