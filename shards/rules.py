"""Order rules off the hot path: plain-int enum values, why an order is refused, FOK feasibility.

The engine checks validity with one fast boolean expression and only calls
here to word a rejection (house rule 6: a code and a message naming the
offending value), or to test whether a FOK can fill. Pure functions of the
book and the command; no I/O.
"""

from __future__ import annotations

from shards.book import L_QTY, L_QUEUE, NO_ASK, O_OPEN, O_USER, Book
from shards.protocol import (
    ExpireReason,
    NewOrder,
    OrderStatus,
    OrderType,
    RejectCode,
    Side,
    StpMode,
    SymbolSpec,
    TimeInForce,
)

# Plain ints for the hot paths (IntEnum comparisons cost more).
BUY = Side.BUY.value
SELL = Side.SELL.value
LIMIT = OrderType.LIMIT.value
MARKET = OrderType.MARKET.value
LIMIT_MAKER = OrderType.LIMIT_MAKER.value
GTC = TimeInForce.GTC.value
IOC = TimeInForce.IOC.value
FOK = TimeInForce.FOK.value
STP_NONE = StpMode.NONE.value
EXPIRE_TAKER = StpMode.EXPIRE_TAKER.value
EXPIRE_MAKER = StpMode.EXPIRE_MAKER.value
EXPIRE_BOTH = StpMode.EXPIRE_BOTH.value
NEW = OrderStatus.NEW.value
PARTIALLY_FILLED = OrderStatus.PARTIALLY_FILLED.value
FILLED = OrderStatus.FILLED.value
CANCELED = OrderStatus.CANCELED.value
EXPIRED = OrderStatus.EXPIRED.value
EXPIRED_IN_MATCH = OrderStatus.EXPIRED_IN_MATCH.value
R_IOC = ExpireReason.IOC.value
R_MARKET = ExpireReason.MARKET.value
R_STP_TAKER = ExpireReason.STP_TAKER.value
R_STP_MAKER = ExpireReason.STP_MAKER.value
FILTER = RejectCode.FILTER.value
NEW_ORDER_REJECTED = RejectCode.NEW_ORDER_REJECTED.value
CANCEL_REJECTED = RejectCode.CANCEL_REJECTED.value
NO_SUCH_ORDER = RejectCode.NO_SUCH_ORDER.value
UNKNOWN_SYMBOL = RejectCode.UNKNOWN_SYMBOL.value
MALFORMED = RejectCode.MALFORMED.value
MAX_CLIENT_ORDER_ID = 64  # characters (Binance allows 36); keeps every journal string far below its u16 length


def invalid_new_order(spec: SymbolSpec, cmd: NewOrder) -> tuple[int, str]:
    """Code and message for a NewOrder that failed the engine's fast validity check."""
    if len(cmd.client_order_id) > MAX_CLIENT_ORDER_ID:
        return MALFORMED, (
            f"newClientOrderId of {len(cmd.client_order_id)} characters is longer than {MAX_CLIENT_ORDER_ID}"
        )
    if cmd.side not in (BUY, SELL):
        return MALFORMED, f"side {cmd.side} is not BUY ({BUY}) or SELL ({SELL})"
    if not STP_NONE <= cmd.stp <= EXPIRE_BOTH:
        return MALFORMED, f"selfTradePreventionMode {cmd.stp} is not one of {STP_NONE}..{EXPIRE_BOTH}"
    if cmd.order_type == MARKET:
        if cmd.price:
            return MALFORMED, f"price {cmd.price} given for a MARKET order"
        if cmd.qty and cmd.quote_qty:
            return MALFORMED, f"quantity {cmd.qty} and quoteOrderQty {cmd.quote_qty} both given"
        if not cmd.qty:
            return FILTER, f"quoteOrderQty {cmd.quote_qty} must be positive"
        return _qty_filter(spec, cmd.qty)
    if cmd.order_type not in (LIMIT, LIMIT_MAKER):
        return MALFORMED, f"order type {cmd.order_type} is not LIMIT, MARKET or LIMIT_MAKER"
    if cmd.order_type == LIMIT and cmd.tif not in (GTC, IOC, FOK):
        return MALFORMED, f"timeInForce {cmd.tif} is not GTC, IOC or FOK"
    if cmd.quote_qty:
        return MALFORMED, f"quoteOrderQty {cmd.quote_qty} is only for MARKET orders"
    if cmd.price < spec.min_price:
        return FILTER, f"price {cmd.price} is below minPrice {spec.min_price}"
    if cmd.price > spec.max_price:
        return FILTER, f"price {cmd.price} is above maxPrice {spec.max_price}"
    return _qty_filter(spec, cmd.qty)


def _qty_filter(spec: SymbolSpec, qty: int) -> tuple[int, str]:
    if qty < spec.min_qty:
        return FILTER, f"quantity {qty} is below minQty {spec.min_qty}"
    return FILTER, f"quantity {qty} is above maxQty {spec.max_qty}"


def why_not_placed(book: Book, cmd: NewOrder) -> str:
    """Message for a valid LIMIT_MAKER that would trade, or a FOK that cannot fill at once."""
    if cmd.order_type == LIMIT_MAKER:
        if cmd.side == BUY:
            return f"LIMIT_MAKER BUY at price {cmd.price} would trade against best ask {book.best_ask}"
        return f"LIMIT_MAKER SELL at price {cmd.price} would trade against best bid {book.best_bid}"
    return f"FOK quantity {cmd.qty} at price {cmd.price} cannot be filled at once"


def fok_fillable(book: Book, cmd: NewOrder) -> bool:
    """Whether a FOK would fill entirely now, treating self-trade prevention as the match would."""
    side, price, need, user_id, stp = cmd.side, cmd.price, cmd.qty, cmd.user_id, cmd.stp
    maker_side, levels = (SELL, book.asks) if side == BUY else (BUY, book.bids)
    for level_price in book.prices(maker_side):
        if (level_price > price) if side == BUY else (level_price < price):
            return False
        level = levels[level_price]
        if stp == STP_NONE:
            need -= level[L_QTY]
            if need <= 0:
                return True
            continue
        for maker in level[L_QUEUE]:
            open_qty = maker[O_OPEN]
            if not open_qty:
                continue
            if maker[O_USER] == user_id:
                if stp == EXPIRE_MAKER:
                    continue  # the match expires it and goes on
                return False  # the match stops here
            need -= open_qty
            if need <= 0:
                return True
    return False


def missing(order_id: int, coid: str) -> str:
    """Message for an order that is unknown, ended, or another user's."""
    if order_id:
        return f"order does not exist: orderId {order_id}"
    return f"order does not exist: origClientOrderId {coid!r}"


assert NO_ASK > (1 << 62) - 1  # the engine's MARKET buy limit stays below the empty-ask sentinel
