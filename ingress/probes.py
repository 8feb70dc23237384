"""The probes behind ``GET /health`` and ``GET /metrics``: is each shard, Redis and PostgreSQL answering,
and how far persist is behind the journal.

``Probes(engine, redis, pool)`` asks each source once; ``survey(shard_count)`` runs every probe
concurrently and returns a ``Survey``. Every probe is bounded in time (``PROBE_TIMEOUT_S``) and
turns any failure into "down" (``False``) or "unknown" (``None``): a probe never raises, so a
failing source can never turn a health check or a scrape into a 500. ``redis`` or ``pool`` may be
None (not opened): their probes read as down. Nothing here keeps state between calls or logs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from shards.stream import FIELD_LAST, stream_key

PROBE_TIMEOUT_S = 1.0


@dataclass(frozen=True, slots=True)
class ShardProgress:
    """One shard's journal against PostgreSQL: last sequence in its Redis stream, last persisted, and the gap.

    ``None`` where the source did not answer; ``lag`` is None when either side is unknown.
    """

    shard: int
    journaled: int | None
    persisted: int | None
    lag: int | None


@dataclass(frozen=True, slots=True)
class Survey:
    """What one round of probes found."""

    shards_up: tuple[bool, ...]
    redis_up: bool
    postgres_up: bool
    progress: tuple[ShardProgress, ...]

    @property
    def ok(self) -> bool:
        return all(self.shards_up) and self.redis_up and self.postgres_up

    @property
    def total_lag(self) -> int | None:
        """Sum of the shards' lags; None when any is unknown."""
        lags = [p.lag for p in self.progress]
        return None if None in lags else sum(lags)  # type: ignore[arg-type]


class Probes:
    """Bounded probes of the engine's shards, Redis and PostgreSQL (asyncpg pool)."""

    def __init__(self, engine: Any, redis: Any, pool: Any) -> None:
        self.engine = engine
        self.redis = redis
        self.pool = pool

    async def shard(self, shard: int) -> bool:
        try:
            return bool(await asyncio.wait_for(self.engine.ping(shard), PROBE_TIMEOUT_S))
        except Exception:  # any failure of a probe reads as "down"
            return False

    async def redis_ping(self) -> bool:
        if self.redis is None:
            return False
        try:
            return bool(await asyncio.wait_for(self.redis.ping(), PROBE_TIMEOUT_S))
        except Exception:
            return False

    async def postgres_ping(self) -> bool:
        if self.pool is None:
            return False
        try:
            return await asyncio.wait_for(self.pool.fetchval("SELECT 1"), PROBE_TIMEOUT_S) == 1
        except Exception:
            return False

    async def journaled(self, shard: int) -> int | None:
        """Last event sequence number in ``shard``'s Redis stream (0: empty stream), None if Redis did not answer."""
        if self.redis is None:
            return None
        try:
            tail = await asyncio.wait_for(self.redis.xrevrange(stream_key(shard), count=1), PROBE_TIMEOUT_S)
            return int(tail[0][1][FIELD_LAST]) if tail else 0
        except Exception:
            return None

    async def persisted(self) -> dict[int, int] | None:
        """Shard -> last sequence persist committed to PostgreSQL, None if PostgreSQL did not answer."""
        if self.pool is None:
            return None
        try:
            rows = await asyncio.wait_for(
                self.pool.fetch("SELECT shard, last_seq FROM persist_progress"), PROBE_TIMEOUT_S
            )
        except Exception:
            return None
        return {r[0]: r[1] for r in rows}

    async def progress(self, shard_count: int) -> tuple[ShardProgress, ...]:
        persisted, journaled = await asyncio.gather(
            self.persisted(), asyncio.gather(*(self.journaled(i) for i in range(shard_count)))
        )
        out = []
        for i, last in enumerate(journaled):
            done = None if persisted is None else persisted.get(i, 0)
            lag = None if last is None or done is None else max(0, last - done)
            out.append(ShardProgress(i, last, done, lag))
        return tuple(out)

    async def survey(self, shard_count: int) -> Survey:
        """Every probe at once (the slowest bounds the whole at about ``PROBE_TIMEOUT_S``)."""
        shards, redis_up, pg_up, progress = await asyncio.gather(
            asyncio.gather(*(self.shard(i) for i in range(shard_count))),
            self.redis_ping(),
            self.postgres_ping(),
            self.progress(shard_count),
        )
        return Survey(tuple(shards), redis_up, pg_up, progress)
