"""Read-only engine commands: QueryOrder, QueryOpenOrders, QueryDepth, QueryBookTicker.

Each takes the engine's books (symbol id -> Book) and a query, and answers
from the open orders and levels only: ended orders are not kept here (their
history comes from PostgreSQL). Never changes a book, never does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import itemgetter

from shards.book import L_QTY, NO_ASK, O_ID, Book, live_status, view
from shards.protocol import (
    BookTickerView,
    DepthView,
    OrderResult,
    OrdersResult,
    OrderView,
    QueryBookTicker,
    QueryDepth,
    QueryOpenOrders,
    QueryOrder,
    Rejected,
    Result,
)
from shards.rules import BUY, MALFORMED, NO_SUCH_ORDER, SELL, UNKNOWN_SYMBOL, missing

_order_id = itemgetter(O_ID)


def _unknown(symbol_id: int) -> Rejected:
    return Rejected(UNKNOWN_SYMBOL, f"unknown symbol id {symbol_id}")


def order(books: Mapping[int, Book], cmd: QueryOrder) -> Result:
    """The user's open order by id or client order id."""
    book = books.get(cmd.symbol_id)
    if book is None:
        return _unknown(cmd.symbol_id)
    found = book.find(cmd.user_id, cmd.order_id, cmd.client_order_id)
    if found is None:
        return Rejected(NO_SUCH_ORDER, missing(cmd.order_id, cmd.client_order_id))
    return OrderResult(view(cmd.symbol_id, found, live_status(found)), ())


def open_orders(books: Mapping[int, Book], cmd: QueryOpenOrders) -> Result:
    """The user's open orders on one symbol, or on all (symbol_id 0), by symbol then order id."""
    if cmd.symbol_id:
        book = books.get(cmd.symbol_id)
        if book is None:
            return _unknown(cmd.symbol_id)
        chosen = [book]
    else:
        chosen = list(books.values())
    views: list[OrderView] = []
    for book in chosen:
        by_coid = book.users.get(cmd.user_id)
        if by_coid:
            views.extend(view(book.symbol_id, o, live_status(o)) for o in sorted(by_coid.values(), key=_order_id))
    return OrdersResult(tuple(views))


def depth(books: Mapping[int, Book], cmd: QueryDepth) -> Result:
    """Top ``limit`` levels per side, best first, with the symbol's depth sequence."""
    book = books.get(cmd.symbol_id)
    if book is None:
        return _unknown(cmd.symbol_id)
    if cmd.limit < 1:
        return Rejected(MALFORMED, f"limit {cmd.limit} must be at least 1")
    return DepthView(cmd.symbol_id, book.depth_seq, book.depth(BUY, cmd.limit), book.depth(SELL, cmd.limit))


def book_ticker(books: Mapping[int, Book], cmd: QueryBookTicker) -> Result:
    """Best bid and ask with their quantities; zeros for an empty side."""
    book = books.get(cmd.symbol_id)
    if book is None:
        return _unknown(cmd.symbol_id)
    bid = book.best_bid
    bid_qty = book.bids[bid][L_QTY] if bid else 0
    ask = book.best_ask
    if ask == NO_ASK:
        ask = ask_qty = 0
    else:
        ask_qty = book.asks[ask][L_QTY]
    return BookTickerView(cmd.symbol_id, bid, bid_qty, ask, ask_qty)
