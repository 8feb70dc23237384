"""persist's order state machine against the engine's own views, over a random flow of every order kind.

After every command, each order the command's answer shows, and every open
order, must have in ``persist.rows`` the status, quantities and quote amount
the engine reports.
"""

from __future__ import annotations

import random

from persist.rows import S_EXEC, S_ORIG, S_QUOTE, S_STATUS, Batch
from shards.engine import Engine
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
