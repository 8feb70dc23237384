"""Parameter validation and decimal-to-integer conversion: request dict in, engine command out.

Every check answers its contract code with a message naming the parameter and
the value (API.md): -1102 missing or empty, -1100 malformed (not a number, bad
characters, too long, bad enum value), -1104 not accepted here, -1116 type,
-1117 side, -1121 symbol, -1013 off the tick/step grid or out of range. A
failed check raises before anything is sent to the engine.

Decimal numbers are accepted as strings or JSON numbers in the form
``^[0-9]{1,20}(\\.[0-9]{1,20})?$`` (Binance's legal range); a JSON float is
read through its shortest repr, so a JSON number with more than 17 significant
digits has already been rounded by the JSON parser. Conversions are exact
integer arithmetic on the symbol's precomputed scales (``ingress/symbols.py``):
price -> ticks and quantity -> lots must land on the grid (else -1013);
quoteOrderQty -> tick*step units rounds down (a client never spends more than
it asked). This module does no I/O and never logs.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from ingress.errors import (
    CodedError,
    FilterFailure,
    InvalidSide,
    InvalidSymbol,
    InvalidType,
    Malformed,
    MissingParam,
    UnexpectedParam,
)
from ingress.symbols import Catalog, SymbolRules, remember
from shards.protocol import (
    AmendOrder,
    NewOrder,
    OrderType,
    Side,
    StpMode,
    TimeInForce,
)

_DECIMAL = re.compile(r"([0-9]{1,20})(?:\.([0-9]{1,20}))?")
_CLIENT_ORDER_ID = re.compile(r"[A-Za-z0-9._-]{1,36}")
INT64_MAX = 2**63 - 1
_new = tuple.__new__  # builds a NamedTuple from a tuple without its Python-level __new__

SIDES = {s.name: int(s) for s in Side}
TYPES = {t.name: int(t) for t in OrderType}
TIFS = {t.name: int(t) for t in TimeInForce}
STP_MODES = {m.name: int(m) for m in StpMode}
RESP_TYPES = ("ACK", "RESULT", "FULL")

ORDER_PARAMS = frozenset(
    (
        "symbol",
        "side",
        "type",
        "timeInForce",
        "quantity",
        "price",
        "quoteOrderQty",
        "newClientOrderId",
        "selfTradePreventionMode",
        "newOrderRespType",
    )
)
SIGNED_PARAMS = frozenset(("timestamp", "recvWindow", "signature"))
LIMIT_TYPE, MARKET_TYPE = int(OrderType.LIMIT), int(OrderType.MARKET)
GTC = int(TimeInForce.GTC)
EXPIRE_MAKER = int(StpMode.EXPIRE_MAKER)


def _show(value: Any) -> str:
    text = value if type(value) is str else repr(value)
    return text if len(text) <= 48 else text[:45] + "..."


def _choices(names: Any) -> str:
    names = list(names)
    return ", ".join(names[:-1]) + " or " + names[-1]


# --- raw values --------------------------------------------------------------------


def optional_text(params: dict[str, Any], name: str) -> str | None:
    """A string parameter: None when absent or empty; -1100 when not a string."""
    value = params.get(name)
    if value is None or value == "":
        return None
    if type(value) is not str:
        raise Malformed(f"parameter '{name}' must be a string, got {_show(value)}")
    return value


def required_text(params: dict[str, Any], name: str) -> str:
    value = optional_text(params, name)
    if value is None:
        raise MissingParam(f"mandatory parameter '{name}' was not sent, was empty or null")
    return value


def integer(params: dict[str, Any], name: str) -> int | None:
    """A non-negative integer parameter (string of digits or JSON integer); None when absent or empty."""
    value = params.get(name)
    if value is None or value == "":
        return None
    kind = type(value)
    if kind is str:
        if len(value) <= 19 and value.isdigit() and value.isascii():
            number = int(value)
            if number <= INT64_MAX:
                return number
    elif kind is int and 0 <= value <= INT64_MAX:
        return value
    raise Malformed(f"parameter '{name}' must be a non-negative integer, got {_show(value)}")


def decimal_text(name: str, value: Any) -> str:
    """The decimal text of a string or JSON number, or -1100."""
    kind = type(value)
    if kind is str:
        if _DECIMAL.fullmatch(value):
            return value
    elif kind is int:
        digits = str(value)
        if _DECIMAL.fullmatch(digits):
            return digits
    elif kind is float:
        if value >= 0:
            digits = format(Decimal(repr(value)), "f")
            if _DECIMAL.fullmatch(digits):
                return digits
    raise Malformed(
        f"parameter '{name}' value {_show(value)} is not a valid decimal number "
        "(digits, an optional point, at most 20 digits on either side)"
    )


def scaled(text: str, decimals: int) -> int | None:
    """``text`` * 10**decimals as an exact integer, or None when it has more decimals than that."""
    whole, _, frac = text.partition(".")
    if len(frac) > decimals:
        frac = frac.rstrip("0")
        if len(frac) > decimals:
            return None
    return int(whole + frac + "0" * (decimals - len(frac)))


# --- converters ---------------------------------------------------------------------


def symbol_rules(catalog: Catalog, params: dict[str, Any]) -> SymbolRules:
    name = required_text(params, "symbol")
    rules = catalog.by_name.get(name)
    if rules is None:
        rules = catalog.by_name.get(name.upper())
        if rules is None:
            raise InvalidSymbol(f"invalid symbol {_show(name)}: not traded here")
    return rules


def price_ticks(rules: SymbolRules, value: Any, name: str = "price") -> int:
    if type(value) is str:
        ticks = rules.ticks_of.get(value)
        if ticks is not None:
            return ticks
    text = decimal_text(name, value)
    units = scaled(text, rules.price_decimals)
    if units is None:
        raise FilterFailure(f"{name} {text} is not a multiple of tickSize {rules.tick_text}")
    ticks, rest = divmod(units, rules.tick_units)
    if rest:
        raise FilterFailure(f"{name} {text} is not a multiple of tickSize {rules.tick_text}")
    if ticks < rules.min_price:
        raise FilterFailure(f"{name} {text} is below minPrice {rules.min_price_text}")
    if ticks > rules.max_price:
        raise FilterFailure(f"{name} {text} is above maxPrice {rules.max_price_text}")
    if type(value) is str:
        remember(rules.ticks_of, value, ticks)
    return ticks


def qty_lots(rules: SymbolRules, value: Any, name: str = "quantity") -> int:
    if type(value) is str:
        lots = rules.lots_of.get(value)
        if lots is not None:
            return lots
    text = decimal_text(name, value)
    units = scaled(text, rules.qty_decimals)
    if units is None:
        raise FilterFailure(f"{name} {text} is not a multiple of stepSize {rules.step_text}")
    lots, rest = divmod(units, rules.step_units)
    if rest:
        raise FilterFailure(f"{name} {text} is not a multiple of stepSize {rules.step_text}")
    if lots < rules.min_qty:
        raise FilterFailure(f"{name} {text} is below minQty {rules.min_qty_text}")
    if lots > rules.max_qty:
        raise FilterFailure(f"{name} {text} is above maxQty {rules.max_qty_text}")
    if type(value) is str:
        remember(rules.lots_of, value, lots)
    return lots


def quote_units(rules: SymbolRules, value: Any, name: str = "quoteOrderQty") -> int:
    """Quote amount in tick*step units, rounded down to the grid."""
    text = decimal_text(name, value)
    decimals = rules.price_decimals + rules.qty_decimals
    whole, _, frac = text.partition(".")
    units = int(whole + frac[:decimals].ljust(decimals, "0")) // (rules.tick_units * rules.step_units)
    if units < 1:
        raise FilterFailure(f"{name} {text} is below the smallest quote amount {rules.quote(1)}")
    if units > rules.max_price * rules.max_qty:
        raise FilterFailure(f"{name} {text} is above maxPrice * maxQty {rules.quote(rules.max_price * rules.max_qty)}")
    return units


def _enum(params: dict[str, Any], name: str, table: dict[str, int], default: int) -> int:
    value = optional_text(params, name)
    if value is None:
        return default
    code = table.get(value)
    if code is None:
        raise Malformed(f"parameter '{name}' value {_show(value)} is invalid; expected {_choices(table)}")
    return code


def response_type(params: dict[str, Any]) -> str:
    value = optional_text(params, "newOrderRespType")
    if value is None:
        return "FULL"
    if value not in RESP_TYPES:
        raise Malformed(f"parameter 'newOrderRespType' value {_show(value)} is invalid; expected ACK, RESULT or FULL")
    return value


def client_order_id(params: dict[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if type(value) is not str or not _CLIENT_ORDER_ID.fullmatch(value):
        raise Malformed(f"parameter '{name}' value {_show(value)} is invalid; expected 1 to 36 of A-Z a-z 0-9 . _ -")
    return value


def _not_with(params: dict[str, Any], name: str, why: str) -> None:
    value = params.get(name)
    if value is not None and value != "":
        raise UnexpectedParam(f"parameter '{name}' is not accepted {why}")


# --- client order ids -----------------------------------------------------------------

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _base62(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 62)
        out = _B62[r] + out
        if not n:
            return out


class ClientOrderIds:
    """Generated client order ids: a random per-process base62 prefix and a hex counter (<= 26 chars).

    ``next()`` draws one; ``ids`` is the same stream as a C-level iterator (``next(ids)``, no Python
    frame per id) for loops that draw many, and ``ids_bytes`` the same ids as ASCII bytes (for the
    wire), drawn from the same counter. Read them afresh per use: a fork reseeds them.
    """

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        prefix = "x" + _base62(int.from_bytes(os.urandom(6), "big")).rjust(9, "0")
        counter = itertools.count(1)
        self.ids: Iterator[str] = map((prefix + "{:x}").format, counter)
        self.ids_bytes: Iterator[bytes] = map((prefix + "%x").encode().__mod__, counter)

    def next(self) -> str:
        return next(self.ids)


CLIENT_ORDER_IDS = ClientOrderIds()


# --- commands -----------------------------------------------------------------------


def _named(params: dict[str, Any], name: str, table: dict[str, int], error: type[CodedError], what: str) -> int:
    """table[value of ``name``], or the error explaining why not (the slow path of ``new_order``)."""
    value = required_text(params, name)
    code = table.get(value)
    if code is None:
        raise error(f"invalid {what} {_show(value)}; expected {_choices(table)}")
    return code


def new_order(catalog: Catalog, params: dict[str, Any], user_id: int) -> tuple[SymbolRules, NewOrder, str]:
    """Validate a new order's parameters: (rules, NewOrder with ts=0, newOrderRespType).

    The hot path: each field is read once; a value that is not plainly valid
    goes to the helper that explains what is wrong with it.
    """
    get = params.get
    value = get("symbol")
    rules = catalog.by_name.get(value) if type(value) is str else None
    if rules is None:
        rules = symbol_rules(catalog, params)
    value = get("side")
    side = SIDES.get(value) if type(value) is str else None
    if side is None:
        side = _named(params, "side", SIDES, InvalidSide, "side")
    value = get("type")
    order_type = TYPES.get(value) if type(value) is str else None
    if order_type is None:
        order_type = _named(params, "type", TYPES, InvalidType, "order type")
    quote = 0
    if order_type == MARKET_TYPE:
        _not_with(params, "price", "for a MARKET order")
        _not_with(params, "timeInForce", "for a MARKET order")
        tif = GTC
        price = 0
        raw_qty = get("quantity")
        raw_quote = get("quoteOrderQty")
        has_qty = raw_qty is not None and raw_qty != ""
        if raw_quote is not None and raw_quote != "":
            if has_qty:
                raise UnexpectedParam("parameter 'quoteOrderQty' is not accepted together with 'quantity'")
            qty = 0
            quote = quote_units(rules, raw_quote)
        elif has_qty:
            qty = qty_lots(rules, raw_qty)
        else:
            raise MissingParam("mandatory parameter 'quantity' or 'quoteOrderQty' was not sent, was empty or null")
    else:
        if order_type == LIMIT_TYPE:
            value = get("timeInForce")
            known = TIFS.get(value) if type(value) is str else None
            if known is None:
                tif_name = required_text(params, "timeInForce")
                raise Malformed(f"parameter 'timeInForce' value {_show(tif_name)} is invalid; expected GTC, IOC or FOK")
            tif = known
        else:
            _not_with(params, "timeInForce", "for a LIMIT_MAKER order")
            tif = GTC
        if "quoteOrderQty" in params:
            _not_with(params, "quoteOrderQty", "for a LIMIT or LIMIT_MAKER order")
        price = price_ticks(rules, _required(params, "price"))
        qty = qty_lots(rules, _required(params, "quantity"))
    value = get("selfTradePreventionMode")
    stp = EXPIRE_MAKER if value is None else _enum(params, "selfTradePreventionMode", STP_MODES, EXPIRE_MAKER)
    value = get("newOrderRespType")
    resp_type = "FULL" if value is None else response_type(params)
    value = get("newClientOrderId")
    if value is None or value == "":
        coid = next(CLIENT_ORDER_IDS.ids)
    elif type(value) is str and _CLIENT_ORDER_ID.fullmatch(value):
        coid = value
    else:
        coid = client_order_id(params, "newClientOrderId") or ""
    cmd = _new(NewOrder, (rules.symbol_id, user_id, coid, side, order_type, tif, price, qty, quote, stp, 0))
    return rules, cmd, resp_type


def _required(params: dict[str, Any], name: str) -> Any:
    value = params.get(name)
    if value is None or value == "":
        raise MissingParam(f"mandatory parameter '{name}' was not sent, was empty or null")
    return value


def order_ref(params: dict[str, Any]) -> tuple[int, str]:
    """(orderId or 0, origClientOrderId or ""): one of them is mandatory."""
    order_id = integer(params, "orderId")
    coid = client_order_id(params, "origClientOrderId")
    if order_id is None and coid is None:
        raise MissingParam("mandatory parameter 'orderId' or 'origClientOrderId' was not sent, was empty or null")
    if order_id == 0:
        raise Malformed("parameter 'orderId' value 0 is invalid; order ids start at 1")
    return order_id or 0, coid or ""


def amend(catalog: Catalog, params: dict[str, Any], user_id: int) -> tuple[SymbolRules, AmendOrder]:
    rules = symbol_rules(catalog, params)
    order_id, coid = order_ref(params)
    new_qty = qty_lots(rules, _required(params, "newQty"), "newQty")
    return rules, AmendOrder(rules.symbol_id, user_id, order_id, coid, new_qty, 0)


def limit(params: dict[str, Any], default: int, maximum: int) -> int:
    value = integer(params, "limit")
    if value is None:
        return default
    if value < 1:
        raise Malformed(f"parameter 'limit' value {value} is invalid; it must be at least 1")
    if value > maximum:
        raise Malformed(f"parameter 'limit' value {value} is above the maximum {maximum}")
    return value
