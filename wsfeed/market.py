"""Market state of this wsfeed process, built from the shard streams, and the public messages it makes.

``Market.apply_packed(data, live)`` takes one stream entry's packed events (a
shard's group-committed batch, in the ``shards.events`` layout) and walks the
bytes once, reading with narrow structs only the fields its state needs: no
event object is built. Per symbol it updates the price levels (from depth
updates: absolute quantities, 0 removes), the 1s candle and last trade
(``wsfeed.candles`` does the rest of the candles and the ticker), and every
open order's running state (``wsfeed.orders``). ``apply(events, live)`` does
the same for event objects (tests, tools) by encoding them first.

When ``live`` it also publishes, for streams someone subscribed to:

- ``<s>@trade`` per trade;
- ``<s>@depth`` once per entry: the entry's depth updates of the symbol merged
  (``U`` first depth sequence, ``u`` last, last quantity per level wins);
- ``<s>@bookTicker`` when the best bid or ask (price or quantity) changed;
- ``executionReport`` to the owners' private connections.

Work nobody can observe is not done: which of a symbol's streams have a
subscriber is cached per symbol (``Hub.watch`` says when a stream gains its
first or loses its last subscriber), no depth diff is merged for a stream
nobody listens to (a client that subscribes later gets the updates of the
entries after it: each ``U`` is the previous ``u`` + 1 from there on, on the
sequence of the REST snapshot), and the best bid and ask are not tracked per
update while nothing can see a change of them: no ``bookTicker`` subscriber
and the ticker already marked changed (a change of the best only ever marks
it; it stays marked until a ticker is sent). They are then marked stale and
recomputed from the levels before the next update that needs them or the
next ticker: the best is a function of the levels, so the messages are the
same as if it had been tracked all along.

Timers call ``flush_depth100`` (every 100 ms: merged updates since the last
flush), ``flush_klines`` (every 250 ms) and ``flush_tickers`` (every second:
the rolling 24 h ticker of symbols that changed). Merged depth events chain:
each ``U`` is the previous ``u`` + 1 as long as the stream has no gap, so a
gap in the journal shows as a ``U`` jump. During catch-up (``live`` false)
nothing is published. Never awaits and never touches Redis (``wsfeed.tail``
does).
"""

from __future__ import annotations

import struct
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from ingress.symbols import Catalog, SymbolRules
from shards.book import L_QTY, O_COID, O_EXEC, O_OPEN, O_ORIG, O_PRICE, O_QUOTE, O_SIDE, O_TIF, O_TIME, O_TYPE, O_USER
from shards.events import (
    ACCEPTED_STRUCT,
    AMENDED_STRUCT,
    CANCELED_STRUCT,
    DEPTH_ONE_STRUCT,
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
from wsfeed import candles
from wsfeed.candles import C_C, C_CLOSE_T, C_H, C_L, C_LAST, C_N, C_Q, C_V
from wsfeed.hub import Hub
from wsfeed.klines import SECOND
from wsfeed.names import StreamNames, SymbolStreams
from wsfeed.orders import (
    CUM,
    EXEC,
    ORIG,
    QUOTE_QTY,
    RAW,
    STP_REASONS,
    U,
    accepted_ts,
    last_fill_of_quote_order,
    order_from_book,
    report,
)

_SELL = 2

# Narrow views of the shards.events layouts: only the fields this module reads ("x": bytes stepped over).
_ACCEPTED = struct.Struct("<17xIqq4x8xqqH")  # symbol_id order_id user_id qty quote_qty coid_len
_DEPTH_ONE = struct.Struct("<17xIqIIqq")  # symbol_id depth_seq n_bids n_asks price qty
_DEPTH = struct.Struct("<17xIqII")  # symbol_id depth_seq n_bids n_asks
_TRADE = struct.Struct("<9xqIqqqqq16xB")  # ts symbol_id trade_id price qty maker_order_id taker_order_id taker_side
_EXPIRED = struct.Struct("<9xqIq16xB")  # ts symbol_id order_id reason
_CANCELED = struct.Struct("<9xqIq16x")  # ts symbol_id order_id
_AMENDED = struct.Struct("<9xqIq8xq")  # ts symbol_id order_id new_qty
_REJECTED_LENGTH = struct.Struct("<33xH")  # client order id length
_U16 = struct.Struct("<H")
for _narrow, _full in (
    (_ACCEPTED, ACCEPTED_STRUCT), (_DEPTH_ONE, DEPTH_ONE_STRUCT), (_DEPTH, DEPTH_STRUCT), (_TRADE, TRADE_STRUCT),
    (_EXPIRED, EXPIRED_STRUCT), (_CANCELED, CANCELED_STRUCT), (_AMENDED, AMENDED_STRUCT),
    (_REJECTED_LENGTH, REJECTED_STRUCT),
):  # fmt: skip
    assert _narrow.size == _full.size, (_narrow.format, _full.format)
_PAIRS: dict[int, struct.Struct] = {}  # number of levels -> struct of their (price, qty) pairs


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class SymbolState:
    __slots__ = (
        "rules", "names", "bids", "asks", "best_bid", "best_ask", "best_stale", "depth_seq", "pend", "pend100", "sec",
        "candles", "kline_dirty", "minutes", "ticker_dirty", "last_price", "last_qty", "orders", "w_trade", "w_depth",
        "w_depth100", "w_book", "quiet",
    )  # fmt: skip

    def __init__(self, rules: SymbolRules, names: SymbolStreams) -> None:
        self.rules = rules
        self.names = names
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.best_bid = (0, 0)
        self.best_ask = (0, 0)
        self.best_stale = False  # best_bid/best_ask not kept up to date: recompute from the levels before use
        self.depth_seq = 0
        self.pend: list | None = None  # [U, u, bids, asks] of this entry (@depth)
        self.pend100: list | None = None  # same since the last 100 ms flush (@depth@100ms)
        self.sec: list | None = None  # the current 1s candle: the only one a trade updates
        self.candles: dict[str, list] = {}  # interval (not 1s) -> its current candle up to the last folded second
        self.kline_dirty = False  # a trade since the last flush_klines
        self.minutes: deque[list] = deque()  # closed 1m candles of the last 24 h
        self.ticker_dirty = False  # a trade or a change of the best since the last ticker sent
        self.last_price = 0
        self.last_qty = 0
        self.orders: dict[int, Any] = {}  # order id -> state (wsfeed.orders: a tuple)
        # who listens (Market.stream_changed keeps these): @trade, @depth, @depth@100ms, @bookTicker, none of the 3
        self.w_trade = self.w_depth = self.w_depth100 = self.w_book = False
        self.quiet = True


class Market:
    def __init__(self, catalog: Catalog, names: StreamNames, hub: Hub) -> None:
        self.catalog = catalog
        self.hub = hub
        self.symbols: dict[int, SymbolState] = {
            r.symbol_id: SymbolState(r, names.by_symbol[r.symbol]) for r in catalog.rules
        }
        self.by_stream: dict[str, SymbolState] = {}
        for st in self.symbols.values():
            n = st.names
            for stream in (n.trade, n.depth, n.depth100, n.book_ticker):
                self.by_stream[stream] = st
            self._listeners(st)
        hub.watch = self.stream_changed
        self.events_applied = 0
        self.unknown = 0  # order events of orders accepted before the oldest entry read (skipped)

    def stream_changed(self, stream: str) -> None:
        """``stream`` gained its first subscriber or lost its last (``Hub.watch``)."""
        st = self.by_stream.get(stream)
        if st is not None:
            self._listeners(st)

    def _listeners(self, st: SymbolState) -> None:
        has = self.hub.has
        n = st.names
        st.w_trade = has(n.trade)
        st.w_depth = has(n.depth)
        st.w_depth100 = has(n.depth100)
        st.w_book = has(n.book_ticker)
        st.quiet = not (st.w_depth or st.w_depth100 or st.w_book)

    # --- one stream entry ---------------------------------------------------------

    def apply(self, events: Sequence[Any], live: bool) -> None:
        """Apply event objects (encoded first: the same path as the stream's bytes)."""
        self.apply_packed(encode_events(events), live)

    def apply_packed(self, data: bytes, live: bool) -> None:
        """Apply one entry's packed events; EventCodecError when the bytes are malformed (what came before the
        bad event stays applied and published)."""
        hub = self.hub
        now = now_ms()
        symbols = self.symbols
        users = hub.users
        touched: list[SymbolState] = []
        pos = 0
        end = len(data)
        count = 0
        order: Any  # an order's state (wsfeed.orders)
        try:
            while pos < end:
                kind = data[pos]
                count += 1
                if kind == T_ACCEPTED:  # the most frequent event
                    sid, oid, uid, qty, quote_qty, n = _ACCEPTED.unpack_from(data, pos)
                    stop = pos + 67 + n
                    if stop > end:
                        raise EventCodecError(f"client order id of {n} bytes at byte {pos} runs past the end ({end})")
                    st = symbols.get(sid)
                    if st is not None:
                        order = (uid, data[pos:stop], qty, quote_qty, 0, 0)
                        st.orders[oid] = order
                        if live and uid in users:
                            text = report(st.rules, oid, order, now, accepted_ts(order), "NEW", "NEW")
                            hub.publish_user(uid, text)
                    pos = stop
                elif kind == T_DEPTH:
                    if pos + 53 <= end:
                        sid, dseq, n_bids, n_asks, price, qty = _DEPTH_ONE.unpack_from(data, pos)
                        one = n_bids + n_asks == 1
                    else:
                        one = False
                    if one:  # most depth updates: one level
                        pos += 53
                        st = symbols.get(sid)
                        if st is None:
                            continue
                        if live and st.best_stale and (st.w_book or not st.ticker_dirty):
                            _refresh_best(st)
                        levels = st.bids if n_bids else st.asks
                        if qty:
                            levels[price] = qty
                        else:
                            levels.pop(price, None)
                        st.depth_seq = dseq
                        if live:
                            if st.quiet and st.ticker_dirty:  # nothing to merge, nobody to see the best change
                                st.pend100 = None
                                st.best_stale = True
                            else:
                                pair = ((price, qty),)
                                self._live_depth(st, dseq, pair if n_bids else (), () if n_bids else pair, touched)
                        continue
                    sid, dseq, n_bids, n_asks = _DEPTH.unpack_from(data, pos)
                    pos += 37
                    size = 16 * (n_bids + n_asks)
                    if pos + size > end:
                        raise EventCodecError(f"depth update at byte {pos} runs past the end ({end})")
                    flat = _pairs(n_bids + n_asks).unpack_from(data, pos)
                    pos += size
                    st = symbols.get(sid)
                    if st is None:
                        continue
                    if live and st.best_stale and (st.w_book or not st.ticker_dirty):
                        _refresh_best(st)
                    pairs = tuple(zip(flat[0::2], flat[1::2], strict=True))
                    bid_pairs, ask_pairs = pairs[:n_bids], pairs[n_bids:]
                    levels = st.bids
                    for price, qty in bid_pairs:
                        if qty:
                            levels[price] = qty
                        else:
                            levels.pop(price, None)
                    levels = st.asks
                    for price, qty in ask_pairs:
                        if qty:
                            levels[price] = qty
                        else:
                            levels.pop(price, None)
                    st.depth_seq = dseq
                    if live:
                        self._live_depth(st, dseq, bid_pairs, ask_pairs, touched)
                elif kind == T_TRADE:
                    ts, sid, tid, price, qty, maker, taker, taker_side = _TRADE.unpack_from(data, pos)
                    pos += 78
                    st = symbols.get(sid)
                    if st is None:
                        continue
                    st.last_price = price
                    st.last_qty = qty
                    st.ticker_dirty = True
                    st.kline_dirty = True
                    quote = price * qty
                    sec = st.sec
                    if sec is None or ts > sec[C_CLOSE_T]:
                        candles.roll(st, hub, sec, ts, live, now)
                        start = ts - ts % SECOND
                        st.sec = [start, start + SECOND - 1, price, price, price, price, qty, quote, 1, tid, tid]
                    else:
                        if price > sec[C_H]:
                            sec[C_H] = price
                        elif price < sec[C_L]:
                            sec[C_L] = price
                        sec[C_C] = price
                        sec[C_V] += qty
                        sec[C_Q] += quote
                        sec[C_N] += 1
                        sec[C_LAST] = tid
                    if live and st.w_trade:
                        self._publish_trade(st, now, ts, tid, price, qty, taker_side)
                    orders = st.orders
                    for oid, is_maker in ((taker, False), (maker, True)):  # both sides of the trade, taker first
                        order = orders.get(oid)
                        if order is None:
                            self.unknown += 1
                            continue
                        executed = order[EXEC] + qty
                        if order[QUOTE_QTY] and not order[ORIG]:
                            done = last_fill_of_quote_order(data, pos, sid, oid)
                        else:
                            done = executed >= order[ORIG]
                        order = (order[U], order[RAW], order[ORIG], order[QUOTE_QTY], executed, order[CUM] + quote)
                        if done:
                            del orders[oid]
                        else:
                            orders[oid] = order
                        if live and order[U] in users:
                            status = "FILLED" if done else "PARTIALLY_FILLED"
                            text = report(st.rules, oid, order, now, ts, "TRADE", status, qty, price, tid, is_maker)
                            hub.publish_user(order[U], text)
                elif kind == T_EXPIRED:
                    ts, sid, oid, reason = _EXPIRED.unpack_from(data, pos)
                    pos += 46
                    st = symbols.get(sid)
                    if st is None:
                        continue
                    order = st.orders.pop(oid, None)
                    if order is None:
                        self.unknown += 1
                    elif live and order[U] in users:
                        if reason in STP_REASONS:
                            text = report(st.rules, oid, order, now, ts, "TRADE_PREVENTION", "EXPIRED_IN_MATCH")
                        else:
                            text = report(st.rules, oid, order, now, ts, "EXPIRED", "EXPIRED")
                        hub.publish_user(order[U], text)
                elif kind == T_CANCELED:
                    ts, sid, oid = _CANCELED.unpack_from(data, pos)
                    pos += 45
                    st = symbols.get(sid)
                    if st is None:
                        continue
                    order = st.orders.pop(oid, None)
                    if order is None:
                        self.unknown += 1
                    elif live and order[U] in users:
                        hub.publish_user(order[U], report(st.rules, oid, order, now, ts, "CANCELED", "CANCELED"))
                elif kind == T_AMENDED:
                    ts, sid, oid, new_qty = _AMENDED.unpack_from(data, pos)
                    pos += 45
                    st = symbols.get(sid)
                    if st is None:
                        continue
                    order = st.orders.get(oid)
                    if order is None:
                        self.unknown += 1
                    else:
                        u, raw, _, quote_qty, executed, cum = order
                        order = st.orders[oid] = (u, raw, new_qty, quote_qty, executed, cum)
                        if live and order[U] in users:
                            status = "PARTIALLY_FILLED" if order[EXEC] else "NEW"
                            hub.publish_user(order[U], report(st.rules, oid, order, now, ts, "REPLACED", status))
                elif kind == T_REJECTED:  # no order on the book: nothing to follow
                    pos += 35 + _REJECTED_LENGTH.unpack_from(data, pos)[0]
                    pos += 2 + _U16.unpack_from(data, pos)[0]
                    if pos > end:
                        raise EventCodecError(f"rejection runs past the end ({end})")
                else:
                    raise EventCodecError(f"unknown event type {kind} at byte {pos}")
        except struct.error as exc:
            raise EventCodecError(f"truncated event at byte {pos} of {end}: {exc}") from None
        finally:
            self.events_applied += count
            for st in touched:
                pend = st.pend
                st.pend = None
                if pend is not None:
                    hub.publish(st.names.depth, self._depth_message(st, pend, now))

    def _live_depth(self, st: SymbolState, depth_seq: int, bids: tuple, asks: tuple, touched: list) -> None:
        """A live depth update (already applied to the levels): merges, then the best bid/ask and bookTicker."""
        if st.w_depth:
            pend = st.pend
            if pend is None:
                pend = st.pend = [depth_seq, depth_seq, {}, {}]
                touched.append(st)
            _merge(pend, depth_seq, bids, asks)
        if st.w_depth100:
            pend = st.pend100
            if pend is None:
                pend = st.pend100 = [depth_seq, depth_seq, {}, {}]
            _merge(pend, depth_seq, bids, asks)
        else:  # nobody listens: a merge must never skip an update it claims to cover
            st.pend100 = None
        if not st.w_book and st.ticker_dirty:
            st.best_stale = True
            return
        # the best is current here: a stale one was recomputed before the levels changed
        bid = _best(bids, st.bids, st.best_bid, True) if bids else st.best_bid
        ask = _best(asks, st.asks, st.best_ask, False) if asks else st.best_ask
        if bid != st.best_bid or ask != st.best_ask:
            st.best_bid, st.best_ask = bid, ask
            st.ticker_dirty = True
            if st.w_book:
                r = st.rules
                self.hub.publish(
                    st.names.book_ticker,
                    orjson.dumps(
                        {
                            "u": depth_seq,
                            "s": r.symbol,
                            "b": r.price(bid[0]),
                            "B": r.qty(bid[1]),
                            "a": r.price(ask[0]),
                            "A": r.qty(ask[1]),
                        }
                    ),
                )

    def _publish_trade(self, st: SymbolState, now: int, ts: int, tid: int, price: int, qty: int, side: int) -> None:
        r = st.rules
        self.hub.publish(
            st.names.trade,
            orjson.dumps(
                {
                    "e": "trade",
                    "E": now,
                    "s": r.symbol,
                    "t": tid,
                    "p": r.price(price),
                    "q": r.qty(qty),
                    "T": ts,
                    "m": side == _SELL,
                }
            ),
        )

    def load_engine(self, engine: Any, symbol_ids: Iterable[int]) -> None:
        """Take books, depth sequences and open orders from an engine restored from a shard snapshot."""
        for sid in symbol_ids:
            st = self.symbols.get(sid)
            if st is None:
                continue
            book = engine.book(sid)
            st.bids = {p: level[L_QTY] for p, level in book.bids.items() if level[L_QTY] > 0}
            st.asks = {p: level[L_QTY] for p, level in book.asks.items() if level[L_QTY] > 0}
            st.depth_seq = book.depth_seq
            st.best_stale = True
            for oid, o in book.orders.items():
                if o[O_OPEN] > 0:
                    st.orders[oid] = order_from_book(
                        sid, oid, o[O_USER], o[O_COID], o[O_SIDE], o[O_TYPE], o[O_TIF], o[O_PRICE], o[O_ORIG],
                        o[O_EXEC], o[O_QUOTE], o[O_TIME],
                    )  # fmt: skip

    def refresh_best(self) -> None:
        """Recompute every best bid/ask from the levels (after catch-up, where it is skipped)."""
        for st in self.symbols.values():
            _refresh_best(st)

    def _depth_message(self, st: SymbolState, pend: list, now: int) -> bytes:
        r = st.rules
        return orjson.dumps(
            {
                "e": "depthUpdate",
                "E": now,
                "s": r.symbol,
                "U": pend[0],
                "u": pend[1],
                "b": [[r.price(p), r.qty(q)] for p, q in sorted(pend[2].items(), reverse=True)],
                "a": [[r.price(p), r.qty(q)] for p, q in sorted(pend[3].items())],
            }
        )

    # --- timers ---------------------------------------------------------------------

    def flush_depth100(self) -> None:
        now = now_ms()
        for st in self.symbols.values():
            pend = st.pend100
            if pend is not None:
                st.pend100 = None
                self.hub.publish(st.names.depth100, self._depth_message(st, pend, now))

    def flush_klines(self) -> None:
        now = now_ms()
        hub = self.hub
        for st in self.symbols.values():
            candles.flush_klines(st, hub, now)

    def flush_tickers(self) -> None:
        now = now_ms()
        for st in self.symbols.values():
            if st.ticker_dirty and self.hub.has(st.names.ticker):
                st.ticker_dirty = False
                if st.best_stale:
                    _refresh_best(st)
                self.hub.publish(st.names.ticker, candles.ticker_message(st, now))


def _refresh_best(st: SymbolState) -> None:
    """The best bid and ask from the levels."""
    bids, asks = st.bids, st.asks
    b = max(bids) if bids else 0
    a = min(asks) if asks else 0
    st.best_bid = (b, bids[b]) if b else (0, 0)
    st.best_ask = (a, asks[a]) if a else (0, 0)
    st.best_stale = False


def _best(changes: tuple, levels: dict[int, int], best: tuple[int, int], bid: bool) -> tuple[int, int]:
    """The best (price, qty) of a side after ``changes`` (already applied to ``levels``)."""
    if not changes:
        return best
    price0 = best[0]
    recompute = False
    for price, qty in changes:
        if qty:
            if not price0 or price == price0 or (price > price0 if bid else price < price0):
                best, price0 = (price, qty), price
        elif price == price0:
            recompute = True
    if not recompute:
        return best
    if not levels:
        return (0, 0)
    p = max(levels) if bid else min(levels)
    return (p, levels[p])


def _pairs(levels: int) -> struct.Struct:
    found = _PAIRS.get(levels)
    if found is None:
        found = _PAIRS[levels] = struct.Struct(f"<{2 * levels}q")
    return found


def _merge(pend: list, depth_seq: int, bids: tuple, asks: tuple) -> None:
    pend[1] = depth_seq
    b = pend[2]
    for price, qty in bids:
        b[price] = qty
    a = pend[3]
    for price, qty in asks:
        a[price] = qty
