"""The per-order work of ``POST /api/v3/batchOrders``: validate up to 100 orders, place them, write the answer.

``place(engine, catalog, orders, user_id)`` does what a loop of single orders
would do, with the same checks, messages and views, but flat: a batch of 100
orders spends its time here, not in HTTP, so every step per order counts.

- Validation: an order with exactly the six fields of a plain LIMIT order
  (symbol, side, type, timeInForce, quantity, price), whose every value is a
  string this worker has already seen valid (the symbol's name, a side, a
  time in force, and a price and quantity found in the symbol's memo tables of
  validated texts, ``SymbolRules.ticks_of`` / ``lots_of``), becomes its
  ``NewOrder`` through dict lookups alone. Any other order, or any lookup that
  misses, goes through ``inputs.check_allowed`` and ``params.new_order`` as a
  single order does, which then names what is wrong with it. Both ways give the
  same command: the lookups only hit for values ``params.new_order`` accepted
  and converted to the same integers.
- The answer: each ``OrderResult`` of a FULL order becomes its dict in one
  expression (``views.full`` unrolled); other response types, rejects and
  engine failures use ``views`` and ``errors`` as before. The array is
  serialised with one ``orjson.dumps``, so the bytes are those of
  ``orjson.dumps([views.new_order(...) or {"code", "msg"}, ...])``.

This module does no I/O of its own (the engine seam does) and never logs.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import orjson

from ingress import params as p
from ingress import views
from ingress.dispatch import EngineBusy, EngineClient
from ingress.errors import ApiError, Malformed, error_of_exception, rejected_error
from ingress.inputs import check_allowed
from ingress.resources.base import unexpected
from ingress.symbols import Catalog, SymbolRules
from shards.protocol import NewOrder, OrderResult, Rejected

_PLAIN_LIMIT = itemgetter("symbol", "side", "type", "timeInForce", "quantity", "price")
_PLAIN_FIELDS = 6
_new = tuple.__new__  # builds a NamedTuple from a tuple without its Python-level __new__
_LIMIT = p.LIMIT_TYPE
_EXPIRE_MAKER = p.EXPIRE_MAKER
_SIDES = p.SIDES
_TIFS = p.TIFS
_STATUS = views.STATUS_NAMES
_TIF = views.TIF_NAMES
_TYPE = views.TYPE_NAMES
_SIDE = views.SIDE_NAMES
_STP = views.STP_NAMES


def _error(ex: ApiError) -> dict[str, Any]:
    return {"code": ex.code, "msg": ex.msg}


def validate(
    catalog: Catalog, orders: Sequence[Any], user_id: int
) -> tuple[list[Any], list[tuple[int, NewOrder]], list[tuple[int, SymbolRules, str]]]:
    """(answers with each invalid order's error filled in, engine items, (position, rules, respType) per item)."""
    out: list[Any] = [None] * len(orders)
    items: list[tuple[int, NewOrder]] = []
    sent: list[tuple[int, SymbolRules, str]] = []
    by_name = catalog.by_name
    coids = p.CLIENT_ORDER_IDS.ids
    allowed = p.ORDER_PARAMS
    for i, item in enumerate(orders):
        if type(item) is dict and len(item) == _PLAIN_FIELDS:
            try:
                symbol, side, order_type, tif, qty, price = _PLAIN_LIMIT(item)
                if order_type == "LIMIT":
                    rules = by_name[symbol]
                    side_code = _SIDES[side]
                    tif_code = _TIFS[tif]
                    ticks = rules.ticks_of[price]
                    lots = rules.lots_of[qty]
                    fields = (rules.symbol_id, user_id, next(coids), side_code, _LIMIT, tif_code, ticks, lots, 0,
                              _EXPIRE_MAKER, 0)  # fmt: skip
                    cmd = _new(NewOrder, fields)
                    items.append((rules.shard, cmd))
                    sent.append((i, rules, "FULL"))
                    continue
            except (KeyError, TypeError):  # a name or value not plainly valid (or unhashable): the full checks
                pass
        try:
            if type(item) is not dict:
                raise Malformed(f"orders[{i}] must be an object, got {type(item).__name__}")
            if not allowed.issuperset(item):
                check_allowed(item, allowed)
            rules, cmd, resp_type = p.new_order(catalog, item, user_id)
        except ApiError as ex:
            out[i] = _error(ex)
            continue
        items.append((rules.shard, cmd))
        sent.append((i, rules, resp_type))
    return out, items, sent


def fill_answers(out: list[Any], sent: Sequence[tuple[int, SymbolRules, str]], results: Sequence[object]) -> bool:
    """Put each placed order's view or error at its position in ``out``; True when one was EngineBusy."""
    busy = False
    for (i, rules, resp_type), res in zip(sent, results, strict=True):
        if type(res) is OrderResult:
            o, fills = res
            if resp_type != "FULL":
                out[i] = views.new_order(rules, o, fills, resp_type)
                continue
            (_, order_id, coid, _, side, order_type, tif, stp, price, orig_qty, executed, cum_quote, _, status, time, _,
             working) = o  # fmt: skip
            qty_texts = rules.qty_texts  # the memo tables of rules.price / rules.qty, read inline
            if fills:
                asset = rules.quote_asset
                price_of = rules.price
                qty_of = rules.qty
                fill_list = [
                    {
                        "price": price_of(f[1]),
                        "qty": qty_of(f[2]),
                        "commission": "0",
                        "commissionAsset": asset,
                        "tradeId": f[0],
                    }
                    for f in fills
                ]
            else:
                fill_list = []
            out[i] = {
                "symbol": rules.symbol,
                "orderId": order_id,
                "orderListId": -1,
                "clientOrderId": coid,
                "transactTime": time,
                "price": rules.price_texts.get(price) or rules.price(price),
                "origQty": qty_texts.get(orig_qty) or rules.qty(orig_qty),
                "executedQty": qty_texts.get(executed) or rules.qty(executed),
                "cummulativeQuoteQty": rules.quote(cum_quote) if cum_quote else rules.zero_quote,
                "status": _STATUS[status],
                "timeInForce": _TIF[tif],
                "type": _TYPE[order_type],
                "side": _SIDE[side],
                "workingTime": working,
                "selfTradePreventionMode": _STP[stp],
                "fills": fill_list,
            }
        elif type(res) is Rejected:
            out[i] = _error(rejected_error(res))
        elif isinstance(res, Exception):
            busy = busy or type(res) is EngineBusy
            out[i] = _error(error_of_exception(res))
        else:
            out[i] = _error(unexpected(res))
    return busy


async def place(engine: EngineClient, catalog: Catalog, orders: Sequence[Any], user_id: int) -> tuple[bytes, bool]:
    """(the JSON array answering ``orders``, True when some order met a full ring: answer ``Retry-After``)."""
    out, items, sent = validate(catalog, orders, user_id)
    busy = False
    if items:
        results = await engine.call_batch(items)
        busy = fill_answers(out, sent, results)
    return orjson.dumps(out), busy
