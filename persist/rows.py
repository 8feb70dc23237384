"""Engine events as PostgreSQL rows: trades, order history, and the orders' new states.

Owns: the table columns persist writes (``deploy/migrations/0002_history.sql``)
and the order state machine as the events drive it (accepted -> trades ->
canceled / amended / expired). Never: does I/O; a caller loads the orders a
batch touches but that the batch did not create (``missing``) and passes them in.

Order state rules (the engine's own, seen from its events):
- OrderAccepted: NEW, executed 0.
- TradeEvent: maker and taker executed += qty, cum_quote += price * qty;
  FILLED when executed reaches orig_qty, else PARTIALLY_FILLED. A MARKET buy
  by quote amount (orig_quote_qty > 0) shows orig_qty = executed and is FILLED
  unless an OrderExpired follows.
- OrderCanceled: CANCELED. OrderAmended: orig_qty = new_qty.
- OrderExpired: EXPIRED_IN_MATCH for self-trade prevention, else EXPIRED.
OrderRejected and DepthUpdate leave no row (no order exists).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shards.protocol import (
    ExpireReason,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderStatus,
    TradeEvent,
)

ORDER_COLUMNS = (
    "symbol_id", "order_id", "user_id", "client_order_id", "side", "order_type", "tif", "stp", "price",
    "orig_qty", "executed_qty", "cum_quote", "orig_quote_qty", "status", "time", "update_time", "shard", "last_seq",
)  # fmt: skip
TRADE_COLUMNS = (
    "symbol_id", "trade_id", "price", "qty", "quote_qty", "time", "maker_order_id", "taker_order_id",
    "maker_user_id", "taker_user_id", "taker_side", "shard", "seq",
)  # fmt: skip
HISTORY_COLUMNS = (
    "shard",
    "seq",
    "symbol_id",
    "order_id",
    "user_id",
    "kind",
    "status",
    "price",
    "qty",
    "trade_id",
    "time",
)

# indexes into an order state list (ORDER_COLUMNS order)
S_USER, S_ORIG, S_EXEC, S_QUOTE, S_OQUOTE, S_STATUS, S_UPDATE, S_SEQ = 2, 9, 10, 11, 12, 13, 15, 17
NEW, PARTIAL, FILLED = int(OrderStatus.NEW), int(OrderStatus.PARTIALLY_FILLED), int(OrderStatus.FILLED)
CANCELED, EXPIRED, IN_MATCH = int(OrderStatus.CANCELED), int(OrderStatus.EXPIRED), int(OrderStatus.EXPIRED_IN_MATCH)
OPEN = frozenset((NEW, PARTIAL))
STP_REASONS = frozenset((int(ExpireReason.STP_TAKER), int(ExpireReason.STP_MAKER)))
K_ACCEPTED, K_TRADE, K_CANCELED, K_AMENDED, K_EXPIRED = 1, 2, 3, 4, 5

OrderKey = tuple[int, int]  # (symbol_id, order_id)


class MissingOrder(Exception):
    """An event names an order that is neither in the batch nor loaded (code -1000)."""

    code = -1000


def referenced(events: Iterable[Any]) -> set[OrderKey]:
    """Orders the events touch that they did not create themselves."""
    created: set[OrderKey] = set()
    touched: set[OrderKey] = set()
    for e in events:
        kind = type(e)
        if kind is OrderAccepted:
            created.add((e.symbol_id, e.order_id))
        elif kind is TradeEvent:
            touched.add((e.symbol_id, e.maker_order_id))
            touched.add((e.symbol_id, e.taker_order_id))
        elif kind in (OrderCanceled, OrderAmended, OrderExpired):
            touched.add((e.symbol_id, e.order_id))
    return touched - created


class Batch:
    """Rows of one batch of one shard's events, with the final state of every order it touched."""

    def __init__(self, shard: int, known: Mapping[OrderKey, list]) -> None:
        self.shard = shard
        self.known = known  # states before this batch (never modified here)
        self.orders: dict[OrderKey, list] = {}  # states after this batch
        self.trades: list[tuple] = []
        self.history: list[tuple] = []
        self.last_seq = 0
        self.events = 0

    def _state(self, key: OrderKey) -> list:
        state = self.orders.get(key)
        if state is None:
            before = self.known.get(key)
            if before is None:
                raise MissingOrder(f"shard {self.shard}: order {key[1]} of symbol id {key[0]} is not known")
            state = self.orders[key] = list(before)
        return state

    def add(self, events: Iterable[Any]) -> None:
        shard = self.shard
        history = self.history.append
        for e in events:
            self.events += 1
            kind = type(e)
            seq = e.seq
            self.last_seq = seq
            if kind is TradeEvent:
                sym, price, qty, ts = e.symbol_id, e.price, e.qty, e.ts
                quote = price * qty
                self.trades.append(
                    (sym, e.trade_id, price, qty, quote, ts, e.maker_order_id, e.taker_order_id,
                     e.maker_user_id, e.taker_user_id, e.taker_side, shard, seq)
                )  # fmt: skip
                for oid in (e.maker_order_id, e.taker_order_id):
                    s = self._state((sym, oid))
                    executed = s[S_EXEC] = s[S_EXEC] + qty
                    s[S_QUOTE] += quote
                    if s[S_OQUOTE] > 0:
                        s[S_ORIG] = executed
                        s[S_STATUS] = FILLED
                    else:
                        s[S_STATUS] = FILLED if executed >= s[S_ORIG] else PARTIAL
                    s[S_UPDATE] = ts
                    s[S_SEQ] = seq
                    history((shard, seq, sym, oid, s[S_USER], K_TRADE, s[S_STATUS], price, qty, e.trade_id, ts))
            elif kind is OrderAccepted:
                key = (e.symbol_id, e.order_id)
                self.orders[key] = [
                    e.symbol_id, e.order_id, e.user_id, e.client_order_id, e.side, e.order_type, e.tif, e.stp,
                    e.price, e.qty, 0, 0, e.quote_qty, NEW, e.ts, e.ts, shard, seq,
                ]  # fmt: skip
                history((shard, seq, e.symbol_id, e.order_id, e.user_id, K_ACCEPTED, NEW, e.price, e.qty, 0, e.ts))
            elif kind is OrderCanceled or kind is OrderExpired or kind is OrderAmended:
                s = self._state((e.symbol_id, e.order_id))
                if kind is OrderCanceled:
                    s[S_STATUS] = CANCELED
                    k, qty = K_CANCELED, e.remaining_qty
                elif kind is OrderExpired:
                    s[S_STATUS] = IN_MATCH if e.reason in STP_REASONS else EXPIRED
                    k, qty = K_EXPIRED, e.remaining_qty
                else:
                    s[S_ORIG] = e.new_qty
                    k, qty = K_AMENDED, e.new_qty
                s[S_UPDATE] = e.ts
                s[S_SEQ] = seq
                history((shard, seq, e.symbol_id, e.order_id, s[S_USER], k, s[S_STATUS], s[8], qty, 0, e.ts))

    def order_rows(self) -> list[tuple]:
        return [tuple(s) for s in self.orders.values()]

    def split_order_rows(self) -> tuple[list[tuple], list[tuple]]:
        """(orders this batch created: plain inserts, orders that existed before it: updates)."""
        known = self.known
        created, changed = [], []
        for key, s in self.orders.items():
            (changed if key in known else created).append(tuple(s))
        return created, changed

    def merge_into(self, cache: dict[OrderKey, list]) -> None:
        """After commit: keep open orders in ``cache``, drop finished ones."""
        for key, s in self.orders.items():
            if s[S_STATUS] in OPEN:
                cache[key] = s
            else:
                cache.pop(key, None)
