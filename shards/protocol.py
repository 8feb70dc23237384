"""The matching engine's whole vocabulary: commands in, results and events out.

Everything here is plain integers and short strings (house rule 3): prices in
ticks of the symbol's tickSize, quantities in lots of its stepSize, quote
amounts in tick*lot units (price_ticks * qty_lots), times in milliseconds.
Decimal strings exist only in ingress and the feeds.

Commands are NamedTuples: cheap to build, immutable, comparable in tests.
The wire encoding of commands and results (ingress <-> shard rings) lives in
``shards/wire.py``; the journal encoding of events lives in ``shards/events.py``.
Nothing in this module does I/O.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple


class Side(IntEnum):
    BUY = 1
    SELL = 2


class OrderType(IntEnum):
    LIMIT = 1
    MARKET = 2
    LIMIT_MAKER = 3


class TimeInForce(IntEnum):
    GTC = 1
    IOC = 2
    FOK = 3


class StpMode(IntEnum):
    NONE = 0
    EXPIRE_TAKER = 1
    EXPIRE_MAKER = 2
    EXPIRE_BOTH = 3


class OrderStatus(IntEnum):
    NEW = 1
    PARTIALLY_FILLED = 2
    FILLED = 3
    CANCELED = 4
    REJECTED = 5
    EXPIRED = 6
    EXPIRED_IN_MATCH = 7


class ExpireReason(IntEnum):
    """Why an order ended without being filled or canceled by its owner."""

    IOC = 1  # IOC rest expired
    FOK = 2  # FOK could not fill (never happens on the wire: FOK is rejected -2010)
    MARKET = 3  # MARKET order's unfilled rest (book side empty / quote spent)
    STP_TAKER = 4  # self-trade prevention expired the incoming order
    STP_MAKER = 5  # self-trade prevention expired the resting order


class RejectCode(IntEnum):
    """Contract error codes the engine itself can answer (see API.md)."""

    FILTER = -1013  # price/qty off grid or out of range
    NEW_ORDER_REJECTED = -2010  # LIMIT_MAKER would cross, FOK cannot fill, duplicate client id
    CANCEL_REJECTED = -2011
    NO_SUCH_ORDER = -2013
    UNKNOWN_SYMBOL = -1121
    MALFORMED = -1100


class SymbolSpec(NamedTuple):
    """A symbol's trading rules in engine units (ticks and lots)."""

    symbol_id: int
    symbol: str
    min_price: int  # ticks, >= 1
    max_price: int  # ticks
    min_qty: int  # lots, >= 1
    max_qty: int  # lots


# --- commands -----------------------------------------------------------------
# Every command carries the user it acts for. ``client_order_id`` is "" when
# absent; ``order_id`` is 0 when absent. A state-changing command carries the
# time the shard assigned to it (``ts``, ms) so that replay is deterministic.


class NewOrder(NamedTuple):
    symbol_id: int
    user_id: int
    client_order_id: str  # never "": ingress generates one when the client sent none
    side: int  # Side
    order_type: int  # OrderType
    tif: int  # TimeInForce (GTC for MARKET and LIMIT_MAKER; ignored there)
    price: int  # ticks; 0 for MARKET
    qty: int  # lots; 0 for a MARKET buy by quote amount
    quote_qty: int  # tick*lot units; >0 only for a MARKET buy by quoteOrderQty
    stp: int  # StpMode
    ts: int  # ms


class CancelOrder(NamedTuple):
    symbol_id: int
    user_id: int
    order_id: int  # 0 = use client_order_id
    client_order_id: str
    ts: int


class AmendOrder(NamedTuple):
    """Reduce an open order's quantity keeping its place (amend/keepPriority).

    ``new_qty`` is the new original quantity: it must be greater than the
    executed quantity and less than the current original quantity.
    """

    symbol_id: int
    user_id: int
    order_id: int
    client_order_id: str
    new_qty: int
    ts: int


class CancelAll(NamedTuple):
    symbol_id: int
    user_id: int
    ts: int


class QueryOrder(NamedTuple):
    symbol_id: int
    user_id: int
    order_id: int
    client_order_id: str


class QueryOpenOrders(NamedTuple):
    symbol_id: int  # 0 = every symbol of this shard
    user_id: int


class QueryDepth(NamedTuple):
    symbol_id: int
    limit: int


class QueryBookTicker(NamedTuple):
    symbol_id: int


STATE_CHANGING = (NewOrder, CancelOrder, AmendOrder, CancelAll)


# --- results (the answer to one command) --------------------------------------


class OrderView(NamedTuple):
    """An order as the API shows it, in engine units."""

    symbol_id: int
    order_id: int
    client_order_id: str
    user_id: int
    side: int
    order_type: int
    tif: int
    stp: int
    price: int  # ticks (0 for MARKET)
    orig_qty: int  # lots (for a MARKET buy by quote: 0 until done, then executed)
    executed_qty: int  # lots
    cum_quote: int  # tick*lot units
    orig_quote_qty: int  # tick*lot units (MARKET by quote), else 0
    status: int  # OrderStatus
    time: int  # ms, when accepted
    update_time: int  # ms, last change
    working_time: int  # ms, when it started working (== time here)


class Fill(NamedTuple):
    trade_id: int
    price: int
    qty: int


class OrderResult(NamedTuple):
    """Answer to NewOrder, CancelOrder, AmendOrder and QueryOrder."""

    order: OrderView
    fills: tuple[Fill, ...]  # the taker's fills (NewOrder only)


class OrdersResult(NamedTuple):
    """Answer to CancelAll and QueryOpenOrders."""

    orders: tuple[OrderView, ...]


class Rejected(NamedTuple):
    code: int  # RejectCode value
    msg: str  # names the offending value: "quantity 0 is below minQty 1"


class DepthView(NamedTuple):
    symbol_id: int
    last_update_id: int  # the symbol's depth sequence
    bids: tuple[tuple[int, int], ...]  # (price ticks, qty lots), best first
    asks: tuple[tuple[int, int], ...]


class BookTickerView(NamedTuple):
    symbol_id: int
    bid_price: int  # 0 when the side is empty
    bid_qty: int
    ask_price: int
    ask_qty: int


Result = OrderResult | OrdersResult | Rejected | DepthView | BookTickerView


# --- events (the journal; each carries the shard's sequence number) ------------


class OrderAccepted(NamedTuple):
    seq: int
    ts: int
    symbol_id: int
    order_id: int
    user_id: int
    client_order_id: str
    side: int
    order_type: int
    tif: int
    stp: int
    price: int
    qty: int
    quote_qty: int


class TradeEvent(NamedTuple):
    seq: int
    ts: int
    symbol_id: int
    trade_id: int
    price: int
    qty: int
    maker_order_id: int
    taker_order_id: int
    maker_user_id: int
    taker_user_id: int
    taker_side: int  # Side of the aggressor; isBuyerMaker == (taker_side == SELL)


class OrderCanceled(NamedTuple):
    seq: int
    ts: int
    symbol_id: int
    order_id: int
    user_id: int
    remaining_qty: int  # lots left unfilled when canceled


class OrderAmended(NamedTuple):
    seq: int
    ts: int
    symbol_id: int
    order_id: int
    user_id: int
    new_qty: int  # the new original quantity


class OrderExpired(NamedTuple):
    seq: int
    ts: int
    symbol_id: int
    order_id: int
    user_id: int
    remaining_qty: int
    reason: int  # ExpireReason


class OrderRejected(NamedTuple):
    seq: int
    ts: int
    symbol_id: int
    user_id: int
    client_order_id: str
    code: int
    msg: str


class DepthUpdate(NamedTuple):
    """Changed levels of one symbol after one command; absolute quantities, 0 removes.

    ``depth_seq`` is the symbol's depth sequence after this change; it grows by
    exactly one per DepthUpdate, so U == u == depth_seq for one event.
    """

    seq: int
    ts: int
    symbol_id: int
    depth_seq: int
    bids: tuple[tuple[int, int], ...]
    asks: tuple[tuple[int, int], ...]


Event = OrderAccepted | TradeEvent | OrderCanceled | OrderAmended | OrderExpired | OrderRejected | DepthUpdate
