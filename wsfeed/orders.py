"""Private order updates: every order's running state, and its ``executionReport`` per change.

``OrderTracker`` follows every order of the shard streams (not only those of
connected users: a user who connects later still gets correct cumulative
figures) from ``OrderAccepted`` until it leaves the book, and for each change
returns ``(user_id, report)``, ``report`` being the JSON text of Binance's
``executionReport`` (API.md fields ``e E s c S o f q p x X r i l z L n N T t w
m O Z Y``). Execution types: ``NEW`` (accepted), ``TRADE`` (one report for the
taker, ``m`` false, and one for the maker, ``m`` true), ``CANCELED``,
``REPLACED`` (amend keepPriority: ``q`` is the new quantity), ``EXPIRED``, and
``TRADE_PREVENTION`` with status ``EXPIRED_IN_MATCH`` (self-trade prevention).
An order rejected before acceptance never existed on the book and gets no
report (its REST answer says why). Commission is ``"0"`` with ``N`` null (no
fees yet).

A MARKET buy by quote amount has no quantity to compare with: its last trade of
a command is ``FILLED`` unless an ``OrderExpired`` of it follows in the same
command (the engine's rule), which ``apply`` sees by looking ahead in the batch.
Orders accepted before the oldest entry this process read are unknown here and
their updates are skipped (counted in ``unknown``). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from ingress.symbols import Catalog, SymbolRules
from shards.protocol import (
    DepthUpdate,
    ExpireReason,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    TradeEvent,
)

SIDE = {int(v): v.name for v in Side}
TYPE = {int(v): v.name for v in OrderType}
TIF = {int(v): v.name for v in TimeInForce}
STATUS = {int(v): v.name for v in OrderStatus}
_STP_REASONS = frozenset((int(ExpireReason.STP_TAKER), int(ExpireReason.STP_MAKER)))
_MARKET = int(OrderType.MARKET)

# order state: [user_id, coid, side, type, tif, price, orig_qty, quote_qty, executed, cum_quote, created]
U, COID, SIDE_, TYPE_, TIF_, PRICE, ORIG, QUOTE_QTY, EXEC, CUM, CREATED = range(11)


class OrderTracker:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.orders: dict[tuple[int, int], list[Any]] = {}
        self.unknown = 0

    def apply(self, events: Sequence[Any], i: int, now_ms: int, wanted: dict) -> list[tuple[int, bytes]]:
        """Reports for ``events[i]`` (an order event); ``wanted``: users with a private connection."""
        e: Any = events[i]
        kind = type(e)
        if kind is TradeEvent:
            return self._trade(e, events, i, now_ms, wanted)
        if kind is OrderAccepted:
            report = self.accepted(e, now_ms, wanted)
            return [] if report is None else [(e.user_id, report)]
        key = (e.symbol_id, e.order_id)
        found: list[Any] | None
        if kind is OrderAmended:
            found = self.orders.get(key)
            if found is None:
                self.unknown += 1
                return []
            found[ORIG] = e.new_qty
            status = "PARTIALLY_FILLED" if found[EXEC] else "NEW"
            if found[U] not in wanted:
                return []
            return [(found[U], self._report(e.symbol_id, e.order_id, found, now_ms, e.ts, "REPLACED", status))]
        found = self.orders.pop(key, None)
        if found is None:
            self.unknown += 1
            return []
        order = found
        if order[U] not in wanted:
            return []
        if kind is OrderCanceled:
            return [(order[U], self._report(e.symbol_id, e.order_id, order, now_ms, e.ts, "CANCELED", "CANCELED"))]
        if kind is OrderExpired:
            if e.reason in _STP_REASONS:
                x, status = "TRADE_PREVENTION", "EXPIRED_IN_MATCH"
            else:
                x, status = "EXPIRED", "EXPIRED"
            return [(order[U], self._report(e.symbol_id, e.order_id, order, now_ms, e.ts, x, status))]
        return []

    def accepted(self, e: OrderAccepted, now_ms: int, wanted: dict) -> bytes | None:
        """Track a new order; its ``NEW`` report when its user is in ``wanted``, else None."""
        order = [e.user_id, e.client_order_id, e.side, e.order_type, e.tif, e.price, e.qty, e.quote_qty, 0, 0, e.ts]
        self.orders[(e.symbol_id, e.order_id)] = order
        if e.user_id not in wanted:
            return None
        return self._report(e.symbol_id, e.order_id, order, now_ms, e.ts, "NEW", "NEW")

    def _trade(self, e: TradeEvent, events: Sequence[Any], i: int, now_ms: int, wanted: dict) -> list:
        out = []
        quote = e.price * e.qty
        for order_id, is_maker in ((e.taker_order_id, False), (e.maker_order_id, True)):
            key = (e.symbol_id, order_id)
            order = self.orders.get(key)
            if order is None:
                self.unknown += 1
                continue
            order[EXEC] += e.qty
            order[CUM] += quote
            if order[QUOTE_QTY] and not order[ORIG]:
                done = _last_fill_of_quote_order(events, i, e.symbol_id, order_id)
            else:
                done = order[EXEC] >= order[ORIG]
            if done:
                del self.orders[key]
            if order[U] in wanted:
                status = "FILLED" if done else "PARTIALLY_FILLED"
                report = self._report(
                    e.symbol_id, order_id, order, now_ms, e.ts, "TRADE", status, e.qty, e.price, e.trade_id, is_maker
                )
                out.append((order[U], report))
        return out

    def _report(
        self, symbol_id: int, order_id: int, order: list, now_ms: int, ts: int, x: str, status: str,
        last_qty: int = 0, last_price: int = 0, trade_id: int = -1, is_maker: bool = False,
    ) -> bytes:  # fmt: skip
        rules: SymbolRules = self.catalog.by_id[symbol_id]
        return orjson.dumps(
            {
                "e": "executionReport",
                "E": now_ms,
                "s": rules.symbol,
                "c": order[COID],
                "S": SIDE.get(order[SIDE_], "?"),
                "o": TYPE.get(order[TYPE_], "?"),
                "f": TIF.get(order[TIF_], "?"),
                "q": rules.qty(order[ORIG]),
                "p": rules.price(order[PRICE]),
                "x": x,
                "X": status,
                "r": "NONE",
                "i": order_id,
                "l": rules.qty(last_qty),
                "z": rules.qty(order[EXEC]),
                "L": rules.price(last_price),
                "n": "0",
                "N": None,
                "T": ts,
                "t": trade_id,
                "w": status in ("NEW", "PARTIALLY_FILLED") and order[TYPE_] != _MARKET,
                "m": is_maker,
                "O": order[CREATED],
                "Z": rules.quote(order[CUM]),
                "Y": rules.quote(last_qty * last_price),
            }
        )


def _last_fill_of_quote_order(events: Sequence[Any], i: int, symbol_id: int, order_id: int) -> bool:
    """True when no later event of the same command trades or expires the by-quote order ``order_id``."""
    for j in range(i + 1, len(events)):
        e: Any = events[j]
        kind = type(e)
        if kind is TradeEvent:
            if e.symbol_id == symbol_id and e.taker_order_id == order_id:
                return False
        elif kind is OrderExpired:
            if e.symbol_id == symbol_id and e.order_id == order_id:
                return False
        elif kind is DepthUpdate or kind is OrderAccepted:
            return True
        else:
            return True
    return True
