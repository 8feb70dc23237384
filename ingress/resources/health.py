"""GET /health: is every shard, Redis and PostgreSQL answering?

``{"status": "ok"|"degraded", "shards": [{"shard": i, "up": bool}], "redis":
"ok"|"down", "postgres": "ok"|"down"}``, HTTP 503 when degraded. Every probe
is bounded in time (``PROBE_TIMEOUT_S``) and they run concurrently.
"""

from __future__ import annotations

import asyncio

import falcon.asgi

from ingress.resources.base import Context, answer

PROBE_TIMEOUT_S = 1.0
NONE: frozenset[str] = frozenset()


class Health:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def _shard(self, shard: int) -> bool:
        try:
            return bool(await asyncio.wait_for(self.ctx.engine.ping(shard), PROBE_TIMEOUT_S))
        except Exception:  # any failure of a probe reads as "down"
            return False

    async def _redis(self) -> bool:
        redis = self.ctx.redis
        if redis is None:
            return False
        try:
            return bool(await asyncio.wait_for(redis.ping(), PROBE_TIMEOUT_S))
        except Exception:
            return False

    async def _postgres(self) -> bool:
        pool = self.ctx.pool
        if pool is None:
            return False
        try:
            return await asyncio.wait_for(pool.fetchval("SELECT 1"), PROBE_TIMEOUT_S) == 1
        except Exception:
            return False

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        await self.ctx.public(req, NONE)
        count = self.ctx.engine.shard_count
        *shards, redis_ok, pg_ok = await asyncio.gather(
            *(self._shard(i) for i in range(count)), self._redis(), self._postgres()
        )
        ok = all(shards) and redis_ok and pg_ok
        if not ok:
            resp.status = 503
        answer(
            resp,
            {
                "status": "ok" if ok else "degraded",
                "shards": [{"shard": i, "up": up} for i, up in enumerate(shards)],
                "redis": "ok" if redis_ok else "down",
                "postgres": "ok" if pg_ok else "down",
            },
        )
