"""The low-latency lane (``Ring.read_one``, ``Producer.send``, ``Consumer.recv``/``commit``) and the
``hybrid`` wait strategy: same framing and order as the batch path, wrap markers and full rings
handled, wake-ups never lost after the spin, and the event-loop form never holds the loop.

Tests that must prove the doorbell (not the bounded sleep) did the waking raise ``BLOCK_SLICE``
and ``IDLE_SLICE`` to 30 s: a lost wake-up then stalls for far longer than the 1 s they allow."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from collections.abc import Callable

import pytest

from ringbuf import AsyncConsumer, BadRingConfig, Consumer, Doorbell, Producer, RecordTooLarge, Ring, RingCorrupt
from ringbuf.ring import WRAP

pytestmark = pytest.mark.usefixtures("lane")  # each test on the C lane and in pure Python
CTX = mp.get_context("fork")


def record(seq: int) -> bytes:
    """Numbered records of 8 to 107 bytes, so a stream wraps at every phase."""
    return seq.to_bytes(8, "little") + bytes(seq % 100)


# ------------------------------------------------------------------ one process


def test_read_one_returns_the_records_in_order_then_none(make_ring: Callable[..., Ring]) -> None:
    ring = make_ring()
    ring.write_batch([b"a", b"bb", b""])

    got = [ring.read_one(), ring.read_one(), ring.read_one(), ring.read_one(), ring.read_one(spin=50)]

    assert got == [b"a", b"bb", b"", None, None]
    assert ring.uncommitted() == 3 * 8


def test_read_one_mixes_with_read_and_commit_frees_what_it_returned(make_ring: Callable[..., Ring]) -> None:
    ring = make_ring()
    ring.write_batch([b"one", b"two", b"three"])

    first = ring.read_one()
    rest = ring.read()
    ring.commit()

    assert (first, rest) == (b"one", [b"two", b"three"])
    assert ring.free_bytes() == ring.capacity


def test_read_one_steps_over_a_wrap_marker(make_ring: Callable[..., Ring]) -> None:
    ring = make_ring(512)
    ring.write_batch([b"x" * 100] * 4)  # 416 bytes: the next 100-byte record cannot fit before 512
    ring.read()
    ring.commit()

    assert ring.write(b"y" * 100)
    got = ring.read_one()

    assert ring._u32[416 >> 2] == WRAP
    assert got == b"y" * 100
    assert ring.read_one() is None


def test_read_one_rejects_framing_that_runs_past_the_tail(make_ring: Callable[..., Ring]) -> None:
    ring = make_ring()
    ring.write(b"12345678")
    ring._u32[0] = 200  # a length word claiming more than was published

    with pytest.raises(RingCorrupt, match="past tail"):
        ring.read_one()


def test_send_shares_the_ring_positions_with_write(make_ring: Callable[..., Ring], bell: Doorbell) -> None:
    ring = make_ring(512)
    producer = Producer(ring, bell)

    sent = [producer.send(b"a" * 60), ring.write(b"b" * 60), producer.send(b"c" * 60)]
    got = ring.read()

    assert sent == [True, True, True]
    assert got == [b"a" * 60, b"b" * 60, b"c" * 60]


def test_send_wraps_reports_a_full_ring_and_rejects_a_record_too_large(
    make_ring: Callable[..., Ring], bell: Doorbell
) -> None:
    ring = make_ring(512)
    producer = Producer(ring, bell)
    accepted = 0
    while producer.send(b"z" * 100):
        accepted += 1
    ring.read(2)
    ring.commit()

    wrapped = producer.send(b"w" * 100)
    with pytest.raises(RecordTooLarge, match=str(ring.max_record + 1)):
        producer.send(bytes(ring.max_record + 1))

    assert accepted == 4  # 4 slots of 104 bytes in 512; the fifth would not fit
    assert wrapped is True
    assert ring.read() == [b"z" * 100] * 2 + [b"w" * 100]
    assert bell.drain() == 0  # nobody slept: never rung


@pytest.mark.parametrize("strategy", ["spin", "yield", "block", "hybrid"])
def test_recv_times_out_with_none_and_takes_the_rings_in_turn(
    make_ring: Callable[..., Ring], bell: Doorbell, strategy: str
) -> None:
    first, second = make_ring(), make_ring()
    consumer = Consumer([first, second], bell, strategy, spin_us=100)

    nothing = consumer.recv(timeout=0.02)
    first.write_batch([b"f1", b"f2"])
    second.write_batch([b"s1", b"s2"])
    got = [consumer.recv(timeout=5.0) for _ in range(4)]
    consumer.commit()

    assert nothing is None
    assert got == [b"f1", b"s1", b"f2", b"s2"]
    assert first.uncommitted() == 0 and second.uncommitted() == 0
    assert not first.consumer_sleeping() and not second.consumer_sleeping()


def test_hybrid_rejects_a_negative_spin(make_ring: Callable[..., Ring], bell: Doorbell) -> None:
    with pytest.raises(BadRingConfig, match="-1"):
        Consumer([make_ring()], bell, "hybrid", spin_us=-1)
    with pytest.raises(BadRingConfig, match="-5"):
        AsyncConsumer([make_ring()], bell, spin_us=-5)


# ------------------------------------------------------------- real processes


def stream(name: str, fd: int, count: int, pause_every: int) -> None:
    """Child: send ``count`` records through ``Producer.send``, pausing now and then."""
    ring = Ring.attach(name)
    producer = Producer(ring, Doorbell.from_fd(fd))
    for seq in range(count):
        while not producer.send(record(seq)):
            pass
        if seq % pause_every == 0:
            time.sleep(0.001)
    ring.close()


@pytest.mark.parametrize("strategy", ["spin", "hybrid", "block"])
def test_recv_takes_a_wrapping_stream_from_another_process_in_order(
    make_ring: Callable[..., Ring], bell: Doorbell, strategy: str, long_slice: None
) -> None:
    ring = make_ring(4096)
    count = 20_000
    child = CTX.Process(target=stream, args=(ring.name, bell.fd, count, 293), daemon=True)
    child.start()
    consumer = Consumer([ring], bell, strategy, spin_us=20)

    got = 0
    while got < count:
        rec = consumer.recv(timeout=1.0)
        assert rec == record(got), f"record {got} stalled or out of order"
        got += 1
        if got % 7 == 0:
            consumer.commit()
    consumer.commit()
    child.join(timeout=10)

    assert child.exitcode == 0
    tail, head = ring.positions()
    assert ring.uncommitted() == 0 and head == tail


def echo_hybrid(in_name: str, out_name: str, in_fd: int, out_fd: int) -> None:
    """Child: ``hybrid`` consumer (20 us spin) echoing every record until b"stop"."""
    inbox, outbox = Ring.attach(in_name), Ring.attach(out_name)
    consumer = Consumer([inbox], Doorbell.from_fd(in_fd), "hybrid", spin_us=20)
    producer = Producer(outbox, Doorbell.from_fd(out_fd))
    while True:
        rec = consumer.recv()
        if rec == b"stop":
            return
        while not producer.send(rec):
            pass
        consumer.commit()


def test_hybrid_sleeps_after_its_spin_and_never_loses_a_wake_up(
    make_ring: Callable[..., Ring], long_slice: None
) -> None:
    to_child, to_parent = make_ring(), make_ring()
    child_bell, parent_bell = Doorbell.create(), Doorbell.create()
    child = CTX.Process(
        target=echo_hybrid, args=(to_child.name, to_parent.name, child_bell.fd, parent_bell.fd), daemon=True
    )
    child.start()
    producer = Producer(to_child, child_bell)
    consumer = Consumer([to_parent], parent_bell, "hybrid", spin_us=20)
    slept = 0

    for seq in range(300):
        if seq % 10 == 0:  # a pause far longer than the child's spin: it must go to sleep
            deadline = time.monotonic() + 5
            while not to_child.consumer_sleeping() and time.monotonic() < deadline:
                time.sleep(0.0005)
            slept += to_child.consumer_sleeping()
        sent = seq.to_bytes(8, "little")
        assert producer.send(sent)
        assert consumer.recv(timeout=1.0) == sent, f"round trip {seq} stalled for 1 s: a wake-up was lost"
        consumer.commit()
    producer.send(b"stop")
    child.join(timeout=10)
    child_bell.close()
    parent_bell.close()

    assert child.exitcode == 0
    assert slept == 30


def test_async_hybrid_polls_through_the_loop_then_sleeps_on_the_doorbell(
    make_ring: Callable[..., Ring], bell: Doorbell, long_slice: None
) -> None:
    ring = make_ring()
    producer = Producer(ring, bell)
    consumer = AsyncConsumer([ring], bell, spin_us=1_000_000)  # wide margins: the box may be loaded
    ticks = 0
    slept_during_spin: list[bool] = []

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    async def scenario() -> tuple[list[bytes], list[bytes]]:
        task = asyncio.create_task(ticker())
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, lambda: slept_during_spin.append(ring.consumer_sleeping()))
        loop.call_later(0.1, producer.send, b"during the spin")
        await asyncio.wait_for(consumer.wait(), timeout=5.0)
        first = ring.read()
        ring.commit()
        loop.call_later(1.5, producer.send, b"after the spin")  # the spin (1 s) is over by then
        await asyncio.wait_for(consumer.wait(), timeout=5.0)
        task.cancel()
        return first, ring.read()

    first, second = asyncio.run(scenario())
    consumer.close()

    assert (first, second) == ([b"during the spin"], [b"after the spin"])
    assert slept_during_spin == [False]
    assert ticks >= 10  # the loop ran its other tasks all along
    assert not ring.consumer_sleeping()
