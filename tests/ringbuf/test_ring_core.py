"""The C lane (``ringbuf._ringcore``: ``CRing``, ``Producer.send``'s ``Sender``, the spin ``recv``)
against the pure-Python reference (``PyRing``): the same bytes in the segment, each reading what the
other wrote, in one process and between real processes (random sizes with checksums, many
wrap-arounds, a full ring pushing back), the same doorbell behaviour, and the switch that picks one.

Records between processes are ``seq (u64) | crc32 (u32) | body``, the crc seeded with the sequence
number, so a lost, duplicated, reordered, torn or early-read record fails ``verify``."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import ringbuf.doorbell as doorbell_module
from ringbuf import Consumer, Doorbell, Producer, RecordTooLarge, Ring
from ringbuf.ring import HEADER_BYTES, WRAP, CRing, PyRing
from tests.ringbuf.test_ring_processes import HEADER, record, verify

pytestmark = pytest.mark.skipif(CRing is None, reason="ringbuf._ringcore is not built: no C lane to compare")
CTX = mp.get_context("fork")
KINDS = {"c": CRing, "python": PyRing}
ROOT = Path(__file__).resolve().parents[2]


def body(rng: random.Random, max_body: int) -> bytes:
    """Mostly 0-120 bytes, one in 50 up to ``max_body``: wraps at every phase, some records half the ring."""
    size = rng.randint(0, 120) if rng.random() < 0.98 else rng.randint(120, max_body)
    return rng.randbytes(size)


# ------------------------------------------------------------------ one process


def test_the_selected_kind_is_what_ring_create_builds(lane: str, make_ring: Callable[..., Ring]) -> None:
    ring = make_ring()

    assert type(ring) is KINDS[lane]
    assert isinstance(ring, Ring)


def test_c_and_python_leave_the_same_bytes_in_the_segment(make_ring: Callable[..., Ring]) -> None:
    rings = [make_ring(1024, CRing), make_ring(1024, PyRing)]
    rng = random.Random(5)
    ops = [(rng.random(), rng.randint(0, 200)) for _ in range(3000)]
    answers: list[list[object]] = []

    for ring in rings:
        got: list[object] = []
        for roll, n in ops:
            if roll < 0.55:
                got.append(ring.write(bytes([n % 251]) * n))
            elif roll < 0.9:
                got.append(ring.read_one())
            else:
                ring.commit()
        answers.append(got)
    c_bytes, py_bytes = (bytes(ring._shm.buf[HEADER_BYTES:]) for ring in rings)

    assert answers[0] == answers[1]
    assert rings[0].positions() == rings[1].positions()
    assert rings[0].positions()[0] > 20 * 1024  # wrapped many times
    assert c_bytes == py_bytes


@pytest.mark.parametrize(("writer", "reader"), [(CRing, PyRing), (PyRing, CRing)])
def test_each_lane_reads_what_the_other_wrote_across_a_wrap(
    make_ring: Callable[..., Ring], writer: type[Ring], reader: type[Ring]
) -> None:
    made = make_ring(512, writer)
    other = reader.attach(made.name)
    try:
        write_side, read_side = made, other
        for rec in [b"x" * 100] * 4:  # 4 slots of 104 bytes: the tail stands at 416
            assert write_side.write(rec)
        firsts = [read_side.read_one() for _ in range(4)]
        read_side.commit()

        assert write_side.write(b"y" * 100)  # does not fit before 512: a wrap marker at 416, the record at 0
        got = read_side.read_one()
        read_side.commit()

        assert firsts == [b"x" * 100] * 4
        assert write_side._u32[416 >> 2] == WRAP
        assert got == b"y" * 100
        assert read_side.read_one() is None
        assert write_side.free_bytes() == 512
    finally:
        other.close()


def test_c_write_takes_bytes_bytearray_and_memoryview_and_refuses_str(make_ring: Callable[..., Ring]) -> None:
    ring = make_ring(1024, CRing)

    sent = [ring.write(b"ab"), ring.write(bytearray(b"cd")), ring.write(memoryview(b"xefx")[1:3])]
    with pytest.raises(TypeError):
        ring.write("gh")  # type: ignore[arg-type]

    assert sent == [True, True, True]
    assert ring.read() == [b"ab", b"cd", b"ef"]


@pytest.mark.parametrize("kind", [CRing, PyRing])
def test_read_one_takes_spin_by_position_or_keyword(make_ring: Callable[..., Ring], kind: type[Ring]) -> None:
    ring = make_ring(1024, kind)

    empty = [ring.read_one(), ring.read_one(3), ring.read_one(spin=3), ring.read_one(spin=-1)]
    ring.write(b"z")
    with pytest.raises(TypeError):
        ring.read_one(spins=3)  # type: ignore[call-arg]

    assert empty == [None, None, None, None]
    assert ring.read_one(spin=10) == b"z"


def test_a_closed_c_ring_refuses_the_lane(make_ring: Callable[..., Ring]) -> None:
    ring = make_ring(1024, CRing)
    ring.close()

    for call in (lambda: ring.write(b"a"), ring.read_one, ring.commit):
        with pytest.raises(ValueError, match="closed"):
            call()


@pytest.mark.parametrize("kind", [CRing, PyRing])
def test_send_rings_only_a_sleeping_consumer_even_when_the_ring_is_full(
    make_ring: Callable[..., Ring], bell: Doorbell, kind: type[Ring]
) -> None:
    ring = make_ring(256, kind)
    producer = Producer(ring, bell)
    awake = [producer.send(b"a" * 50) for _ in range(5)]  # 4 fit
    rung_awake = bell.drain()

    ring._sleeping_word[0] = 1
    asleep = producer.send(b"b" * 50)
    rung_asleep = bell.drain()
    with pytest.raises(RecordTooLarge, match=str(ring.max_record + 1)):
        producer.send(bytes(ring.max_record + 1))
    rung_too_large = bell.drain()

    assert awake == [True, True, True, True, False]
    assert (rung_awake, asleep, rung_asleep, rung_too_large) == (0, False, 1, 0)
    assert len(ring.read()) == 4


def test_producer_and_consumer_of_a_c_ring_use_the_c_lane(make_ring: Callable[..., Ring], bell: Doorbell) -> None:
    ring = make_ring(1024, CRing)

    producer = Producer(ring, bell)
    spinning = Consumer([ring], bell, "spin")
    hybrid = Consumer([ring], bell, "hybrid")

    assert type(producer.send).__name__ == "Sender"
    assert spinning.recv == ring._recv_spin and spinning.commit == ring.commit
    assert hybrid.recv.__func__ is Consumer.recv  # type: ignore[attr-defined]  # sleeping stays in Python


def test_spin_recv_of_a_c_ring_times_out_then_takes_a_record(make_ring: Callable[..., Ring], bell: Doorbell) -> None:
    ring = make_ring(1024, CRing)
    consumer = Consumer([ring], bell, "spin")

    started = time.monotonic()
    none = [consumer.recv(0.0), consumer.recv(timeout=0.05)]
    waited = time.monotonic() - started
    ring.write(b"late")

    assert none == [None, None]
    assert waited >= 0.05
    assert consumer.recv() == b"late"


@pytest.mark.parametrize("env", ["1", "0"])
def test_ringbuf_pure_python_picks_the_kind_in_a_new_interpreter(env: str) -> None:
    script = "from ringbuf import Ring; import uuid; r = Ring.create('test-core-' + uuid.uuid4().hex[:12], 256); "
    script += "print(type(r).__name__); r.close(); r.unlink()"
    environ = {**os.environ, "RINGBUF_PURE_PYTHON": env}

    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environ, capture_output=True, text=True)

    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ("PyRing" if env == "1" else "CRing")


# --------------------------------------------------------------- real processes


def produce(kind: type[Ring], name: str, bell_fd: int, count: int, seed: int, refusals: mp.Queue) -> None:
    """Child: ``Producer.send`` records 0..count-1 of random sizes, yielding while the ring is full."""
    ring = kind.attach(name)
    send = Producer(ring, Doorbell(bell_fd)).send
    rng = random.Random(seed)
    max_body = ring.max_record - HEADER.size
    refused = 0
    for seq in range(count):
        rec = record(seq, body(rng, max_body))
        while not send(rec):
            refused += 1
            os.sched_yield()
    refusals.put(refused)
    ring.close()


@pytest.mark.parametrize("strategy", ["spin", "block"])
@pytest.mark.parametrize(("writer", "reader"), [("c", "python"), ("python", "c")])
def test_a_stream_between_the_two_lanes_in_real_processes_arrives_intact(
    make_ring: Callable[..., Ring],
    bell: Doorbell,
    monkeypatch: pytest.MonkeyPatch,
    writer: str,
    reader: str,
    strategy: str,
) -> None:
    monkeypatch.setattr(doorbell_module, "BLOCK_SLICE", 30.0)  # block: only the doorbell wakes us in time
    monkeypatch.setattr(doorbell_module, "IDLE_SLICE", 30.0)
    ring = make_ring(4096, KINDS[reader])
    count = 20_000
    refusals: mp.Queue = CTX.Queue()
    child = CTX.Process(target=produce, args=(KINDS[writer], ring.name, bell.fd, count, 7, refusals), daemon=True)
    consumer = Consumer([ring], bell, strategy)
    recv, commit = consumer.recv, consumer.commit
    rng = random.Random(8)

    child.start()
    for seq in range(count):
        rec = recv(0.0)
        if rec is None:
            commit()  # free what was read, or a full ring of uncommitted records stalls both sides
            rec = recv(10.0)
            assert rec is not None, f"record {seq} never came (producer exit code {child.exitcode})"
        verify(rec, seq)
        if rng.random() < 0.3:
            commit()
        if seq % 2000 == 1999:
            time.sleep(0.002)  # let the producer fill the ring: it must wait, not overwrite
    commit()
    child.join(timeout=10)
    refused = refusals.get(timeout=10)

    assert child.exitcode == 0
    assert ring.positions()[0] > 100 * 4096  # a hundred wrap-arounds and more
    assert refused > 0  # the full ring pushed back
    assert recv(0.0) is None


def test_spin_recv_of_a_c_ring_lets_the_other_threads_of_its_process_run(
    make_ring: Callable[..., Ring], bell: Doorbell
) -> None:
    ring = make_ring(1024, CRing)
    consumer = Consumer([ring], bell, "spin")
    writer = threading.Timer(0.05, ring.write, args=(b"from a thread",))  # needs the GIL the spin holds

    writer.start()
    got = consumer.recv(10.0)
    writer.join()

    assert got == b"from a thread"
