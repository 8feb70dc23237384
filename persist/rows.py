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

The batch reads the events straight from their journal bytes
(``Batch.add_encoded``, the layout of ``shards/events.py``): no event object is
built, and depth updates and rejections are stepped over by their lengths.
``Batch.add`` takes event objects (tests, benchmarks) by encoding them first.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from typing import Any

from shards.events import (
    ACCEPTED_STRUCT,
    AMENDED_STRUCT,
    CANCELED_STRUCT,
    DEPTH_STRUCT,
    EXPIRED_STRUCT,
    REJECTED_STRUCT,
    T_ACCEPTED,
    T_AMENDED,
    T_CANCELED,
    T_DEPTH,
    T_EXPIRED,
    T_REJECTED,
    T_TRADE,
    TRADE_STRUCT,
    EventCodecError,
    encode_events,
)
from shards.protocol import ExpireReason, OrderStatus

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
S_PRICE = 8
# the columns events change after an order's acceptance (the others never change)
UPDATED_COLUMNS = ("orig_qty", "executed_qty", "cum_quote", "status", "update_time", "last_seq")
NEW, PARTIAL, FILLED = int(OrderStatus.NEW), int(OrderStatus.PARTIALLY_FILLED), int(OrderStatus.FILLED)
CANCELED, EXPIRED, IN_MATCH = int(OrderStatus.CANCELED), int(OrderStatus.EXPIRED), int(OrderStatus.EXPIRED_IN_MATCH)
OPEN = frozenset((NEW, PARTIAL))
STP_REASONS = frozenset((int(ExpireReason.STP_TAKER), int(ExpireReason.STP_MAKER)))
K_ACCEPTED, K_TRADE, K_CANCELED, K_AMENDED, K_EXPIRED = 1, 2, 3, 4, 5

OrderKey = tuple[int, int]  # (symbol_id, order_id)

_trade, _TRADE_SIZE = TRADE_STRUCT.unpack_from, TRADE_STRUCT.size
_accepted, _ACCEPTED_SIZE = ACCEPTED_STRUCT.unpack_from, ACCEPTED_STRUCT.size
_canceled, _CANCELED_SIZE = CANCELED_STRUCT.unpack_from, CANCELED_STRUCT.size
_amended, _AMENDED_SIZE = AMENDED_STRUCT.unpack_from, AMENDED_STRUCT.size
_expired, _EXPIRED_SIZE = EXPIRED_STRUCT.unpack_from, EXPIRED_STRUCT.size
_depth, _DEPTH_SIZE = DEPTH_STRUCT.unpack_from, DEPTH_STRUCT.size
_rejected, _REJECTED_SIZE = REJECTED_STRUCT.unpack_from, REJECTED_STRUCT.size
_u16 = struct.Struct("<H").unpack_from


class MissingOrder(Exception):
    """An event names an order that is neither in the batch nor loaded (code -1000)."""

    code = -1000


class Batch:
    """Rows of one batch of one shard's events, with the final state of every order it touched.

    ``after``: events at or below this seq are skipped (already written).
    ``strict``: an event naming an order that is neither in the batch nor in
    ``known`` raises ``MissingOrder``; otherwise the key is noted in
    ``missing`` (the caller loads those orders and builds the batch again)
    and a blank state stands in for it.
    """

    def __init__(self, shard: int, known: Mapping[OrderKey, list], after: int = -1, strict: bool = True) -> None:
        self.shard = shard
        self.known = known  # states before this batch (never modified here)
        self.after = after
        self.strict = strict
        self.orders: dict[OrderKey, list] = {}  # states after this batch
        self.trades: list[tuple] = []
        self.history: list[tuple] = []
        self.missing: set[OrderKey] = set()
        self.last_seq = 0
        self.events = 0

    def _state(self, key: OrderKey) -> list:
        """State of an order the batch did not create yet: a copy of the known one."""
        before = self.known.get(key)
        if before is None:
            if self.strict:
                raise MissingOrder(f"shard {self.shard}: order {key[1]} of symbol id {key[0]} is not known")
            self.missing.add(key)
            before = [key[0], key[1], 0, "", 0, 0, 0, 0, 0, 0, 0, 0, 0, NEW, 0, 0, self.shard, 0]
        state = self.orders[key] = list(before)
        return state

    def add(self, events: Iterable[Any]) -> None:
        """Protocol events (``shards.protocol``), in sequence order."""
        self.add_encoded(encode_events(list(events)))

    def add_encoded(self, data: bytes) -> None:
        """The packed events of one stream entry (``shards.events`` layout), those after ``self.after``."""
        shard = self.shard
        after = self.after
        orders = self.orders
        trades = self.trades.append
        history = self.history.append
        last = self.last_seq
        count = 0
        pos = 0
        end = len(data)
        try:
            while pos < end:
                kind = data[pos]
                if kind == T_TRADE:
                    _, seq, ts, sym, tid, price, qty, maker, taker, maker_uid, taker_uid, side = _trade(data, pos)
                    pos += _TRADE_SIZE
                    if seq <= after:
                        continue
                    quote = price * qty
                    trades((sym, tid, price, qty, quote, ts, maker, taker, maker_uid, taker_uid, side, shard, seq))
                    for oid in (maker, taker):
                        s = orders.get((sym, oid)) or self._state((sym, oid))
                        executed = s[S_EXEC] = s[S_EXEC] + qty
                        s[S_QUOTE] += quote
                        if s[S_OQUOTE] > 0:
                            s[S_ORIG] = executed
                            status = s[S_STATUS] = FILLED
                        else:
                            status = s[S_STATUS] = FILLED if executed >= s[S_ORIG] else PARTIAL
                        s[S_UPDATE] = ts
                        s[S_SEQ] = seq
                        history((shard, seq, sym, oid, s[S_USER], K_TRADE, status, price, qty, tid, ts))
                elif kind == T_DEPTH:
                    _, seq, _, _, _, n_bids, n_asks = _depth(data, pos)
                    pos += _DEPTH_SIZE + 16 * (n_bids + n_asks)
                    if seq <= after:
                        continue
                elif kind == T_ACCEPTED:
                    _, seq, ts, sym, oid, user, side, otype, tif, stp, price, qty, oquote, size = _accepted(data, pos)
                    pos += _ACCEPTED_SIZE + size
                    if seq <= after:
                        continue
                    coid = str(data[pos - size : pos], "utf-8")
                    orders[(sym, oid)] = [
                        sym, oid, user, coid, side, otype, tif, stp, price, qty, 0, 0, oquote, NEW, ts, ts, shard, seq
                    ]  # fmt: skip
                    history((shard, seq, sym, oid, user, K_ACCEPTED, NEW, price, qty, 0, ts))
                elif kind == T_CANCELED or kind == T_EXPIRED or kind == T_AMENDED:
                    if kind == T_CANCELED:
                        _, seq, ts, sym, oid, _, qty = _canceled(data, pos)
                        pos += _CANCELED_SIZE
                        if seq <= after:
                            continue
                        s = orders.get((sym, oid)) or self._state((sym, oid))
                        status = s[S_STATUS] = CANCELED
                        what = K_CANCELED
                    elif kind == T_EXPIRED:
                        _, seq, ts, sym, oid, _, qty, reason = _expired(data, pos)
                        pos += _EXPIRED_SIZE
                        if seq <= after:
                            continue
                        s = orders.get((sym, oid)) or self._state((sym, oid))
                        status = s[S_STATUS] = IN_MATCH if reason in STP_REASONS else EXPIRED
                        what = K_EXPIRED
                    else:
                        _, seq, ts, sym, oid, _, qty = _amended(data, pos)
                        pos += _AMENDED_SIZE
                        if seq <= after:
                            continue
                        s = orders.get((sym, oid)) or self._state((sym, oid))
                        s[S_ORIG] = qty
                        status = s[S_STATUS]
                        what = K_AMENDED
                    s[S_UPDATE] = ts
                    s[S_SEQ] = seq
                    history((shard, seq, sym, oid, s[S_USER], what, status, s[S_PRICE], qty, 0, ts))
                elif kind == T_REJECTED:
                    _, seq, _, _, _, _, size = _rejected(data, pos)
                    pos += _REJECTED_SIZE + size
                    pos += 2 + _u16(data, pos)[0]
                    if seq <= after:
                        continue
                else:
                    raise EventCodecError(f"unknown event type {kind} at byte {pos}")
                last = seq
                count += 1
        except struct.error as exc:
            raise EventCodecError(f"truncated event at byte {pos} of {end}: {exc}") from None
        if pos != end:
            raise EventCodecError(f"an event runs past the end of the batch ({pos} > {end} bytes)")
        self.last_seq = last
        self.events += count

    def order_rows(self) -> list[tuple]:
        return [tuple(s) for s in self.orders.values()]

    def split_order_rows(self) -> tuple[list[tuple], list[tuple]]:
        """(rows of the orders this batch created, (symbol_id, order_id, *UPDATED_COLUMNS) of those it changed)."""
        known = self.known
        created, changed = [], []
        for key, s in self.orders.items():
            if key in known:
                changed.append((s[0], s[1], s[S_ORIG], s[S_EXEC], s[S_QUOTE], s[S_STATUS], s[S_UPDATE], s[S_SEQ]))
            else:
                created.append(tuple(s))
        return created, changed

    def merge_into(self, cache: dict[OrderKey, list]) -> None:
        """After commit: keep open orders in ``cache``, drop finished ones."""
        for key, s in self.orders.items():
            if s[S_STATUS] in OPEN:
                cache[key] = s
            else:
                cache.pop(key, None)
