"""Candles, klines and the 24 h ticker of one symbol, built from its trades (``wsfeed.market`` owns the state).

A trade updates only the current 1s candle (``SymbolState.sec``; the walker in
``wsfeed.market`` does that inline). When a trade starts a new second (or a
timer finds the second over) that candle is closed and folded into the longer
intervals' candles, and those whose period ended are closed, in interval
order: the messages are the same as if every trade had updated every interval
(all intervals are whole seconds, aligned on second boundaries), at a 16th of
the work per trade. A longer interval's current candle is its folded part
plus the current second (``current``), built only when a message or the
ticker needs it. ``flush_klines`` (every 250 ms: candles that changed, and
``x`` true once when a period is over) and ``ticker_message`` (the rolling
24 h ticker from the closed 1-minute candles of the last day) are the timers'
part. Never awaits and never touches Redis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from wsfeed.klines import DAY, MINUTE, period

if TYPE_CHECKING:
    from wsfeed.market import SymbolState

# candle: [open_t, close_t, open, high, low, close, volume lots, quote units, trades, first id, last id]
C_OPEN_T, C_CLOSE_T, C_O, C_H, C_L, C_C, C_V, C_Q, C_N, C_F, C_LAST = range(11)


def roll(st: SymbolState, hub: Any, sec: list | None, ts: int, live: bool, now: int) -> None:
    """A trade at ``ts`` starts a new second: close the 1s candle ``sec`` (None: a timer closed it), fold it
    into the longer candles and close those whose period ends before ``ts`` (in interval order, as each
    would close on its own)."""
    klines = st.names.klines
    if sec is not None:
        close_candle(st, hub, "1s", klines[0][1], sec, live, now)
    candles = st.candles
    for interval, stream in klines[1:]:
        c = candles.get(interval)
        if sec is not None:
            if c is None:
                open_t, close_t = period(interval, sec[C_OPEN_T])
                c = candles[interval] = [open_t, close_t, *sec[C_O:]]
            else:
                fold(c, sec)
        if c is not None and ts > c[C_CLOSE_T]:
            close_candle(st, hub, interval, stream, c, live, now)
            del candles[interval]


def fold_second(st: SymbolState, sec: list) -> None:
    """Fold the (over) 1s candle ``sec`` into the longer candles; none closes here."""
    candles = st.candles
    for interval, _ in st.names.klines[1:]:
        c = candles.get(interval)
        if c is None:
            open_t, close_t = period(interval, sec[C_OPEN_T])
            candles[interval] = [open_t, close_t, *sec[C_O:]]
        else:
            fold(c, sec)


def current(st: SymbolState, interval: str) -> list | None:
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
    fold(c, sec)
    return c


def close_candle(st: SymbolState, hub: Any, interval: str, stream: str, c: list, live: bool, now: int) -> None:
    if interval == "1m":
        st.minutes.append(c)
        while st.minutes and st.minutes[0][C_OPEN_T] < c[C_OPEN_T] - DAY:
            st.minutes.popleft()
    if live and hub.has(stream):
        hub.publish(stream, kline_message(st, interval, c, True, now))


def kline_message(st: SymbolState, interval: str, c: list, closed: bool, now: int) -> bytes:
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


def flush_klines(st: SymbolState, hub: Any, now: int) -> None:
    """The timer's part for one symbol: close what is over, send the current candles that changed."""
    sec = st.sec
    if sec is None and not st.candles:
        return
    dirty = st.kline_dirty
    st.kline_dirty = False
    klines = st.names.klines
    if sec is not None:
        if now > sec[C_CLOSE_T]:
            close_candle(st, hub, "1s", klines[0][1], sec, True, now)
            fold_second(st, sec)
            st.sec = None
        elif dirty and hub.has(klines[0][1]):
            hub.publish(klines[0][1], kline_message(st, "1s", sec, False, now))
    candles = st.candles
    for interval, stream in klines[1:]:
        c = candles.get(interval)
        if c is not None and now > c[C_CLOSE_T]:
            close_candle(st, hub, interval, stream, c, True, now)
            del candles[interval]
        elif dirty and hub.has(stream):
            found = current(st, interval)
            if found is not None:
                hub.publish(stream, kline_message(st, interval, found, False, now))


def ticker_message(st: SymbolState, now: int) -> bytes:
    """The rolling 24 h ticker (the best bid and ask must be current: ``SymbolState.best_stale`` false)."""
    r = st.rules
    since = now - DAY
    window = [c for c in st.minutes if c[C_OPEN_T] >= since - MINUTE + 1]
    found = current(st, "1m")
    if found is not None:
        window.append(found)
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


def fold(c: list, sec: list) -> None:
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
