"""Property tests: random command streams give the same trades and depth as the reference book.

Also, after every command: the book is not crossed, and every order's
quantity is accounted for (open + filled + canceled or expired = submitted,
after amends).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shards.engine import Engine
from shards.protocol import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    ExpireReason,
    NewOrder,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderResult,
    OrdersResult,
    QueryDepth,
    Rejected,
    TradeEvent,
)
from tests.shards.engine_harness import SPEC
from tests.shards.reference_book import ReferenceBook

pytestmark = pytest.mark.usefixtures("engine_core")  # each test runs on every engine core

PRICES = st.integers(95, 105)
USERS = st.integers(1, 3)
COIDS = st.sampled_from(["a", "b", "c", "d", "e", "f"])


@st.composite
def new_orders(draw: st.DrawFn) -> NewOrder:
    side = draw(st.sampled_from([1, 2]))
    kind = draw(st.sampled_from(["gtc", "gtc", "gtc", "ioc", "fok", "maker", "market", "quote", "bad"]))
    user, coid, stp = draw(USERS), draw(COIDS), draw(st.integers(0, 3))
    qty = draw(st.integers(1, 6))
    if kind == "market":
        return NewOrder(1, user, coid, side, 2, 1, 0, qty, 0, stp, 0)
    if kind == "quote":
        return NewOrder(1, user, coid, side, 2, 1, 0, 0, draw(st.integers(1, 1200)), stp, 0)
    if kind == "bad":
        return NewOrder(1, user, coid, side, 1, 1, draw(st.sampled_from([0, 2_000_000])), qty, 0, stp, 0)
    order_type, tif = {"gtc": (1, 1), "ioc": (1, 2), "fok": (1, 3), "maker": (3, 1)}[kind]
    return NewOrder(1, user, coid, side, order_type, tif, draw(PRICES), qty, 0, stp, 0)


commands = st.one_of(
    new_orders(),
    new_orders(),
    new_orders(),
    st.builds(
        lambda u, i, c, by_id: CancelOrder(1, u, i if by_id else 0, c, 0),
        USERS,
        st.integers(1, 40),
        COIDS,
        st.booleans(),
    ),
    st.builds(lambda u, i, q: AmendOrder(1, u, i, "", q, 0), USERS, st.integers(1, 40), st.integers(0, 7)),
    st.builds(lambda u: CancelAll(1, u, 0), USERS),
)


def apply_to_reference(ref: ReferenceBook, cmd: object):  # noqa: ANN201
    if isinstance(cmd, NewOrder):
        return ref.new_order(
            cmd.user_id,
            cmd.client_order_id,
            cmd.side,
            cmd.order_type,
            cmd.tif,
            cmd.price,
            cmd.qty,
            cmd.quote_qty,
            cmd.stp,
        )
    if isinstance(cmd, CancelOrder):
        return ref.cancel(cmd.user_id, cmd.order_id, cmd.client_order_id)
    if isinstance(cmd, AmendOrder):
        return ref.amend(cmd.user_id, cmd.order_id, cmd.client_order_id, cmd.new_qty)
    return ref.cancel_all(cmd.user_id)


class Ledger:
    """Per-order accounting from the events alone."""

    def __init__(self) -> None:
        self.submitted: dict[int, int] = {}
        self.filled: dict[int, int] = {}
        self.ended: dict[int, int] = {}  # canceled or expired remaining

    def add(self, events: list) -> None:
        for e in events:
            if isinstance(e, OrderAccepted) and e.qty:
                self.submitted[e.order_id] = e.qty
            elif isinstance(e, TradeEvent):
                for oid in (e.maker_order_id, e.taker_order_id):
                    self.filled[oid] = self.filled.get(oid, 0) + e.qty
            elif isinstance(e, OrderAmended):
                self.submitted[e.order_id] = e.new_qty
            elif isinstance(e, (OrderCanceled, OrderExpired)):
                self.ended[e.order_id] = self.ended.get(e.order_id, 0) + e.remaining_qty

    def check(self, engine: Engine) -> None:
        book = engine.book(1)
        for oid, qty in self.submitted.items():
            order = book.orders.get(oid)
            resting = order[4] if order is not None else 0  # O_OPEN
            assert resting + self.filled.get(oid, 0) + self.ended.get(oid, 0) == qty, oid


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(commands, min_size=1, max_size=60))
def test_engine_matches_reference(cmds: list) -> None:
    engine = Engine([SPEC])
    ref = ReferenceBook(SPEC.min_price, SPEC.max_price, SPEC.min_qty, SPEC.max_qty)
    ledger = Ledger()
    for ts, cmd in enumerate(cmds, start=1):
        cmd = cmd._replace(ts=ts)

        result = engine.apply(cmd)
        events = engine.take_events()
        expected = apply_to_reference(ref, cmd)

        if expected.code:
            assert isinstance(result, Rejected) and result.code == expected.code, (cmd, result, expected)
        elif isinstance(result, OrdersResult):
            assert [o.order_id for o in result.orders] == expected.order_ids
        else:
            assert isinstance(result, OrderResult), (cmd, result, expected)
            assert (result.order.status, result.order.executed_qty) == (expected.status, expected.executed), cmd
        trades = [(e.price, e.qty, e.maker_order_id) for e in events if isinstance(e, TradeEvent)]
        assert trades == expected.fills
        stp_expired = [e.order_id for e in events if isinstance(e, OrderExpired) and e.reason == ExpireReason.STP_MAKER]
        assert stp_expired == expected.expired_makers
        depth = engine.apply(QueryDepth(1, 1000))
        assert (list(depth.bids), list(depth.asks)) == (ref.depth(1), ref.depth(2))
        if depth.bids and depth.asks:
            assert depth.bids[0][0] < depth.asks[0][0]
        if isinstance(cmd, NewOrder) and cmd.quote_qty and isinstance(result, OrderResult):
            assert result.order.cum_quote <= cmd.quote_qty
        ledger.add(events)
        ledger.check(engine)


@settings(max_examples=100, deadline=None)
@given(st.lists(commands, min_size=1, max_size=80))
def test_results_agree_with_events(cmds: list) -> None:
    engine = Engine([SPEC])
    for ts, cmd in enumerate(cmds, start=1):
        result = engine.apply(cmd._replace(ts=ts))
        events = engine.take_events()
        assert [e.seq for e in events] == list(range(engine.last_seq - len(events) + 1, engine.last_seq + 1))
        if isinstance(result, OrderResult) and isinstance(cmd, NewOrder):
            trades = [e for e in events if isinstance(e, TradeEvent)]
            assert [(f.trade_id, f.price, f.qty) for f in result.fills] == [
                (t.trade_id, t.price, t.qty) for t in trades
            ]
            assert result.order.cum_quote == sum(t.price * t.qty for t in trades)


def test_deep_queues_match_reference() -> None:
    """Long seeded streams on three prices: deep queues, many cancels, queue compaction, level churn."""
    import random

    rng = random.Random(7)
    engine = Engine([SPEC])
    ref = ReferenceBook(SPEC.min_price, SPEC.max_price, SPEC.min_qty, SPEC.max_qty)
    ledger = Ledger()
    for ts in range(1, 4001):
        r = rng.random()
        if r < 0.5:
            side = rng.choice([1, 2])
            price = rng.choice([99, 100]) if side == 1 else rng.choice([101, 102])
            cmd: object = NewOrder(1, rng.randint(1, 50), f"c{ts}", side, 1, 1, price, rng.randint(1, 4), 0, 0, ts)
        elif r < 0.95 and ref.resting:
            victim = rng.choice(ref.resting) if rng.random() < 0.95 else None
            cmd = CancelOrder(1, victim.user if victim else 1, victim.order_id if victim else ts, "", ts)
        else:
            side = rng.choice([1, 2])
            price = 102 if side == 1 else 99
            cmd = NewOrder(1, 999, f"t{ts}", side, 1, 2, price, rng.randint(1, 30), 0, 0, ts)
        result = engine.apply(cmd)
        events = engine.take_events()
        expected = apply_to_reference(ref, cmd)
        assert (getattr(result, "code", 0)) == expected.code
        assert [(e.price, e.qty, e.maker_order_id) for e in events if isinstance(e, TradeEvent)] == expected.fills
        depth = engine.apply(QueryDepth(1, 10))
        assert (list(depth.bids), list(depth.asks)) == (ref.depth(1), ref.depth(2))
        ledger.add(events)
    ledger.check(engine)
    for side, price in ((1, 99), (1, 100), (2, 101), (2, 102)):
        assert [o[0] for o in engine.book(1).level_orders(side, price)] == [
            o.order_id for o in ref.resting if (o.side, o.price) == (side, price)
        ]
