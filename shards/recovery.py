"""Snapshots of a matching shard, its recovery at start, and the trimming of its stream.

Owns: the snapshot files ``data_dir/snapshots/shard-<i>.snap`` (written
atomically: temporary file, fsync, rename, fsync of the folder), rebuilding an
engine at start (snapshot, then the stream after it), placing the command
rings' read cursors so that each uncommitted ring record is applied exactly
once, and choosing the stream's trim floor. Never: matches (the engine does),
writes stream entries (``shards/journal.py`` does), or runs on the per-order path.

Snapshot file (little-endian)::

    magic b"MESF"  version:u16  last_seq:i64  stream_id (u16 length + ASCII)  n_rings:u32
    n_rings x (created_ns:u64  read_position:u64)
    the engine's snapshot bytes (``Engine.snapshot``)

Recovery::

    engine = snapshot or empty; positions = snapshot's
    for each entry after the snapshot's stream id (XRANGE):
        replay its events with seq > engine.last_seq   (Engine.replay: command_for_replay)
        positions = the entry's ``r`` field
    for each command ring: if positions[i].created_ns == ring.created_ns (same ring):
        cursor = max(ring's committed head, positions[i].read_position)
    else cursor = head (a new ring, nothing of it applied)
    ring.seek(cursor); ring.commit()

Trimming: after each snapshot, the floor is the lower of the snapshot's
stream id and the first entry persist's consumer group still needs (its
oldest pending entry, else the entry after its last delivered one); with no
persist group yet nothing is trimmed. The journal applies it on its next XADD.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from deploy.log import log_event
from ringbuf.ring import Ring
from shards.engine import Engine
from shards.journal import RedisJournal, decode_positions
from shards.protocol import SymbolSpec
from shards.stream import FIELD_POSITIONS, decode_entry, entry_range, stream_key

MAGIC = b"MESF"
VERSION = 1
_HEAD = struct.Struct("<4sHq")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_POS = struct.Struct("<QQ")
PERSIST_GROUP = "persist"
XRANGE_COUNT = 512


class RecoveryError(Exception):
    code = -1000


@dataclass
class SnapshotFile:
    last_seq: int
    stream_id: bytes
    positions: list[tuple[int, int]]
    engine_bytes: bytes


def snapshot_path(data_dir: Path, shard: int) -> Path:
    return Path(data_dir) / "snapshots" / f"shard-{shard}.snap"


def encode_snapshot(snap: SnapshotFile) -> bytes:
    sid = snap.stream_id
    parts = [_HEAD.pack(MAGIC, VERSION, snap.last_seq), _U16.pack(len(sid)), sid, _U32.pack(len(snap.positions))]
    parts += [_POS.pack(*p) for p in snap.positions]
    parts.append(snap.engine_bytes)
    return b"".join(parts)


def decode_snapshot(data: bytes) -> SnapshotFile:
    try:
        magic, version, last_seq = _HEAD.unpack_from(data, 0)
        if magic != MAGIC or version != VERSION:
            raise RecoveryError(f"snapshot header {magic!r} version {version} is not {MAGIC!r} version {VERSION}")
        pos = _HEAD.size
        (n,) = _U16.unpack_from(data, pos)
        pos += 2
        sid = bytes(data[pos : pos + n])
        pos += n
        (rings,) = _U32.unpack_from(data, pos)
        pos += 4
        positions = [_POS.unpack_from(data, pos + i * _POS.size) for i in range(rings)]
        pos += rings * _POS.size
    except struct.error as exc:
        raise RecoveryError(f"truncated snapshot file: {exc}") from None
    return SnapshotFile(last_seq, sid, positions, bytes(data[pos:]))


def write_snapshot(path: Path, snap: SnapshotFile) -> None:
    """Write ``snap`` to ``path`` atomically (a reader sees the old file or the new one, whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(encode_snapshot(snap))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_snapshot(path: Path) -> SnapshotFile | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return decode_snapshot(data)


def _next_id(entry_id: bytes) -> bytes:
    ms, _, seq = entry_id.partition(b"-")
    return b"%d-%d" % (int(ms), int(seq or 0) + 1)


@dataclass
class Recovered:
    engine: Engine
    stream_id: bytes  # last entry replayed (or the snapshot's)
    entries: int = 0
    events: int = 0
    skipped_records: list[int] = field(default_factory=list)  # bytes skipped per ring


def recover(
    client: redis.Redis, data_dir: Path, shard: int, specs: Sequence[SymbolSpec], rings: Sequence[Ring]
) -> Recovered:
    """The engine of ``shard`` as of its last journaled batch; the rings' cursors placed and committed."""
    snap = read_snapshot(snapshot_path(data_dir, shard))
    if snap is not None:
        engine = Engine.restore(snap.engine_bytes, specs)
        if engine.last_seq != snap.last_seq:
            raise RecoveryError(f"snapshot of shard {shard}: header seq {snap.last_seq} != engine {engine.last_seq}")
        positions = list(snap.positions)
        stream_id = snap.stream_id
    else:
        engine = Engine(specs)
        positions = []
        stream_id = b"0-0"
    out = Recovered(engine, stream_id)
    key = stream_key(shard)
    start = b"(" + stream_id
    while True:
        entries: Any = client.xrange(key, min=start, max="+", count=XRANGE_COUNT)
        if not entries:
            break
        for entry_id, fields in entries:
            first, last = entry_range(fields)
            if last > engine.last_seq:
                if first > engine.last_seq + 1:
                    raise RecoveryError(
                        f"stream {key} entry {entry_id!r} starts at seq {first}, after a gap from {engine.last_seq}"
                    )
                events = [e for e in decode_entry(fields) if e.seq > engine.last_seq]
                engine.replay(events)
                out.events += len(events)
            pos_field = fields.get(FIELD_POSITIONS)
            if pos_field is not None:
                positions = decode_positions(pos_field)
            out.entries += 1
            out.stream_id = entry_id
        start = b"(" + entries[-1][0]
    for i, ring in enumerate(rings):
        _tail, head = ring.positions()
        cursor = head
        if i < len(positions) and positions[i][0] == ring.created_ns and positions[i][1] > head:
            cursor = positions[i][1]
        ring.seek(cursor)
        ring.commit()
        out.skipped_records.append(cursor - head)
    return out


def persist_floor(client: redis.Redis, key: str) -> bytes | None:
    """First entry id persist's consumer group still needs, or None when there is no such group."""
    try:
        groups: Any = client.xinfo_groups(key)
    except redis.ResponseError:
        return None
    for g in groups:
        name = g.get("name")
        if name in (PERSIST_GROUP, PERSIST_GROUP.encode()):
            if g.get("pending"):
                summary: Any = client.xpending(key, PERSIST_GROUP)
                low = summary.get("min")
                if low:
                    return low if isinstance(low, bytes) else str(low).encode()
            last = g.get("last-delivered-id")
            last = last if isinstance(last, bytes) else str(last).encode()
            return _next_id(last)
    return None


def _older(a: bytes, b: bytes) -> bytes:
    def key(x: bytes) -> tuple[int, int]:
        ms, _, seq = x.partition(b"-")
        return int(ms), int(seq or 0)

    return a if key(a) <= key(b) else b


class Snapshotter:
    """Periodic and final snapshots of one shard, and the trim floor they allow."""

    def __init__(
        self,
        data_dir: Path,
        shard: int,
        engine: Engine,
        journal: RedisJournal,
        rings: Sequence[Ring],
        interval_s: int,
    ) -> None:
        self.path = snapshot_path(data_dir, shard)
        self.shard = shard
        self.engine = engine
        self.journal = journal
        self.rings = list(rings)
        self.interval_s = interval_s
        self.next_at = time.monotonic() + interval_s
        self.written = 0

    def maybe(self) -> None:
        """Snapshot when the interval has passed (call between batches, after the rings are committed)."""
        if time.monotonic() >= self.next_at:
            self.write()

    def write(self) -> None:
        started = time.monotonic()
        self.next_at = started + self.interval_s
        journal = self.journal
        if journal.last_seq != self.engine.last_seq:
            raise RecoveryError(
                f"shard {self.shard}: engine at seq {self.engine.last_seq}, journal at {journal.last_seq}"
            )
        snap = SnapshotFile(
            last_seq=self.engine.last_seq,
            stream_id=journal.last_id,
            positions=[(r.created_ns, r.read_position()) for r in self.rings],
            engine_bytes=self.engine.snapshot(),
        )
        write_snapshot(self.path, snap)
        self.written += 1
        floor = None
        try:
            persisted = persist_floor(journal.client, journal.key)
            if persisted is not None:
                floor = _older(persisted, snap.stream_id)
                journal.trim_floor = floor
        except redis.RedisError as exc:
            log_event("trim_floor_failed", "warning", shard=self.shard, error=f"{type(exc).__name__}: {exc}")
        log_event(
            "snapshot_written",
            shard=self.shard,
            seq=snap.last_seq,
            stream_id=snap.stream_id.decode(),
            bytes=len(snap.engine_bytes),
            trim_floor=floor.decode() if floor else "-",
            us=int((time.monotonic() - started) * 1e6),
        )
