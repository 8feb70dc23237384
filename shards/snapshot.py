"""Snapshot encoding of an engine's state: books, id counters, sequence numbers.

Layout (little-endian):

    magic b"MESN"  version:u16  last_seq:i64  n_books:u32
    per book:  symbol_id:u32  next_order_id next_trade_id depth_seq:i64  n_orders:u32
    per order: id user price open orig executed cum_quote time update_time:i64
               side order_type tif stp:u8  client_order_id (u16 length + UTF-8)

Orders are written bids best first, then asks best first, each level in time
priority, so restoring them one by one at the back of their level rebuilds
every queue exactly. Only live orders are written (lazy-deletion leftovers
and stale heap entries are not state). The bytes depend only on the logical
state, so equal states give equal snapshots. Nothing here does I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

from shards.book import (
    O_COID,
    O_EXEC,
    O_ID,
    O_OPEN,
    O_ORIG,
    O_PRICE,
    O_QUOTE,
    O_SIDE,
    O_STP,
    O_TIF,
    O_TIME,
    O_TYPE,
    O_UPDATE,
    O_USER,
    Book,
)

MAGIC = b"MESN"
VERSION = 1
_HEADER = struct.Struct("<4sHqI")
_BOOK = struct.Struct("<IqqqI")
_ORDER = struct.Struct("<qqqqqqqqqBBBBH")


class SnapshotError(ValueError):
    """Bytes that are not a snapshot this engine can restore (code -1100: malformed)."""

    code = -1100


def encode(last_seq: int, books: Sequence[Book]) -> bytes:
    """The snapshot bytes of an engine at ``last_seq`` with ``books``."""
    parts = [_HEADER.pack(MAGIC, VERSION, last_seq, len(books))]
    for book in books:
        orders = list(book.resting_in_priority())
        parts.append(_BOOK.pack(book.symbol_id, book.next_order_id, book.next_trade_id, book.depth_seq, len(orders)))
        for o in orders:
            coid = o[O_COID].encode()
            parts.append(
                _ORDER.pack(
                    o[O_ID],
                    o[O_USER],
                    o[O_PRICE],
                    o[O_OPEN],
                    o[O_ORIG],
                    o[O_EXEC],
                    o[O_QUOTE],
                    o[O_TIME],
                    o[O_UPDATE],
                    o[O_SIDE],
                    o[O_TYPE],
                    o[O_TIF],
                    o[O_STP],
                    len(coid),
                )  # fmt: skip
            )
            parts.append(coid)
    return b"".join(parts)


def decode_into(data: bytes, books: Mapping[int, Book]) -> int:
    """Fill the empty ``books`` (by symbol id) from ``data``; return the snapshot's last_seq."""
    try:
        magic, version, last_seq, n_books = _HEADER.unpack_from(data, 0)
        if magic != MAGIC or version != VERSION:
            raise SnapshotError(f"snapshot header {magic!r} version {version} is not {MAGIC!r} version {VERSION}")
        pos = _HEADER.size
        seen: set[int] = set()
        for _ in range(n_books):
            symbol_id, next_order_id, next_trade_id, depth_seq, n_orders = _BOOK.unpack_from(data, pos)
            pos += _BOOK.size
            book = books.get(symbol_id)
            if book is None:
                raise SnapshotError(f"snapshot holds symbol id {symbol_id}, which this engine does not trade")
            if symbol_id in seen:
                raise SnapshotError(f"symbol id {symbol_id} appears twice in the snapshot")
            seen.add(symbol_id)
            book.next_order_id = next_order_id
            book.next_trade_id = next_trade_id
            book.depth_seq = depth_seq
            for _ in range(n_orders):
                oid, user, price, open_qty, orig, executed, quote, time, update, side, otype, tif, stp, n = (
                    _ORDER.unpack_from(data, pos)
                )
                pos += _ORDER.size
                if pos + n > len(data):
                    raise SnapshotError(f"client order id of order {oid} runs past the end of the snapshot")
                coid = data[pos : pos + n].decode()
                pos += n
                if open_qty <= 0 or oid >= next_order_id:
                    raise SnapshotError(f"order {oid} of symbol id {symbol_id} has open qty {open_qty} or a future id")
                book.rest(
                    [oid, user, side, price, open_qty, orig, executed, quote, coid, otype, tif, stp, time, update]
                )
            for user_id, by_coid in book.users.items():  # back to order-id order, as live insertion made it
                book.users[user_id] = dict(sorted(by_coid.items(), key=lambda item: item[1][O_ID]))
    except struct.error as exc:
        raise SnapshotError(f"truncated snapshot: {exc}") from None
    if pos != len(data):
        raise SnapshotError(f"{len(data) - pos} bytes left over after the snapshot's last book")
    return last_seq
