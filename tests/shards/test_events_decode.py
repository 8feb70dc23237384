"""The journal decoder (``shards.events.decode_events``) on real engine batches: every event back, exactly."""

from __future__ import annotations

import random

import pytest

from shards.engine import Engine
from shards.events import EventCodecError, decode_events, encode_events
from shards.protocol import AmendOrder, CancelOrder, NewOrder, OrderRejected, SymbolSpec, TradeEvent


def _engine_batches() -> list[bytes]:
    """Journal batches of an engine driven through every kind of event (multi-level depth, STP, amends...)."""
    engine = Engine(
        [SymbolSpec(1, "AAA", 1, 1_000_000, 1, 1_000_000), SymbolSpec(2, "BBB", 1, 1_000_000, 1, 1_000_000)]
    )
    rng = random.Random(7)
    batches = []
    resting: list[tuple[int, int, int]] = []  # (symbol, user, order id) of orders that rested
    for i in range(3000):
        symbol_id, user, side = rng.choice((1, 2)), rng.randint(1, 5), rng.choice((1, 2))
        roll = rng.random()
        if roll < 0.55:
            price = 1000 - (1 if side == 1 else -1) * rng.randint(1, 30)
            qty, stp = rng.randint(2, 5), rng.randint(0, 3)
            result = engine.apply(NewOrder(symbol_id, user, f"é{i}", side, 1, 1, price, qty, 0, stp, i))
            order = getattr(result, "order", None)
            if order is not None:
                resting.append((symbol_id, user, order.order_id))
        elif roll < 0.75:  # sweeps several levels: multi-level depth updates, trades, expiries
            price = 1000 + (1 if side == 1 else -1) * 40
            engine.apply(
                NewOrder(symbol_id, user, f"t{i}", side, 1, 2, price, rng.randint(5, 40), 0, rng.randint(0, 3), i)
            )
        elif roll < 0.8:  # market buy by quote amount
            engine.apply(NewOrder(symbol_id, user, f"m{i}", 1, 2, 1, 0, 0, rng.randint(500, 20_000), 0, i))
        elif roll < 0.9 and resting:
            engine.apply(CancelOrder(*resting.pop(rng.randrange(len(resting))), "", i))
        elif resting:
            engine.apply(AmendOrder(*resting[rng.randrange(len(resting))], "", 1, i))
        if rng.random() < 0.2:
            batches.append(engine.take_encoded())
    batches.append(engine.take_encoded())
    return [b for b in batches if b]


def test_engine_batches_decode_to_events_that_encode_to_the_same_bytes() -> None:
    # arrange
    batches = _engine_batches()
    # act
    ours = [decode_events(b) for b in batches]
    # assert: the events re-encode to the very bytes the engine wrote
    assert [encode_events(es) for es in ours] == batches
    kinds = {type(e).__name__ for es in ours for e in es}
    assert {"OrderAccepted", "DepthUpdate", "TradeEvent", "OrderExpired", "OrderCanceled", "OrderAmended"} <= kinds
    assert any(len(e.bids) + len(e.asks) > 1 for es in ours for e in es if type(e).__name__ == "DepthUpdate")


def test_decode_reads_rejections_between_other_events() -> None:
    # arrange
    events = [
        TradeEvent(1, 5, 1, 1, 100, 2, 3, 4, 5, 6, 1),
        OrderRejected(2, 5, 1, 9, "coid", -2010, "insufficient balance"),
        TradeEvent(3, 5, 1, 2, 101, 1, 3, 4, 5, 6, 2),
    ]
    # act
    decoded = decode_events(encode_events(events))
    # assert
    assert decoded == events and [type(e) for e in decoded] == [type(e) for e in events]


@pytest.mark.parametrize("cut", [1, 10, 40, 60])
def test_decode_refuses_a_truncated_batch(cut: int) -> None:
    # arrange
    data = _engine_batches()[0]
    # act / assert
    with pytest.raises(EventCodecError):
        decode_events(data[:-cut])
