"""The per-order work of ``POST /api/v3/batchOrders``: validate up to 100 orders, place them, write the answer.

``place(engine, catalog, orders, user_id)`` does what a loop of single orders
would do, with the same checks, messages and views, but flat: a batch of 100
orders spends its time here, not in HTTP, so every step per order counts.

- Validation: an order with exactly the six fields of a plain LIMIT order
  (symbol, side, type, timeInForce, quantity, price), whose every value is a
  string this worker has already seen valid (the symbol's name, a side, a
  time in force, and a price and quantity found in the symbol's memo tables of
  validated texts, ``SymbolRules.ticks_of`` / ``lots_of``), becomes its wire
  body (``wire.pack_new_order``) through dict lookups alone, with a generated
  client order id. Any other order, or any lookup that misses, goes through
  ``inputs.check_allowed`` and ``params.new_order`` as a single order does,
  which then names what is wrong with it. Both ways give the same command:
  the lookups only hit for values ``params.new_order`` accepted and converted
  to the same integers.
- Placing: each shard's bodies go to ``EngineClient.call_orders``, which
  answers each NewOrders record it sent with the shard's raw Results record.
- The answer: each Results item (``wire.results_items``: flat tuples, no
  protocol objects) of a FULL order becomes its JSON text in one f-string,
  fields in the order and with the texts of ``views.full``; other response
  types, rejects and engine failures use ``views`` and ``errors`` and
  ``orjson`` as before. The array is the texts joined, so the bytes are those
  of ``orjson.dumps([views.new_order(...) or {"code", "msg"}, ...])``
  (``tests/ingress/test_batch.py`` compares them). JSON escaping: the symbol
  and quote asset are written by ``orjson`` once per catalog; a client order
  id that is not purely alphanumeric goes through ``orjson``; every other
  string written here is a decimal or an enum name, which JSON never escapes.

The C core (``ingress._batchcore``, optional; this module stays the
reference): where it is built, and unless ``INGRESS_BATCH_PURE_PYTHON=1`` (or
``select_core("python")``), ``validate`` hands the plain LIMIT orders to
``_batchcore.plan``, ``render`` each Results record to ``_batchcore.render``
and ``answer_bytes`` the texts to ``_batchcore.join``. The core checks a
price or quantity text itself, as ``params.price_ticks`` / ``qty_lots`` do
(grid and range of the symbol, from ``_core_tables``, gathered once per
catalog), instead of looking it up in the memo tables; it draws generated
client order ids from the same counter (``_coids``). Each gives the same
bytes as the Python code here and leaves to it, untouched, every order or
item it does not write: an order that is not plainly valid, a reject, an ACK
or RESULT answer, an odd value, a malformed record
(``tests/ingress/test_batchcore.py`` runs random batches through both paths
and compares them). One difference in state, none in the bytes: the core does
not fill the memo tables. (A ``str`` subclass value, which no JSON or form
parser gives, is left to the Python path, where the lookups above take it
when its text is remembered and ``params.new_order`` refuses it when not.)

Straight from the body: ``scan_body`` hands a JSON body to ``_batchcore.scan``, which takes it only when
it is ``{"orders": [...]}`` of 1 to 100 orders that ``_batchcore.plan`` would take every one of (plain
strings, no escapes, no other member or field: see there), and otherwise declines it whole, before
anything happened; ``place_scanned`` then does ``place``'s work from those records (``_batchcore.emit``
writes the bodies ``plan`` would, drawing the client order ids in batch order), without the parsed dicts.
``resources/orders.py`` uses it when nothing else needs the parsed body; a declined body is parsed and
goes to ``place``, so every error stays the one named there.

The single order (``POST /api/v3/order``, ``ingress/fastpath.py``): ``scan_query`` hands the raw query string to
``_batchcore.scan_query``, which takes it only when ``params.new_order`` would accept it as a plain LIMIT order
without an error and ``inputs`` would find nothing to refuse (see there), and returns its wire body and what the
signature check needs; ``order_body`` adds the user id and the generated client order id (drawn after the checks,
as ``params.new_order`` draws it); ``render_order`` writes a FULL answer from the shard's raw answer record
(``_batchcore.render_order``, the bytes of ``full_text``). Each gives None where the C core is not selected.

This module does no I/O of its own (the engine seam does) and never logs.
"""

from __future__ import annotations

import importlib
import itertools
import os
import re
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import orjson

from ingress import params as p
from ingress import views
from ingress.dispatch import EngineBusy, EngineClient, EngineTimeout
from ingress.errors import ApiError, Malformed, error_of_exception, rejected_error
from ingress.inputs import check_allowed
from ingress.resources.base import unexpected
from ingress.symbols import Catalog, SymbolRules, remember
from shards import wire
from shards.protocol import Fill, OrderView, Rejected

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
_K_ORDER = wire.K_ORDER
_pack = wire.pack_new_order


def _bind_core() -> Any:
    """``ingress._batchcore`` bound to this install's wire layouts, or None (not built, or a layout it does not
    write: the Python path then does everything)."""
    try:
        _batchcore: Any = importlib.import_module("ingress._batchcore")
    except ImportError:
        return None
    layouts = {
        "new_order_body": wire._NEW_ORDER_BODY.format,
        "order_body": wire._ORDER_BODY.format,
        "results_head": wire._RESULTS_HEAD.format,
        "rejected_body": wire._REJECTED_BODY.format,
        "fill": wire._FILL.format,
        "K_RESULTS": wire.K_RESULTS,
        "K_ORDER": wire.K_ORDER,
        "K_REJECTED": wire.K_REJECTED,
        "MAX_CLIENT_ORDER_ID": wire.MAX_CLIENT_ORDER_ID,
        "LIMIT": _LIMIT,
        "EXPIRE_MAKER": _EXPIRE_MAKER,
    }
    try:
        _batchcore.bind(layouts, (_STATUS, _TIF, _TYPE, _SIDE, _STP))
    except (TypeError, ValueError):
        return None
    return _batchcore


_CORE_MODULE = _bind_core()
CORES = ("c", "python") if _CORE_MODULE is not None else ("python",)  # the cores this install has
_core: Any = None  # the C core while it is selected


def select_core(name: str) -> None:
    """Run ``validate`` and ``render`` with core ``name`` ("c" or "python") from now on."""
    global _core
    if name not in CORES:
        raise ValueError(f"batch core {name!r} is not one of {CORES} (the C core needs a C compiler at install)")
    _core = _CORE_MODULE if name == "c" else None


def core_name() -> str:
    """The core ``validate`` and ``render`` run with now: "c" or "python"."""
    return "c" if _core is not None else "python"


# INGRESS_BATCH_PURE_PYTHON=1 runs the Python path (named like RINGBUF_PURE_PYTHON: the benchmarks pass it on to the
# exchange, whose EXCHANGE_* variables they reset)
select_core("python" if os.environ.get("INGRESS_BATCH_PURE_PYTHON", "") not in ("", "0") else CORES[0])


def _core_tables(catalog: Catalog) -> tuple[Any, dict[int, tuple]]:
    """The C core's tables of ``catalog`` (for ``_batchcore.plan``/``scan``/``scan_query``: name -> (symbol_id,
    shard, price decimals, tick units, min price, max price, qty decimals, step units, min qty, max qty), the sides,
    times in force and STP modes; for ``_batchcore.render``: symbol_id -> (head, asset JSON text, price decimals,
    tick units, qty decimals, step units)), gathered once and kept on the catalog."""
    tables = catalog.core_tables
    if tables is None:
        plain = {
            name: (r.symbol_id, r.shard, r.price_decimals, r.tick_units, r.min_price, r.max_price,
                   r.qty_decimals, r.step_units, r.min_qty, r.max_qty)
            for name, r in catalog.by_name.items()
        }  # fmt: skip
        texts = {
            symbol_id: (head, asset, r.price_decimals, r.tick_units, r.qty_decimals, r.step_units)
            for symbol_id, (head, asset, _, r) in catalog.text_parts.items()
        }
        tables = catalog.core_tables = (_CORE_MODULE.tables(plain, _SIDES, _TIFS, p.STP_MODES), texts)
    return tables


class Plan:
    """A validated batch: the answer texts known so far, and what goes to each shard.

    ``out[i]``: the JSON text answering order i (its error when it failed validation, else None until
    ``render``); ``positions[s]`` / ``bodies[s]``: the positions and wire bodies of shard s's orders,
    in batch order; ``resp_types``: position -> newOrderRespType for the orders not answered FULL.
    """

    __slots__ = ("out", "positions", "bodies", "resp_types")

    def __init__(self, n: int, shards: int) -> None:
        self.out: list[str | None] = [None] * n
        self.positions: list[list[int]] = [[] for _ in range(shards)]
        self.bodies: list[list[bytes]] = [[] for _ in range(shards)]
        self.resp_types: dict[int, str] = {}


def _error(ex: ApiError) -> str:
    return orjson.dumps({"code": ex.code, "msg": ex.msg}).decode()


_COUNT = re.compile(r"count\(\d+\)")  # an itertools.count counting by 1 from an int
_coid_source: tuple[Any, Any, bytes | None] = (None, None, None)  # (ids_bytes, what the core draws from, prefix)


def _coids() -> tuple[Any, bytes | None]:
    """What the C core draws generated client order ids from: ``params.CLIENT_ORDER_IDS``' counter and prefix
    (``ids_bytes`` is ``map(b"<prefix>%x".__mod__, counter)``: the core writes the hex itself, from the same
    counter), or ``ids_bytes`` itself and None where it is not made so. Read afresh per batch: a fork reseeds."""
    global _coid_source
    ids = p.CLIENT_ORDER_IDS.ids_bytes
    if ids is not _coid_source[0]:
        source, prefix = ids, None
        try:
            reduced: Any = ids.__reduce__()  # (map, (b"<prefix>%x".__mod__, counter))
            func, counter = reduced[1]
            fmt = func.__self__
            if (
                func.__name__ == "__mod__"
                and type(fmt) is bytes
                and fmt.endswith(b"%x")
                and b"%" not in fmt[:-2]
                and type(counter) is itertools.count
                and _COUNT.fullmatch(repr(counter))
            ):
                source, prefix = counter, fmt[:-2]
        except (AttributeError, TypeError, ValueError):
            pass
        _coid_source = (ids, source, prefix)
    return _coid_source[1], _coid_source[2]


def validate(catalog: Catalog, orders: Sequence[Any], user_id: int) -> Plan:
    """Check every order as a single order would be checked; each valid one is packed for its shard."""
    n = len(orders)
    plan = Plan(n, catalog.shard_count)
    core = _core
    if core is None or type(orders) is not list:
        _validate_range(plan, catalog, orders, user_id, 0, n)
        return plan
    plain = _core_tables(catalog)[0]
    coids, prefix = _coids()
    i = 0
    while i < n:
        i = core.plan(orders, i, user_id, plain, coids, prefix, plan.positions, plan.bodies)
        if i < n:  # an order the C core does not take: this one in Python, then the core again
            _validate_range(plan, catalog, orders, user_id, i, i + 1)
            i += 1
    return plan


def _validate_range(plan: Plan, catalog: Catalog, orders: Sequence[Any], user_id: int, start: int, stop: int) -> None:
    """``validate`` of ``orders[start:stop]`` in Python (the reference)."""
    out = plan.out
    positions = plan.positions
    bodies = plan.bodies
    by_name = catalog.by_name
    coids = p.CLIENT_ORDER_IDS.ids_bytes
    allowed = p.ORDER_PARAMS
    for i in range(start, stop):
        item = orders[i]
        if type(item) is dict and len(item) == _PLAIN_FIELDS:
            try:
                symbol, side, order_type, tif, qty, price = _PLAIN_LIMIT(item)
                if order_type == "LIMIT":
                    rules = by_name[symbol]
                    side_code = _SIDES[side]
                    tif_code = _TIFS[tif]
                    ticks = rules.ticks_of[price]
                    lots = rules.lots_of[qty]
                    body = _pack(
                        rules.symbol_id, user_id, next(coids), side_code, _LIMIT, tif_code, ticks, lots, 0,
                        _EXPIRE_MAKER, 0,
                    )  # fmt: skip
                    positions[rules.shard].append(i)
                    bodies[rules.shard].append(body)
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
        positions[rules.shard].append(i)
        bodies[rules.shard].append(wire.new_order_body(cmd))
        if resp_type != "FULL":
            plan.resp_types[i] = resp_type


def _other_view(rules: SymbolRules, v: tuple, resp_type: str) -> str:
    """The ACK or RESULT answer of a Results order item, through ``views``."""
    o = _new(OrderView, (v[1], v[2], v[3].decode(), *v[4:18]))
    fills = tuple([_new(Fill, f) for f in v[19]]) if v[18] else ()
    return orjson.dumps(views.new_order(rules, o, fills, resp_type)).decode()


def _fills(rules: SymbolRules, asset: str, fills: tuple) -> str:
    price = rules.price
    qty = rules.qty
    return (
        "["
        + ",".join(
            [
                f'{{"price":"{price(f[1])}","qty":"{qty(f[2])}","commission":"0","commissionAsset":{asset},'
                f'"tradeId":{f[0]}}}'
                for f in fills
            ]
        )
        + "]"
    )


def _shape(status: int, key: tuple[int, int, int, int]) -> tuple[str, str]:
    """The constant texts around ``workingTime`` for (status, (side, type, tif, stp)), remembered in ``_SHAPES``."""
    side, order_type, tif, stp = key
    texts = (
        f'","status":"{_STATUS[status]}","timeInForce":"{_TIF[tif]}","type":"{_TYPE[order_type]}",'
        f'"side":"{_SIDE[side]}","workingTime":',
        f',"selfTradePreventionMode":"{_STP[stp]}","fills":',
    )
    _SHAPES.setdefault(status, {})[key] = texts
    return texts


# status -> (side, type, tif, stp) -> the texts of those enums (at most 7 x 72 entries: the enums are closed)
_SHAPES: dict[int, dict[tuple[int, int, int, int], tuple[str, str]]] = {}
_NO_SHAPES: dict[tuple[int, int, int, int], tuple[str, str]] = {}


def _numbers(rules: SymbolRules, memo: dict[Any, str], key: tuple[int, int, int, int]) -> str:
    """The texts of (price, origQty, executedQty, cummulativeQuoteQty), remembered in the symbol's memo table."""
    price, orig_qty, executed, cum_quote = key
    text = (
        f'"price":"{rules.price(price)}","origQty":"{rules.qty(orig_qty)}","executedQty":"{rules.qty(executed)}",'
        f'"cummulativeQuoteQty":"{rules.quote(cum_quote) if cum_quote else rules.zero_quote}'
    )
    remember(memo, key, text)
    return text


def _render_items(catalog: Catalog, plan: Plan, part: Sequence[int], items: list[tuple]) -> None:
    """Write the answer text of each Results item at its order's position (``views.full`` as text)."""
    out = plan.out
    special = plan.resp_types
    parts = catalog.text_parts
    shapes = _SHAPES
    last_time = None  # a shard stamps a whole batch with one time: its texts are written once
    time_text = time_field = ""
    for i, v in zip(part, items, strict=True):
        if v[0] != _K_ORDER:  # (K_REJECTED, code, message)
            out[i] = _error(rejected_error(Rejected(v[1], v[2])))
            continue
        head, asset, memo, rules = parts[v[1]]
        if special and i in special:
            out[i] = _other_view(rules, v, special[i])
            continue
        coid = v[3]  # generated ids are alphanumeric; a client's may hold . _ - (or be empty): orjson writes it
        coid = coid.decode() if coid.isalnum() else orjson.dumps(coid.decode()).decode()[1:-1]
        key = v[9:13]  # price, orig qty, executed qty, cum quote
        numbers = memo.get(key) or _numbers(rules, memo, key)
        status = v[14]
        key = v[5:9]  # side, type, tif, stp
        texts = shapes.get(status, _NO_SHAPES).get(key)
        middle, stp = texts if texts is not None else _shape(status, key)
        if v[15] != last_time:
            last_time = v[15]
            time_text = str(last_time)
            time_field = f'","transactTime":{time_text},'
        working = v[17]
        out[i] = (
            f'{head}{v[2]},"orderListId":-1,"clientOrderId":"{coid}{time_field}{numbers}{middle}'
            f"{time_text if working == last_time else working}{stp}{_fills(rules, asset, v[19]) if v[18] else '[]'}}}"
        )


def full_text(catalog: Catalog, o: OrderView, fills: tuple) -> str:
    """``orjson.dumps(views.full(rules, o, fills))`` as text, written as ``_render_items`` writes a batch's
    (the single-order fast lane answers FULL with it)."""
    head, asset, memo, rules = catalog.text_parts[o[0]]
    coid = o[2]
    if not coid.isalnum():
        coid = orjson.dumps(coid).decode()[1:-1]
    key = o[8:12]  # price, orig qty, executed qty, cum quote
    numbers = memo.get(key) or _numbers(rules, memo, key)
    key = o[4:8]  # side, type, tif, stp
    texts = _SHAPES.get(o[13], _NO_SHAPES).get(key)
    middle, stp = texts if texts is not None else _shape(o[13], key)
    return (
        f'{head}{o[1]},"orderListId":-1,"clientOrderId":"{coid}","transactTime":{o[14]},{numbers}{middle}'
        f"{o[16]}{stp}{_fills(rules, asset, fills) if fills else '[]'}}}"
    )


def render(catalog: Catalog, plan: Plan, answers: Sequence[Sequence[tuple[int, object]]]) -> bool:
    """Fill ``plan.out`` from each shard's answers (``EngineClient.call_orders``); True when one was EngineBusy."""
    busy = False
    out = plan.out
    core = _core
    texts = _core_tables(catalog)[1] if core is not None else None
    for positions, shard_answers in zip(plan.positions, answers, strict=True):
        start = 0
        for count, answer in shard_answers:
            part = positions[start : start + count]
            start += count
            if type(answer) is bytes:
                if core is not None:
                    left = core.render(answer, count, part, out, plan.resp_types, texts)
                    if left is not None:  # the core wrote every FULL answer it could; the others here
                        if left:
                            items = wire.results_items(answer)[1]
                            _render_items(catalog, plan, [part[k] for k in left], [items[k] for k in left])
                        continue
                try:
                    _, items = wire.results_items(answer)
                except wire.WireError as exc:
                    answer = EngineTimeout(f"malformed Results answer: {exc}")
                else:
                    if len(items) == count:
                        _render_items(catalog, plan, part, items)
                        continue
                    answer = EngineTimeout(f"shard answered {len(items)} results to {count} orders")
            if isinstance(answer, Exception):
                busy = busy or type(answer) is EngineBusy
                text = _error(error_of_exception(answer))
            else:
                text = _error(unexpected(answer))
            for i in part:
                out[i] = text
    return busy


def answer_bytes(plan: Plan) -> bytes:
    """The JSON array of every order's answer text (call it once: it brackets the first and last texts)."""
    out: list[Any] = plan.out
    if not out:
        return b"[]"
    if _core is not None:
        data = _core.join(out)
        if data is not None:
            return data
    out[0] = "[" + out[0]  # a short copy each, instead of one more copy of the whole answer
    out[-1] += "]"
    return ",".join(out).encode()


def scan_body(catalog: Catalog, body: bytes) -> bytes | None:
    """The orders of a JSON body ``{"orders": [...]}`` of 1 to 100 plain LIMIT orders that the C core takes
    whole (every one plainly valid: see ``_batchcore.scan``), read straight from its bytes, for
    ``place_scanned``; None for any other body (or without the C core): then parse it and ``place`` its orders."""
    core = _core
    if core is None:
        return None
    return core.scan(body, _core_tables(catalog)[0], catalog.shard_count)


async def place(engine: EngineClient, catalog: Catalog, orders: Sequence[Any], user_id: int) -> tuple[bytes, bool]:
    """(the JSON array answering ``orders``, True when some order met a full ring: answer ``Retry-After``)."""
    return await _place(engine, catalog, validate(catalog, orders, user_id))


async def place_scanned(engine: EngineClient, catalog: Catalog, scanned: bytes, user_id: int) -> tuple[bytes, bool]:
    """``place`` of the orders ``scan_body`` read: the same bodies to the shards (client order ids drawn in batch
    order from the same stream) and the same answer as ``place`` of the parsed orders."""
    plan = Plan(len(scanned) // _CORE_MODULE.SCAN_RECORD, catalog.shard_count)
    coids, prefix = _coids()
    _CORE_MODULE.emit(scanned, user_id, coids, prefix, plan.positions, plan.bodies)
    return await _place(engine, catalog, plan)


async def _place(engine: EngineClient, catalog: Catalog, plan: Plan) -> tuple[bytes, bool]:
    busy = False
    if any(plan.bodies):
        answers = await engine.call_orders(plan.bodies)
        busy = render(catalog, plan, answers)
    return answer_bytes(plan), busy


# --- the single order (ingress/fastpath.py) ---------------------------------------------------------------------


def scan_query(catalog: Catalog, query: bytes) -> tuple[bytes, int, int, bytes, str, int, int | None] | None:
    """A single order's query string that the C core takes (a plain LIMIT order, every value plainly valid):
    ``(body, shard, newOrderRespType as an index of params.RESP_TYPES, signed payload, signature, timestamp,
    recvWindow or None)``, the body without user id (and client order id when none was sent) for ``order_body``;
    None for any other query string, or without the C core: then the Python path checks it."""
    core = _core
    if core is None:
        return None
    tables = catalog.core_tables or _core_tables(catalog)  # (inlined first look: this runs per order)
    return core.scan_query(query, tables[0], catalog.shard_count)


def order_body(scanned: bytes, user_id: int) -> bytes:
    """The wire body (``wire.new_order_body``) of ``scan_query``'s body for ``user_id``, with the next generated
    client order id (``params.CLIENT_ORDER_IDS``) when the query sent none."""
    coids, prefix = _coids()
    return _CORE_MODULE.order_body(scanned, user_id, coids, prefix)


def render_order(catalog: Catalog, record: bytes) -> bytes | None:
    """The FULL answer (``full_text``'s bytes) of an order answer record of the shard (kind K_ORDER), or None
    where the C core does not write it (another kind, odd values, or the C core not selected)."""
    core = _core
    if core is None:
        return None
    tables = catalog.core_tables or _core_tables(catalog)
    return core.render_order(record, tables[1])
