"""Order-book scenarios as tables: a book set up by commands, one command, what must follow."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from shards.engine import Engine
from shards.protocol import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    DepthUpdate,
    NewOrder,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderRejected,
    OrderResult,
    OrdersResult,
    OrderStatus,
    QueryBookTicker,
    QueryDepth,
    QueryOpenOrders,
    QueryOrder,
    Rejected,
    TradeEvent,
)
from tests.shards.engine_harness import (
    BUY,
    EXPIRE_BOTH,
    EXPIRE_MAKER,
    EXPIRE_TAKER,
    FOK,
    IOC,
    LIMIT_MAKER,
    MARKET,
    NONE,
    SELL,
    SPEC,
    Driver,
    order,
)

pytestmark = pytest.mark.usefixtures("engine_core")  # each test runs on every engine core

S = OrderStatus


def cancel(order_id: int, user: int = 1, coid: str = "") -> CancelOrder:
    return CancelOrder(1, user, order_id, coid, 0)


def amend(order_id: int, new_qty: int, user: int = 1) -> AmendOrder:
    return AmendOrder(1, user, order_id, "", new_qty, 0)


@dataclass
class Case:
    name: str
    setup: list[object]
    act: object
    status: int = 0  # expected OrderResult status (0: do not check)
    code: int = 0  # expected rejection code
    executed: int = -1
    trades: list[tuple[int, int, int]] | None = None  # (price, qty, maker order id)
    bids: list[tuple[int, int]] | None = None
    asks: list[tuple[int, int]] | None = None
    extra: dict[str, object] = field(default_factory=dict)


CASES = [
    Case("a limit order that crosses nothing rests", [], order(BUY, 5, 100), S.NEW, bids=[(100, 5)], asks=[]),
    Case(
        "cancel in the middle of a FIFO queue keeps the others' order",
        [order(SELL, 1, 100), order(SELL, 2, 100), order(SELL, 3, 100), cancel(2)],
        order(BUY, 4, 100),
        S.FILLED,
        executed=4,
        trades=[(100, 1, 1), (100, 3, 3)],
        asks=[],
    ),
    Case(
        "multi-level IOC sweep trades at each maker's price and expires the rest",
        [order(SELL, 2, 100), order(SELL, 3, 101), order(SELL, 4, 102), order(SELL, 1, 103)],
        order(BUY, 10, 102, tif=IOC),
        S.EXPIRED,
        executed=9,
        trades=[(100, 2, 1), (101, 3, 2), (102, 4, 3)],
        bids=[],
        asks=[(103, 1)],
    ),
    Case(
        "FOK that just fails is rejected and trades nothing",
        [order(SELL, 2, 100), order(SELL, 3, 101), order(SELL, 9, 102)],
        order(BUY, 6, 101, tif=FOK),
        code=-2010,
        asks=[(100, 2), (101, 3), (102, 9)],
    ),
    Case(
        "FOK that just succeeds fills across levels",
        [order(SELL, 2, 100), order(SELL, 3, 101), order(SELL, 9, 102)],
        order(BUY, 5, 101, tif=FOK),
        S.FILLED,
        executed=5,
        trades=[(100, 2, 1), (101, 3, 2)],
        asks=[(102, 9)],
    ),
    Case(
        "FOK counts neither own orders expired by EXPIRE_MAKER",
        [order(SELL, 2, 100, user=1), order(SELL, 3, 101, user=2)],
        order(BUY, 4, 101, tif=FOK, user=1, stp=EXPIRE_MAKER),
        code=-2010,
        asks=[(100, 2), (101, 3)],
    ),
    Case(
        "a MARKET order empties a side and expires its rest",
        [order(SELL, 2, 100), order(SELL, 3, 105), order(BUY, 1, 90)],
        order(BUY, 10, order_type=MARKET),
        S.EXPIRED,
        executed=5,
        trades=[(100, 2, 1), (105, 3, 2)],
        bids=[(90, 1)],
        asks=[],
    ),
    Case(
        "MARKET sell by quantity walks the bids down",
        [order(BUY, 2, 100), order(BUY, 3, 99)],
        order(SELL, 4, order_type=MARKET),
        S.FILLED,
        executed=4,
        trades=[(100, 2, 1), (99, 2, 2)],
        bids=[(99, 1)],
    ),
    Case(
        "MARKET buy by quote buys whole lots without spending more than the quote",
        [order(SELL, 2, 100), order(SELL, 5, 110)],
        order(BUY, 0, order_type=MARKET, quote_qty=450),
        S.FILLED,
        executed=4,
        trades=[(100, 2, 1), (110, 2, 2)],
        asks=[(110, 3)],
        extra={"cum_quote": 420, "orig_qty": 4, "orig_quote_qty": 450},
    ),
    Case(
        "MARKET sell by quote stops before the received quote would pass it",
        [order(BUY, 3, 100)],
        order(SELL, 0, order_type=MARKET, quote_qty=250),
        S.FILLED,
        executed=2,
        trades=[(100, 2, 1)],
        bids=[(100, 1)],
    ),
    Case(
        "MARKET buy by quote that empties the book expires",
        [order(SELL, 1, 100)],
        order(BUY, 0, order_type=MARKET, quote_qty=1000),
        S.EXPIRED,
        executed=1,
        asks=[],
    ),
    Case(
        "MARKET buy by quote below one lot's price trades nothing",
        [order(SELL, 1, 100)],
        order(BUY, 0, order_type=MARKET, quote_qty=99),
        S.EXPIRED,
        executed=0,
        trades=[],
        asks=[(100, 1)],
    ),
    Case(
        "LIMIT_MAKER that would cross is rejected",
        [order(SELL, 1, 100)],
        order(BUY, 1, 100, order_type=LIMIT_MAKER),
        code=-2010,
        bids=[],
        asks=[(100, 1)],
    ),
    Case(
        "LIMIT_MAKER that does not cross rests",
        [order(SELL, 1, 100)],
        order(BUY, 1, 99, order_type=LIMIT_MAKER),
        S.NEW,
        bids=[(99, 1)],
    ),
    Case("stale cancel after a fill", [order(SELL, 1, 100), order(BUY, 1, 100)], cancel(1), code=-2013),
    Case("cancel of another user's order", [order(SELL, 1, 100, user=2)], cancel(1, user=1), code=-2013),
    Case("cancel by client order id", [order(SELL, 1, 100, coid="x")], cancel(0, coid="x"), S.CANCELED, asks=[]),
    Case(
        "a client order id is reusable after its first order ended",
        [order(SELL, 1, 100, coid="A"), order(BUY, 1, 100)],
        order(SELL, 1, 101, coid="A"),
        S.NEW,
        asks=[(101, 1)],
    ),
    Case(
        "a client order id of an open order is refused",
        [order(SELL, 1, 100, coid="A")],
        order(SELL, 1, 101, coid="A"),
        code=-2010,
        asks=[(100, 1)],
    ),
    Case(
        "the same client order id may be open for two users",
        [order(SELL, 1, 100, coid="A", user=1)],
        order(SELL, 1, 101, coid="A", user=2),
        S.NEW,
        asks=[(100, 1), (101, 1)],
    ),
    Case(
        "STP NONE trades with the user's own order",
        [order(SELL, 1, 100, user=1), order(SELL, 1, 100, user=2)],
        order(BUY, 2, 100, user=1, stp=NONE),
        S.FILLED,
        trades=[(100, 1, 1), (100, 1, 2)],
    ),
    Case(
        "STP EXPIRE_TAKER expires the incoming order at its own maker",
        [order(SELL, 1, 100, user=1), order(SELL, 1, 100, user=2)],
        order(BUY, 2, 100, user=1, stp=EXPIRE_TAKER),
        S.EXPIRED_IN_MATCH,
        executed=0,
        trades=[],
        bids=[],
        asks=[(100, 2)],
    ),
    Case(
        "STP EXPIRE_TAKER keeps the fills made before the own maker",
        [order(SELL, 1, 100, user=2), order(SELL, 1, 100, user=1)],
        order(BUY, 2, 100, user=1, stp=EXPIRE_TAKER),
        S.EXPIRED_IN_MATCH,
        executed=1,
        trades=[(100, 1, 1)],
        asks=[(100, 1)],
    ),
    Case(
        "STP EXPIRE_MAKER expires the resting order and goes on matching",
        [order(SELL, 1, 100, user=1), order(SELL, 1, 100, user=2)],
        order(BUY, 2, 100, user=1, stp=EXPIRE_MAKER),
        S.PARTIALLY_FILLED,
        executed=1,
        trades=[(100, 1, 2)],
        bids=[(100, 1)],
        asks=[],
        extra={"expired": [(1, "STP_MAKER")]},
    ),
    Case(
        "STP EXPIRE_BOTH expires both orders",
        [order(SELL, 1, 100, user=1), order(SELL, 1, 100, user=2)],
        order(BUY, 2, 100, user=1, stp=EXPIRE_BOTH),
        S.EXPIRED_IN_MATCH,
        executed=0,
        trades=[],
        bids=[],
        asks=[(100, 1)],
        extra={"expired": [(1, "STP_MAKER"), (3, "STP_TAKER")]},
    ),
    Case(
        "amend keeps the order's place in the queue",
        [order(SELL, 5, 100), order(SELL, 5, 100), amend(1, 2)],
        order(BUY, 3, 100),
        S.FILLED,
        trades=[(100, 2, 1), (100, 1, 2)],
        asks=[(100, 4)],
    ),
    Case("amend to the current quantity is refused", [order(SELL, 5, 100)], amend(1, 5), code=-1013),
    Case(
        "amend to the executed quantity is refused",
        [order(SELL, 5, 100), order(BUY, 2, 100)],
        amend(1, 2),
        code=-1013,
        asks=[(100, 3)],
    ),
    Case(
        "amend of a partly filled order",
        [order(SELL, 5, 100), order(BUY, 2, 100)],
        amend(1, 3),
        S.PARTIALLY_FILLED,
        executed=2,
        asks=[(100, 1)],
    ),
    Case("amend of an unknown order", [], amend(7, 1), code=-2013),
    Case(
        "a GTC that partly fills rests its rest at its own price",
        [order(SELL, 2, 100)],
        order(BUY, 5, 101),
        S.PARTIALLY_FILLED,
        executed=2,
        trades=[(100, 2, 1)],
        bids=[(101, 3)],
        asks=[],
    ),
    Case("an IOC that crosses nothing expires", [order(SELL, 2, 100)], order(BUY, 5, 99, tif=IOC), S.EXPIRED, bids=[]),
    Case("price below minPrice", [], order(BUY, 1, 0), code=-1013),
    Case("quantity above maxQty", [], order(BUY, SPEC.max_qty + 1, 10), code=-1013),
    Case("MARKET with both quantity and quote", [], order(BUY, 1, order_type=MARKET, quote_qty=5), code=-1100),
    Case("unknown symbol", [], order(BUY, 1, 10, symbol_id=99), code=-1121),
    Case("unknown side", [], order(3, 1, 10), code=-1100),
    Case("client order id longer than 64 characters", [], order(BUY, 1, 10, coid="x" * 65), code=-1100),
    Case("client order id of 64 characters", [], order(BUY, 1, 10, coid="é" * 64), S.NEW, bids=[(10, 1)]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_scenario(case: Case) -> None:
    # arrange
    d = Driver()
    for cmd in case.setup:
        d.apply(cmd)

    # act
    result = d.apply(case.act)

    # assert
    if case.code:
        assert isinstance(result, Rejected), result
        assert result.code == case.code
        if isinstance(case.act, NewOrder):
            assert [type(e) for e in d.last_events] == [OrderRejected]
        else:
            assert d.last_events == []
    else:
        assert isinstance(result, OrderResult), result
        assert result.order.status == case.status
        if case.executed >= 0:
            assert result.order.executed_qty == case.executed
            if isinstance(case.act, NewOrder):
                assert sum(f.qty for f in result.fills) == case.executed
    if case.trades is not None:
        assert [(p, q, m) for p, q, m, _ in d.trades()] == case.trades
        assert [(f.price, f.qty) for f in result.fills] == [(p, q) for p, q, _ in case.trades]  # type: ignore[union-attr]
    bids, asks = d.depth()
    if case.bids is not None:
        assert bids == case.bids
    if case.asks is not None:
        assert asks == case.asks
    for key in ("cum_quote", "orig_qty", "orig_quote_qty"):
        if key in case.extra:
            assert getattr(result.order, key) == case.extra[key]  # type: ignore[union-attr]
    if "expired" in case.extra:
        expired = [(e.order_id, e.reason) for e in d.last_events if isinstance(e, OrderExpired)]
        assert [(oid, name) for oid, name in case.extra["expired"]] == [  # type: ignore[attr-defined]
            (oid, _reason_name(reason)) for oid, reason in expired
        ]


def _reason_name(reason: int) -> str:
    from shards.protocol import ExpireReason

    return ExpireReason(reason).name


def test_taker_events_come_in_contract_order() -> None:
    # arrange
    d = Driver()
    d.sell(1, 100)
    d.sell(1, 101)

    # act
    d.buy(5, 101, tif=IOC)

    # assert
    kinds = [type(e) for e in d.last_events]
    assert kinds == [OrderAccepted, TradeEvent, TradeEvent, OrderExpired, DepthUpdate]
    seqs = [e.seq for e in d.last_events]
    assert seqs == list(range(seqs[0], seqs[0] + 5))
    depth = d.last_events[-1]
    assert depth.asks == ((100, 0), (101, 0)) and depth.bids == ()


def test_depth_sequence_grows_by_one_per_depth_update() -> None:
    # arrange
    d = Driver()

    # act
    d.sell(1, 100)
    d.buy(1, 90, tif=IOC)  # no depth change
    d.sell(2, 101)
    d.cancel(3)

    # assert
    depth_seqs = [e.depth_seq for e in d.events if isinstance(e, DepthUpdate)]
    assert depth_seqs == [1, 2, 3]
    assert d.engine.apply(QueryDepth(1, 5)).last_update_id == 3  # type: ignore[union-attr]


def test_sweep_of_5000_fills() -> None:
    # arrange: 5 000 one-lot asks over 50 levels
    d = Driver()
    for i in range(5000):
        d.sell(1, 1000 + i % 50, user=2 + i % 7)

    # act
    result = d.buy(5000, order_type=MARKET)

    # assert
    assert isinstance(result, OrderResult)
    assert result.order.status == S.FILLED
    assert len(result.fills) == 5000
    assert [f.trade_id for f in result.fills] == list(range(1, 5001))
    prices = [f.price for f in result.fills]
    assert prices == sorted(prices)
    depth_updates = [e for e in d.last_events if isinstance(e, DepthUpdate)]
    assert len(depth_updates) == 1
    assert depth_updates[0].asks == tuple((1000 + i, 0) for i in range(50))
    assert d.depth() == ([], [])


def test_cancel_all_cancels_only_the_users_orders_with_one_depth_update() -> None:
    # arrange
    d = Driver()
    d.sell(1, 101, user=1)
    d.buy(2, 99, user=1)
    d.sell(3, 101, user=2)
    d.buy(4, 98, user=1)

    # act
    result = d.cancel_all(user=1)

    # assert
    assert isinstance(result, OrdersResult)
    assert [(o.order_id, o.status) for o in result.orders] == [(1, S.CANCELED), (2, S.CANCELED), (4, S.CANCELED)]
    kinds = [type(e) for e in d.last_events]
    assert kinds == [OrderCanceled, OrderCanceled, OrderCanceled, DepthUpdate]
    assert d.last_events[-1].bids == ((99, 0), (98, 0)) and d.last_events[-1].asks == ((101, 3),)
    assert d.depth() == ([], [(101, 3)])
    again = d.cancel_all(user=1)
    assert isinstance(again, Rejected) and again.code == -2011 and "TEST" in again.msg


def test_queries_answer_from_open_orders() -> None:
    # arrange
    d = Driver()
    d.sell(5, 101, user=1, coid="s1")
    d.buy(2, 99, user=1)
    d.buy(3, 101, user=2)  # fills 3 of order 1
    engine = d.engine

    # act
    by_id = engine.apply(QueryOrder(1, 1, 1, ""))
    by_coid = engine.apply(QueryOrder(1, 1, 0, "s1"))
    not_mine = engine.apply(QueryOrder(1, 2, 1, ""))
    ended = engine.apply(QueryOrder(1, 2, 3, ""))
    open_orders = engine.apply(QueryOpenOrders(0, 1))
    ticker = engine.apply(QueryBookTicker(1))
    unknown = engine.apply(QueryBookTicker(9))

    # assert
    assert isinstance(by_id, OrderResult) and by_id == by_coid
    assert by_id.order.status == S.PARTIALLY_FILLED and by_id.order.executed_qty == 3
    assert by_id.order.cum_quote == 303
    assert isinstance(not_mine, Rejected) and not_mine.code == -2013
    assert isinstance(ended, Rejected) and ended.code == -2013
    assert isinstance(open_orders, OrdersResult) and [o.order_id for o in open_orders.orders] == [1, 2]
    assert ticker == (1, 99, 2, 101, 2)
    assert isinstance(unknown, Rejected) and unknown.code == -1121


def test_book_ticker_of_an_empty_book_is_zeros() -> None:
    assert Engine([SPEC]).apply(QueryBookTicker(1)) == (1, 0, 0, 0, 0)


def test_rejections_name_the_offending_value() -> None:
    # arrange
    d = Driver()

    # act
    low = d.buy(1, 0)
    big = d.buy(SPEC.max_qty + 7, 10)

    # assert
    assert isinstance(low, Rejected) and "price 0" in low.msg and "minPrice 1" in low.msg
    assert isinstance(big, Rejected) and f"quantity {SPEC.max_qty + 7}" in big.msg
    rejected = [e for e in d.events if isinstance(e, OrderRejected)]
    assert [(e.code, e.msg) for e in rejected] == [(low.code, low.msg), (big.code, big.msg)]


def test_order_view_times_come_from_the_commands() -> None:
    # arrange
    d = Driver()
    placed = d.sell(5, 100)

    # act
    d.buy(2, 100)
    after = d.engine.apply(QueryOrder(1, 1, 1, ""))

    # assert
    assert isinstance(placed, OrderResult) and isinstance(after, OrderResult)
    assert after.order.time == placed.order.time == after.order.working_time
    assert after.order.update_time == placed.order.time + 1


def test_rejected_orders_use_no_order_id() -> None:
    # arrange
    d = Driver()
    d.buy(1, 0)  # rejected

    # act
    result = d.buy(1, 10)

    # assert
    assert isinstance(result, OrderResult) and result.order.order_id == 1


def test_unknown_command_is_malformed() -> None:
    result = Engine([SPEC]).apply(object())
    assert isinstance(result, Rejected) and result.code == -1100


def test_symbols_have_their_own_ids_and_books() -> None:
    # arrange
    other = SPEC._replace(symbol_id=2, symbol="OTHER")
    engine = Engine([SPEC, other])

    # act
    a = engine.apply(order(SELL, 1, 100, symbol_id=1, coid="a"))
    b = engine.apply(order(SELL, 1, 100, symbol_id=2, coid="a"))
    all_open = engine.apply(QueryOpenOrders(0, 1))
    events = engine.take_events()

    # assert
    assert isinstance(a, OrderResult) and isinstance(b, OrderResult)
    assert a.order.order_id == b.order.order_id == 1
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert isinstance(all_open, OrdersResult) and [o.symbol_id for o in all_open.orders] == [1, 2]
    assert [e.depth_seq for e in events if isinstance(e, DepthUpdate)] == [1, 1]


def test_cancel_all_of_unknown_symbol() -> None:
    result = Engine([SPEC]).apply(CancelAll(5, 1, 0))
    assert isinstance(result, Rejected) and result.code == -1121
