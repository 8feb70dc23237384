"""The persist process: every shard stream, through a consumer group, into PostgreSQL.

Owns: this process's signal handling (``run`` only), one task per matching
shard, each with its own PostgreSQL connection, reading the shard's stream
through the consumer group ``persist`` (consumer ``persist-<index>``):
first the entries delivered earlier but never acknowledged (a previous run
died mid-batch), then new ones. Each read (up to ``READ_COUNT`` entries) is
one batch: decoded (``shards.stream``), turned into rows (``persist.rows``),
written in one transaction (``persist.store``), and only then XACKed.

Pacing (``persist.commit_interval_ms``): once a writer has caught up with
its stream (its last read was not full), it waits until that long after its
previous commit before it reads again, so under load the entries of that
interval share one transaction and one fsync instead of paying one each.
When entries come further apart than that it never waits; while behind, it
reads full batches back to back. Nothing acknowledged to a client waits on
this: the shard's stream in Redis is the journal.

Never: acknowledges before the commit, or drops an entry. PostgreSQL down
or restarted: the batch is retried with back-off (0.1 s doubling to 5 s) and
the order cache is dropped (a commit whose answer was lost may have moved the
progress); Redis down: the read is retried the same way. Events at or below
the shard's ``persist_progress.last_seq`` are skipped, so replaying a stream
twice writes nothing twice.

Stop: SIGTERM/SIGINT finish the batch in hand, then return.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from typing import Any

import asyncpg
import redis
import redis.asyncio as aioredis

from deploy.config import Config
from deploy.log import log_event, set_process_name
from deploy.topology import ProcessContext
from persist import store
from persist.rows import Batch, OrderKey, referenced
from shards.stream import decode_entry, entry_range, stream_key

GROUP = "persist"
READ_COUNT = 256  # entries per batch (each entry is one shard batch of many events)
BLOCK_MS = 500
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0
STOPPED = object()  # what ``_retry`` returns when asked to stop while failing
PG_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError, store.ProgressMismatch)


async def ensure_group(client: aioredis.Redis, key: str) -> None:
    try:
        await client.xgroup_create(key, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class ShardWriter:
    """Moves one shard's stream into PostgreSQL."""

    def __init__(
        self,
        dsn: str,
        client: aioredis.Redis,
        shard: int,
        consumer: str,
        stop: asyncio.Event,
        commit_interval_s: float = 0.0,
    ) -> None:
        self.dsn = dsn
        self.client = client
        self.shard = shard
        self.key = stream_key(shard)
        self.consumer = consumer
        self.stop = stop
        self.commit_interval_s = commit_interval_s
        self.conn: asyncpg.Connection | None = None
        self.last_seq = -1  # -1: read it from the database
        self.cache: dict[OrderKey, list] = {}
        self.events = 0
        self.batches = 0

    async def run(self) -> None:
        if await self._retry("redis", lambda: ensure_group(self.client, self.key)) is STOPPED:
            return
        cursor = "0"  # first the entries this consumer was given and never acknowledged
        caught_up = False
        last_commit = 0.0
        while not self.stop.is_set():
            if caught_up and await self._pace(last_commit):
                return
            reply = await self._retry("redis", lambda c=cursor: self._read(c))
            if reply is STOPPED:
                return
            entries = reply[0][1] if reply else []  # type: ignore[index]
            caught_up = len(entries) < READ_COUNT
            if not entries:
                if cursor != ">":
                    cursor = ">"
                continue
            if cursor != ">":
                cursor = entries[-1][0]
            if await self._retry("postgres", lambda es=entries: self._write(es)) is STOPPED:
                return  # not acknowledged: the entries stay pending for the next run
            last_commit = time.monotonic()
            await self._retry("redis", lambda es=entries: self.client.xack(self.key, GROUP, *[e[0] for e in es]))

    async def _pace(self, last_commit: float) -> bool:
        """Wait until ``commit_interval_s`` after the last commit; True when asked to stop meanwhile."""
        wait = last_commit + self.commit_interval_s - time.monotonic()
        if wait <= 0:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), wait)
        return self.stop.is_set()

    async def _read(self, cursor: str) -> Any:
        block = None if cursor != ">" else BLOCK_MS
        return await self.client.xreadgroup(GROUP, self.consumer, {self.key: cursor}, count=READ_COUNT, block=block)

    async def _connect(self) -> asyncpg.Connection:
        if self.conn is None or self.conn.is_closed():
            self.conn = await asyncpg.connect(self.dsn, timeout=5)
            await store.prepare(self.conn)
            self.last_seq = await store.progress(self.conn, self.shard)
            self.cache.clear()
        return self.conn

    async def _write(self, entries: list) -> None:
        conn = await self._connect()
        try:
            after = self.last_seq
            events: list[Any] = []
            for _id, fields in entries:
                first, last = entry_range(fields)
                if last <= after:
                    continue
                events.extend(e for e in decode_entry(fields) if e.seq > after)
            if not events:
                return
            if events[0].seq != after + 1:
                log_event("persist_gap", "error", shard=self.shard, after=after, first=events[0].seq)
            missing = [k for k in referenced(events) if k not in self.cache]
            known = self.cache
            if missing:
                known = dict(self.cache)
                known.update(await store.load_orders(conn, missing))
            batch = Batch(self.shard, known)
            batch.add(events)
            await store.write_batch(conn, batch, after)
        except BaseException:
            # The commit may or may not have happened: start again from the database's view.
            with contextlib.suppress(Exception):
                await conn.close()
            self.conn = None
            raise
        self.last_seq = batch.last_seq
        batch.merge_into(self.cache)
        self.events += batch.events
        self.batches += 1

    async def _retry(self, what: str, action) -> object:  # noqa: ANN001 - a zero-argument coroutine factory
        delay = BACKOFF_MIN_S
        failing_since = None
        while True:
            try:
                result = await action()
                if failing_since is not None:
                    log_event(
                        "persist_recovered",
                        shard=self.shard,
                        what=what,
                        after_s=round(time.monotonic() - failing_since, 2),
                    )
                return result
            except (redis.RedisError, *PG_ERRORS) as exc:
                if failing_since is None:
                    failing_since = time.monotonic()
                log_event("persist_retry", "warning", shard=self.shard, what=what, error=f"{type(exc).__name__}: {exc}")
                if self.stop.is_set():
                    return STOPPED
                try:
                    await asyncio.wait_for(self.stop.wait(), delay)
                    return STOPPED
                except TimeoutError:
                    pass
                delay = min(delay * 2, BACKOFF_MAX_S)

    async def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await self.conn.close()


async def serve(config: Config, shards: list[int], index: int, stop: asyncio.Event) -> list[ShardWriter]:
    """Run a writer per shard in ``shards`` until ``stop`` is set; returns them (for their counters)."""
    client = aioredis.Redis.from_url(config.redis.url, socket_timeout=BLOCK_MS / 1000 + 5)
    interval_s = config.persist.commit_interval_ms / 1000
    writers = [ShardWriter(config.postgres.url, client, s, f"persist-{index}", stop, interval_s) for s in shards]
    tasks = [asyncio.create_task(w.run(), name=f"persist-shard-{w.shard}") for w in writers]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            if t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for w in writers:
            await w.close()
        await client.aclose()
    return writers


def run(config: Config, ctx: ProcessContext, index: int) -> None:
    """The persist process: every shard's stream into PostgreSQL until SIGTERM/SIGINT."""
    set_process_name(f"persist.{index}")
    shards = list(range(config.engine.shards))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log_event("persist_start", index=index, pid=os.getpid(), shards=len(shards))
        writers = await serve(config, shards, index, stop)
        log_event(
            "persist_stop", index=index, events=sum(w.events for w in writers), batches=sum(w.batches for w in writers)
        )

    asyncio.run(main())
