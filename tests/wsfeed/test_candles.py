"""Candles built by rolling one 1s candle into the longer ones give the same klines and ticker as per-trade candles.

A ``Market`` with every stream subscribed (a capturing hub) is fed trades
over several seconds and minutes, with ``flush_klines`` between entries on a
controlled clock; every kline message must equal the candle computed from
scratch from the trades of its period received so far. (The clock never runs
past the next trade's time: a period the timer closed and a late trade reopens
gets a second candle, by design, and no from-scratch figure to compare with.)
"""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from deploy.config import load_config
from ingress.symbols import Catalog
from shards.protocol import TradeEvent
from wsfeed import market as market_module
from wsfeed.klines import period
from wsfeed.market import Market
from wsfeed.names import StreamNames

T0 = 1_700_000_000_000
INTERVALS = ("1s", "1m", "3m", "1h", "1M")


class CaptureHub:
    def __init__(self) -> None:
        self.users: dict[int, Any] = {}
        self.sent: list[tuple[str, dict]] = []

    def has(self, stream: str) -> bool:
        return True

    def publish(self, stream: str, data: bytes) -> None:
        self.sent.append((stream, orjson.loads(data)))

    def publish_user(self, user_id: int, data: bytes) -> None:
        pass


def _expected(trades: list[TradeEvent], interval: str, open_t: int) -> tuple:
    """(o, h, l, c, v, n) in engine units of the trades of one period, computed from scratch."""
    mine = [t for t in trades if period(interval, t.ts)[0] == open_t]
    prices = [t.price for t in mine]
    return prices[0], max(prices), min(prices), prices[-1], sum(t.qty for t in mine), len(mine)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kline_messages_equal_candles_computed_from_the_trades(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    # arrange
    config = load_config(None)
    hub = CaptureHub()
    market = Market(Catalog.from_config(config), StreamNames(s.symbol for s in config.symbols), hub)
    symbol = config.symbols[0]
    clock = [T0]
    monkeypatch.setattr(market_module, "now_ms", lambda: clock[0])
    rng = random.Random(seed)
    trades: list[TradeEvent] = []
    times = [T0]
    for _ in range(1500):
        times.append(times[-1] + rng.choice((0, 1, 7, 300, 900, 2500, 61_000)))
    checked = 0
    # act / assert
    for i in range(1500):
        ts = times[i]
        trade = TradeEvent(
            i + 1, ts, symbol.symbol_id, i + 1, 9_000 + rng.randint(0, 2000), rng.randint(1, 5), 1, 2, 1, 2, 1
        )
        trades.append(trade)
        market.apply([trade], True)
        if rng.random() < 0.3:
            clock[0] = rng.randint(ts - 500, times[i + 1])  # never past the next trade: it would reopen a period
            market.flush_klines()
        for stream, msg in hub.sent:
            if msg.get("e") != "kline" or msg["k"]["i"] not in INTERVALS:
                continue
            k = msg["k"]
            o, h, low, c, v, n = _expected(trades, k["i"], k["t"])
            got = (k["o"], k["h"], k["l"], k["c"], k["v"], k["n"])
            assert got == (f"{o / 100:.2f}", f"{h / 100:.2f}", f"{low / 100:.2f}", f"{c / 100:.2f}", str(v), n), (
                stream, k,
            )  # fmt: skip
            assert (k["t"], k["T"]) == period(k["i"], k["t"])
            checked += 1
        hub.sent.clear()
    assert checked > 500


def test_ticker_counts_the_current_second(monkeypatch: pytest.MonkeyPatch) -> None:
    # arrange: two trades in an earlier second, one in the current second (not yet rolled into the 1m candle)
    config = load_config(None)
    hub = CaptureHub()
    market = Market(Catalog.from_config(config), StreamNames(s.symbol for s in config.symbols), hub)
    sid = config.symbols[0].symbol_id
    monkeypatch.setattr(market_module, "now_ms", lambda: T0 + 1_500)
    for seq, (ts, price, qty) in enumerate([(T0, 10_000, 1), (T0 + 10, 12_000, 2), (T0 + 1_200, 9_000, 3)], 1):
        market.apply([TradeEvent(seq, ts, sid, seq, price, qty, 1, 2, 1, 2, 1)], True)
    # act
    market.flush_tickers()
    # assert
    ticker = next(m for s, m in hub.sent if m.get("e") == "24hrTicker")
    assert (ticker["o"], ticker["h"], ticker["l"], ticker["c"], ticker["v"], ticker["n"]) == (
        "100.00", "120.00", "90.00", "90.00", "6", 3,
    )  # fmt: skip
    assert (ticker["F"], ticker["L"]) == (1, 3)
