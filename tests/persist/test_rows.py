"""persist's order state machine against the engine's own views, over a random flow of every order kind.

After every command, each order the command's answer shows, and every open
order, must have in ``persist.rows`` the status, quantities and quote amount
the engine reports.
"""

from __future__ import annotations

import random

import pytest

from persist.rows import S_EXEC, S_ORIG, S_QUOTE, S_STATUS, Batch
from shards.engine import Engine
from shards.events import EventCodecError, encode_events
from shards.protocol import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    NewOrder,
    OrderResult,
    OrdersResult,
    OrderView,
    QueryOpenOrders,
    SymbolSpec,
)

SPEC = SymbolSpec(1, "AAA", 1, 1_000_000, 1, 1_000_000)


def _state(view: OrderView) -> tuple[int, int, int, int]:
    return view.status, view.orig_qty, view.executed_qty, view.cum_quote


def _row(state: list) -> tuple[int, int, int, int]:
    return state[S_STATUS], state[S_ORIG], state[S_EXEC], state[S_QUOTE]


def _command(rng: random.Random, i: int, live: list[tuple[int, int, int]]) -> object:
    user = rng.randint(1, 3)
    roll = rng.random()
    if live and roll < 0.15:
        _, oid, u = rng.choice(live)
        return CancelOrder(1, u, oid, "", i)
    if live and roll < 0.22:
        _, oid, u = rng.choice(live)
        return AmendOrder(1, u, oid, "", rng.randint(1, 30), i)
    if roll < 0.24:
        return CancelAll(1, user, i)
    side = rng.choice((1, 2))
    stp = rng.choice((0, 1, 2, 3))
    kind = rng.random()
    if kind < 0.1:
        return NewOrder(1, user, f"m{i}", side, 2, 1, 0, rng.randint(1, 30), 0, stp, i)
    if kind < 0.16:
        return NewOrder(1, user, f"q{i}", side, 2, 1, 0, 0, rng.randint(100, 5000), stp, i)
    if kind < 0.22:
        return NewOrder(1, user, f"k{i}", side, 3, 1, 100 + rng.randint(-5, 5), rng.randint(1, 30), 0, stp, i)
    tif = rng.choice((1, 1, 1, 2, 3))
    return NewOrder(1, user, f"l{i}", side, 1, tif, 100 + rng.randint(-5, 5), rng.randint(1, 30), 0, stp, i)


def test_order_states_follow_the_engine() -> None:
    rng = random.Random(1)
    engine = Engine([SPEC])
    cache: dict = {}
    checked = 0
    for i in range(3000):
        # arrange
        live = [(1, o.order_id, o.user_id) for u in (1, 2, 3) for o in engine.apply(QueryOpenOrders(1, u)).orders]
        cmd = _command(rng, 1_000 + i, live)
        # act
        result = engine.apply(cmd)
        batch = Batch(0, cache)
        batch.add(engine.take_events())
        batch.merge_into(cache)
        # assert
        views: list[OrderView] = []
        if type(result) is OrderResult:
            views.append(result.order)
        elif type(result) is OrdersResult:
            views.extend(result.orders)
        for view in views:
            key = (1, view.order_id)
            state = batch.orders.get(key) or cache.get(key)
            assert state is not None and _row(state) == _state(view), (cmd, view)
            checked += 1
        for u in (1, 2, 3):
            for o in engine.apply(QueryOpenOrders(1, u)).orders:
                assert _row(cache[(1, o.order_id)]) == _state(o), (cmd, o)
        assert all(s[S_STATUS] in (1, 2) for s in cache.values())
    assert checked > 2000


def test_packed_events_at_or_below_after_are_skipped_and_bad_bytes_raise() -> None:
    # arrange: one batch of engine events (accepts, trades, depth updates), packed as a shard journals them
    engine = Engine([SPEC])
    for i, (side, qty) in enumerate(((2, 5), (2, 4), (1, 7))):
        engine.apply(NewOrder(1, 1 + i, f"o{i}", side, 1, 1, 100, qty, 0, 0, 1_000 + i))
    events = engine.take_events()
    packed = encode_events(events)
    middle = events[len(events) // 2].seq
    whole = Batch(0, {})
    whole.add(events)
    head = Batch(0, {})
    head.add(e for e in events if e.seq <= middle)
    # act
    tail = Batch(0, head.orders, after=middle)
    tail.add_encoded(packed)
    # assert: the tail batch holds exactly the rows of the events after ``middle``
    assert tail.last_seq == whole.last_seq and tail.events == sum(1 for e in events if e.seq > middle)
    assert tail.trades == [t for t in whole.trades if t[-1] > middle]
    assert tail.history == [h for h in whole.history if h[1] > middle]
    with pytest.raises(EventCodecError):
        Batch(0, {}).add_encoded(packed[:-3])
    with pytest.raises(EventCodecError):
        Batch(0, {}).add_encoded(b"\x63" + packed)
