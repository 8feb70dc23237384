"""Doorbells and wait strategies: wake-ups are never lost, a busy consumer is never rung, every
strategy delivers and times out, and the asyncio reader wakes through the event loop.

Tests that must prove the doorbell (not the bounded sleep) did the waking raise
``BLOCK_SLICE`` and ``IDLE_SLICE`` to 30 s: a lost wake-up then stalls for far longer than the 1 s they allow."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ringbuf import AsyncConsumer, BadRingConfig, Consumer, Doorbell, Producer, Ring, fence
from tests.ringbuf.children import echo

pytestmark = pytest.mark.usefixtures("lane")  # each test on the C lane and in pure Python
CTX = mp.get_context("fork")
REPO = Path(__file__).resolve().parents[2]


def test_blocking_ping_pong_never_loses_a_wake_up(
    make_ring: Callable[[], Ring], bells: Callable[[], Doorbell], long_slice: None, lane: str
) -> None:
    if lane == "python" and not fence.AVAILABLE:
        pytest.skip("pure Python without membarrier: only the bounded sleep closes the window")
    to_child, to_parent = make_ring(), make_ring()
    child_bell, parent_bell = bells(), bells()
    child = CTX.Process(target=echo, args=(to_child.name, to_parent.name, child_bell.fd, parent_bell.fd), daemon=True)
    child.start()
    producer = Producer(to_child, child_bell)
    consumer = Consumer([to_parent], parent_bell, "block")

    seq = 0
    started = time.monotonic()
    while (time.monotonic() - started < 2.0 or seq < 500) and time.monotonic() - started < 20:
        sent = seq.to_bytes(8, "little")
        assert producer.send(sent)
        assert consumer.wait(timeout=1.0), f"round trip {seq} stalled for 1 s: a wake-up was lost"
        assert to_parent.read() == [sent]
        to_parent.commit()
        seq += 1
    producer.send(b"stop")
    child.join(timeout=10)

    assert child.exitcode == 0


def test_blocking_ping_pong_with_the_default_slice_keeps_going(
    make_ring: Callable[[], Ring], bells: Callable[[], Doorbell]
) -> None:
    to_child, to_parent = make_ring(), make_ring()
    child_bell, parent_bell = bells(), bells()
    child = CTX.Process(target=echo, args=(to_child.name, to_parent.name, child_bell.fd, parent_bell.fd), daemon=True)
    child.start()
    producer = Producer(to_child, child_bell)
    consumer = Consumer([to_parent], parent_bell, "block")

    for seq in range(2000):
        sent = seq.to_bytes(8, "little")
        producer.send(sent)
        assert consumer.wait(timeout=1.0), f"round trip {seq} stalled"
        assert to_parent.read() == [sent]
        to_parent.commit()
    producer.send(b"stop")
    child.join(timeout=10)

    assert child.exitcode == 0


def test_a_sleeping_consumer_is_woken_by_the_doorbell(
    make_ring: Callable[[], Ring], bells: Callable[[], Doorbell], long_slice: None
) -> None:
    ring, bell = make_ring(), bells()
    consumer = Consumer([ring], bell, "block")
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(consumer.wait(timeout=10.0)))
    waiter.start()
    deadline = time.monotonic() + 10
    while not ring.consumer_sleeping():
        assert time.monotonic() < deadline and waiter.is_alive()
        time.sleep(0.001)

    Producer(ring, bell).send(b"wake")
    waiter.join(timeout=5)

    assert result == [True]
    assert not ring.consumer_sleeping()
    assert ring.read() == [b"wake"]


def test_a_busy_consumer_is_never_rung(make_ring: Callable[[], Ring], bells: Callable[[], Doorbell]) -> None:
    ring, bell = make_ring(), bells()
    producer = Producer(ring, bell)
    consumer = Consumer([ring], bell, "spin")

    for seq in range(10_000):
        assert producer.send(seq.to_bytes(4, "little"))
        assert consumer.wait(timeout=1.0)
        ring.read()
        ring.commit()

    assert bell.drain() == 0


@pytest.mark.parametrize("strategy", ["spin", "yield", "block", "hybrid"])
def test_each_strategy_times_out_on_empty_rings_and_sees_data_at_once(
    make_ring: Callable[[], Ring], bells: Callable[[], Doorbell], strategy: str
) -> None:
    first, second, bell = make_ring(), make_ring(), bells()
    consumer = Consumer([first, second], bell, strategy)

    timed_out = consumer.wait(timeout=0.02)
    Producer(second, bell).send(b"x")
    woke = consumer.wait(timeout=5.0)

    assert timed_out is False
    assert woke is True
    assert second.read() == [b"x"]
    assert not first.consumer_sleeping() and not second.consumer_sleeping()


def stream(name: str, fd: int, count: int) -> None:
    """Child: send ``count`` numbered records in bursts with pauses, so the consumer sleeps often."""
    ring = Ring.attach(name)
    producer = Producer(ring, Doorbell.from_fd(fd))
    for seq in range(count):
        while not producer.send(seq.to_bytes(8, "little")):
            pass
        if seq % 97 == 0:
            time.sleep(0.0005)
    ring.close()


@pytest.mark.parametrize("strategy", ["spin", "yield", "block", "hybrid"])
def test_each_strategy_receives_a_stream_in_order(
    make_ring: Callable[[], Ring], bells: Callable[[], Doorbell], strategy: str, long_slice: None
) -> None:
    ring, bell = make_ring(), bells()
    count = 20_000
    child = CTX.Process(target=stream, args=(ring.name, bell.fd, count), daemon=True)
    child.start()
    consumer = Consumer([ring], bell, strategy)

    expected = 0
    while expected < count:
        assert consumer.wait(timeout=1.0), f"stalled at record {expected}"
        for rec in ring.read():
            assert int.from_bytes(rec, "little") == expected
            expected += 1
        ring.commit()
    child.join(timeout=10)

    assert child.exitcode == 0


def test_async_consumer_wakes_through_the_event_loop_without_blocking_it(
    make_ring: Callable[[], Ring], bells: Callable[[], Doorbell], long_slice: None
) -> None:
    ring, bell = make_ring(), bells()
    producer = Producer(ring, bell)
    consumer = AsyncConsumer([ring], bell)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    async def scenario() -> list[bytes]:
        task = asyncio.create_task(ticker())
        asyncio.get_running_loop().call_later(0.2, producer.send, b"answer")
        await asyncio.wait_for(consumer.wait(), timeout=5.0)
        task.cancel()
        return ring.read()

    got = asyncio.run(scenario())
    consumer.close()

    assert got == [b"answer"]
    assert ticks >= 1  # the loop ran other tasks while the reader waited
    assert not ring.consumer_sleeping()


def test_async_consumer_ping_pong_with_a_blocking_child(
    make_ring: Callable[[], Ring], bells: Callable[[], Doorbell], long_slice: None
) -> None:
    to_child, to_parent = make_ring(), make_ring()
    child_bell, parent_bell = bells(), bells()
    child = CTX.Process(target=echo, args=(to_child.name, to_parent.name, child_bell.fd, parent_bell.fd), daemon=True)
    child.start()
    producer = Producer(to_child, child_bell)
    consumer = AsyncConsumer([to_parent], parent_bell)

    async def exchange() -> int:
        for seq in range(2000):
            sent = seq.to_bytes(8, "little")
            producer.send(sent)
            await asyncio.wait_for(consumer.wait(), timeout=1.0)
            assert to_parent.read() == [sent]
            to_parent.commit()
        return seq + 1

    done = asyncio.run(exchange())
    consumer.close()
    producer.send(b"stop")
    child.join(timeout=10)

    assert done == 2000
    assert child.exitcode == 0


def test_doorbell_is_inheritable_and_rings_from_another_interpreter(bells: Callable[[], Doorbell]) -> None:
    bell = bells()
    assert os.get_inheritable(bell.fd)
    script = f"from ringbuf import Doorbell; Doorbell.from_fd({bell.fd}).ring()"

    subprocess.run([sys.executable, "-c", script], cwd=REPO, pass_fds=[bell.fd], check=True, timeout=60)

    assert bell.drain() == 1
    assert bell.drain() == 0


def test_unknown_wait_strategy_is_rejected(make_ring: Callable[[], Ring], bells: Callable[[], Doorbell]) -> None:
    with pytest.raises(BadRingConfig, match="'busy'"):
        Consumer([make_ring()], bells(), "busy")


def test_a_deferred_wake_rings_only_a_sleeping_consumer(
    make_ring: Callable[[], Ring], bells: Callable[[], Doorbell], long_slice: None
) -> None:
    ring, bell = make_ring(), bells()
    producer = Producer(ring, bell)
    ring.write(b"written without the doorbell")
    producer.wake()
    assert bell.drain() == 0  # nobody sleeps: no system call, nothing rung

    consumer = Consumer([ring], bell, "block")
    ring.read()
    ring.commit()
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(consumer.wait(timeout=10.0)))
    waiter.start()
    deadline = time.monotonic() + 10
    while not ring.consumer_sleeping():
        assert time.monotonic() < deadline and waiter.is_alive()
        time.sleep(0.001)
    ring.write(b"late")
    producer.wake()
    waiter.join(timeout=5)

    assert result == [True]
    assert ring.read() == [b"late"]
