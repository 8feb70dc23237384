"""Journal encoding of engine events, and the commands that replay them.

An encoded batch is the concatenation of its events; each event is one type
byte, a fixed little-endian struct, then its variable parts:

    type  fields (after the common head  type:u8  seq:i64  ts:i64  symbol_id:u32)
    1     OrderAccepted  order_id user_id:i64  side order_type tif stp:u8  price qty quote_qty:i64  client_order_id
    2     TradeEvent     trade_id price qty maker_order_id taker_order_id maker_user_id taker_user_id:i64  taker_side:u8
    3     OrderCanceled  order_id user_id remaining_qty:i64
    4     OrderAmended   order_id user_id new_qty:i64
    5     OrderExpired   order_id user_id remaining_qty:i64  reason:u8
    6     OrderRejected  user_id:i64  code:i32  client_order_id  msg
    7     DepthUpdate    depth_seq:i64  n_bids n_asks:u32  then n_bids + n_asks (price qty:i64) pairs

Strings are a u16 byte length and UTF-8 bytes; seq is signed only to take
the struct module's fast path (it never goes negative). Batches concatenate, so a
decoder reads to the end. Encoding is a pure function of the events, so the
same events always give the same bytes. Nothing here does I/O.

The engine writes each event's bytes as it happens with the bound packers
below (one C call per event: far cheaper than building a NamedTuple and
encoding it later), so its journal batch is one ``b"".join``; the protocol
objects are decoded only when someone asks for them.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from shards.protocol import (
    AmendOrder,
    CancelOrder,
    DepthUpdate,
    Event,
    NewOrder,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderRejected,
    TradeEvent,
)

_HEAD = "<BqqI"
# The layouts, public for readers of the journal bytes (persist/rows.py reads fields straight from them).
ACCEPTED_STRUCT = struct.Struct(_HEAD + "qqBBBBqqqH")
TRADE_STRUCT = struct.Struct(_HEAD + "qqqqqqqB")
CANCELED_STRUCT = struct.Struct(_HEAD + "qqq")
AMENDED_STRUCT = struct.Struct(_HEAD + "qqq")
EXPIRED_STRUCT = struct.Struct(_HEAD + "qqqB")
REJECTED_STRUCT = struct.Struct(_HEAD + "qiH")
DEPTH_STRUCT = struct.Struct(_HEAD + "qII")
DEPTH_ONE_STRUCT = struct.Struct(_HEAD + "qIIqq")
_new = tuple.__new__  # builds a NamedTuple from a tuple without running its Python __new__
_U16 = struct.Struct("<H")

# Bound packers: the engine writes each event's bytes as it happens (type code first, then the event's fields,
# strings replaced by their byte length and followed by the bytes).
pack_accepted = ACCEPTED_STRUCT.pack
pack_trade = TRADE_STRUCT.pack
pack_canceled = CANCELED_STRUCT.pack
pack_amended = AMENDED_STRUCT.pack
pack_expired = EXPIRED_STRUCT.pack
pack_depth_one = DEPTH_ONE_STRUCT.pack

T_ACCEPTED, T_TRADE, T_CANCELED, T_AMENDED, T_EXPIRED, T_REJECTED, T_DEPTH = range(1, 8)


class EventCodecError(ValueError):
    """Bytes that are not a valid event batch (code -1100: malformed)."""

    code = -1100


def _text(value: str, what: str) -> bytes:
    raw = value.encode()
    if len(raw) > 0xFFFF:
        raise EventCodecError(f"{what} of {len(raw)} bytes is longer than 65535")
    return raw


def encode_events(events: Sequence[Event]) -> bytes:
    """The journal bytes of ``events``, in order (the engine's ``take_encoded`` gives the same bytes directly)."""
    parts: list[bytes] = []
    add = parts.append
    for e in events:
        if isinstance(e, DepthUpdate):
            add(pack_depth(e.seq, e.ts, e.symbol_id, e.depth_seq, e.bids, e.asks))
        elif isinstance(e, TradeEvent):
            add(pack_trade(T_TRADE, *e))
        elif isinstance(e, OrderAccepted):
            coid = _text(e.client_order_id, "client_order_id")
            add(pack_accepted(T_ACCEPTED, *e[:5], *e[6:], len(coid)) + coid)
        elif isinstance(e, OrderCanceled):
            add(pack_canceled(T_CANCELED, *e))
        elif isinstance(e, OrderExpired):
            add(pack_expired(T_EXPIRED, *e))
        elif isinstance(e, OrderAmended):
            add(pack_amended(T_AMENDED, *e))
        elif isinstance(e, OrderRejected):
            add(pack_rejected(*e))
        else:
            raise EventCodecError(f"cannot encode {type(e).__name__}: not an engine event")
    return b"".join(parts)


def pack_depth(seq: int, ts: int, symbol_id: int, depth_seq: int, bids: Sequence, asks: Sequence) -> bytes:
    """One DepthUpdate's bytes."""
    if len(bids) + len(asks) == 1:
        price, qty = bids[0] if bids else asks[0]
        return pack_depth_one(T_DEPTH, seq, ts, symbol_id, depth_seq, len(bids), len(asks), price, qty)
    flat = [x for level in bids for x in level] + [x for level in asks for x in level]
    return DEPTH_STRUCT.pack(T_DEPTH, seq, ts, symbol_id, depth_seq, len(bids), len(asks)) + struct.pack(
        f"<{len(flat)}q", *flat
    )


def pack_rejected(seq: int, ts: int, symbol_id: int, user_id: int, coid: str, code: int, msg: str) -> bytes:
    """One OrderRejected's bytes."""
    raw_coid = _text(coid, "client_order_id")
    raw_msg = _text(msg, "msg")
    head = REJECTED_STRUCT.pack(T_REJECTED, seq, ts, symbol_id, user_id, code, len(raw_coid))
    return head + raw_coid + _U16.pack(len(raw_msg)) + raw_msg


_PAIRS: dict[int, struct.Struct] = {}  # number of levels -> struct of their (price, qty) pairs


def _pairs(levels: int) -> struct.Struct:
    found = _PAIRS.get(levels)
    if found is None:
        found = _PAIRS[levels] = struct.Struct(f"<{2 * levels}q")
    return found


def decode_events(data: bytes) -> list[Event]:
    """The events of one or more concatenated encoded batches.

    Hot in wsfeed, which decodes every event of every shard: the types are
    tested in the order of their frequency in a live stream, and a depth
    update of one level (most of them) is read with one struct call.
    """
    out: list[Event] = []
    add = out.append
    pos = 0
    end = len(data)
    try:
        while pos < end:
            kind = data[pos]
            if kind == T_ACCEPTED:
                f = ACCEPTED_STRUCT.unpack_from(data, pos)
                pos += ACCEPTED_STRUCT.size
                coid = _take_text(data, pos, f[13], end)
                pos += f[13]
                add(_new(OrderAccepted, (f[1], f[2], f[3], f[4], f[5], coid, *f[6:13])))
            elif kind == T_DEPTH:
                if pos + DEPTH_ONE_STRUCT.size <= end:
                    f = DEPTH_ONE_STRUCT.unpack_from(data, pos)
                    if f[5] + f[6] == 1:
                        pos += DEPTH_ONE_STRUCT.size
                        pair = ((f[7], f[8]),)
                        bids, asks = (pair, ()) if f[5] else ((), pair)
                        add(_new(DepthUpdate, (f[1], f[2], f[3], f[4], bids, asks)))
                        continue
                _, seq, ts, symbol_id, depth_seq, n_bids, n_asks = DEPTH_STRUCT.unpack_from(data, pos)
                pos += DEPTH_STRUCT.size
                levels = n_bids + n_asks
                if pos + 16 * levels > end:
                    raise EventCodecError(f"depth update at byte {pos} runs past the end ({end})")
                flat = _pairs(levels).unpack_from(data, pos)
                pos += 16 * levels
                pairs = tuple(zip(flat[0::2], flat[1::2], strict=True))
                add(_new(DepthUpdate, (seq, ts, symbol_id, depth_seq, pairs[:n_bids], pairs[n_bids:])))
            elif kind == T_TRADE:
                add(_new(TradeEvent, TRADE_STRUCT.unpack_from(data, pos)[1:]))
                pos += TRADE_STRUCT.size
            elif kind == T_EXPIRED:
                add(_new(OrderExpired, EXPIRED_STRUCT.unpack_from(data, pos)[1:]))
                pos += EXPIRED_STRUCT.size
            elif kind == T_CANCELED:
                add(_new(OrderCanceled, CANCELED_STRUCT.unpack_from(data, pos)[1:]))
                pos += CANCELED_STRUCT.size
            elif kind == T_AMENDED:
                add(_new(OrderAmended, AMENDED_STRUCT.unpack_from(data, pos)[1:]))
                pos += AMENDED_STRUCT.size
            elif kind == T_REJECTED:
                _, seq, ts, symbol_id, user_id, code, coid_len = REJECTED_STRUCT.unpack_from(data, pos)
                pos += REJECTED_STRUCT.size
                coid = _take_text(data, pos, coid_len, end)
                pos += coid_len
                (msg_len,) = _U16.unpack_from(data, pos)
                pos += 2
                msg = _take_text(data, pos, msg_len, end)
                pos += msg_len
                add(OrderRejected(seq, ts, symbol_id, user_id, coid, code, msg))
            else:
                raise EventCodecError(f"unknown event type {kind} at byte {pos}")
    except struct.error as exc:
        raise EventCodecError(f"truncated event at byte {pos} of {end}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise EventCodecError(f"a string at byte {pos} is not UTF-8: {exc}") from None
    return out


def _take_text(data: bytes, pos: int, size: int, end: int) -> str:
    if pos + size > end:
        raise EventCodecError(f"string of {size} bytes at byte {pos} runs past the end ({end})")
    return data[pos : pos + size].decode()


def command_for_replay(event: Event) -> NewOrder | CancelOrder | AmendOrder | None:
    """The command that re-creates ``event`` (and whatever followed from it), or None.

    OrderAccepted -> NewOrder (trades, expiries and depth follow from it);
    OrderCanceled -> CancelOrder by id; OrderAmended -> AmendOrder. A run of
    OrderCanceled events of one user and symbol with nothing between them came
    from one CancelAll: ``Engine.replay`` recognises that case.
    """
    if isinstance(event, OrderAccepted):
        e = event
        return NewOrder(
            e.symbol_id, e.user_id, e.client_order_id, e.side, e.order_type, e.tif, e.price, e.qty, e.quote_qty,
            e.stp, e.ts,
        )  # fmt: skip
    if isinstance(event, OrderCanceled):
        return CancelOrder(event.symbol_id, event.user_id, event.order_id, "", event.ts)
    if isinstance(event, OrderAmended):
        return AmendOrder(event.symbol_id, event.user_id, event.order_id, "", event.new_qty, event.ts)
    return None
