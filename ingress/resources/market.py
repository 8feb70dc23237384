"""Public endpoints: ping, time, exchangeInfo, depth and bookTicker.

Depth and book ticker are queries on the owning shard (``QueryDepth``,
``QueryBookTicker``); the book ticker of every symbol is one ``call_batch``
across the shards. exchangeInfo is built from the config alone.
"""

from __future__ import annotations

from typing import Any

import falcon.asgi

from ingress import params as p
from ingress import views
from ingress.auth import now_ms
from ingress.errors import error_of_exception, rejected_error
from ingress.resources.base import Context, answer, unexpected
from shards.protocol import BookTickerView, DepthView, QueryBookTicker, QueryDepth, Rejected

NONE: frozenset[str] = frozenset()
SYMBOL = frozenset(("symbol",))
DEPTH = frozenset(("symbol", "limit"))
DEPTH_DEFAULT = 100
DEPTH_MAX = 5000
# No request-rate limits are enforced yet (-1003 is reserved for them): the list is empty.
RATE_LIMITS: list = []


class Ping:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        await self.ctx.public(req, NONE)
        resp.data = b"{}"


class Time:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        await self.ctx.public(req, NONE)
        answer(resp, {"serverTime": now_ms()})


class ExchangeInfo:
    """All symbols, or one with ``symbol``; the symbol entries are built once."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.symbols = {r.symbol: views.symbol_info(r) for r in ctx.catalog.rules}

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        params = await self.ctx.public(req, SYMBOL)
        if p.optional_text(params, "symbol") is not None:
            symbols = [self.symbols[p.symbol_rules(self.ctx.catalog, params).symbol]]
        else:
            symbols = list(self.symbols.values())
        answer(resp, {"timezone": "UTC", "serverTime": now_ms(), "rateLimits": RATE_LIMITS, "symbols": symbols})


class Depth:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        ctx = self.ctx
        params = await ctx.public(req, DEPTH)
        rules = p.symbol_rules(ctx.catalog, params)
        limit = p.limit(params, DEPTH_DEFAULT, DEPTH_MAX)
        res = await ctx.call(rules.shard, QueryDepth(rules.symbol_id, limit))
        if type(res) is not DepthView:
            raise unexpected(res)
        answer(resp, views.depth(rules, res))


class BookTicker:
    """One symbol's best bid and ask, or every symbol's (an array) without ``symbol``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        ctx = self.ctx
        params = await ctx.public(req, SYMBOL)
        if p.optional_text(params, "symbol") is not None:
            rules = p.symbol_rules(ctx.catalog, params)
            res = await ctx.call(rules.shard, QueryBookTicker(rules.symbol_id))
            if type(res) is not BookTickerView:
                raise unexpected(res)
            answer(resp, views.book_ticker(rules, res))
            return
        all_rules = ctx.catalog.rules
        results: list[Any] = await ctx.engine.call_batch([(r.shard, QueryBookTicker(r.symbol_id)) for r in all_rules])
        out = []
        for rules, res in zip(all_rules, results, strict=True):
            if type(res) is BookTickerView:
                out.append(views.book_ticker(rules, res))
            elif isinstance(res, Exception):
                raise error_of_exception(res)
            elif type(res) is Rejected:
                raise rejected_error(res)
            else:
                raise unexpected(res)
        answer(resp, out)
