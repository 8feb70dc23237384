"""Journal, snapshots and recovery of a shard against the session Redis, with real rings.

A fake shard loop reads command records from two rings, applies them, journals
each batch (``RedisJournal``) and commits, then "dies" at chosen points: after
journaling without committing, and after applying without journaling. Recovery
must then give the engine a reference engine reaches by applying every command
exactly once.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from ringbuf.ring import Ring
from shards.engine import Engine
from shards.journal import RedisJournal, decode_positions, encode_positions
from shards.protocol import CancelOrder, NewOrder, SymbolSpec
from shards.recovery import (
    PERSIST_GROUP,
    SnapshotFile,
    Snapshotter,
    decode_snapshot,
    encode_snapshot,
    persist_floor,
    read_snapshot,
    recover,
    snapshot_path,
    write_snapshot,
)
from shards.stream import stream_key
from shards.wire import decode_command, encode_command

SPECS = [SymbolSpec(1, "AAA", 1, 1_000_000, 1, 1_000_000), SymbolSpec(2, "BBB", 1, 1_000_000, 1, 1_000_000)]


@pytest.fixture
def rings() -> Any:
    made = [Ring.create(f"test-rec-{uuid.uuid4().hex[:10]}", 1 << 16) for _ in range(2)]
    yield made
    for r in made:
        r.close()
        r.unlink()


def _commands(n: int) -> list[object]:
    out: list[object] = []
    for i in range(n):
        if i % 7 == 6:
            out.append(CancelOrder(1 + i % 2, 1, i // 2, "", 0))
        else:
            side = 1 + (i % 3 == 0)
            out.append(NewOrder(1 + i % 2, 1 + i % 4, f"o{i}", side, 1, 1, 100 + i % 5, 1 + i % 9, 0, 0, 0))
    return out


def _stamp(cmd: object, ts: int) -> object:
    return cmd._replace(ts=ts)  # type: ignore[attr-defined]


class FakeShard:
    """The shard loop's order of work: read, apply, journal, (answer), commit."""

    def __init__(self, engine: Engine, rings: list[Ring], journal: RedisJournal) -> None:
        self.engine, self.rings, self.journal = engine, rings, journal
        self.ts = 1_000

    def step(self, n: int, *, journal: bool = True, commit: bool = True) -> int:
        got = 0
        for ring in self.rings:
            for record in ring.read(n):
                _rid, cmd = decode_command(record)
                self.ts += 1
                self.engine.apply(_stamp(cmd, self.ts))
                got += 1
        if journal:
            self.journal.append_encoded(self.engine.take_encoded(), self.engine.last_seq)
        if commit:
            for ring in self.rings:
                ring.commit()
        return got


def _reference(cmds_by_ring: list[list[object]], order: list[tuple[int, int]]) -> Engine:
    """Apply (ring, count) steps in the same interleaving as the shard, each command once."""
    engine = Engine(SPECS)
    pos = [0, 0]
    ts = 1_000
    for ring, count in order:
        for cmd in cmds_by_ring[ring][pos[ring] : pos[ring] + count]:
            ts += 1
            engine.apply(_stamp(cmd, ts))
        pos[ring] += count
    return engine


def test_positions_and_snapshot_files_round_trip(rings: list[Ring], tmp_path: Path) -> None:
    rings[0].write(b"x" * 10)
    rings[0].read(1)
    assert decode_positions(encode_positions(rings)) == [(rings[0].created_ns, 16), (rings[1].created_ns, 0)]
    snap = SnapshotFile(7, b"123-0", [(1, 2), (3, 4)], b"engine")
    assert decode_snapshot(encode_snapshot(snap)) == snap
    write_snapshot(tmp_path / "s" / "a.snap", snap)
    assert read_snapshot(tmp_path / "s" / "a.snap") == snap
    assert read_snapshot(tmp_path / "missing.snap") is None


@pytest.mark.parametrize("with_snapshot", [False, True])
def test_recovery_applies_each_ring_record_exactly_once(
    rings: list[Ring], services: Any, tmp_path: Path, with_snapshot: bool
) -> None:
    # arrange: 60 commands per ring; batches of 5 per ring
    url = services.redis_db_url()
    cmds = [_commands(60), _commands(60)[::-1]]
    for ring, cs in zip(rings, cmds, strict=True):
        assert ring.write_batch([encode_command(i + 1, c) for i, c in enumerate(cs)]) == len(cs)
    engine = Engine(SPECS)
    journal = RedisJournal(url, 3, rings)
    shard = FakeShard(engine, rings, journal)
    for _ in range(4):
        shard.step(5)
    if with_snapshot:
        Snapshotter(tmp_path, 3, engine, journal, rings, 60).write()
    for _ in range(2):
        shard.step(5)
    shard.step(5, commit=False)  # journaled, never committed: must not be applied again
    shard.step(5, journal=False, commit=False)  # applied, never journaled: lost, must be applied on restart
    journal.close()
    # act: a new process attaches the same rings and recovers
    attached = [Ring.attach(r.name) for r in rings]
    try:
        rec = recover(redis.Redis.from_url(url), tmp_path, 3, SPECS, attached)
        journal2 = RedisJournal(url, 3, attached, last_seq=rec.engine.last_seq)
        again = FakeShard(rec.engine, attached, journal2)
        again.ts = 1_000 + 2 * 35  # the clock of the 7 journaled steps (5 commands each, 2 rings)
        while again.step(5):
            pass
        # assert
        expected = _reference(cmds, [(0, 5), (1, 5)] * 7 + [(0, 5), (1, 5)] * 5)
        assert rec.skipped_records[0] > 0
        assert rec.engine.snapshot() == expected.snapshot()
        assert rec.entries == (3 if with_snapshot else 7)
    finally:
        for r in attached:
            r.close()


def test_a_new_ring_of_the_same_name_is_read_from_its_start(rings: list[Ring], services: Any, tmp_path: Path) -> None:
    # arrange: a journal written against rings that no longer exist (a previous launcher run)
    url = services.redis_db_url()
    engine = Engine(SPECS)
    for ring, cs in zip(rings, [_commands(10), _commands(10)], strict=True):
        ring.write_batch([encode_command(i + 1, c) for i, c in enumerate(cs)])
    FakeShard(engine, rings, RedisJournal(url, 0, rings)).step(10)
    names = [r.name for r in rings]
    for r in rings:
        r.close()
        r.unlink()
    rings[:] = [Ring.create(name, 1 << 16) for name in names]
    rings[0].write(encode_command(1, _commands(1)[0]))
    # act
    rec = recover(redis.Redis.from_url(url), tmp_path, 0, SPECS, rings)
    # assert: the journal is replayed, and the new ring's record is still there to read
    assert rec.engine.last_seq == engine.last_seq
    assert rec.skipped_records == [0, 0]
    assert len(rings[0].read(10)) == 1


def test_trim_floor_waits_for_persist_and_the_snapshot(rings: list[Ring], services: Any, tmp_path: Path) -> None:
    # arrange
    url = services.redis_db_url()
    client = redis.Redis.from_url(url)
    key = stream_key(5)
    engine = Engine(SPECS)
    journal = RedisJournal(url, 5, [])
    shard = FakeShard(engine, [], journal)
    ids = []
    for i in range(6):
        engine.apply(_stamp(_commands(1)[0]._replace(client_order_id=f"t{i}"), 1_000 + i))
        shard.step(0)
        ids.append(journal.last_id)
    snapshots = Snapshotter(tmp_path, 5, engine, journal, [], 60)
    # act / assert: no persist group -> no trimming
    snapshots.write()
    assert journal.trim_floor is None
    # persist has read 2 entries and acknowledged 1 -> floor is the unacknowledged one
    client.xgroup_create(key, PERSIST_GROUP, id="0")
    got = client.xreadgroup(PERSIST_GROUP, "c", {key: ">"}, count=2)[0][1]
    client.xack(key, PERSIST_GROUP, got[0][0])
    assert persist_floor(client, key) == ids[1]
    snapshots.write()
    assert journal.trim_floor == ids[1]
    engine.apply(_stamp(_commands(1)[0]._replace(client_order_id="t9"), 2_000))
    shard.step(0)
    assert client.xlen(key) == 6  # entries ids[1].. and the new one
    assert snapshot_path(tmp_path, 5).exists()


def test_journal_survives_a_lost_connection_without_writing_twice(services: Any, capfd: Any) -> None:
    # arrange: the journal's connection is killed by the server between two batches
    url = services.redis_db_url()
    engine = Engine(SPECS)
    journal = RedisJournal(url, 6, [])
    shard = FakeShard(engine, [], journal)
    engine.apply(_stamp(_commands(1)[0], 1_000))
    shard.step(0)
    admin = redis.Redis.from_url(url)
    admin.client_kill_filter(_type="normal", skipme=True)
    # act
    engine.apply(_stamp(_commands(1)[0]._replace(client_order_id="second"), 1_001))
    shard.step(0)
    engine.apply(_stamp(_commands(1)[0]._replace(client_order_id="third"), 1_002))
    shard.step(0)
    # assert
    entries = admin.xrange(stream_key(6))
    assert [(e[1][b"f"], e[1][b"l"]) for e in entries] == [(b"1", b"2"), (b"3", b"4"), (b"5", b"6")]
    assert journal.last_seq == engine.last_seq == 6
    assert "event=journal_retry" in capfd.readouterr().err
