"""Private order updates: the running state kept per open order, and the ``executionReport`` texts.

``wsfeed.market`` follows every order of the shard streams (not only those of
connected users: a user who connects later still gets correct cumulative
figures) from ``OrderAccepted`` until it leaves the book, in a dict per symbol
(order id -> state). The state is a short tuple (``U RAW ORIG QUOTE_QTY EXEC
CUM``), replaced when it changes: a tuple of numbers and bytes is untracked by
the cyclic garbage collector after its first young collection, so the open
orders cost the collector nothing however many there are. It holds the owner,
the order's ``OrderAccepted`` bytes as the journal has them (``shards.events``;
side, type, time in force, price, client order id and creation time are read
from them only when a report is made), the quantity (after amends), the quote
quantity of a MARKET buy by amount, the executed lots and the cumulative quote.
Most orders never get a report (their owner is not connected), so nothing is
unpacked or decoded for them.

``report`` makes the JSON text of Binance's ``executionReport`` (API.md fields
``e E s c S o f q p x X r i l z L n N T t w m O Z Y``). Execution types: ``NEW``
(accepted), ``TRADE`` (one report for the taker, ``m`` false, and one for the
maker, ``m`` true), ``CANCELED``, ``REPLACED`` (amend keepPriority: ``q`` is the
new quantity), ``EXPIRED``, and ``TRADE_PREVENTION`` with status
``EXPIRED_IN_MATCH`` (self-trade prevention). An order rejected before
acceptance never existed on the book and gets no report (its REST answer says
why). Commission is ``"0"`` with ``N`` null (no fees yet).

A MARKET buy by quote amount has no quantity to compare with: its last trade of
a command is ``FILLED`` unless an ``OrderExpired`` of it follows in the same
command (the engine's rule), which ``last_fill_of_quote_order`` sees by
looking ahead in the entry's bytes. Nothing here does I/O.
"""

from __future__ import annotations

import struct

import orjson

from ingress.symbols import SymbolRules
from shards.events import (
    ACCEPTED_STRUCT,
    CANCELED_STRUCT,
    DEPTH_STRUCT,
    EXPIRED_STRUCT,
    T_ACCEPTED,
    T_EXPIRED,
    T_TRADE,
    TRADE_STRUCT,
    pack_accepted,
)
from shards.protocol import ExpireReason, OrderType, Side, TimeInForce

SIDE = {int(v): v.name for v in Side}
TYPE = {int(v): v.name for v in OrderType}
TIF = {int(v): v.name for v in TimeInForce}
STP_REASONS = frozenset((int(ExpireReason.STP_TAKER), int(ExpireReason.STP_MAKER)))
_MARKET = int(OrderType.MARKET)

# order state: (user_id, OrderAccepted bytes, orig_qty (after amends), quote_qty, executed lots, cumulative quote)
U, RAW, ORIG, QUOTE_QTY, EXEC, CUM = range(6)

_ACCEPTED_SIZE = ACCEPTED_STRUCT.size
_TRADE_SIZE = TRADE_STRUCT.size
_EXPIRED_SIZE = EXPIRED_STRUCT.size
_TAKER = struct.Struct("<17xI32xq")  # symbol_id, taker_order_id of a TradeEvent
_EXPIRED_OF = struct.Struct("<17xIq")  # symbol_id, order_id of an OrderExpired
assert _TAKER.size == 61 and _EXPIRED_OF.size == 29 and DEPTH_STRUCT.size == 37 and CANCELED_STRUCT.size == 45


def order_from_book(symbol_id: int, order_id: int, user_id: int, coid: str, side: int, order_type: int, tif: int,
                    price: int, orig: int, executed: int, cum_quote: int, created: int) -> tuple:  # fmt: skip
    """The state of an order restored from a shard snapshot (its bytes rebuilt as the journal would have them)."""
    raw_coid = coid.encode()
    raw = pack_accepted(
        T_ACCEPTED, 0, created, symbol_id, order_id, user_id, side, order_type, tif, 0, price, orig, 0, len(raw_coid)
    )
    return (user_id, raw + raw_coid, orig, 0, executed, cum_quote)


def accepted_ts(order: tuple) -> int:
    """When the order was accepted (ms): the ``T`` of its ``NEW`` report."""
    return ACCEPTED_STRUCT.unpack_from(order[RAW], 0)[2]


def report(
    rules: SymbolRules, order_id: int, order: tuple, now_ms: int, ts: int, x: str, status: str,
    last_qty: int = 0, last_price: int = 0, trade_id: int = -1, is_maker: bool = False,
) -> bytes:  # fmt: skip
    """The ``executionReport`` JSON text of one change of ``order`` (its state after the change)."""
    raw = order[RAW]
    f = ACCEPTED_STRUCT.unpack_from(raw, 0)
    order_type = f[7]
    return orjson.dumps(
        {
            "e": "executionReport",
            "E": now_ms,
            "s": rules.symbol,
            "c": raw[_ACCEPTED_SIZE:].decode(),
            "S": SIDE.get(f[6], "?"),
            "o": TYPE.get(order_type, "?"),
            "f": TIF.get(f[8], "?"),
            "q": rules.qty(order[ORIG]),
            "p": rules.price(f[10]),
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
            "w": status in ("NEW", "PARTIALLY_FILLED") and order_type != _MARKET,
            "m": is_maker,
            "O": f[2],
            "Z": rules.quote(order[CUM]),
            "Y": rules.quote(last_qty * last_price),
        }
    )


def last_fill_of_quote_order(data: bytes, pos: int, symbol_id: int, order_id: int) -> bool:
    """True when no event from byte ``pos`` of ``data`` on, in the same command, trades or expires the by-quote
    order ``order_id`` (the events of one command follow each other: a trade or expiry of another order may come
    between, anything else ends the command)."""
    end = len(data)
    while pos < end:
        kind = data[pos]
        if kind == T_TRADE:
            sid, taker = _TAKER.unpack_from(data, pos)
            if sid == symbol_id and taker == order_id:
                return False
            pos += _TRADE_SIZE
        elif kind == T_EXPIRED:
            sid, oid = _EXPIRED_OF.unpack_from(data, pos)
            if sid == symbol_id and oid == order_id:
                return False
            pos += _EXPIRED_SIZE
        else:
            return True
    return True
