"""The persist process: every shard stream, through a consumer group, into PostgreSQL.

Owns: this process's signal handling (``run`` only) and one ``Writer`` for
the shards it serves (every matching shard: ``exchange up`` starts one
persist process), with one Redis connection (``persist.streams``) and one
PostgreSQL connection. It reads all its shards' streams in one XREADGROUP
(group ``persist``, consumer ``persist-<index>``, up to ``READ_COUNT`` entries
per stream): first the entries delivered earlier but never acknowledged (a
previous run died mid-batch), then new ones. What one read brings is one
batch per shard (``persist.rows``, straight from the entries' packed events),
all written in one transaction (``persist.store``: one statement, or binary
COPYs for a large write; a read of more than ``STATEMENT_BYTES`` of packed
events, when catching up, is cut into several writes), and only then
acknowledged: the XACKs go out with the next read, in the same round trip (and
on their own before the writer stops). One writer for all shards: one read, one
statement, one commit (one fsync) per interval instead of one per shard.

Pacing (``persist.commit_interval_ms``): once the writer has caught up with
its streams (no read was full), it waits until that long after its previous
commit before it reads again, so under load the entries of that interval share
one transaction and one fsync instead of paying one each. When entries come
further apart than that it never waits; while behind, it reads full batches
back to back. Nothing acknowledged to a client waits on this: the shard's
stream in Redis is the journal.

Never: acknowledges before the commit, or drops an entry. PostgreSQL down
or restarted: the batches are retried with back-off (0.1 s doubling to 5 s)
and the order caches are dropped (a commit whose answer was lost may have moved
the progress); Redis down: the read is retried the same way, and the
acknowledgements wait for it. Events at or below a shard's
``persist_progress.last_seq`` are skipped, so replaying a stream twice writes
nothing twice.

Metrics: once a second a task writes the writer's counters (commits, events, rows per table, retries, the
last write's duration) to the hash ``exchange:metrics:persist:<index>`` (``deploy/telemetry.py``) over a Redis
connection of its own; a failure is logged once and never stops the writer.

Stop: SIGTERM/SIGINT finish the batch in hand, acknowledge it, then return.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
import redis

from deploy import telemetry
from deploy.config import Config
from deploy.log import log_event, set_process_name
from deploy.topology import ProcessContext
from persist import store
from persist.rows import Batch, OrderKey
from persist.streams import StreamClient
from shards.stream import FIELD_EVENTS, FIELD_FIRST, FIELD_LAST, stream_key

GROUP = "persist"
READ_COUNT = 256  # entries per stream and read (each entry is one shard batch of many events)
STATEMENT_BYTES = 16 << 20  # packed events per write at most (about 250 000 events); a read is cut into more
BLOCK_MS = 500
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0
STOPPED = object()  # what ``_retry`` returns when asked to stop while failing
PG_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError, store.ProgressMismatch)
_GROUP = GROUP.encode()
_NEW = b">"


def unpack_entry(flat: Sequence[bytes]) -> tuple[int, int, bytes]:
    """(first seq, last seq, packed events) of a stream entry's flat field list (``shards/stream.py``)."""
    first = last = 0
    events = b""
    for i in range(0, len(flat) - 1, 2):
        name = flat[i]
        if name == FIELD_EVENTS:
            events = flat[i + 1]
        elif name == FIELD_FIRST:
            first = int(flat[i + 1])
        elif name == FIELD_LAST:
            last = int(flat[i + 1])
    return first, last, events


def _chunks(read: dict[int, list], limit: int) -> list[dict[int, list]]:
    """``read`` ({shard: entries}) cut into parts of about ``limit`` bytes of packed events each, entries in order."""
    chunks: list[dict[int, list]] = [{}]
    size = 0
    for shard, entries in read.items():
        for entry in entries:
            if size >= limit:
                chunks.append({})
                size = 0
            chunks[-1].setdefault(shard, []).append(entry)
            flat = entry[1]
            size += sum(map(len, flat)) if flat else 0  # the field names count too: a few bytes
    return chunks


class Writer:
    """Moves the streams of ``shards`` into PostgreSQL."""

    def __init__(
        self,
        dsn: str,
        redis_url: str,
        shards: Sequence[int],
        consumer: str,
        stop: asyncio.Event,
        commit_interval_s: float = 0.0,
    ) -> None:
        self.dsn = dsn
        self.redis = StreamClient(redis_url, BLOCK_MS / 1000 + 5)
        self.shards = list(shards)
        self.keys = {s: stream_key(s).encode() for s in self.shards}
        self.shard_of = {k: s for s, k in self.keys.items()}
        self.consumer = consumer.encode()
        self.stop = stop
        self.commit_interval_s = commit_interval_s
        self.conn: asyncpg.Connection | None = None
        self.last_seq: dict[int, int] = {}  # per shard; read from the database on (re)connect
        self.caches: dict[int, dict[OrderKey, list]] = {s: {} for s in self.shards}
        self.acks: list[list[bytes]] = []  # XACKs of committed entries, sent with the next command
        self.events = 0
        self.batches = 0  # transactions committed
        self.rows_orders = 0
        self.rows_trades = 0
        self.rows_history = 0
        self.retries = 0
        self.last_commit_us = 0

    async def run(self) -> None:
        if await self._retry("redis", self._create_groups) is STOPPED:
            return
        cursors = {s: b"0" for s in self.shards}  # first the entries this consumer was given and never acknowledged
        caught_up = False
        last_commit = 0.0
        try:
            while not self.stop.is_set():
                if caught_up and await self._pace(last_commit):
                    return
                reply = await self._retry("redis", lambda: self._read(cursors))
                if reply is STOPPED:
                    return
                read: dict[int, list] = {}
                caught_up = True
                for key, entries in reply or ():  # type: ignore[attr-defined]
                    shard = self.shard_of[key]
                    read[shard] = entries
                    caught_up = caught_up and len(entries) < READ_COUNT
                    if cursors[shard] != _NEW:
                        cursors[shard] = entries[-1][0] if entries else _NEW
                read = {s: e for s, e in read.items() if e}
                if not read:
                    continue
                if await self._retry("postgres", lambda r=read: self._write(r)) is STOPPED:
                    return  # not acknowledged: the entries stay pending for the next run
                last_commit = time.monotonic()
                self.acks = [[b"XACK", self.keys[s], _GROUP, *[e[0] for e in es]] for s, es in read.items()]
        finally:
            if self.acks:
                with contextlib.suppress(redis.RedisError):
                    await self.redis.call(self.acks)
                self.acks = []

    async def _create_groups(self) -> None:
        for key in self.keys.values():
            try:
                await self.redis.call([[b"XGROUP", b"CREATE", key, _GROUP, b"0", b"MKSTREAM"]])
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _pace(self, last_commit: float) -> bool:
        """Wait until ``commit_interval_s`` after the last commit; True when asked to stop meanwhile."""
        wait = last_commit + self.commit_interval_s - time.monotonic()
        if wait <= 0:
            return False
        if wait <= 0.05:  # short: a plain sleep (a stop waits for it) costs less than waiting on the event
            await asyncio.sleep(wait)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), wait)
        return self.stop.is_set()

    async def _read(self, cursors: dict[int, bytes]) -> Any:
        command = [b"XREADGROUP", b"GROUP", _GROUP, self.consumer, b"COUNT", b"%d" % READ_COUNT]
        if all(c == _NEW for c in cursors.values()):
            command += [b"BLOCK", b"%d" % BLOCK_MS]
        command += [b"STREAMS", *[self.keys[s] for s in self.shards], *[cursors[s] for s in self.shards]]
        replies = await self.redis.call([*self.acks, command])
        self.acks = []
        return replies[-1]

    async def _connect(self) -> asyncpg.Connection:
        if self.conn is None or self.conn.is_closed():
            self.conn = await store.connect(self.dsn)
            for shard in self.shards:
                self.last_seq[shard] = await store.progress(self.conn, shard)
                self.caches[shard].clear()
        return self.conn

    async def _write(self, read: dict[int, list]) -> None:
        """Write what one read brought: one statement, or one per ``STATEMENT_BYTES`` of packed events."""
        conn = await self._connect()
        try:
            for chunk in _chunks(read, STATEMENT_BYTES):
                batches = []
                for shard, entries in chunk.items():
                    batch = await self._batch(conn, shard, entries)
                    if batch is not None:
                        batches.append(batch)
                if not batches:
                    continue
                started = time.perf_counter_ns()
                await store.write_batches(conn, batches)
                self.last_commit_us = (time.perf_counter_ns() - started) // 1000
                for batch in batches:
                    self.last_seq[batch.shard] = batch.last_seq
                    batch.merge_into(self.caches[batch.shard])
                    self.events += batch.events
                    self.rows_orders += len(batch.orders)
                    self.rows_trades += len(batch.trades)
                    self.rows_history += len(batch.history)
                self.batches += 1
        except BaseException:
            # The commit may or may not have happened: start again from the database's view.
            with contextlib.suppress(Exception):
                await conn.close()
            self.conn = None
            raise

    async def _batch(self, conn: asyncpg.Connection, shard: int, entries: list) -> Batch | None:
        """One shard's batch of the entries' events after its progress; None when they hold nothing new."""
        after = self.last_seq[shard]
        packed = []
        for entry_id, flat in entries:
            if flat is None:  # a pending entry that is no longer in the stream
                log_event("persist_entry_gone", "error", shard=shard, entry=entry_id.decode())
                continue
            first, last, events = unpack_entry(flat)
            if last > after:
                if not packed and first > after + 1:
                    log_event("persist_gap", "error", shard=shard, after=after, first=first)
                packed.append(events)
        if not packed:
            return None
        cache = self.caches[shard]
        batch = Batch(shard, cache, after, strict=False)
        for events in packed:
            batch.add_encoded(events)
        if batch.missing:  # orders of an earlier batch that the cache does not hold (after a restart)
            known = dict(cache)
            known.update(await store.load_orders(conn, batch.missing))
            batch = Batch(shard, known, after)
            for events in packed:
                batch.add_encoded(events)
        return batch if batch.events else None

    async def _retry(self, what: str, action) -> object:  # noqa: ANN001 - a zero-argument coroutine factory
        delay = BACKOFF_MIN_S
        failing_since = None
        while True:
            try:
                result = await action()
                if failing_since is not None:
                    log_event("persist_recovered", what=what, after_s=round(time.monotonic() - failing_since, 2))
                return result
            except (redis.RedisError, *PG_ERRORS) as exc:
                self.retries += 1
                if failing_since is None:
                    failing_since = time.monotonic()
                log_event("persist_retry", "warning", what=what, error=f"{type(exc).__name__}: {exc}")
                if self.stop.is_set():
                    return STOPPED
                try:
                    await asyncio.wait_for(self.stop.wait(), delay)
                    return STOPPED
                except TimeoutError:
                    pass
                delay = min(delay * 2, BACKOFF_MAX_S)

    def figures(self) -> dict[str, int]:
        """The writer's counters now, as published (``telemetry.PERSIST_FIELDS``)."""
        return {
            "commits": self.batches,
            "events": self.events,
            "rows_orders": self.rows_orders,
            "rows_trades": self.rows_trades,
            "rows_history": self.rows_history,
            "retries": self.retries,
            "last_commit_us": self.last_commit_us,
        }

    async def close(self) -> None:
        self.redis.close()
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await self.conn.close()


async def serve(config: Config, shards: list[int], index: int, stop: asyncio.Event) -> list[Writer]:
    """Run a writer for ``shards`` until ``stop`` is set; returns it, in a list (for its counters)."""
    interval_s = config.persist.commit_interval_ms / 1000
    writers = [Writer(config.postgres.url, config.redis.url, shards, f"persist-{index}", stop, interval_s)]
    tasks = [asyncio.create_task(w.run(), name="persist-writer") for w in writers]
    metrics = StreamClient(config.redis.url, telemetry.SEND_TIMEOUT_S)
    publisher = asyncio.create_task(
        telemetry.publish_every(metrics.call, writers[0].figures, "persist", index, stop), name="persist-metrics"
    )
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            if t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        publisher.cancel()
        await asyncio.gather(*tasks, publisher, return_exceptions=True)
        metrics.close()
        for w in writers:
            await w.close()
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
