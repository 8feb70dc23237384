"""The binary records that cross the ingress <-> shard rings: the one definition (house rule 2).

Both sides import this module; nothing else packs or parses a ring record.
It owns the byte layout of every command record and every answer record and
the splitting of an answer too big for one ring record. It never does I/O and
never touches a ring.

Every integer is little-endian, no padding (``struct`` format ``<``).

Command records (ingress worker -> matching shard)::

    +------+------------+---------------------------------------------+
    | type | request id | the command's fields, in protocol.py order   |
    |  u8  |    u64     | (fixed layout per type, below)               |
    +------+------------+---------------------------------------------+
    1 NewOrder        u32 symbol | u64 user | coid | u8 side, type, tif | i64 price, qty, quote qty | u8 stp | i64 ts
    2 CancelOrder     u32 symbol | u64 user | u64 order id | coid | i64 ts
    3 AmendOrder      u32 symbol | u64 user | u64 order id | coid | i64 new qty | i64 ts
    4 CancelAll       u32 symbol | u64 user | i64 ts
    5 QueryOrder      u32 symbol | u64 user | u64 order id | coid
    6 QueryOpenOrders u32 symbol | u64 user
    7 QueryDepth      u32 symbol | u32 limit
    8 QueryBookTicker u32 symbol
    9 Ping            (nothing)

  ``request id`` is the ingress worker's own counter; the shard copies it into
  the answer. ``client_order_id`` travels as a Pascal string in a fixed field
  of 37 bytes (length u8 + up to 36 ASCII bytes), so every command type has a
  fixed size and is packed with one precompiled ``struct.Struct`` call.
  ``Ping`` (type 9) is a wire-only record that the shard answers with ``Pong``
  without touching its engine.

  ``NewOrders`` (type 10) carries several new orders of one request (a
  ``batchOrders`` call) as one record: ``u16 n`` then n NewOrder bodies (the
  NewOrder layout above without type and request id). The shard applies them
  in order in one loop turn and answers them with one ``Results`` record, so a
  batch costs one ring record, one doorbell and one answer per shard, not one
  of each per order. ``new_orders_per_record(max_record)`` says how many fit.

Answer records (matching shard -> ingress worker)::

    +------+------------+--------------------------------------------+
    | kind | request id | the result                                  |
    |  u8  |    u64     |                                             |
    +------+------------+--------------------------------------------+
    OrderResult    view (126 bytes) | u32 n | n x (u64 trade id, i64 price, i64 qty)
    OrdersResult   u32 n | n x view
    Rejected       i32 code | u16 n | n bytes UTF-8 message (cut at 1024 bytes)
    DepthView      u32 symbol | i64 last update id | u32 nb | u32 na | (nb + na) x (i64 price, i64 qty)
    BookTickerView u32 symbol | i64 bid price | i64 bid qty | i64 ask price | i64 ask qty
    Pong           u32 shard index
    Results        u16 n | n x (u8 kind 1 or 3 | that kind's OrderResult or Rejected body): the answer to NewOrders
    view = u32 symbol | u64 order id | coid | u64 user | u8 side, type, tif, stp | i64 price, orig qty,
           executed qty, cum quote, orig quote qty | u8 status | i64 time, update time, working time
    (kinds: 1 OrderResult, 2 OrdersResult, 3 Rejected, 4 DepthView, 5 BookTickerView, 6 Pong, 7 Results)

  An answer longer than the ring's ``max_record`` (a deep book, a large
  OrdersResult, a taker order with thousands of fills) is cut by
  ``fragment_answer`` into records whose kind byte carries ``MORE`` (0x80: more
  follows) or ``LAST`` (0x40: last fragment), each with the same request id and
  a slice of the body. One answer ring has one writer, which writes the
  fragments of an answer back to back, so ``AnswerAssembler`` on the reading
  side joins them without any cap on answer size.

Hot path: ``encode_command`` / ``decode_command`` / ``encode_answer`` /
``decode_answer`` are one dict or tuple lookup plus one ``Struct`` call for the
common records (orders without fills, rejects, pings). A REST batch skips the
protocol objects on both sides of its own records: ``pack_new_order`` packs each
order's body from its fields and ``new_orders_record`` joins them;
``results_items`` reads a Results answer as flat tuples for a renderer.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import NamedTuple

from shards.protocol import (
    AmendOrder,
    BookTickerView,
    CancelAll,
    CancelOrder,
    DepthView,
    Fill,
    NewOrder,
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

__all__ = [
    "AnswerAssembler",
    "Ping",
    "Pong",
    "WireError",
    "decode_answer",
    "decode_command",
    "encode_answer",
    "encode_command",
    "encode_commands",
    "new_order_body",
    "new_orders_record",
    "pack_new_order",
    "results_items",
    "fragment_answer",
    "INTERNAL_ERROR",
    "MAX_CLIENT_ORDER_ID",
    "MORE",
    "LAST",
]

MAX_CLIENT_ORDER_ID = 36  # bytes of ASCII
MAX_REJECT_MSG = 1024  # bytes of UTF-8 kept of a reject message
INTERNAL_ERROR = -1000  # Rejected code a shard answers when applying a command raised

MORE = 0x80  # answer fragment flag: more fragments of this answer follow
LAST = 0x40  # answer fragment flag: the last fragment of a fragmented answer
_KIND_MASK = 0x3F


class WireError(ValueError):
    """A record that cannot be encoded or decoded; the message names the value."""


class Ping(NamedTuple):
    """Liveness probe: the shard answers ``Pong`` without touching its engine."""


class Pong(NamedTuple):
    """Answer to ``Ping``: the index of the shard that answered."""

    shard: int


class NewOrders(NamedTuple):
    """Several new orders sent as one record (type 10); the shard answers ``Results``."""

    orders: tuple[NewOrder, ...]


class Results(NamedTuple):
    """Answer to ``NewOrders``: one ``OrderResult`` or ``Rejected`` per order, in order."""

    results: tuple[Result, ...]


# --- command records -------------------------------------------------------------

T_NEW_ORDER = 1
T_CANCEL_ORDER = 2
T_AMEND_ORDER = 3
T_CANCEL_ALL = 4
T_QUERY_ORDER = 5
T_QUERY_OPEN_ORDERS = 6
T_QUERY_DEPTH = 7
T_QUERY_BOOK_TICKER = 8
T_PING = 9
T_NEW_ORDERS = 10

_new = tuple.__new__  # builds a NamedTuple from a sequence, skipping its Python-level __new__

_HEAD = "<BQ"  # type, request id
_COID = "37p"  # Pascal string: u8 length + up to 36 bytes

_NEW_ORDER = struct.Struct(_HEAD + "IQ" + _COID + "BBBqqqBq")
_CANCEL_ORDER = struct.Struct(_HEAD + "IQQ" + _COID + "q")
_AMEND_ORDER = struct.Struct(_HEAD + "IQQ" + _COID + "qq")
_CANCEL_ALL = struct.Struct(_HEAD + "IQq")
_QUERY_ORDER = struct.Struct(_HEAD + "IQQ" + _COID)
_QUERY_OPEN_ORDERS = struct.Struct(_HEAD + "IQ")
_QUERY_DEPTH = struct.Struct(_HEAD + "II")
_QUERY_BOOK_TICKER = struct.Struct(_HEAD + "I")
_PING = struct.Struct(_HEAD)
_NEW_ORDERS_HEAD = struct.Struct(_HEAD + "H")
_NEW_ORDER_BODY = struct.Struct("<IQ" + _COID + "BBBqqqBq")
NEW_ORDERS_MAX = 0xFFFF  # orders in one NewOrders record (u16 count)

COMMAND_SIZE = {
    NewOrder: _NEW_ORDER.size,
    CancelOrder: _CANCEL_ORDER.size,
    AmendOrder: _AMEND_ORDER.size,
    CancelAll: _CANCEL_ALL.size,
    QueryOrder: _QUERY_ORDER.size,
    QueryOpenOrders: _QUERY_OPEN_ORDERS.size,
    QueryDepth: _QUERY_DEPTH.size,
    QueryBookTicker: _QUERY_BOOK_TICKER.size,
    Ping: _PING.size,
}


def new_orders_per_record(max_record: int) -> int:
    """How many orders one NewOrders record of at most ``max_record`` bytes holds."""
    return max(0, min(NEW_ORDERS_MAX, (max_record - _NEW_ORDERS_HEAD.size) // _NEW_ORDER_BODY.size))


def encode_new_orders(rid: int, orders: Sequence[NewOrder]) -> bytes:
    """One NewOrders record holding ``orders`` (check their number with ``new_orders_per_record``)."""
    if len(orders) > NEW_ORDERS_MAX:
        raise WireError(f"{len(orders)} orders do not fit one NewOrders record (at most {NEW_ORDERS_MAX})")
    pack = _NEW_ORDER_BODY.pack
    parts = [_NEW_ORDERS_HEAD.pack(T_NEW_ORDERS, rid, len(orders))]
    try:
        for c in orders:
            coid = c[2].encode()
            if len(coid) > MAX_CLIENT_ORDER_ID:
                coid = _coid(c[2])  # raises, naming the value
            parts.append(pack(c[0], c[1], coid, c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10]))
    except struct.error as exc:
        raise WireError(f"cannot encode a new order of request {rid}: {exc}") from None
    return b"".join(parts)


def decode_new_orders(buf: bytes | memoryview, ts: int | None = None) -> tuple[int, list[NewOrder]]:
    """``(request id, orders)`` of a NewOrders record; with ``ts``, each order is stamped with it."""
    try:
        _, rid, n = _NEW_ORDERS_HEAD.unpack_from(buf)
        size = _NEW_ORDERS_HEAD.size + n * _NEW_ORDER_BODY.size
        if len(buf) < size:
            raise WireError(f"NewOrders record announces {n} orders but holds {len(buf)} bytes")
        orders = []
        append = orders.append
        for v in _NEW_ORDER_BODY.iter_unpack(buf[_NEW_ORDERS_HEAD.size : size]):
            w = list(v)
            w[2] = w[2].decode()
            if ts is not None:
                w[10] = ts
            append(_new(NewOrder, w))
    except (struct.error, UnicodeDecodeError) as exc:
        raise WireError(f"malformed NewOrders record of {len(buf)} bytes: {exc}") from None
    return rid, orders


def new_orders_record(rid: int, bodies: Sequence[bytes]) -> bytes:
    """One NewOrders record of order bodies already packed by ``pack_new_order`` or ``new_order_body``."""
    if len(bodies) > NEW_ORDERS_MAX:
        raise WireError(f"{len(bodies)} orders do not fit one NewOrders record (at most {NEW_ORDERS_MAX})")
    return _NEW_ORDERS_HEAD.pack(T_NEW_ORDERS, rid, len(bodies)) + b"".join(bodies)


def new_order_body(c: NewOrder) -> bytes:
    """The body of ``c`` inside a NewOrders record (the record is ``new_orders_record``)."""
    try:
        return _NEW_ORDER_BODY.pack(c[0], c[1], _coid(c[2]), c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10])
    except struct.error as exc:
        raise WireError(f"cannot encode {c!r}: {exc}") from None


# The body of one new order inside a NewOrders record, straight from its fields (the hot path of a REST
# batch): pack_new_order(symbol_id, user_id, client_order_id, side, order_type, tif, price, qty, quote_qty,
# stp, ts) with client_order_id as bytes of at most MAX_CLIENT_ORDER_ID (the caller's promise: a longer one
# would be cut, where new_order_body raises).
pack_new_order = _NEW_ORDER_BODY.pack


def _coid(value: str) -> bytes:
    data = value.encode()
    if len(data) > MAX_CLIENT_ORDER_ID:
        raise WireError(f"client_order_id {value!r} is longer than {MAX_CLIENT_ORDER_ID} bytes")
    return data


def _enc_new_order(rid: int, c: NewOrder) -> bytes:
    coid = c[2].encode()
    if len(coid) > MAX_CLIENT_ORDER_ID:
        coid = _coid(c[2])  # raises, naming the value
    return _NEW_ORDER.pack(T_NEW_ORDER, rid, c[0], c[1], coid, c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10])


def _enc_cancel_order(rid: int, c: CancelOrder) -> bytes:
    return _CANCEL_ORDER.pack(T_CANCEL_ORDER, rid, c[0], c[1], c[2], _coid(c[3]), c[4])


def _enc_amend_order(rid: int, c: AmendOrder) -> bytes:
    return _AMEND_ORDER.pack(T_AMEND_ORDER, rid, c[0], c[1], c[2], _coid(c[3]), c[4], c[5])


def _enc_cancel_all(rid: int, c: CancelAll) -> bytes:
    return _CANCEL_ALL.pack(T_CANCEL_ALL, rid, c[0], c[1], c[2])


def _enc_query_order(rid: int, c: QueryOrder) -> bytes:
    return _QUERY_ORDER.pack(T_QUERY_ORDER, rid, c[0], c[1], c[2], _coid(c[3]))


def _enc_query_open_orders(rid: int, c: QueryOpenOrders) -> bytes:
    return _QUERY_OPEN_ORDERS.pack(T_QUERY_OPEN_ORDERS, rid, c[0], c[1])


def _enc_query_depth(rid: int, c: QueryDepth) -> bytes:
    return _QUERY_DEPTH.pack(T_QUERY_DEPTH, rid, c[0], c[1])


def _enc_query_book_ticker(rid: int, c: QueryBookTicker) -> bytes:
    return _QUERY_BOOK_TICKER.pack(T_QUERY_BOOK_TICKER, rid, c[0])


def _enc_ping(rid: int, c: Ping) -> bytes:
    return _PING.pack(T_PING, rid)


def _enc_new_orders(rid: int, c: NewOrders) -> bytes:
    return encode_new_orders(rid, c[0])


_CMD_ENCODERS: dict[type, Callable[[int, object], bytes]] = {
    NewOrder: _enc_new_order,  # type: ignore[dict-item]
    CancelOrder: _enc_cancel_order,  # type: ignore[dict-item]
    AmendOrder: _enc_amend_order,  # type: ignore[dict-item]
    CancelAll: _enc_cancel_all,  # type: ignore[dict-item]
    QueryOrder: _enc_query_order,  # type: ignore[dict-item]
    QueryOpenOrders: _enc_query_open_orders,  # type: ignore[dict-item]
    QueryDepth: _enc_query_depth,  # type: ignore[dict-item]
    QueryBookTicker: _enc_query_book_ticker,  # type: ignore[dict-item]
    Ping: _enc_ping,  # type: ignore[dict-item]
    NewOrders: _enc_new_orders,  # type: ignore[dict-item]
}


def encode_command(rid: int, cmd: object) -> bytes:
    """The ring record of ``cmd`` sent under request id ``rid``."""
    try:
        return _CMD_ENCODERS[type(cmd)](rid, cmd)
    except KeyError:
        raise WireError(f"no wire record for command type {type(cmd).__name__}") from None
    except struct.error as exc:
        raise WireError(f"cannot encode {cmd!r} (request id {rid}): {exc}") from None


def encode_commands(first_rid: int, cmds: Sequence[object]) -> list[bytes]:
    """The records of ``cmds`` under request ids ``first_rid``, ``first_rid + 1``, ... (a batch in one call)."""
    encoders = _CMD_ENCODERS
    try:
        return [encoders[type(cmd)](first_rid + i, cmd) for i, cmd in enumerate(cmds)]
    except (KeyError, struct.error):
        for i, cmd in enumerate(cmds):
            encode_command(first_rid + i, cmd)  # raises the WireError naming the culprit
        raise


def _dec_new_order(buf: bytes | memoryview) -> tuple[int, object]:
    v = list(_NEW_ORDER.unpack_from(buf))
    v[4] = v[4].decode()
    return v[1], _new(NewOrder, v[2:])


def _dec_cancel_order(buf: bytes | memoryview) -> tuple[int, object]:
    v = _CANCEL_ORDER.unpack_from(buf)
    return v[1], CancelOrder(v[2], v[3], v[4], v[5].decode(), v[6])


def _dec_amend_order(buf: bytes | memoryview) -> tuple[int, object]:
    v = _AMEND_ORDER.unpack_from(buf)
    return v[1], AmendOrder(v[2], v[3], v[4], v[5].decode(), v[6], v[7])


def _dec_cancel_all(buf: bytes | memoryview) -> tuple[int, object]:
    v = _CANCEL_ALL.unpack_from(buf)
    return v[1], CancelAll(v[2], v[3], v[4])


def _dec_query_order(buf: bytes | memoryview) -> tuple[int, object]:
    v = _QUERY_ORDER.unpack_from(buf)
    return v[1], QueryOrder(v[2], v[3], v[4], v[5].decode())


def _dec_query_open_orders(buf: bytes | memoryview) -> tuple[int, object]:
    v = _QUERY_OPEN_ORDERS.unpack_from(buf)
    return v[1], QueryOpenOrders(v[2], v[3])


def _dec_query_depth(buf: bytes | memoryview) -> tuple[int, object]:
    v = _QUERY_DEPTH.unpack_from(buf)
    return v[1], QueryDepth(v[2], v[3])


def _dec_query_book_ticker(buf: bytes | memoryview) -> tuple[int, object]:
    v = _QUERY_BOOK_TICKER.unpack_from(buf)
    return v[1], QueryBookTicker(v[2])


def _dec_ping(buf: bytes | memoryview) -> tuple[int, object]:
    return _PING.unpack_from(buf)[1], Ping()


def _dec_new_orders(buf: bytes | memoryview) -> tuple[int, object]:
    rid, orders = decode_new_orders(buf)
    return rid, NewOrders(tuple(orders))


def _bad_type(buf: bytes | memoryview) -> tuple[int, object]:
    raise WireError(f"unknown command record type {buf[0]}")


_CMD_DECODERS: tuple[Callable[[bytes | memoryview], tuple[int, object]], ...] = (
    _bad_type,
    _dec_new_order,
    _dec_cancel_order,
    _dec_amend_order,
    _dec_cancel_all,
    _dec_query_order,
    _dec_query_open_orders,
    _dec_query_depth,
    _dec_query_book_ticker,
    _dec_ping,
    _dec_new_orders,
) + (_bad_type,) * 245


def decode_command(buf: bytes | memoryview) -> tuple[int, object]:
    """``(request id, command)`` of a command record."""
    try:
        return _CMD_DECODERS[buf[0]](buf)
    except (struct.error, UnicodeDecodeError, IndexError) as exc:
        raise WireError(f"malformed command record of {len(buf)} bytes: {exc}") from None


def command_request_id(buf: bytes | memoryview) -> int:
    """The request id of a command record, readable even when the rest is malformed."""
    return int.from_bytes(bytes(buf[1:9]), "little")


# --- answer records ----------------------------------------------------------------

K_ORDER = 1
K_ORDERS = 2
K_REJECTED = 3
K_DEPTH = 4
K_BOOK_TICKER = 5
K_PONG = 6
K_RESULTS = 7

_VIEW = "IQ" + _COID + "QBBBBqqqqqBqqq"  # OrderView, protocol.py order
_VIEW_S = struct.Struct("<" + _VIEW)
_VIEW_SIZE = _VIEW_S.size
_ORDER_HEAD = struct.Struct(_HEAD + _VIEW + "I")
_FILL = struct.Struct("<Qqq")
_ORDERS_HEAD = struct.Struct(_HEAD + "I")
_REJECTED = struct.Struct(_HEAD + "iH")
_DEPTH_HEAD = struct.Struct(_HEAD + "IqII")
_BOOK_TICKER = struct.Struct(_HEAD + "Iqqqq")
_PONG = struct.Struct(_HEAD + "I")
_ANSWER_HEAD = struct.Struct(_HEAD)
_RESULTS_HEAD = struct.Struct(_HEAD + "H")
_ORDER_BODY = struct.Struct("<B" + _VIEW + "I")  # kind K_ORDER, view, fill count (inside Results)
_REJECTED_BODY = struct.Struct("<BiH")  # kind K_REJECTED, code, message length (inside Results)
ANSWER_HEAD_SIZE = _ANSWER_HEAD.size


def _view_fields(o: OrderView) -> tuple:
    return (o[0], o[1], _coid(o[2]), *o[3:])


def _enc_order(rid: int, r: OrderResult) -> bytes:
    o = r[0]
    fills = r[1]
    coid = o[2].encode()
    if len(coid) > MAX_CLIENT_ORDER_ID:
        coid = _coid(o[2])  # raises, naming the value
    head = _ORDER_HEAD.pack(
        K_ORDER, rid, o[0], o[1], coid, o[3], o[4], o[5], o[6], o[7], o[8], o[9], o[10], o[11], o[12],
        o[13], o[14], o[15], o[16], len(fills),
    )  # fmt: skip
    if not fills:
        return head
    pack = _FILL.pack
    return head + b"".join([pack(*f) for f in fills])


def _enc_orders(rid: int, r: OrdersResult) -> bytes:
    orders = r[0]
    pack = _VIEW_S.pack
    return _ORDERS_HEAD.pack(K_ORDERS, rid, len(orders)) + b"".join([pack(*_view_fields(o)) for o in orders])


def _enc_rejected(rid: int, r: Rejected) -> bytes:
    msg = r[1].encode()[:MAX_REJECT_MSG]
    return _REJECTED.pack(K_REJECTED, rid, r[0], len(msg)) + msg


def _enc_depth(rid: int, r: DepthView) -> bytes:
    bids = r[2]
    asks = r[3]
    head = _DEPTH_HEAD.pack(K_DEPTH, rid, r[0], r[1], len(bids), len(asks))
    flat = [x for level in bids for x in level]
    flat.extend([x for level in asks for x in level])
    return head + struct.pack(f"<{len(flat)}q", *flat)


def _enc_book_ticker(rid: int, r: BookTickerView) -> bytes:
    return _BOOK_TICKER.pack(K_BOOK_TICKER, rid, r[0], r[1], r[2], r[3], r[4])


def _enc_pong(rid: int, r: Pong) -> bytes:
    return _PONG.pack(K_PONG, rid, r[0])


def encode_results(rid: int, results: Sequence[object]) -> bytes:
    """The Results answer record (kind 7) of a NewOrders request: OrderResult or Rejected items."""
    if len(results) > NEW_ORDERS_MAX:
        raise WireError(f"{len(results)} results do not fit one Results record (at most {NEW_ORDERS_MAX})")
    parts = [_RESULTS_HEAD.pack(K_RESULTS, rid, len(results))]
    append = parts.append
    order_pack = _ORDER_BODY.pack
    fill_pack = _FILL.pack
    for r in results:
        kind = type(r)
        if kind is OrderResult:
            o = r[0]  # type: ignore[index]
            fills = r[1]  # type: ignore[index]
            coid = o[2].encode()
            if len(coid) > MAX_CLIENT_ORDER_ID:
                coid = _coid(o[2])  # raises, naming the value
            append(order_pack(
                K_ORDER, o[0], o[1], coid, o[3], o[4], o[5], o[6], o[7], o[8], o[9], o[10], o[11], o[12],
                o[13], o[14], o[15], o[16], len(fills),
            ))  # fmt: skip
            for f in fills:
                append(fill_pack(*f))
        elif kind is Rejected:
            msg = r[1].encode()[:MAX_REJECT_MSG]  # type: ignore[index]
            append(_REJECTED_BODY.pack(K_REJECTED, r[0], len(msg)))  # type: ignore[index]
            append(msg)
        else:
            raise WireError(f"a Results record holds OrderResult or Rejected, not {kind.__name__}")
    return b"".join(parts)


_ANS_ENCODERS: dict[type, Callable[[int, object], bytes]] = {
    OrderResult: _enc_order,  # type: ignore[dict-item]
    OrdersResult: _enc_orders,  # type: ignore[dict-item]
    Rejected: _enc_rejected,  # type: ignore[dict-item]
    DepthView: _enc_depth,  # type: ignore[dict-item]
    BookTickerView: _enc_book_ticker,  # type: ignore[dict-item]
    Pong: _enc_pong,  # type: ignore[dict-item]
    Results: lambda rid, r: encode_results(rid, r[0]),  # type: ignore[index]
}


def encode_answer(rid: int, result: object) -> bytes:
    """The answer record of ``result`` to request ``rid`` (may exceed a ring's max_record:
    pass it through ``fragment_answer`` before writing)."""
    try:
        return _ANS_ENCODERS[type(result)](rid, result)
    except KeyError:
        raise WireError(f"no wire record for result type {type(result).__name__}") from None
    except struct.error as exc:
        raise WireError(f"cannot encode {result!r} (request id {rid}): {exc}") from None


def _view(v: tuple) -> OrderView:
    """OrderView from an unpacked view tuple (client order id still bytes)."""
    w = list(v)
    w[2] = w[2].decode()
    return _new(OrderView, w)


def _dec_order(buf: bytes | memoryview) -> tuple[int, Result]:
    v = list(_ORDER_HEAD.unpack_from(buf))
    v[4] = v[4].decode()
    view = _new(OrderView, v[2:19])
    n = v[19]
    if not n:
        return v[1], _new(OrderResult, (view, ()))
    off = _ORDER_HEAD.size
    if len(buf) < off + n * _FILL.size:
        raise WireError(f"order answer announces {n} fills but holds {len(buf) - off} bytes of them")
    fills = tuple([_new(Fill, f) for f in _FILL.iter_unpack(buf[off : off + n * _FILL.size])])
    return v[1], _new(OrderResult, (view, fills))


def _dec_orders(buf: bytes | memoryview) -> tuple[int, Result]:
    _, rid, n = _ORDERS_HEAD.unpack_from(buf)
    off = _ORDERS_HEAD.size
    if len(buf) < off + n * _VIEW_SIZE:
        raise WireError(f"orders answer announces {n} orders but holds {len(buf) - off} bytes of them")
    views = tuple([_view(v) for v in _VIEW_S.iter_unpack(buf[off : off + n * _VIEW_SIZE])])
    return rid, OrdersResult(views)


def _dec_rejected(buf: bytes | memoryview) -> tuple[int, Result]:
    _, rid, code, n = _REJECTED.unpack_from(buf)
    off = _REJECTED.size
    return rid, Rejected(code, bytes(buf[off : off + n]).decode(errors="replace"))


def _dec_depth(buf: bytes | memoryview) -> tuple[int, Result]:
    _, rid, symbol_id, last_update_id, nb, na = _DEPTH_HEAD.unpack_from(buf)
    vals = struct.unpack_from(f"<{2 * (nb + na)}q", buf, _DEPTH_HEAD.size)
    split = 2 * nb
    bids = tuple(zip(vals[0:split:2], vals[1:split:2], strict=True))
    asks = tuple(zip(vals[split::2], vals[split + 1 :: 2], strict=True))
    return rid, DepthView(symbol_id, last_update_id, bids, asks)


def _dec_book_ticker(buf: bytes | memoryview) -> tuple[int, Result]:
    v = _BOOK_TICKER.unpack_from(buf)
    return v[1], BookTickerView(v[2], v[3], v[4], v[5], v[6])


def _dec_pong(buf: bytes | memoryview) -> tuple[int, Result]:
    v = _PONG.unpack_from(buf)
    return v[1], Pong(v[2])  # type: ignore[return-value]


def _dec_results(buf: bytes | memoryview) -> tuple[int, Result]:
    _, rid, n = _RESULTS_HEAD.unpack_from(buf)
    off = _RESULTS_HEAD.size
    order_unpack = _ORDER_BODY.unpack_from
    order_size = _ORDER_BODY.size
    fill_size = _FILL.size
    out: list[Result] = []
    append = out.append
    for _ in range(n):
        kind = buf[off]
        if kind == K_ORDER:
            v = list(order_unpack(buf, off))
            off += order_size
            v[3] = v[3].decode()
            view = _new(OrderView, v[1:18])
            nf = v[18]
            if nf:
                end = off + nf * fill_size
                if len(buf) < end:
                    raise WireError(f"Results item announces {nf} fills but the record ends first")
                fills = tuple([_new(Fill, f) for f in _FILL.iter_unpack(buf[off:end])])
                off = end
            else:
                fills = ()
            append(_new(OrderResult, (view, fills)))
        elif kind == K_REJECTED:
            _, code, m = _REJECTED_BODY.unpack_from(buf, off)
            off += _REJECTED_BODY.size
            append(Rejected(code, bytes(buf[off : off + m]).decode(errors="replace")))
            off += m
        else:
            raise WireError(f"unknown Results item kind {kind} at byte {off}")
    return rid, Results(tuple(out))  # type: ignore[return-value]


def results_items(buf: bytes) -> tuple[int, list[tuple]]:
    """``(request id, items)`` of a Results record as flat tuples, without the protocol objects.

    For renderers that turn each item straight into text (the REST batch answer). An order item is
    the 19 fields of a Results order body: ``(K_ORDER, symbol_id, order_id, client_order_id as bytes,
    user_id, side, order_type, tif, stp, price, orig_qty, executed_qty, cum_quote, orig_quote_qty,
    status, time, update_time, working_time, fill count)``, and when the fill count is not 0 a 20th
    field, its fills as ``((trade_id, price, qty), ...)``. A reject item is ``(K_REJECTED, code, message)``.
    ``decode_answer`` gives the same content as ``Results`` of ``OrderResult`` / ``Rejected``.
    """
    try:
        if buf[0] != K_RESULTS:
            raise WireError(f"answer record kind {buf[0]} is not a Results record ({K_RESULTS})")
        _, rid, n = _RESULTS_HEAD.unpack_from(buf)
        off = _RESULTS_HEAD.size
        order_unpack = _ORDER_BODY.unpack_from
        order_size = _ORDER_BODY.size
        fill_size = _FILL.size
        items: list[tuple] = []
        append = items.append
        for _ in range(n):
            kind = buf[off]
            if kind == K_ORDER:
                v = order_unpack(buf, off)
                off += order_size
                nf = v[18]
                if nf:
                    end = off + nf * fill_size
                    if len(buf) < end:
                        raise WireError(f"Results item announces {nf} fills but the record ends first")
                    v = (*v, tuple(_FILL.iter_unpack(buf[off:end])))
                    off = end
                append(v)
            elif kind == K_REJECTED:
                _, code, m = _REJECTED_BODY.unpack_from(buf, off)
                off += _REJECTED_BODY.size
                if len(buf) < off + m:
                    raise WireError(f"Results item announces a {m}-byte message but the record ends first")
                append((K_REJECTED, code, bytes(buf[off : off + m]).decode(errors="replace")))
                off += m
            else:
                raise WireError(f"unknown Results item kind {kind} at byte {off}")
    except (struct.error, IndexError) as exc:
        raise WireError(f"malformed Results record of {len(buf)} bytes: {exc}") from None
    return rid, items


def _bad_kind(buf: bytes | memoryview) -> tuple[int, Result]:
    raise WireError(f"unknown answer record kind {buf[0]}")


_ANS_DECODERS: tuple[Callable[[bytes | memoryview], tuple[int, Result]], ...] = (
    _bad_kind,
    _dec_order,
    _dec_orders,
    _dec_rejected,
    _dec_depth,
    _dec_book_ticker,
    _dec_pong,
    _dec_results,
) + (_bad_kind,) * 248


def decode_answer(buf: bytes | memoryview) -> tuple[int, Result]:
    """``(request id, result)`` of a whole (unfragmented or reassembled) answer record."""
    try:
        return _ANS_DECODERS[buf[0]](buf)
    except (struct.error, UnicodeDecodeError, IndexError) as exc:
        raise WireError(f"malformed answer record of {len(buf)} bytes: {exc}") from None


def fragment_answer(record: bytes, max_record: int) -> list[bytes]:
    """``record`` as one or more ring records of at most ``max_record`` bytes each."""
    if len(record) <= max_record:
        return [record]
    room = max_record - ANSWER_HEAD_SIZE
    if room <= 0:
        raise WireError(f"max_record {max_record} leaves no room for an answer fragment")
    kind = record[0]
    rid_bytes = record[1:ANSWER_HEAD_SIZE]
    body = memoryview(record)[ANSWER_HEAD_SIZE:]
    more = bytes([kind | MORE]) + rid_bytes
    last = bytes([kind | LAST]) + rid_bytes
    parts = [more + body[i : i + room] for i in range(0, len(body), room)]
    parts[-1] = last + parts[-1][ANSWER_HEAD_SIZE:]
    return parts


class AnswerAssembler:
    """Joins answer fragments written back to back by ``fragment_answer``.

    ``feed`` returns the whole record once its last fragment has arrived, the
    record itself when it was never fragmented, and None while fragments of it
    are still missing. Fragments of several answers (from several rings) may
    interleave; they are kept apart by request id.
    """

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: dict[int, list[bytes]] = {}

    def __len__(self) -> int:
        return len(self._parts)

    def feed(self, buf: bytes | memoryview) -> bytes | memoryview | None:
        flags = buf[0] & (MORE | LAST)
        if not flags:
            return buf
        rid = int.from_bytes(bytes(buf[1:ANSWER_HEAD_SIZE]), "little")
        parts = self._parts.get(rid)
        if parts is None:
            parts = self._parts[rid] = [bytes([buf[0] & _KIND_MASK]) + bytes(buf[1:ANSWER_HEAD_SIZE])]
        parts.append(bytes(buf[ANSWER_HEAD_SIZE:]))
        if flags & LAST:
            del self._parts[rid]
            return b"".join(parts)
        return None

    def discard(self, rid: int) -> None:
        """Forget the fragments of ``rid`` (its writer died mid-answer)."""
        self._parts.pop(rid, None)
