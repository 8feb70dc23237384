"""Reading the shard event streams from Redis into the market state.

Each wsfeed process tails every shard stream (``shards.stream.stream_key``)
on its own, with no consumer group: several processes read the same entries.

- ``catch_up`` runs before the process accepts connections: it starts each
  shard from its latest snapshot file (``shards.recovery``: books, depth
  sequences and open orders; the stream is trimmed only below it), notes each
  stream's last entry id at that moment and reads every entry after the
  snapshot up to it (``XRANGE`` in chunks), applying them without publishing,
  so books and open orders are exact. Candles and tickers only see the trades
  still in the stream.
- ``follow`` then blocks on ``XREAD`` for everything after, and applies
  each entry live (publishing). It reads on a connection of its own
  (``wsfeed.xread``: about 60 µs of CPU per read where redis-py's asyncio
  client took about 180 µs) and takes the raw reply as it is: only each
  entry's ``e`` field (the packed events) is used, and handed as bytes to
  ``Market.apply_packed``, which reads them without building event objects.
  It resumes from the last entry it applied, so
  a Redis hiccup (connection lost, Redis restarted with its append-only file)
  costs clients nothing but delay; entries Redis itself lost show up to clients
  as a jump in the depth ``U``. It retries with a growing delay (at most
  ``MAX_RETRY_S``) and logs each failure once per try. Under load it reads
  at most once per ``wsfeed.read_interval_ms`` (after a read that found
  entries, it waits out the rest of the interval), so one read carries many
  shard batches instead of paying a Redis round trip and a wake-up for each
  (on this 2-core VM a read costs a few hundred µs of CPU, wake-ups
  included: ``loadtests/bench_ws.py --follow``); a read that finds a full
  chunk is followed at once, and an idle feed never waits: the first entry
  after a quiet spell goes out as soon as it comes.

An entry that cannot be decoded or applied is logged and skipped (its depth
gap becomes visible to clients as a ``U`` jump) rather than crash-looping the
process on it at every restart. Never writes to Redis.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from deploy.config import Config
from shards.engine import Engine
from shards.events import EventCodecError, decode_events, encode_events
from shards.recovery import read_snapshot, snapshot_path
from shards.stream import FIELD_EVENTS, stream_key
from wsfeed.market import Market
from wsfeed.xread import XReadConnection

log = logging.getLogger("wsfeed.tail")

CHUNK = 1000  # entries per XRANGE / XREAD
BLOCK_MS = 1000
MAX_RETRY_S = 2.0


class Tailer:
    def __init__(self, redis: Any, shards: int, market: Market, config: Config | None = None) -> None:
        self.redis = redis
        self.market = market
        self.config = config
        self.keys = [stream_key(i) for i in range(shards)]
        self.last: dict[str, bytes | str] = {key: "0-0" for key in self.keys}
        self.skip_seq: dict[str, int] = {key: 0 for key in self.keys}  # events up to here came from a snapshot
        self.entries = 0
        self.bad_entries = 0
        self.on_entry: Callable[[], None] | None = None
        self.read_interval_s = config.wsfeed.read_interval_ms / 1000 if config is not None else 0.0

    def _apply(self, key: str, entry_id: bytes, packed: bytes | None, live: bool) -> None:
        self.last[key] = entry_id
        self.entries += 1
        try:
            if packed is None:
                raise EventCodecError(f"entry has no {FIELD_EVENTS!r} field")
            skip = self.skip_seq[key]
            if skip:
                packed = self._after_snapshot(key, packed, skip)
            self.market.apply_packed(packed, live)
        except EventCodecError as exc:
            self.bad_entries += 1
            log.error("undecodable entry %s %r skipped: %s", key, entry_id, exc)
        except Exception:  # a bug must not crash-loop the process on the same entry at every restart
            self.bad_entries += 1
            log.exception("entry %s %r could not be applied; skipped", key, entry_id)

    def _after_snapshot(self, key: str, packed: bytes, skip: int) -> bytes:
        """The events of ``packed`` after the snapshot's last sequence number ``skip`` (the stream's first entries
        may overlap the snapshot); once an entry starts after it, so do all later ones: stop looking."""
        events = decode_events(packed)
        if events and events[0].seq <= skip:
            return encode_events([e for e in events if e.seq > skip])
        if events:
            self.skip_seq[key] = 0
        return packed

    async def catch_up(self) -> int:
        """Apply every entry present now, silently; returns how many."""
        delay = 0.05
        while True:
            try:
                return await self._catch_up()
            except (RedisError, OSError) as exc:
                log.warning("catch-up read failed: %r; retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_S)

    def load_snapshots(self) -> None:
        """Start each shard from its latest snapshot file, when there is one (the stream may be trimmed below it)."""
        if self.config is None:
            return
        for shard, key in enumerate(self.keys):
            path = snapshot_path(self.config.data_dir, shard)
            try:
                snap = read_snapshot(path)
                if snap is None:
                    continue
                symbols = self.config.symbols_of_shard(shard)
                engine = Engine.restore(snap.engine_bytes, [s.spec() for s in symbols])
            except Exception as exc:  # unreadable: fall back to the whole stream
                log.warning("snapshot %s not used: %r", path, exc)
                continue
            self.market.load_engine(engine, [s.symbol_id for s in symbols])
            self.last[key] = snap.stream_id
            self.skip_seq[key] = snap.last_seq
            log.info("shard %d starts from snapshot at seq %d, stream id %r", shard, snap.last_seq, snap.stream_id)

    async def _catch_up(self) -> int:
        count = 0
        for key in self.keys:
            newest = await self.redis.xrevrange(key, count=1)
            if not newest:
                continue
            end = newest[0][0]
            while True:
                start = self.last[key]
                low = "-" if start in ("0-0", b"0-0") else b"(" + _b(start)
                entries = await self.redis.xrange(key, min=low, max=end, count=CHUNK)
                for entry_id, fields in entries:
                    self._apply(key, entry_id, fields.get(FIELD_EVENTS), False)
                count += len(entries)
                if len(entries) < CHUNK:
                    break
        self.market.refresh_best()
        return count

    async def follow(self, stop: asyncio.Event) -> None:
        """Apply new entries live until ``stop`` is set."""
        delay = 0.05
        interval = self.read_interval_s
        conn = XReadConnection.like(self.redis)
        last = self.last
        try:
            while not stop.is_set():
                try:
                    found = await conn.read(last, CHUNK, BLOCK_MS)
                    delay = 0.05
                except asyncio.CancelledError:
                    raise
                except (RedisError, OSError) as exc:
                    log.warning("stream read failed: %r; retrying in %.2fs", exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_RETRY_S)
                    continue
                if not found:
                    continue
                read_at = time.monotonic()
                full = self.apply_reply(found)
                if self.on_entry is not None:
                    self.on_entry()
                if full:
                    continue
                if interval:
                    wait = read_at + interval - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
        finally:
            conn.close()

    def apply_reply(self, found: list) -> bool:
        """Apply live every entry of a raw XREAD reply (``wsfeed.xread``); True when a stream filled its chunk."""
        full = False
        apply_packed = self.market.apply_packed
        for key, entries in found:
            name = key.decode() if isinstance(key, bytes) else key
            if len(entries) >= CHUNK:
                full = True
            if self.skip_seq[name]:
                for entry_id, fields in entries:
                    self._apply(name, entry_id, _events_field(fields), True)
                continue
            for entry_id, fields in entries:
                # the shard writes "f l e [r]": the events are the third value
                packed = fields[5] if len(fields) > 5 and fields[4] == FIELD_EVENTS else _events_field(fields)
                try:
                    if packed is None:
                        raise EventCodecError(f"entry has no {FIELD_EVENTS!r} field")
                    apply_packed(packed, True)
                except Exception:
                    self._apply_failed(name, entry_id)
            if entries:
                self.last[name] = entries[-1][0]
                self.entries += len(entries)
        return full

    def _apply_failed(self, key: str, entry_id: bytes) -> None:
        """Log an entry that raised (the exception being handled) and count it; it is skipped."""
        exc = sys.exc_info()[1]
        self.bad_entries += 1
        if isinstance(exc, EventCodecError):
            log.error("undecodable entry %s %r skipped: %s", key, entry_id, exc)
        else:  # a bug must not crash-loop the process on the same entry at every restart
            log.exception("entry %s %r could not be applied; skipped", key, entry_id)


def _events_field(fields: list | None) -> bytes | None:
    """The packed events of a raw entry ``[field, value, ...]`` (``f l e r``: ``e`` is third), None if absent."""
    if fields is None:
        return None
    if len(fields) > 5 and fields[4] == FIELD_EVENTS:
        return fields[5]
    return dict(zip(fields[0::2], fields[1::2], strict=False)).get(FIELD_EVENTS)


def _b(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()
