"""ringbuf between real processes: volume with checksums across wrap-around, back-pressure, and a
consumer killed with SIGKILL that resumes at its committed position.

Every record is ``seq (u64) | crc32 (u32) | body``, the crc seeded with the sequence number, so a
lost, duplicated, reordered, torn or early-read record fails the check in ``verify``."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from ringbuf import Ring

pytestmark = pytest.mark.usefixtures("lane")  # each test on the C lane and in pure Python
CTX = mp.get_context("fork")


HEADER = struct.Struct("<QI")


def record(seq: int, body: bytes) -> bytes:
    return HEADER.pack(seq, zlib.crc32(body, seq & 0xFFFFFFFF)) + body


def verify(rec: bytes, expected_seq: int) -> None:
    if len(rec) < 12:
        raise AssertionError(f"record {expected_seq} has {len(rec)} bytes (torn?)")
    seq, crc = HEADER.unpack_from(rec)
    if seq != expected_seq:
        raise AssertionError(f"record {seq} where {expected_seq} was due (loss, duplicate or early read)")
    if zlib.crc32(memoryview(rec)[12:], seq & 0xFFFFFFFF) != crc:
        raise AssertionError(f"record {seq}: bad checksum (torn or early read)")


def bodies(seed: int, max_body: int, count: int = 4096) -> list[bytes]:
    """Random bodies: mostly 0-120 bytes, one in 300 up to ``max_body`` (the ring's max_record - 12)."""
    rng = random.Random(seed)
    sizes = [rng.randint(0, 120) if rng.random() < 0.997 else rng.randint(120, max_body) for _ in range(count)]
    return [rng.randbytes(size) for size in sizes]


def produce(name: str, count: int, seed: int, refusals: mp.Queue | None = None) -> None:
    """Child: write records 0..count-1, one at a time or in batches, spinning while the ring is full."""
    ring = Ring.attach(name)
    rng = random.Random(seed)
    pool = bodies(seed, ring.max_record - 12)
    write, write_batch = ring.write, ring.write_batch
    refused = 0
    seq = 0
    while seq < count:
        k = min(rng.randint(1, 64), count - seq)
        batch = [record(s, pool[s & 4095]) for s in range(seq, seq + k)]
        if rng.random() < 0.5:
            for rec in batch:
                while not write(rec):
                    refused += 1
                    os.sched_yield()  # the machine may be busy: let the consumer run
        else:
            while batch:
                written = write_batch(batch)
                if not written:
                    refused += 1
                    os.sched_yield()
                batch = batch[written:]
        seq += k
    if refusals is not None:
        refusals.put(refused)
    ring.close()


def drain(ring: Ring, count: int, proc: mp.Process, seed: int, pause_s: float = 0.0, deadline_s: float = 60) -> None:
    """Parent: read and verify records 0..count-1 with random batch sizes and commit intervals."""
    rng = random.Random(seed)
    expected = 0
    deadline = time.monotonic() + deadline_s
    while expected < count:
        records = ring.read(rng.randint(1, 300))
        if not records:
            ring.commit()  # free what was read, or a full ring of uncommitted records stalls both sides
            assert proc.is_alive() or ring.pending(), f"producer exited with {proc.exitcode} at record {expected}"
            assert time.monotonic() < deadline, f"stalled at record {expected}"
            os.sched_yield()
            continue
        for rec in records:
            verify(rec, expected)
            expected += 1
        if rng.random() < 0.7:
            ring.commit()
        if pause_s:
            time.sleep(pause_s)
    ring.commit()
    assert ring.read() == []


def test_a_million_random_records_cross_wraparound_intact(make_ring: Callable[[int], Ring]) -> None:
    ring = make_ring(1 << 16)
    count = 1_000_000
    producer = CTX.Process(target=produce, args=(ring.name, count, 11), daemon=True)
    producer.start()

    drain(ring, count, producer, seed=12)

    producer.join(timeout=30)
    assert producer.exitcode == 0
    tail, head = ring.positions()
    assert tail == head > 100 * ring.capacity  # the data area wrapped around many times


def test_full_ring_pushes_back_without_loss_or_reordering(make_ring: Callable[[int], Ring]) -> None:
    ring = make_ring(4096)
    count = 20_000
    refusals: mp.Queue = CTX.Queue()
    producer = CTX.Process(target=produce, args=(ring.name, count, 21, refusals), daemon=True)
    producer.start()

    drain(ring, count, producer, seed=22, pause_s=0.0001)

    producer.join(timeout=30)
    assert producer.exitcode == 0
    assert refusals.get(timeout=5) > 0  # the producer was really held back


def consume_and_log(name: str, log: str, count: int, seed: int, pause_after: int, paused: mp.Event) -> None:
    """Child: read a batch, log its sequence numbers (the durable handling), then commit.

    With ``pause_after``, it stops for good between logging a batch and committing it once it has
    handled that many records, and says so through ``paused``: the test kills it there."""
    ring = Ring.attach(name)
    rng = random.Random(seed)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    handled = 0
    while True:
        records = ring.read(rng.randint(1, 200))
        if not records:
            os.sched_yield()
            continue
        for rec in records:
            verify(rec, int.from_bytes(rec[:8], "little"))
        os.write(fd, b"".join(rec[:8] for rec in records))
        handled += len(records)
        if pause_after and handled >= pause_after:
            paused.set()
            time.sleep(3600)
        ring.commit()
        if int.from_bytes(records[-1][:8], "little") == count - 1:
            break
    os.close(fd)
    ring.close()


def logged(path: Path) -> list[int]:
    data = path.read_bytes()
    assert len(data) % 8 == 0
    return [int.from_bytes(data[i : i + 8], "little") for i in range(0, len(data), 8)]


def run_killed_then_restarted(ring: Ring, tmp_path: Path, pause_after: int, kill_at: int) -> tuple[list, list]:
    """Kill the first consumer when it pauses (``pause_after``) or as soon as its log holds
    ``kill_at`` records, wherever it is in its loop; then run a second one to the end."""
    count = 100_000
    producer = CTX.Process(target=produce, args=(ring.name, count, 31), daemon=True)
    paused = CTX.Event()
    first = CTX.Process(
        target=consume_and_log, args=(ring.name, str(tmp_path / "1"), count, 32, pause_after, paused), daemon=True
    )
    producer.start()
    first.start()
    if pause_after:
        assert paused.wait(timeout=60)
    else:
        deadline = time.monotonic() + 60
        while not (tmp_path / "1").exists() or (tmp_path / "1").stat().st_size < kill_at * 8:
            assert time.monotonic() < deadline and first.is_alive()
    os.kill(first.pid, signal.SIGKILL)
    first.join(timeout=10)
    assert first.exitcode == -signal.SIGKILL

    second = CTX.Process(
        target=consume_and_log, args=(ring.name, str(tmp_path / "2"), count, 33, 0, paused), daemon=True
    )
    second.start()
    second.join(timeout=60)
    producer.join(timeout=10)
    assert (second.exitcode, producer.exitcode) == (0, 0)
    return logged(tmp_path / "1"), logged(tmp_path / "2")


def test_consumer_killed_before_commit_rereads_exactly_its_uncommitted_batch(
    make_ring: Callable[[int], Ring], tmp_path: Path
) -> None:
    ring = make_ring(1 << 14)

    first, second = run_killed_then_restarted(ring, tmp_path, pause_after=30_000, kill_at=0)

    assert first == list(range(len(first)))
    restart = second[0]
    assert 0 < len(first) - restart <= 200  # the batch logged but not committed, and nothing more
    assert second == list(range(restart, 100_000))


@pytest.mark.parametrize("kill_at", [5_000, 40_000, 70_000])
def test_consumer_killed_at_any_moment_loses_nothing(
    make_ring: Callable[[int], Ring], tmp_path: Path, kill_at: int
) -> None:
    ring = make_ring(1 << 14)

    first, second = run_killed_then_restarted(ring, tmp_path, pause_after=0, kill_at=kill_at)

    assert first == list(range(len(first)))
    restart = second[0] if second else len(first)
    assert 0 <= len(first) - restart <= 200  # duplicates: at most the uncommitted batch
    assert second == list(range(restart, 100_000))


# The checks above must be able to fail: a record published before its payload is complete is
# read as stale bytes from the previous lap (wrong sequence number) or as a mix (bad checksum).


def publish_early(ring: Ring, rec: bytes, copied: int) -> None:
    """A broken producer: stores length and tail first, and only ``copied`` payload bytes before."""
    tail = ring._tail
    pos = tail & ring._mask
    ring._u32[pos >> 2] = len(rec)
    start = 512 + pos + 4
    ring._mm[start : start + copied] = rec[:copied]
    ring._publish(tail + ((len(rec) + 11) & -8))


def test_verification_catches_a_record_read_before_its_payload_was_copied(make_ring: Callable[[int], Ring]) -> None:
    ring = make_ring(256)
    body = bytes(range(16))
    for seq in range(8):  # one lap of 32-byte slots: slot 0 now holds record 0
        ring.write(record(seq, body))
        ring.read()
        ring.commit()

    publish_early(ring, record(8, body), copied=0)

    [seen] = ring.read()
    with pytest.raises(AssertionError, match="record 0 where 8 was due"):
        verify(seen, 8)


def test_verification_catches_a_torn_payload(make_ring: Callable[[int], Ring]) -> None:
    ring = make_ring(256)
    for seq in range(8):
        ring.write(record(seq, b"\x00" * 16))
        ring.read()
        ring.commit()

    publish_early(ring, record(8, b"\xff" * 16), copied=20)  # header and 8 body bytes, then a stale rest

    [seen] = ring.read()
    with pytest.raises(AssertionError, match="bad checksum"):
        verify(seen, 8)
