"""Public stream names: which are valid, and their canonical spelling.

A public stream is ``<symbol>@<kind>`` with the symbol in lower case (API.md):
``trade``, ``depth``, ``depth@100ms``, ``bookTicker``, ``ticker`` and
``kline_<interval>`` for every interval of ``wsfeed.klines.INTERVALS``. The
symbol part is accepted in any case and written in lower case; the kind is
matched exactly (``kline_1m`` and ``kline_1M`` differ). Anything else is not a
public stream (it may still be a listenKey: ``wsfeed.listenkeys``).
Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from wsfeed.klines import INTERVALS

KINDS: tuple[str, ...] = ("trade", "depth", "depth@100ms", "bookTicker", "ticker", *(f"kline_{i}" for i in INTERVALS))
MAX_NAME_LENGTH = 64


class SymbolStreams(NamedTuple):
    """The stream names of one symbol, computed once."""

    trade: str
    depth: str
    depth100: str
    book_ticker: str
    ticker: str
    klines: tuple[tuple[str, str], ...]  # (interval, stream name)


class StreamNames:
    """The public streams of the configured symbols."""

    def __init__(self, symbols: Iterable[str]) -> None:
        self.valid: set[str] = set()
        self.by_symbol: dict[str, SymbolStreams] = {}
        for symbol in symbols:
            low = symbol.lower()
            streams = SymbolStreams(
                trade=f"{low}@trade",
                depth=f"{low}@depth",
                depth100=f"{low}@depth@100ms",
                book_ticker=f"{low}@bookTicker",
                ticker=f"{low}@ticker",
                klines=tuple((i, f"{low}@kline_{i}") for i in INTERVALS),
            )
            self.by_symbol[symbol.upper()] = streams
            self.valid.update(f"{low}@{kind}" for kind in KINDS)

    def canonical(self, name: object) -> str | None:
        """The canonical name of a public stream, or None when ``name`` is not one."""
        if type(name) is not str or not name or len(name) > MAX_NAME_LENGTH:
            return None
        symbol, sep, kind = name.partition("@")
        if not sep:
            return None
        text = f"{symbol.lower()}@{kind}"
        return text if text in self.valid else None
