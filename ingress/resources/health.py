"""GET /health: is every shard, Redis and PostgreSQL answering?

``{"status": "ok"|"degraded", "shards": [{"shard": i, "up": bool}], "redis":
"ok"|"down", "postgres": "ok"|"down", "persist": {"lag": n, "shards": [{"shard", "journaled",
"persisted", "lag"}]}}``, HTTP 503 when degraded. ``persist`` shows how many events
each shard's Redis stream holds that PostgreSQL does not yet (sequence numbers;
``null`` where either side did not answer); lag alone never degrades the status.
Every probe is bounded in time (``PROBE_TIMEOUT_S``) and they run concurrently.
"""

from __future__ import annotations

import asyncio

import falcon.asgi

from ingress.resources.base import Context, answer
from shards.stream import FIELD_LAST, stream_key

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

    async def _journaled(self, shard: int) -> int | None:
        redis = self.ctx.redis
        if redis is None:
            return None
        try:
            tail = await asyncio.wait_for(redis.xrevrange(stream_key(shard), count=1), PROBE_TIMEOUT_S)
        except Exception:
            return None
        return int(tail[0][1][FIELD_LAST]) if tail else 0

    async def _persisted(self) -> dict[int, int] | None:
        pool = self.ctx.pool
        if pool is None:
            return None
        try:
            rows = await asyncio.wait_for(pool.fetch("SELECT shard, last_seq FROM persist_progress"), PROBE_TIMEOUT_S)
        except Exception:
            return None
        return {r[0]: r[1] for r in rows}

    async def _persist_lag(self, count: int) -> dict:
        persisted, *journaled = await asyncio.gather(self._persisted(), *(self._journaled(i) for i in range(count)))
        shards = []
        for i, last in enumerate(journaled):
            done = None if persisted is None else persisted.get(i, 0)
            lag = None if last is None or done is None else max(0, last - done)
            shards.append({"shard": i, "journaled": last, "persisted": done, "lag": lag})
        lags = [s["lag"] for s in shards]
        return {"lag": None if None in lags else sum(lags), "shards": shards}

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        await self.ctx.public(req, NONE)
        count = self.ctx.engine.shard_count
        *shards, redis_ok, pg_ok, persist = await asyncio.gather(
            *(self._shard(i) for i in range(count)), self._redis(), self._postgres(), self._persist_lag(count)
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
                "persist": persist,
            },
        )
