"""The feed's market state as it was computed per event object, kept as the reference model of ``wsfeed.market``.

Before the packed walker, ``wsfeed.market`` decoded every entry into event
objects and applied them one by one, tracking every order, the best bid and
ask after every depth update and a depth diff per subscribed stream. This is
that implementation, unchanged but for its module layout: ``Market`` (with its
``OrderTracker``) takes the same events and the same hub as the real one, so
that tests can require byte-identical messages from both for any flow and any
subscription schedule. Not used outside tests.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from ingress.symbols import Catalog, SymbolRules
from shards.book import L_QTY, O_COID, O_EXEC, O_OPEN, O_ORIG, O_PRICE, O_QUOTE, O_SIDE, O_TIF, O_TIME, O_TYPE, O_USER
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
from wsfeed.hub import Hub
from wsfeed.klines import DAY, MINUTE, SECOND, period
from wsfeed.names import StreamNames, SymbolStreams

_SELL = 2
_ORDER_EVENTS = (OrderAccepted, OrderCanceled, OrderAmended, OrderExpired)
# candle: [open_t, close_t, open, high, low, close, volume lots, quote units, trades, first id, last id]
C_OPEN_T, C_CLOSE_T, C_O, C_H, C_L, C_C, C_V, C_Q, C_N, C_F, C_LAST = range(11)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class SymbolState:
    __slots__ = (
        "rules", "names", "bids", "asks", "best_bid", "best_ask", "depth_seq", "pend", "pend100", "sec", "candles",
        "kline_dirty", "minutes", "ticker_dirty", "last_price", "last_qty",
    )  # fmt: skip

    def __init__(self, rules: SymbolRules, names: SymbolStreams) -> None:
        self.rules = rules
        self.names = names
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.best_bid = (0, 0)
        self.best_ask = (0, 0)
        self.depth_seq = 0
        self.pend: list | None = None  # [U, u, bids, asks] of this entry (@depth)
        self.pend100: list | None = None  # same since the last 100 ms flush (@depth@100ms)
        self.sec: list | None = None  # the current 1s candle: the only one a trade updates
        self.candles: dict[str, list] = {}  # interval (not 1s) -> its current candle up to the last folded second
        self.kline_dirty = False  # a trade since the last flush_klines
        self.minutes: deque[list] = deque()  # closed 1m candles of the last 24 h
        self.ticker_dirty = False
        self.last_price = 0
        self.last_qty = 0


class Market:
    def __init__(self, catalog: Catalog, names: StreamNames, hub: Hub) -> None:
        self.catalog = catalog
        self.hub = hub
        self.symbols: dict[int, SymbolState] = {
            r.symbol_id: SymbolState(r, names.by_symbol[r.symbol]) for r in catalog.rules
        }
        self.orders = OrderTracker(catalog)
        self.events_applied = 0

    # --- one stream entry ---------------------------------------------------------

    def apply(self, events: list, live: bool) -> None:
        hub = self.hub
        now = now_ms()
        touched: list[SymbolState] = []
        users = hub.users
        symbols = self.symbols
        orders = self.orders
        for i, e in enumerate(events):
            kind = type(e)
            if kind is OrderAccepted:  # the most frequent event: the tracker's short path
                if e.symbol_id in symbols:
                    report = orders.accepted(e, now, users)
                    if report is not None and live:
                        hub.publish_user(e.user_id, report)
            elif kind is DepthUpdate:
                st = symbols.get(e.symbol_id)
                if st is not None:
                    self._depth(st, e, live, touched)
            elif kind is TradeEvent:
                st = symbols.get(e.symbol_id)
                if st is None:
                    continue
                self._trade(st, e, live, now)
                for user_id, report in orders.apply(events, i, now, users):
                    if live:
                        hub.publish_user(user_id, report)
            elif kind in _ORDER_EVENTS:
                if e.symbol_id in symbols:
                    for user_id, report in orders.apply(events, i, now, users):
                        if live:
                            hub.publish_user(user_id, report)
        self.events_applied += len(events)
        for st in touched:
            pend = st.pend
            st.pend = None
            if pend is not None and live:
                hub.publish(st.names.depth, self._depth_message(st, pend, now))

    def _depth(self, st: SymbolState, e: DepthUpdate, live: bool, touched: list) -> None:
        bids, asks = st.bids, st.asks
        for price, qty in e.bids:
            if qty:
                bids[price] = qty
            else:
                bids.pop(price, None)
        for price, qty in e.asks:
            if qty:
                asks[price] = qty
            else:
                asks.pop(price, None)
        st.depth_seq = e.depth_seq
        if not live:
            return
        hub = self.hub
        names = st.names
        if hub.has(names.depth):
            if st.pend is None:
                st.pend = [e.depth_seq, e.depth_seq, {}, {}]
                touched.append(st)
            _merge(st.pend, e)
        if hub.has(names.depth100):
            if st.pend100 is None:
                st.pend100 = [e.depth_seq, e.depth_seq, {}, {}]
            _merge(st.pend100, e)
        else:  # nobody listens: a merge must never skip an update it claims to cover
            st.pend100 = None
        bid = _best(e.bids, bids, st.best_bid, True) if e.bids else st.best_bid
        ask = _best(e.asks, asks, st.best_ask, False) if e.asks else st.best_ask
        if bid != st.best_bid or ask != st.best_ask:
            st.best_bid, st.best_ask = bid, ask
            st.ticker_dirty = True
            if hub.has(names.book_ticker):
                r = st.rules
                hub.publish(
                    names.book_ticker,
                    orjson.dumps(
                        {
                            "u": e.depth_seq,
                            "s": r.symbol,
                            "b": r.price(bid[0]),
                            "B": r.qty(bid[1]),
                            "a": r.price(ask[0]),
                            "A": r.qty(ask[1]),
                        }
                    ),
                )

    def load_engine(self, engine: Any, symbol_ids: Iterable[int]) -> None:
        """Take books, depth sequences and open orders from an engine restored from a shard snapshot."""
        tracker = self.orders.orders
        for sid in symbol_ids:
            st = self.symbols.get(sid)
            if st is None:
                continue
            book = engine.book(sid)
            st.bids = {p: level[L_QTY] for p, level in book.bids.items() if level[L_QTY] > 0}
            st.asks = {p: level[L_QTY] for p, level in book.asks.items() if level[L_QTY] > 0}
            st.depth_seq = book.depth_seq
            for oid, o in book.orders.items():
                if o[O_OPEN] > 0:
                    tracker[(sid, oid)] = [
                        o[O_USER], o[O_COID], o[O_SIDE], o[O_TYPE], o[O_TIF], o[O_PRICE], o[O_ORIG], 0, o[O_EXEC],
                        o[O_QUOTE], o[O_TIME],
                    ]  # fmt: skip

    def refresh_best(self) -> None:
        """Recompute every best bid/ask from the levels (after catch-up, where it is skipped)."""
        for st in self.symbols.values():
            b = max(st.bids) if st.bids else 0
            a = min(st.asks) if st.asks else 0
            st.best_bid = (b, st.bids[b]) if b else (0, 0)
            st.best_ask = (a, st.asks[a]) if a else (0, 0)

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

    def _trade(self, st: SymbolState, e: TradeEvent, live: bool, now: int) -> None:
        price, qty, ts = e.price, e.qty, e.ts
        st.last_price = price
        st.last_qty = qty
        st.ticker_dirty = True
        st.kline_dirty = True
        sec = st.sec
        if sec is None or ts > sec[C_CLOSE_T]:
            self._roll(st, sec, ts, live, now)
            start = ts - ts % SECOND
            tid = e.trade_id
            st.sec = [start, start + SECOND - 1, price, price, price, price, qty, price * qty, 1, tid, tid]
        else:
            if price > sec[C_H]:
                sec[C_H] = price
            elif price < sec[C_L]:
                sec[C_L] = price
            sec[C_C] = price
            sec[C_V] += qty
            sec[C_Q] += price * qty
            sec[C_N] += 1
            sec[C_LAST] = e.trade_id
        if live:
            names = st.names
            if self.hub.has(names.trade):
                r = st.rules
                self.hub.publish(
                    names.trade,
                    orjson.dumps(
                        {
                            "e": "trade",
                            "E": now,
                            "s": r.symbol,
                            "t": e.trade_id,
                            "p": r.price(price),
                            "q": r.qty(qty),
                            "T": ts,
                            "m": e.taker_side == _SELL,
                        }
                    ),
                )

    def _roll(self, st: SymbolState, sec: list | None, ts: int, live: bool, now: int) -> None:
        """A trade at ``ts`` starts a new second: close the 1s candle ``sec`` (None: a timer closed it), fold it
        into the longer candles and close those whose period ends before ``ts`` (in interval order, as each
        would close on its own)."""
        klines = st.names.klines
        if sec is not None:
            self._close_candle(st, "1s", klines[0][1], sec, live, now)
        candles = st.candles
        for interval, stream in klines[1:]:
            c = candles.get(interval)
            if sec is not None:
                if c is None:
                    open_t, close_t = period(interval, sec[C_OPEN_T])
                    c = candles[interval] = [open_t, close_t, *sec[C_O:]]
                else:
                    _fold(c, sec)
            if c is not None and ts > c[C_CLOSE_T]:
                self._close_candle(st, interval, stream, c, live, now)
                del candles[interval]

    def _fold_second(self, st: SymbolState, sec: list) -> None:
        """Fold the (over) 1s candle ``sec`` into the longer candles; none closes here."""
        candles = st.candles
        for interval, _ in st.names.klines[1:]:
            c = candles.get(interval)
            if c is None:
                open_t, close_t = period(interval, sec[C_OPEN_T])
                candles[interval] = [open_t, close_t, *sec[C_O:]]
            else:
                _fold(c, sec)

    def _current(self, st: SymbolState, interval: str) -> list | None:
        """The whole current candle of ``interval``: its folded seconds and the current second."""
        sec = st.sec
        if interval == "1s":
            return sec
        c = st.candles.get(interval)
        if sec is None:
            return c
        if c is None:
            open_t, close_t = period(interval, sec[C_OPEN_T])
            return [open_t, close_t, *sec[C_O:]]
        c = c.copy()
        _fold(c, sec)
        return c

    def _close_candle(self, st: SymbolState, interval: str, stream: str, c: list, live: bool, now: int) -> None:
        if interval == "1m":
            st.minutes.append(c)
            while st.minutes and st.minutes[0][C_OPEN_T] < c[C_OPEN_T] - DAY:
                st.minutes.popleft()
        if live and self.hub.has(stream):
            self.hub.publish(stream, self._kline_message(st, interval, c, True, now))

    def _kline_message(self, st: SymbolState, interval: str, c: list, closed: bool, now: int) -> bytes:
        r = st.rules
        return orjson.dumps(
            {
                "e": "kline",
                "E": now,
                "s": r.symbol,
                "k": {
                    "t": c[C_OPEN_T],
                    "T": c[C_CLOSE_T],
                    "s": r.symbol,
                    "i": interval,
                    "o": r.price(c[C_O]),
                    "c": r.price(c[C_C]),
                    "h": r.price(c[C_H]),
                    "l": r.price(c[C_L]),
                    "v": r.qty(c[C_V]),
                    "n": c[C_N],
                    "x": closed,
                    "q": r.quote(c[C_Q]),
                },
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
            sec = st.sec
            if sec is None and not st.candles:
                continue
            dirty = st.kline_dirty
            st.kline_dirty = False
            klines = st.names.klines
            if sec is not None:
                if now > sec[C_CLOSE_T]:
                    self._close_candle(st, "1s", klines[0][1], sec, True, now)
                    self._fold_second(st, sec)
                    st.sec = None
                elif dirty and hub.has(klines[0][1]):
                    hub.publish(klines[0][1], self._kline_message(st, "1s", sec, False, now))
            candles = st.candles
            for interval, stream in klines[1:]:
                c = candles.get(interval)
                if c is not None and now > c[C_CLOSE_T]:
                    self._close_candle(st, interval, stream, c, True, now)
                    del candles[interval]
                elif dirty and hub.has(stream):
                    current = self._current(st, interval)
                    if current is not None:
                        hub.publish(stream, self._kline_message(st, interval, current, False, now))

    def flush_tickers(self) -> None:
        now = now_ms()
        for st in self.symbols.values():
            if st.ticker_dirty and self.hub.has(st.names.ticker):
                st.ticker_dirty = False
                self.hub.publish(st.names.ticker, self._ticker_message(st, now))

    def _ticker_message(self, st: SymbolState, now: int) -> bytes:
        r = st.rules
        since = now - DAY
        window = [c for c in st.minutes if c[C_OPEN_T] >= since - MINUTE + 1]
        current = self._current(st, "1m")
        if current is not None:
            window.append(current)
        if window:
            first = window[0]
            open_price = first[C_O]
            high = max(c[C_H] for c in window)
            low = min(c[C_L] for c in window)
            volume = sum(c[C_V] for c in window)
            quote = sum(c[C_Q] for c in window)
            count = sum(c[C_N] for c in window)
            first_id, last_id = first[C_F], window[-1][C_LAST]
            last = window[-1][C_C]
        else:
            open_price = high = low = last = volume = quote = count = 0
            first_id = last_id = -1
        change = last - open_price
        percent = (abs(change) * 100_000 // open_price) * (1 if change >= 0 else -1) if open_price else 0
        return orjson.dumps(
            {
                "e": "24hrTicker",
                "E": now,
                "s": r.symbol,
                "p": r.price(change) if change >= 0 else "-" + r.price(-change),
                "P": _percent(percent),
                "c": r.price(last),
                "Q": r.qty(st.last_qty if window else 0),
                "b": r.price(st.best_bid[0]),
                "B": r.qty(st.best_bid[1]),
                "a": r.price(st.best_ask[0]),
                "A": r.qty(st.best_ask[1]),
                "o": r.price(open_price),
                "h": r.price(high),
                "l": r.price(low),
                "v": r.qty(volume),
                "q": r.quote(quote),
                "O": since,
                "C": now,
                "F": first_id,
                "L": last_id,
                "n": count,
            }
        )


def _percent(thousandths: int) -> str:
    """A percentage given in thousandths of a percent, with 3 decimals: -1234 -> "-1.234"."""
    sign = "-" if thousandths < 0 else ""
    v = abs(thousandths)
    return f"{sign}{v // 1000}.{v % 1000:03d}"


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


def _fold(c: list, sec: list) -> None:
    """Add the 1s candle ``sec`` (later, same period) to the candle ``c``."""
    if sec[C_H] > c[C_H]:
        c[C_H] = sec[C_H]
    if sec[C_L] < c[C_L]:
        c[C_L] = sec[C_L]
    c[C_C] = sec[C_C]
    c[C_V] += sec[C_V]
    c[C_Q] += sec[C_Q]
    c[C_N] += sec[C_N]
    c[C_LAST] = sec[C_LAST]


def _merge(pend: list, e: DepthUpdate) -> None:
    pend[1] = e.depth_seq
    b = pend[2]
    for price, qty in e.bids:
        b[price] = qty
    a = pend[3]
    for price, qty in e.asks:
        a[price] = qty


# --- order tracker ---------------------------------------------------------------


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
