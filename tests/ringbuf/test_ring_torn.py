"""Torn position words: a producer hammers the tail while the test polls it from another process.

The trap this guards against: ``struct.pack_into`` zero-fills its target before writing, so a
reader polling a position written that way can see 0 (a position that goes backwards). The ring
publishes with one 8-byte store; the watcher below must never see a position go backwards, stray
off the 8-byte grid or run more than a capacity ahead of head, and the records it reads must
carry the sequence numbers due. The last test shows the watcher does catch a zero-filling
publisher, so a pass means something."""

from __future__ import annotations

import multiprocessing as mp
import os
import struct
import time
import uuid
from collections.abc import Iterator

import pytest

from ringbuf import Ring

pytestmark = pytest.mark.usefixtures("lane")  # each test on the C lane and in pure Python
CTX = mp.get_context("fork")
DONE = 0xFFFF_FFFF_FFFF_FFF0


@pytest.fixture
def ring() -> Iterator[Ring]:
    ring = Ring.create(f"test-torn-{uuid.uuid4().hex[:12]}", 1 << 12)
    yield ring
    ring.close()
    ring.unlink()


def produce_fast(name: str, count: int) -> None:
    """Child: 8-byte records carrying their sequence number, as fast as the ring takes them."""
    ring = Ring.attach(name)
    write = ring.write
    for seq in range(count):
        rec = seq.to_bytes(8, "little")
        while not write(rec):
            os.sched_yield()
    ring.close()


def test_tail_never_reads_torn_while_a_producer_hammers_it(ring: Ring) -> None:
    count = 200_000
    producer = CTX.Process(target=produce_fast, args=(ring.name, count), daemon=True)
    producer.start()
    tail_word = ring._tail_word
    last = head = expected = polls = 0
    deadline = time.monotonic() + 60
    while expected < count:
        for _ in range(16):
            tail = tail_word[0]
            if tail < last or tail % 8 or tail - head > ring.capacity:
                raise AssertionError(f"tail {tail} after {last} with head {head}: torn or zero-filled store")
            last = tail
        polls += 16
        for rec in ring.read(64):
            if int.from_bytes(rec, "little") != expected:
                raise AssertionError(f"record {rec!r} where {expected} was due")
            expected += 1
        ring.commit()
        head = ring.positions()[1]
        if expected < count and not ring.pending():
            assert producer.is_alive(), f"producer exited with {producer.exitcode} at record {expected}"
            assert time.monotonic() < deadline, f"stalled at record {expected}"
            os.sched_yield()
    producer.join(timeout=10)
    assert producer.exitcode == 0
    assert polls > 10_000


def publish_with_pack_into(name: str, seconds: float) -> None:
    """Child: the broken way, publishing ever-growing positions with ``struct.pack_into``."""
    ring = Ring.attach(name)
    buf = ring._shm.buf
    value = 8
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(1000):
            struct.pack_into("<Q", buf, 128, value)
            value += 8
    ring._tail_word[0] = DONE
    del buf
    ring.close()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs writer and reader on two CPUs at once")
def test_the_watcher_catches_a_publisher_that_zero_fills(ring: Ring) -> None:
    writer = CTX.Process(target=publish_with_pack_into, args=(ring.name, 10.0), daemon=True)
    writer.start()
    tail_word = ring._tail_word
    last = 0
    went_back = 0
    while went_back == 0:
        value = tail_word[0]
        if value == DONE:
            break
        if value < last:
            went_back += 1
        last = max(last, value)
    writer.kill()
    writer.join(timeout=10)

    assert went_back > 0
