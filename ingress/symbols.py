"""Per-symbol trading rules precomputed for the REST edge: integers in, decimal text out.

``Catalog`` is built once from the config. For every symbol it holds the tick
and step sizes as integers at a decimal scale of their own (``0.05`` is 5 at
scale 2), the price and quantity ranges in ticks and lots, the shard, and the
formatting of engine integers as the contract's decimal strings (fixed
decimals of the symbol's precision: price with the tick size's decimals,
quantity with the step size's, quote amounts with both).

Decimal is used here only at build time; the per-request functions work on
``int`` and ``str``. This module never does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson


def decimals_of(value: Decimal) -> int:
    """Number of decimals needed to write ``value`` exactly (0.010 -> 2, 10 -> 0)."""
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return -exponent if exponent < 0 else 0


def fixed(units: int, decimals: int) -> str:
    """``units`` / 10**decimals written with exactly ``decimals`` decimals, never an exponent."""
    if decimals == 0:
        return str(units)
    text = str(units)
    if len(text) <= decimals:
        text = "0" * (decimals + 1 - len(text)) + text
    return f"{text[:-decimals]}.{text[-decimals:]}"


MEMO_MAX = 4096


def remember(table: dict, key: object, value: object) -> None:
    """Store in a bounded memo table (cleared when it reaches ``MEMO_MAX`` entries)."""
    if len(table) >= MEMO_MAX:
        table.clear()
    table[key] = value


@dataclass(frozen=True, slots=True)
class SymbolRules:
    symbol: str
    symbol_id: int
    shard: int
    base_asset: str
    quote_asset: str
    price_decimals: int  # decimals of tickSize
    qty_decimals: int  # decimals of stepSize
    tick_units: int  # tickSize * 10**price_decimals
    step_units: int  # stepSize * 10**qty_decimals
    min_price: int  # ticks
    max_price: int
    min_qty: int  # lots
    max_qty: int
    # decimal texts, computed from the fields above
    tick_text: str = field(init=False)
    step_text: str = field(init=False)
    min_price_text: str = field(init=False)
    max_price_text: str = field(init=False)
    min_qty_text: str = field(init=False)
    max_qty_text: str = field(init=False)
    zero_price: str = field(init=False)
    zero_qty: str = field(init=False)
    zero_quote: str = field(init=False)
    # Bounded memo tables for the hot path (cleared when full): prices and quantities repeat.
    price_texts: dict[int, str] = field(init=False, repr=False, compare=False)  # ticks -> text
    qty_texts: dict[int, str] = field(init=False, repr=False, compare=False)  # lots -> text
    ticks_of: dict[str, int] = field(init=False, repr=False, compare=False)  # valid price text -> ticks
    lots_of: dict[str, int] = field(init=False, repr=False, compare=False)  # valid quantity text -> lots

    def __post_init__(self) -> None:
        for name in ("price_texts", "qty_texts", "ticks_of", "lots_of"):
            object.__setattr__(self, name, {})
        texts = {
            "tick_text": self.price(1),
            "step_text": self.qty(1),
            "min_price_text": self.price(self.min_price),
            "max_price_text": self.price(self.max_price),
            "min_qty_text": self.qty(self.min_qty),
            "max_qty_text": self.qty(self.max_qty),
            "zero_price": self.price(0),
            "zero_qty": self.qty(0),
            "zero_quote": self.quote(0),
        }
        for name, text in texts.items():
            object.__setattr__(self, name, text)

    @property
    def quote_decimals(self) -> int:
        return self.price_decimals + self.qty_decimals

    @property
    def quote_unit_units(self) -> int:
        """tick*step (one engine quote unit) at scale ``quote_decimals``."""
        return self.tick_units * self.step_units

    def price(self, ticks: int) -> str:
        text = self.price_texts.get(ticks)
        if text is None:
            text = fixed(ticks * self.tick_units, self.price_decimals)
            remember(self.price_texts, ticks, text)
        return text

    def qty(self, lots: int) -> str:
        text = self.qty_texts.get(lots)
        if text is None:
            text = fixed(lots * self.step_units, self.qty_decimals)
            remember(self.qty_texts, lots, text)
        return text

    def quote(self, units: int) -> str:
        return fixed(units * self.tick_units * self.step_units, self.price_decimals + self.qty_decimals)


def rules_of(sym: Any, shard: int) -> SymbolRules:
    """Precompute ``SymbolRules`` from a ``deploy.config.SymbolConfig``."""
    tick: Decimal = sym.tick_size
    step: Decimal = sym.step_size
    pd = decimals_of(tick)
    qd = decimals_of(step)
    return SymbolRules(
        symbol=sym.symbol,
        symbol_id=sym.symbol_id,
        shard=shard,
        base_asset=sym.base_asset,
        quote_asset=sym.quote_asset,
        price_decimals=pd,
        qty_decimals=qd,
        tick_units=int(tick.scaleb(pd)),
        step_units=int(step.scaleb(qd)),
        min_price=int(sym.min_price / tick),
        max_price=int(sym.max_price / tick),
        min_qty=int(sym.min_qty / step),
        max_qty=int(sym.max_qty / step),
    )


class Catalog:
    """Every symbol's rules, by upper-case name and by symbol id."""

    def __init__(self, rules: Iterable[SymbolRules]) -> None:
        self.rules = tuple(sorted(rules, key=lambda r: r.symbol_id))
        self.by_name: dict[str, SymbolRules] = {r.symbol: r for r in self.rules}
        self.by_id: dict[int, SymbolRules] = {r.symbol_id: r for r in self.rules}
        self.shard_count = 1 + max((r.shard for r in self.rules), default=0)
        # For answers written as text (ingress/batch.py), symbol id -> (the start of an order object up to its
        # orderId value, the quote asset as a JSON string, a bounded memo table for that symbol's texts, rules).
        self.text_parts: dict[int, tuple[str, str, dict[Any, str], SymbolRules]] = {
            r.symbol_id: (
                '{"symbol":' + orjson.dumps(r.symbol).decode() + ',"orderId":',
                orjson.dumps(r.quote_asset).decode(),
                {},
                r,
            )
            for r in self.rules
        }
        self.core_tables: tuple[Any, dict[int, tuple]] | None = None  # ingress/batch.py's C core tables, built once

    @classmethod
    def from_config(cls, config: Any) -> Catalog:
        return cls(rules_of(sym, config.shard_of(sym.symbol)) for sym in config.symbols)
