"""The matching engine: commands of ``shards/protocol.py`` in, results and events out.

``Engine`` owns the books of one shard's symbols (``shards/book.py``) and
applies the matching rules of API.md: price-time priority, trades at the
maker's price, LIMIT GTC/IOC/FOK, MARKET by quantity or by quote amount,
LIMIT_MAKER, self-trade prevention by the taker's mode, client order ids
unique among a user's open orders, cancel, amend (keep priority), cancel-all.
Read-only queries and the checks that only run on rejection live in
``shards/queries.py`` and ``shards/rules.py``.

Events. Every state change appends events, each with the next shard
sequence number; the caller drains them per batch with ``take_encoded``
(journal bytes, the shard loop's path) or ``take_events`` (protocol
objects). Per command the order is fixed: a NewOrder emits OrderAccepted,
then in matching order its TradeEvents and the OrderExpired of makers removed
by self-trade prevention, then the taker's own OrderExpired (IOC/MARKET rest,
or STP), then at most one DepthUpdate for the symbol (absolute level
quantities, best first, 0 removes; ``depth_seq`` + 1). A rejected NewOrder
emits only OrderRejected and changes nothing else (no order id is used).
Other rejections emit nothing.

MARKET by quote amount (``quote_qty`` > 0, ``qty`` == 0), either side: at
each maker, trade min(open, remaining_quote // price) lots; stop at the first
level where not one more lot fits, so the quote traded never exceeds
``quote_qty``. It ends FILLED when it stopped for lack of budget after
trading, else EXPIRED (reason MARKET, remaining_qty 0). Its OrderView shows
``orig_qty`` = executed quantity.

Speed. The hot paths (resting a limit order, cancelling, matching) are
written flat, with ``Book`` primitives inlined where a call would cost more
than the work, and events kept as plain tuples ``(type code, *fields)`` until
someone asks (``shards/events.py``). Results are protocol NamedTuples built
through ``tuple.__new__`` (a third of the cost of calling the class).

Never does I/O, never reads a clock (times come in the commands as ``ts``),
never iterates an unordered container where order matters: the same commands
give the same events, byte for byte (house rule 4). It creates no reference
cycles, so a shard may run it with the cyclic GC off.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Sequence
from heapq import heappop, heappush
from operator import itemgetter
from typing import Any

from shards import queries, rules
from shards import snapshot as _snapshot
from shards.book import L_DEAD, L_QTY, L_QUEUE, O_COID, O_ID, O_OPEN, O_PRICE, O_SIDE, O_USER, Book, view
from shards.events import (
    T_ACCEPTED,
    T_AMENDED,
    T_CANCELED,
    T_DEPTH,
    T_EXPIRED,
    T_TRADE,
    command_for_replay,
    decode_events,
    pack_accepted,
    pack_amended,
    pack_canceled,
    pack_depth,
    pack_depth_one,
    pack_expired,
    pack_rejected,
    pack_trade,
)
from shards.protocol import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    Event,
    Fill,
    NewOrder,
    OrderCanceled,
    OrderRejected,
    OrderResult,
    OrdersResult,
    OrderView,
    QueryBookTicker,
    QueryDepth,
    QueryOpenOrders,
    QueryOrder,
    Rejected,
    Result,
    SymbolSpec,
)
from shards.rules import (
    BUY,
    CANCEL_REJECTED,
    CANCELED,
    EXPIRE_BOTH,
    EXPIRE_TAKER,
    EXPIRED,
    EXPIRED_IN_MATCH,
    FILLED,
    FILTER,
    FOK,
    GTC,
    LIMIT,
    LIMIT_MAKER,
    MALFORMED,
    MARKET,
    MAX_CLIENT_ORDER_ID,
    NEW,
    NEW_ORDER_REJECTED,
    NO_SUCH_ORDER,
    PARTIALLY_FILLED,
    R_IOC,
    R_MARKET,
    R_STP_MAKER,
    R_STP_TAKER,
    SELL,
    UNKNOWN_SYMBOL,
)

_MARKET_BUY_LIMIT = (1 << 62) - 1  # a MARKET buy crosses every ask (book.NO_ASK is above it)
_MARKET_SELL_LIMIT = 1  # a MARKET sell crosses every bid (prices are >= 1)

_new = tuple.__new__  # NamedTuple(...) runs a Python __new__; this is ~3x cheaper
_NO_FILLS: tuple[Fill, ...] = ()
_order_id = itemgetter(O_ID)


class ReplayError(Exception):
    """A journal does not replay to the events it holds (code -1000: the state is unknown)."""

    code = -1000


class Engine:
    """All books of one matching shard. Not thread-safe; one caller drives it."""

    __slots__ = ("_books", "_journal", "last_seq")  # fixed slots: the C core reads them at known offsets

    def __init__(self, symbols: Sequence[SymbolSpec]) -> None:
        self._books: dict[int, Book] = {}
        for spec in symbols:
            if spec.symbol_id in self._books:
                raise ValueError(f"symbol id {spec.symbol_id} ({spec.symbol}) given twice")
            self._books[spec.symbol_id] = Book(spec)
        self._journal: list[bytes] = []  # one encoded event per item (shards/events.py)
        self.last_seq = 0

    # --- public ----------------------------------------------------------------

    def apply(self, cmd: object) -> Result:
        """Apply one command; state changes append events for ``take_events``/``take_encoded``."""
        kind = type(cmd)
        if kind is NewOrder:
            return self._new_order(cmd)  # type: ignore[arg-type]
        if kind is CancelOrder:
            return self._cancel(cmd)  # type: ignore[arg-type]
        handler = _HANDLERS.get(kind)
        if handler is None:
            return Rejected(MALFORMED, f"unknown command {kind.__name__}")
        return handler(self, cmd)

    def take_encoded(self) -> bytes:
        """The events appended since the last take as journal bytes (``events.decode_events`` reads them).

        The shard loop's path: the events are encoded as they happen, so this is one join.
        """
        chunks = self._journal
        self._journal = []
        return b"".join(chunks)

    def take_events(self) -> list[Event]:
        """The events appended since the last take, oldest first, as protocol objects (decoded: slower)."""
        return decode_events(self.take_encoded())

    def book(self, symbol_id: int) -> Book:
        """The book of ``symbol_id`` (read-only use: tests, snapshots, diagnostics)."""
        return self._books[symbol_id]

    def snapshot(self) -> bytes:
        """The whole state (books, id counters, sequence numbers) as deterministic bytes."""
        return _snapshot.encode(self.last_seq, list(self._books.values()))

    @classmethod
    def restore(cls, data: bytes, symbols: Sequence[SymbolSpec]) -> Engine:
        """An engine in the state ``data`` (from ``snapshot``) describes, trading ``symbols``."""
        engine = cls(symbols)
        engine.last_seq = _snapshot.decode_into(data, engine._books)
        return engine

    def replay(self, events: Sequence[Event]) -> None:
        """Re-apply a journal (events after ``last_seq``) and check that it gives exactly those events.

        Sequence numbers follow the journal, so rejected orders (which leave
        nothing to replay) do not shift them. A run of OrderCanceled events of
        one user and symbol came from one CancelAll. Raises ``ReplayError`` at
        the first difference. The event buffer must be empty.
        """
        if self._journal:
            raise ReplayError(f"replay needs an empty event buffer, {len(self._journal)} events pending")
        i = 0
        n = len(events)
        while i < n:
            event = events[i]
            if event.seq <= self.last_seq:
                raise ReplayError(f"event seq {event.seq} is not after last_seq {self.last_seq}")
            if isinstance(event, OrderRejected):
                self.last_seq = event.seq
                i += 1
                continue
            cmd: object = command_for_replay(event)
            if cmd is None:
                raise ReplayError(f"event seq {event.seq} ({type(event).__name__}) does not start a command")
            if isinstance(event, OrderCanceled) and i + 1 < n:
                nxt = events[i + 1]
                if isinstance(nxt, OrderCanceled) and (nxt.symbol_id, nxt.user_id) == (event.symbol_id, event.user_id):
                    cmd = CancelAll(event.symbol_id, event.user_id, event.ts)
            self.last_seq = event.seq - 1
            self.apply(cmd)
            produced = self.take_events()
            if list(events[i : i + len(produced)]) != produced:
                raise ReplayError(f"replay of {cmd!r} at seq {event.seq} produced different events")
            i += len(produced)

    # --- new orders --------------------------------------------------------------

    def _new_order(self, cmd: NewOrder) -> Result:
        symbol_id, user_id, coid, side, order_type, tif, price, qty, quote_qty, stp, ts = cmd
        book = self._books.get(symbol_id)
        if book is None:
            return self._reject_new(cmd, UNKNOWN_SYMBOL, f"unknown symbol id {symbol_id}")
        if not (
            (1 <= side <= 2)
            and (0 <= stp <= 3)
            and len(coid) <= MAX_CLIENT_ORDER_ID
            and (
                (
                    (order_type == LIMIT and 1 <= tif <= 3 or order_type == LIMIT_MAKER)
                    and book.min_price <= price <= book.max_price
                    and book.min_qty <= qty <= book.max_qty
                    and not quote_qty
                )
                or (
                    order_type == MARKET
                    and not price
                    and (book.min_qty <= qty <= book.max_qty and not quote_qty or not qty and quote_qty > 0)
                )
            )
        ):
            return self._reject_new(cmd, *rules.invalid_new_order(book.spec, cmd))
        users = book.users
        by_coid = users.get(user_id)
        if by_coid is not None and coid in by_coid:
            return self._reject_new(cmd, NEW_ORDER_REJECTED, f"duplicate newClientOrderId {coid!r} of an open order")
        if side == BUY:
            crosses = order_type == MARKET or price >= book.best_ask
        else:
            crosses = order_type == MARKET or price <= book.best_bid
        if (crosses and order_type == LIMIT_MAKER) or (
            tif == FOK and order_type == LIMIT and not (crosses and rules.fok_fillable(book, cmd))
        ):
            return self._reject_new(cmd, NEW_ORDER_REJECTED, rules.why_not_placed(book, cmd))

        order_id = book.next_order_id
        book.next_order_id = order_id + 1
        seq = self.last_seq + 1
        journal = self._journal
        raw_coid = coid.encode()
        journal.append(
            pack_accepted(
                T_ACCEPTED, seq, ts, symbol_id, order_id, user_id, side, order_type, tif, stp, price, qty, quote_qty,
                len(raw_coid),
            )
            + raw_coid
        )  # fmt: skip
        if crosses:
            return self._take(book, cmd, order_id, seq)
        seq += 1
        if order_type == LIMIT and tif != GTC:  # an IOC that crosses nothing
            journal.append(pack_expired(T_EXPIRED, seq, ts, symbol_id, order_id, user_id, qty, R_IOC))
            status = EXPIRED
        else:  # rest it: Book.rest inlined, this is the most common command
            order = [order_id, user_id, side, price, qty, qty, 0, 0, coid, order_type, tif, stp, ts, ts]
            book.orders[order_id] = order
            if by_coid is None:
                users[user_id] = {coid: order}
            else:
                by_coid[coid] = order
            depth_seq = book.depth_seq = book.depth_seq + 1
            if side == BUY:
                level = book.bids.get(price)
                if level is None:
                    book.new_level(BUY, price, order)
                    level_qty = qty
                else:
                    level_qty = level[0] = level[0] + qty  # L_QTY
                    level[2].append(order)  # L_QUEUE
                journal.append(pack_depth_one(T_DEPTH, seq, ts, symbol_id, depth_seq, 1, 0, price, level_qty))
            else:
                level = book.asks.get(price)
                if level is None:
                    book.new_level(SELL, price, order)
                    level_qty = qty
                else:
                    level_qty = level[0] = level[0] + qty
                    level[2].append(order)
                journal.append(pack_depth_one(T_DEPTH, seq, ts, symbol_id, depth_seq, 0, 1, price, level_qty))
            status = NEW
        self.last_seq = seq
        order_view = (
            symbol_id, order_id, coid, user_id, side, order_type, tif, stp, price, qty, 0, 0, 0, status, ts, ts, ts,
        )  # fmt: skip
        return _new(OrderResult, (_new(OrderView, order_view), _NO_FILLS))

    def _take(self, book: Book, cmd: NewOrder, order_id: int, seq: int) -> Result:
        """Match an accepted crossing order against the opposite side, then rest or expire its rest."""
        symbol_id, user_id, coid, side, order_type, tif, price, qty, quote_qty, stp, ts = cmd
        append = self._journal.append
        buy = side == BUY
        if buy:
            levels = book.asks
            maker_side = SELL
            limit = price if order_type != MARKET else _MARKET_BUY_LIMIT
        else:
            levels = book.bids
            maker_side = BUY
            limit = price if order_type != MARKET else _MARKET_SELL_LIMIT
        by_quote = quote_qty > 0
        remaining = 1 << 62 if by_quote else qty  # lots still wanted
        budget = quote_qty
        cap = 0
        executed = 0
        cum_quote = 0
        fills: list[Fill] = []
        changed: list[tuple[int, int]] = []
        trade_id = book.next_trade_id
        taker_stp = False
        out_of_budget = False
        orders = book.orders
        users = book.users
        while remaining:
            if buy:
                best = book.best_ask
                if best > limit:
                    break
            else:
                best = book.best_bid
                if best < limit:
                    break
            if by_quote:
                cap = budget // best
                if not cap:
                    out_of_budget = True
                    break
            level = levels[best]
            queue = level[L_QUEUE]
            level_qty = before = level[L_QTY]
            while queue:
                maker = queue[0]
                open_qty = maker[O_OPEN]
                if not open_qty:  # cancelled earlier: lazy deletion
                    queue.popleft()
                    level[L_DEAD] -= 1
                    continue
                maker_user = maker[O_USER]
                if stp and maker_user == user_id:
                    if stp == EXPIRE_TAKER:
                        taker_stp = True
                        break
                    fill = 0
                else:
                    fill = open_qty if open_qty < remaining else remaining
                    if by_quote and fill > cap:
                        fill = cap
                    seq += 1
                    append(
                        pack_trade(
                            T_TRADE, seq, ts, symbol_id, trade_id, best, fill, maker[O_ID], order_id, maker_user,
                            user_id, side,
                        )
                    )  # fmt: skip
                    fills.append(_new(Fill, (trade_id, best, fill)))
                    trade_id += 1
                    quote = fill * best
                    executed += fill
                    cum_quote += quote
                    remaining -= fill
                    level_qty -= fill
                    maker[6] += fill  # O_EXEC
                    maker[7] += quote  # O_QUOTE
                    maker[13] = ts  # O_UPDATE
                    if by_quote:
                        budget -= quote
                        cap -= fill
                        if not cap:
                            out_of_budget = True
                    if fill < open_qty:
                        maker[O_OPEN] = open_qty - fill
                        break  # the taker is done, or out of budget
                # the maker leaves the book: filled, or expired by self-trade prevention (Book.unlink inlined)
                queue.popleft()
                maker[O_OPEN] = 0
                del orders[maker[O_ID]]
                by_coid = users[maker_user]
                del by_coid[maker[O_COID]]
                if not by_coid:
                    del users[maker_user]
                if not fill:
                    level_qty -= open_qty
                    seq += 1
                    append(pack_expired(T_EXPIRED, seq, ts, symbol_id, maker[O_ID], user_id, open_qty, R_STP_MAKER))
                    if stp == EXPIRE_BOTH:
                        taker_stp = True
                        break
                elif out_of_budget or not remaining:
                    break
            if level_qty != before:
                level[L_QTY] = level_qty
                changed.append((best, level_qty))
                if not level_qty:
                    book.drop_level(maker_side, best)
            if taker_stp or out_of_budget:
                break
        book.next_trade_id = trade_id

        rested: tuple[tuple[int, int], ...] = ()
        if taker_stp:
            status = EXPIRED_IN_MATCH
            seq += 1
            left = 0 if by_quote else remaining
            append(pack_expired(T_EXPIRED, seq, ts, symbol_id, order_id, user_id, left, R_STP_TAKER))
        elif by_quote:
            if executed and out_of_budget:
                status = FILLED
            else:
                status = EXPIRED
                seq += 1
                append(pack_expired(T_EXPIRED, seq, ts, symbol_id, order_id, user_id, 0, R_MARKET))
        elif not remaining:
            status = FILLED
        elif order_type == LIMIT and tif == GTC:
            level_qty = book.rest(
                [order_id, user_id, side, price, remaining, qty, executed, cum_quote, coid, LIMIT, GTC, stp, ts, ts]
            )
            rested = ((price, level_qty),)
            status = PARTIALLY_FILLED if executed else NEW
        else:  # IOC or MARKET rest (a FOK gets here only when it fills entirely)
            status = EXPIRED
            seq += 1
            reason = R_IOC if order_type == LIMIT else R_MARKET
            append(pack_expired(T_EXPIRED, seq, ts, symbol_id, order_id, user_id, remaining, reason))
        if changed or rested:
            depth_seq = book.depth_seq = book.depth_seq + 1
            seq += 1
            if buy:
                append(pack_depth(seq, ts, symbol_id, depth_seq, rested, changed))
            else:
                append(pack_depth(seq, ts, symbol_id, depth_seq, changed, rested))
        self.last_seq = seq
        orig_qty = executed if by_quote else qty
        order_view = (
            symbol_id, order_id, coid, user_id, side, order_type, tif, stp, price, orig_qty, executed, cum_quote,
            quote_qty, status, ts, ts, ts,
        )  # fmt: skip
        return _new(OrderResult, (_new(OrderView, order_view), tuple(fills)))

    def _reject_new(self, cmd: NewOrder, code: int, msg: str) -> Rejected:
        seq = self.last_seq = self.last_seq + 1
        coid = cmd.client_order_id[:MAX_CLIENT_ORDER_ID]  # the event keeps at most this much of a bad one
        self._journal.append(pack_rejected(seq, cmd.ts, cmd.symbol_id, cmd.user_id, coid, code, msg))
        return Rejected(code, msg)

    # --- cancel, amend, cancel-all ---------------------------------------------

    def _cancel(self, cmd: CancelOrder) -> Result:
        symbol_id, user_id, order_id, coid, ts = cmd
        book = self._books.get(symbol_id)
        if book is None:
            return Rejected(UNKNOWN_SYMBOL, f"unknown symbol id {symbol_id}")
        if order_id:
            order = book.orders.get(order_id)
            if order is None or order[O_USER] != user_id:
                return Rejected(NO_SUCH_ORDER, rules.missing(order_id, coid))
        else:
            order = book.find(user_id, 0, coid)
            if order is None:
                return Rejected(NO_SUCH_ORDER, rules.missing(order_id, coid))
            order_id = order[O_ID]
        remaining = order[O_OPEN]
        price = order[O_PRICE]
        level_qty = book.remove(order)
        order[13] = ts  # O_UPDATE
        seq = self.last_seq + 1
        self.last_seq = seq + 1
        depth_seq = book.depth_seq = book.depth_seq + 1
        append = self._journal.append
        append(pack_canceled(T_CANCELED, seq, ts, symbol_id, order_id, user_id, remaining))
        if order[O_SIDE] == BUY:
            append(pack_depth_one(T_DEPTH, seq + 1, ts, symbol_id, depth_seq, 1, 0, price, level_qty))
        else:
            append(pack_depth_one(T_DEPTH, seq + 1, ts, symbol_id, depth_seq, 0, 1, price, level_qty))
        return _new(OrderResult, (view(symbol_id, order, CANCELED), _NO_FILLS))

    def _amend(self, cmd: AmendOrder) -> Result:
        symbol_id, user_id, order_id, coid, new_qty, ts = cmd
        book = self._books.get(symbol_id)
        if book is None:
            return Rejected(UNKNOWN_SYMBOL, f"unknown symbol id {symbol_id}")
        order = book.find(user_id, order_id, coid)
        if order is None:
            return Rejected(NO_SUCH_ORDER, rules.missing(order_id, coid))
        executed = order[6]  # O_EXEC
        orig = order[5]  # O_ORIG
        if not executed < new_qty < orig:
            msg = f"newQty {new_qty} must be greater than executedQty {executed} and less than origQty {orig}"
            return Rejected(FILTER, msg)
        level_qty = book.reduce(order, orig - new_qty)
        order[13] = ts  # O_UPDATE
        seq = self.last_seq + 1
        self.last_seq = seq + 1
        depth_seq = book.depth_seq = book.depth_seq + 1
        append = self._journal.append
        append(pack_amended(T_AMENDED, seq, ts, symbol_id, order[O_ID], user_id, new_qty))
        bids = 1 if order[O_SIDE] == BUY else 0
        append(pack_depth_one(T_DEPTH, seq + 1, ts, symbol_id, depth_seq, bids, 1 - bids, order[O_PRICE], level_qty))
        return OrderResult(view(symbol_id, order, PARTIALLY_FILLED if executed else NEW), _NO_FILLS)

    def _cancel_all(self, cmd: CancelAll) -> Result:
        symbol_id, user_id, ts = cmd
        book = self._books.get(symbol_id)
        if book is None:
            return Rejected(UNKNOWN_SYMBOL, f"unknown symbol id {symbol_id}")
        by_coid = book.users.get(user_id)
        if not by_coid:
            return Rejected(CANCEL_REJECTED, f"no open orders on {book.spec.symbol}")
        append = self._journal.append
        seq = self.last_seq
        bid_levels: dict[int, int] = {}
        ask_levels: dict[int, int] = {}
        views = []
        for order in sorted(by_coid.values(), key=_order_id):
            remaining = order[O_OPEN]
            level_qty = book.remove(order)
            order[13] = ts  # O_UPDATE
            (bid_levels if order[O_SIDE] == BUY else ask_levels)[order[O_PRICE]] = level_qty
            seq += 1
            append(pack_canceled(T_CANCELED, seq, ts, symbol_id, order[O_ID], user_id, remaining))
            views.append(view(symbol_id, order, CANCELED))
        depth_seq = book.depth_seq = book.depth_seq + 1
        seq += 1
        bids = sorted(bid_levels.items(), reverse=True)
        asks = sorted(ask_levels.items())
        append(pack_depth(seq, ts, symbol_id, depth_seq, bids, asks))
        self.last_seq = seq
        return OrdersResult(tuple(views))


# Rarer commands, by type (a class-level table: bound methods kept on the instance would make a reference cycle).
_HANDLERS: dict[type, Callable[[Engine, Any], Result]] = {
    NewOrder: Engine._new_order,
    CancelOrder: Engine._cancel,
    AmendOrder: Engine._amend,
    CancelAll: Engine._cancel_all,
    QueryOrder: lambda engine, cmd: queries.order(engine._books, cmd),
    QueryOpenOrders: lambda engine, cmd: queries.open_orders(engine._books, cmd),
    QueryDepth: lambda engine, cmd: queries.depth(engine._books, cmd),
    QueryBookTicker: lambda engine, cmd: queries.book_ticker(engine._books, cmd),
}


# --- the C core --------------------------------------------------------------------------------------------------
# shards/_matchcore.c gives a C Engine.apply that runs _new_order (with _take) and _cancel over the same structures
# and writes the same bytes; what it does not handle it declines before changing anything, and the methods above take
# it. Built at install where a C compiler is at hand; EXCHANGE_ENGINE_CORE=python (or select_core) turns it off.
# It also gives the shard loop record-in, answer-out calls (bind_wire_calls), used while the C apply is selected.
try:
    from shards import _matchcore
except ImportError:  # installed without a C compiler: the Python path does everything
    _matchcore = None  # type: ignore[assignment]

_APPLY = {"python": Engine.apply}
if _matchcore is not None:
    _APPLY["c"] = _matchcore.bind(
        Engine, Book, OrderView, OrderResult, Fill, NewOrder, CancelOrder, deque, rules.fok_fillable, heappush, heappop
    )
CORES = tuple(sorted(_APPLY))  # the cores this install has: ("c", "python") or ("python",)
core = "python"


def c_core_active() -> bool:
    """Whether ``Engine.apply`` is the C core's now (not the Python one, nor a wrapper a test put in its place)."""
    return "c" in _APPLY and Engine.apply is _APPLY["c"]


def bind_wire_calls(
    layouts: dict[str, object],
) -> tuple[Callable[..., bytes | None], Callable[..., bytes | None]] | None:
    """The C core's record-in, answer-out calls ``(new_orders, command)`` for the wire ``layouts``; None without C.

    ``new_orders(engine, record, now, part)`` answers a NewOrders record, ``command(engine, record, now,
    encode_answer)`` a NewOrder or CancelOrder record (``shards.process`` drives both; see ``_matchcore.c``).
    ``layouts`` names the wire formats and constants the C core writes (``shards.process`` reads them from
    ``shards.wire``); a mismatch raises ValueError, so the caller keeps its Python path.
    """
    if _matchcore is None:
        return None
    return _matchcore.bind_wire(layouts)


def apply_of(name: str) -> Callable[[Engine, object], Result]:
    """The ``Engine.apply`` of core ``name`` ("c" or "python"), callable as ``apply(engine, cmd)``."""
    apply = _APPLY.get(name)
    if apply is None:
        raise ValueError(f"engine core {name!r} is not one of {CORES} (the C core needs a C compiler at install)")
    return apply


def select_core(name: str) -> None:
    """Run every engine in this process with core ``name`` ("c" or "python") from now on."""
    global core
    Engine.apply = apply_of(name)  # type: ignore[method-assign]
    core = name


select_core(os.environ.get("EXCHANGE_ENGINE_CORE") or CORES[0])
