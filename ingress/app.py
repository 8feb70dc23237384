"""The REST application: ``create_app(config, engine)`` builds the falcon ASGI app.

It wires the routes to the resources of ``ingress/resources/``, installs the
one error mapping (``ingress/errors.py``) and a lifecycle middleware that, at
ASGI startup, opens the asyncpg pool, loads the user directory (and starts its
LISTEN) and opens the Redis client used by /health and /metrics, and starts the
worker's metrics publisher (``ingress/metrics_publisher.py``); at shutdown it
stops and closes them. The ``EngineClient`` is given: its life (rings, answer listener) belongs to
whoever made it (``ingress/worker.py`` in production, a local engine in tests).
Nothing here runs per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import asyncpg
import falcon.asgi
import orjson
import redis.asyncio as aioredis

from ingress.dispatch import EngineClient
from ingress.errors import install_error_handlers
from ingress.fastpath import PATH, FastOrderPost
from ingress.metrics_publisher import WorkerTelemetry
from ingress.reply import OneWriteSend, Replier
from ingress.resources import admin, health, history, market, metrics, orders, userstream
from ingress.resources.base import Context
from ingress.symbols import Catalog
from ingress.users import UserDirectory

log = logging.getLogger("ingress.app")

POOL_MIN = 1
POOL_MAX = 4
CLOSE_TIMEOUT_S = 5.0
REDIS_TIMEOUT_S = 1.0


class Lifecycle:
    """Opens the app's database pool, user directory and Redis client at startup; closes them at shutdown."""

    def __init__(self, ctx: Context, telemetry: WorkerTelemetry | None = None) -> None:
        self.ctx = ctx
        self.telemetry = telemetry

    async def process_startup(self, scope: Mapping[str, Any], event: Mapping[str, Any]) -> None:
        ctx = self.ctx
        dsn = ctx.config.postgres.url
        if not dsn:
            raise RuntimeError("postgres.url is empty: the ingress needs the resolved DATABASE_URL")
        ctx.pool = await asyncpg.create_pool(dsn, min_size=POOL_MIN, max_size=POOL_MAX)
        await ctx.users.start(ctx.pool)
        url = ctx.config.redis.url
        if url:
            ctx.redis = aioredis.Redis.from_url(
                url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
            )
        else:
            log.warning("redis.url is empty: /health will report redis down")
        if self.telemetry is not None and ctx.redis is not None:
            self.telemetry.start(ctx.redis)

    async def process_shutdown(self, scope: Mapping[str, Any], event: Mapping[str, Any]) -> None:
        ctx = self.ctx
        if self.telemetry is not None:
            await self.telemetry.stop()
        await ctx.users.close()
        if ctx.redis is not None:
            redis, ctx.redis = ctx.redis, None
            with contextlib.suppress(Exception):
                await redis.aclose()
        if ctx.pool is not None:
            pool, ctx.pool = ctx.pool, None
            try:
                await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT_S)
            except Exception:
                pool.terminate()


_BAD_QUERY = orjson.dumps({"code": -1100, "msg": "the query string is not valid UTF-8"})


class ExchangeApp(falcon.asgi.App):
    """falcon's ASGI App with the exchange context at ``.exchange`` (for the worker and tests).

    falcon decodes the query string before any error handler can see the request:
    a query string that is not UTF-8 is answered here, as -1100. A plain signed
    ``POST /api/v3/order`` goes through the fast lane first (``ingress/fastpath.py``).
    falcon's answers reach uvicorn through ``OneWriteSend`` (``reply.py``): status
    line, headers and body in one socket write instead of two.
    """

    exchange: Context
    fast_order: FastOrderPost | None = None  # the fast lane of POST /api/v3/order (``ingress/fastpath.py``)
    replier: Replier | None = None  # one write per falcon answer where it can (None: uvicorn's two writes)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:  # type: ignore[override]
        if scope["type"] == "http":
            fast = self.fast_order
            if fast is not None and scope["path"] == PATH and scope["method"] == "POST":
                if await fast(scope, send):
                    return
            replier = self.replier
            if replier is not None and replier.enabled:
                one = OneWriteSend(send, replier)
                try:
                    await self._answer(scope, receive, one)
                finally:
                    await one.flush()
                return
        await self._answer(scope, receive, send)

    async def _answer(self, scope: Any, receive: Any, send: Any) -> None:
        """falcon's answer, or the -1100 one when the query string is not UTF-8."""
        try:
            await super().__call__(scope, receive, send)
        except UnicodeDecodeError:
            if scope.get("type") != "http":
                raise
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(_BAD_QUERY)).encode())]
            await send({"type": "http.response.start", "status": 400, "headers": headers})
            await send({"type": "http.response.body", "body": _BAD_QUERY})


def create_app(config: Any, engine: EngineClient, *, fast_lane: bool = True, one_write: bool = True) -> ExchangeApp:
    """The falcon ASGI app of one ingress worker (``fast_lane=False``: every request through falcon;
    ``one_write=False``: falcon's answers as uvicorn writes them, two socket writes)."""
    catalog = Catalog.from_config(config)
    users = UserDirectory(config.postgres.url)
    ctx = Context(config, engine, catalog, users)
    telemetry = WorkerTelemetry(engine, engine.worker_index, config.rest.workers)
    app = ExchangeApp(middleware=[Lifecycle(ctx, telemetry)])
    app.req_options.keep_blank_qs_values = True
    app.req_options.auto_parse_qs_csv = False
    install_error_handlers(app)
    telemetry.count_errors(app)  # the same handlers, each counting the status it answers

    app.add_route("/api/v3/ping", market.Ping(ctx))
    app.add_route("/api/v3/time", market.Time(ctx))
    app.add_route("/api/v3/exchangeInfo", market.ExchangeInfo(ctx))
    app.add_route("/api/v3/depth", market.Depth(ctx))
    app.add_route("/api/v3/ticker/bookTicker", market.BookTicker(ctx))
    app.add_route("/api/v3/order", orders.Order(ctx))
    app.add_route("/api/v3/order/test", orders.OrderTest(ctx))
    app.add_route("/api/v3/order/amend/keepPriority", orders.Amend(ctx))
    app.add_route("/api/v3/openOrders", orders.OpenOrders(ctx))
    app.add_route("/api/v3/batchOrders", orders.BatchOrders(ctx))
    app.add_route("/admin/v1/users", admin.Users(ctx))
    app.add_route("/health", health.Health(ctx))
    app.add_route("/metrics", metrics.Metrics(ctx, telemetry))
    userstream.register(app, ctx)
    history.register(app, ctx)
    app.exchange = ctx
    app.fast_order = FastOrderPost(ctx) if fast_lane else None
    app.replier = Replier() if one_write else None
    return app
