"""Replay real NASDAQ order flow (LOBSTER sample, AAPL) and compare the top 10 levels after every command."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from shards.engine import Engine
from shards.protocol import (
    AmendOrder,
    CancelOrder,
    NewOrder,
    OrderResult,
    QueryDepth,
    QueryOrder,
    SymbolSpec,
    TradeEvent,
)

pytestmark = pytest.mark.usefixtures("engine_core")  # each test runs on every engine core

FIXTURE = Path(__file__).parent / "data" / "aapl_2012-06-21_999.jsonl"
SPEC = SymbolSpec(1, "AAPL", 1, 100_000_000, 1, 1_000_000)
USER = 1
SIDES = {"BUY": 1, "SELL": 2}


def ticks(price: str) -> int:
    return int(Decimal(price) / Decimal("0.01"))


def levels(rows: list) -> list[tuple[int, int]]:
    return [(ticks(p), q) for p, q in rows]


def test_lobster_replay_rebuilds_the_real_book() -> None:
    # arrange
    lines = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    header, commands = lines[0], lines[1:]
    assert header["tick"] == "0.01" and len(commands) == header["commands"]
    engine = Engine([SPEC])
    ids: dict[int, int] = {}  # LOBSTER id -> engine order id
    ts = 0

    def place(lobster_id: int, side: str, price: str, qty: int) -> None:
        nonlocal ts
        ts += 1
        result = engine.apply(NewOrder(1, USER, f"L{lobster_id}", SIDES[side], 1, 1, ticks(price), qty, 0, 0, ts))
        assert isinstance(result, OrderResult) and result.order.status == 1, (lobster_id, result)
        ids[lobster_id] = result.order.order_id

    for seed in header["seed"]:
        place(seed["id"], seed["side"], seed["price"], seed["qty"])
    engine.take_events()
    checked = 0

    # act / assert, command by command
    for c in commands:
        ts += 1
        kind = c["cmd"]
        if kind == "place":
            place(c["id"], c["side"], c["price"], c["qty"])
        elif kind == "cancel" or (kind == "reduce" and c["remaining"] == 0):
            result = engine.apply(CancelOrder(1, USER, ids.pop(c["id"]), "", ts))
            assert isinstance(result, OrderResult), (c["i"], result)
        elif kind == "reduce":
            current = engine.apply(QueryOrder(1, USER, ids[c["id"]], ""))
            assert isinstance(current, OrderResult)
            new_qty = current.order.executed_qty + c["remaining"]
            result = engine.apply(AmendOrder(1, USER, ids[c["id"]], "", new_qty, ts))
            assert isinstance(result, OrderResult), (c["i"], result)
        elif kind == "ioc":
            result = engine.apply(
                NewOrder(1, USER, f"T{c['id']}", SIDES[c["side"]], 1, 2, ticks(c["price"]), c["qty"], 0, 0, ts)
            )
            assert isinstance(result, OrderResult) and result.order.status == 3, (c["i"], result)
            trades = [(e.maker_order_id, e.price, e.qty) for e in engine.take_events() if isinstance(e, TradeEvent)]
            assert trades == [(ids[m], ticks(p), q) for m, p, q in c["hits"]], c["i"]
        else:
            assert kind == "none"
        depth = engine.apply(QueryDepth(1, 10))
        assert (list(depth.bids), list(depth.asks)) == (levels(c["expect"]["bids"]), levels(c["expect"]["asks"])), c[
            "i"
        ]
        checked += 1
        engine.take_events()

    assert checked == header["commands"] == 981
