"""Engine results as contract JSON objects (Binance Spot shapes, decimal strings).

Prices are written with the tick size's decimals, quantities with the step
size's, quote amounts with both (``ingress/symbols.py``), never with an
exponent. Enums are their names. ``orderListId`` is always -1. Fills carry
commission ``"0"`` in the symbol's quote asset (a choice: there are no fees
yet, and one asset for every fill keeps clients' bookkeeping simple).

Shapes:
- new order: ACK ``{symbol, orderId, orderListId, clientOrderId, transactTime}``;
  RESULT adds ``price, origQty, executedQty, cummulativeQuoteQty, status,
  timeInForce, type, side, workingTime, selfTradePreventionMode``; FULL adds ``fills``.
- order (GET order, openOrders, amendedOrder): Binance's query shape.
- canceled order (DELETE order / openOrders): Binance's cancel shape.
This module does no I/O and never logs.
"""

from __future__ import annotations

from typing import Any

from ingress.symbols import SymbolRules
from shards.protocol import (
    BookTickerView,
    DepthView,
    OrderStatus,
    OrderType,
    OrderView,
    Side,
    StpMode,
    TimeInForce,
)

SIDE_NAMES = {int(v): v.name for v in Side}
TYPE_NAMES = {int(v): v.name for v in OrderType}
TIF_NAMES = {int(v): v.name for v in TimeInForce}
STP_NAMES = {int(v): v.name for v in StpMode}
STATUS_NAMES = {int(v): v.name for v in OrderStatus}
OPEN_STATUSES = frozenset((int(OrderStatus.NEW), int(OrderStatus.PARTIALLY_FILLED)))
ORDER_TYPE_NAMES = ["LIMIT", "LIMIT_MAKER", "MARKET"]


def ack(rules: SymbolRules, o: OrderView) -> dict[str, Any]:
    return {
        "symbol": rules.symbol,
        "orderId": o.order_id,
        "orderListId": -1,
        "clientOrderId": o.client_order_id,
        "transactTime": o.time,
    }


def result(rules: SymbolRules, o: OrderView) -> dict[str, Any]:
    """The RESULT shape (the hot path: the view is unpacked once)."""
    (
        _,
        order_id,
        coid,
        _,
        side,
        order_type,
        tif,
        stp,
        price,
        orig_qty,
        executed,
        cum_quote,
        _,
        status,
        time,
        _,
        working,
    ) = o
    return {
        "symbol": rules.symbol,
        "orderId": order_id,
        "orderListId": -1,
        "clientOrderId": coid,
        "transactTime": time,
        "price": rules.price(price),
        "origQty": rules.qty(orig_qty),
        "executedQty": rules.qty(executed),
        "cummulativeQuoteQty": rules.quote(cum_quote) if cum_quote else rules.zero_quote,
        "status": STATUS_NAMES[status],
        "timeInForce": TIF_NAMES[tif],
        "type": TYPE_NAMES[order_type],
        "side": SIDE_NAMES[side],
        "workingTime": working,
        "selfTradePreventionMode": STP_NAMES[stp],
    }


def full(rules: SymbolRules, o: OrderView, fills: tuple) -> dict[str, Any]:
    body = result(rules, o)
    if not fills:
        body["fills"] = []
        return body
    asset = rules.quote_asset
    price = rules.price
    qty = rules.qty
    body["fills"] = [
        {"price": price(f[1]), "qty": qty(f[2]), "commission": "0", "commissionAsset": asset, "tradeId": f[0]}
        for f in fills
    ]
    return body


def new_order(rules: SymbolRules, o: OrderView, fills: tuple, resp_type: str) -> dict[str, Any]:
    if resp_type == "FULL":
        return full(rules, o, fills)
    if resp_type == "RESULT":
        return result(rules, o)
    return ack(rules, o)


def order(rules: SymbolRules, o: OrderView) -> dict[str, Any]:
    """An order as GET /api/v3/order shows it."""
    return {
        "symbol": rules.symbol,
        "orderId": o.order_id,
        "orderListId": -1,
        "clientOrderId": o.client_order_id,
        "price": rules.price(o.price),
        "origQty": rules.qty(o.orig_qty),
        "executedQty": rules.qty(o.executed_qty),
        "cummulativeQuoteQty": rules.quote(o.cum_quote),
        "status": STATUS_NAMES[o.status],
        "timeInForce": TIF_NAMES[o.tif],
        "type": TYPE_NAMES[o.order_type],
        "side": SIDE_NAMES[o.side],
        "time": o.time,
        "updateTime": o.update_time,
        "isWorking": True,
        "workingTime": o.working_time,
        "origQuoteOrderQty": rules.quote(o.orig_quote_qty),
        "selfTradePreventionMode": STP_NAMES[o.stp],
    }


def canceled(rules: SymbolRules, o: OrderView) -> dict[str, Any]:
    """An order as DELETE /api/v3/order answers it."""
    return {
        "symbol": rules.symbol,
        "origClientOrderId": o.client_order_id,
        "orderId": o.order_id,
        "orderListId": -1,
        "clientOrderId": o.client_order_id,
        "transactTime": o.update_time,
        "price": rules.price(o.price),
        "origQty": rules.qty(o.orig_qty),
        "executedQty": rules.qty(o.executed_qty),
        "cummulativeQuoteQty": rules.quote(o.cum_quote),
        "status": STATUS_NAMES[o.status],
        "timeInForce": TIF_NAMES[o.tif],
        "type": TYPE_NAMES[o.order_type],
        "side": SIDE_NAMES[o.side],
        "selfTradePreventionMode": STP_NAMES[o.stp],
    }


def depth(rules: SymbolRules, d: DepthView) -> dict[str, Any]:
    price = rules.price
    qty = rules.qty
    return {
        "lastUpdateId": d.last_update_id,
        "bids": [[price(p), qty(q)] for p, q in d.bids],
        "asks": [[price(p), qty(q)] for p, q in d.asks],
    }


def book_ticker(rules: SymbolRules, t: BookTickerView) -> dict[str, Any]:
    return {
        "symbol": rules.symbol,
        "bidPrice": rules.price(t.bid_price),
        "bidQty": rules.qty(t.bid_qty),
        "askPrice": rules.price(t.ask_price),
        "askQty": rules.qty(t.ask_qty),
    }


def symbol_info(rules: SymbolRules) -> dict[str, Any]:
    return {
        "symbol": rules.symbol,
        "status": "TRADING",
        "baseAsset": rules.base_asset,
        "quoteAsset": rules.quote_asset,
        "baseAssetPrecision": rules.qty_decimals,
        "quoteAssetPrecision": rules.price_decimals + rules.qty_decimals,
        "orderTypes": list(ORDER_TYPE_NAMES),
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": rules.min_price_text,
                "maxPrice": rules.max_price_text,
                "tickSize": rules.tick_text,
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": rules.min_qty_text,
                "maxQty": rules.max_qty_text,
                "stepSize": rules.step_text,
            },
        ],
    }
