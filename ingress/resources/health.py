"""GET /health: is every shard, Redis and PostgreSQL answering?

``{"status": "ok"|"degraded", "shards": [{"shard": i, "up": bool}], "redis":
"ok"|"down", "postgres": "ok"|"down", "persist": {"lag": n, "shards": [{"shard", "journaled",
"persisted", "lag"}]}}``, HTTP 503 when degraded. ``persist`` shows how many events
each shard's Redis stream holds that PostgreSQL does not yet (sequence numbers;
``null`` where either side did not answer); lag alone never degrades the status.
The probes are those of ``ingress/probes.py`` (shared with ``GET /metrics``): each
bounded in time, all run concurrently.
"""

from __future__ import annotations

import falcon.asgi

from ingress.probes import Probes
from ingress.resources.base import Context, answer

NONE: frozenset[str] = frozenset()


class Health:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        ctx = self.ctx
        await ctx.public(req, NONE)
        survey = await Probes(ctx.engine, ctx.redis, ctx.pool).survey(ctx.engine.shard_count)
        if not survey.ok:
            resp.status = 503
        answer(
            resp,
            {
                "status": "ok" if survey.ok else "degraded",
                "shards": [{"shard": i, "up": up} for i, up in enumerate(survey.shards_up)],
                "redis": "ok" if survey.redis_up else "down",
                "postgres": "ok" if survey.postgres_up else "down",
                "persist": {
                    "lag": survey.total_lag,
                    "shards": [
                        {"shard": p.shard, "journaled": p.journaled, "persisted": p.persisted, "lag": p.lag}
                        for p in survey.progress
                    ],
                },
            },
        )
