"""The doorbell's fence in every mix of processes: producers that fence (the C core built) and producers
that do not (pure Python: they mark the ring, and its consumer falls back on membarrier), consumers with
and without the C fence. Wake-ups are never lost in any mix, each consumer takes the path its rings
allow, and with an exact handshake an idle consumer sleeps instead of waking every few milliseconds.

A process's mode is ``ringbuf.ring._ringcore`` when its Producer or Consumer is built (``c``: the core,
``python``: None), whatever kind its rings are (the ``lane`` fixture picks that). Wake-up tests raise
``BLOCK_SLICE`` and ``IDLE_SLICE`` to 30 s: a lost wake-up then stalls far longer than the 1 s allowed."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import ringbuf.doorbell as doorbell_module
import ringbuf.ring as ring_module
from ringbuf import AsyncConsumer, Consumer, Doorbell, Producer, Ring, fence
from ringbuf.doorbell import UNFENCED, UNFENCED_UNREGISTERED

pytestmark = pytest.mark.usefixtures("lane")  # rings of each kind: CRing and PyRing
CTX = mp.get_context("fork")
REPO = Path(__file__).resolve().parents[2]
MODES = ("c", "python")


def _core() -> Any:
    try:
        return importlib.import_module("ringbuf._ringcore")
    except ImportError:
        return None


CORE = _core()


@contextlib.contextmanager
def mode(name: str) -> Iterator[None]:
    """Build Producers and Consumers in ``name`` mode: with the C core (they fence) or without."""
    saved = ring_module._ringcore
    ring_module._ringcore = CORE if name == "c" else None
    try:
        yield
    finally:
        ring_module._ringcore = saved


def skip_unless_exact(*modes: str) -> None:
    if "c" in modes and CORE is None:
        pytest.skip("ringbuf._ringcore is not built")
    if "python" in modes and not fence.AVAILABLE:
        pytest.skip("pure Python without membarrier: only the bounded sleep closes the window")


@pytest.fixture
def barriers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts this process's ``fence.barrier`` (membarrier) calls in ``[0]``."""
    calls = [0]
    real = fence.barrier

    def counted() -> bool:
        calls[0] += 1
        return real()

    monkeypatch.setattr(fence, "barrier", counted)
    return calls


class CountingPoll:
    """Stands in for a Consumer's ``select.poll()``: counts the sleeps and keeps their timeouts (ms)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.timeouts: list[float] = []

    def poll(self, timeout: float) -> Any:
        self.timeouts.append(timeout)
        return self.real.poll(timeout)


# ------------------------------------------------------------- real processes


def echo(mode_name: str, in_name: str, out_name: str, in_fd: int, out_fd: int) -> None:
    """Child in ``mode_name``: block on ``in_name``, send every record back on ``out_name`` until b"stop",
    by turns through ``send``, ``send_batch`` and ``Ring.write`` + ``wake``."""
    inbox, outbox = Ring.attach(in_name), Ring.attach(out_name)
    with mode(mode_name):
        consumer = Consumer([inbox], Doorbell.from_fd(in_fd), "block")
        producer = Producer(outbox, Doorbell.from_fd(out_fd))
    turn = 0
    while True:
        consumer.wait()
        for rec in inbox.read():
            if rec == b"stop":
                return
            turn += 1
            if turn % 3 == 0:
                while not producer.send(rec):
                    pass
            elif turn % 3 == 1:
                while not producer.send_batch([rec]):
                    pass
            else:
                while not outbox.write(rec):
                    pass
                producer.wake()
        inbox.commit()


@pytest.mark.parametrize("child_mode", MODES)
@pytest.mark.parametrize("parent_mode", MODES)
def test_ping_pong_between_processes_of_each_mode_never_loses_a_wake_up(
    make_ring: Callable[[], Ring],
    bells: Callable[[], Doorbell],
    long_slice: None,
    barriers: list[int],
    parent_mode: str,
    child_mode: str,
) -> None:
    skip_unless_exact(parent_mode, child_mode)
    to_child, to_parent = make_ring(), make_ring()
    child_bell, parent_bell = bells(), bells()
    args = (child_mode, to_child.name, to_parent.name, child_bell.fd, parent_bell.fd)
    child = CTX.Process(target=echo, args=args, daemon=True)
    child.start()
    with mode(parent_mode):
        producer = Producer(to_child, child_bell)
        consumer = Consumer([to_parent], parent_bell, "block")

    seq = 0
    started = time.monotonic()
    while (time.monotonic() - started < 1.0 or seq < 300) and time.monotonic() - started < 20:
        sent = seq.to_bytes(8, "little")
        assert producer.send(sent) if seq % 2 else producer.send_batch([sent]) == 1
        assert consumer.wait(timeout=1.0), f"round trip {seq} stalled for 1 s: a wake-up was lost"
        assert to_parent.read() == [sent]
        to_parent.commit()
        seq += 1
    producer.send(b"stop")
    child.join(timeout=10)

    assert child.exitcode == 0
    marked = {"c": 0, "python": UNFENCED}
    assert (to_parent._unfenced_word[0], to_child._unfenced_word[0]) == (marked[child_mode], marked[parent_mode])
    if parent_mode == child_mode == "c":
        assert barriers[0] == 0  # every producer fences: the cheap fence alone, never membarrier
    else:
        assert barriers[0] > 0  # an unfenced producer, or no C fence here: membarrier on every sleep


def send_one(name: str, fd: int) -> None:
    """Child: attach ``name`` in pure Python mode and send one record through a fresh Producer."""
    ring = Ring.attach(name)
    with mode("python"):
        Producer(ring, Doorbell.from_fd(fd)).send(b"from an unfenced producer")
    ring.close()


def test_a_consumer_asleep_on_the_cheap_fence_is_woken_by_a_producer_that_marks_the_ring_late(
    make_ring: Callable[[], Ring], bells: Callable[[], Doorbell], long_slice: None, barriers: list[int]
) -> None:
    skip_unless_exact("c", "python")
    ring, bell = make_ring(), bells()
    with mode("c"):
        consumer = Consumer([ring], bell, "block")
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(consumer.wait(timeout=10.0)))
    waiter.start()
    deadline = time.monotonic() + 10
    while not ring.consumer_sleeping():
        assert time.monotonic() < deadline and waiter.is_alive()
        time.sleep(0.001)
    calls_asleep = barriers[0]

    child = CTX.Process(target=send_one, args=(ring.name, bell.fd), daemon=True)
    child.start()
    child.join(timeout=10)
    waiter.join(timeout=5)
    got = ring.read()
    second = consumer.wait(timeout=0.0)

    assert child.exitcode == 0
    assert calls_asleep == 0  # it went to sleep on the cheap fence
    assert result == [True]
    assert got == [b"from an unfenced producer"]
    assert ring._unfenced_word[0] == UNFENCED
    assert second is False and barriers[0] >= 1  # from now on it sleeps with membarrier


def test_a_producer_in_a_pure_python_interpreter_marks_the_ring_and_wakes_its_consumer(
    make_ring: Callable[[], Ring], bells: Callable[[], Doorbell], long_slice: None
) -> None:
    skip_unless_exact("c", "python")
    ring, bell = make_ring(), bells()
    with mode("c"):
        consumer = Consumer([ring], bell, "block")
    script = (
        "import sys; from ringbuf import Doorbell, Producer, Ring; r = Ring.attach(sys.argv[1]); "
        "Producer(r, Doorbell.from_fd(int(sys.argv[2]))).send(b'spawned'); print(type(r).__name__); r.close()"
    )
    env = {**os.environ, "RINGBUF_PURE_PYTHON": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, ring.name, str(bell.fd)],
        cwd=REPO,
        env=env,
        pass_fds=[bell.fd],
        stdout=subprocess.PIPE,
        text=True,
    )

    woke = consumer.wait(timeout=60.0)
    out, _ = proc.communicate(timeout=60)

    assert proc.returncode == 0
    assert out.strip() == "PyRing"
    assert woke is True, "the spawned producer's record did not wake the consumer"
    assert ring.read() == [b"spawned"]
    assert ring._unfenced_word[0] == UNFENCED


# --------------------------------------------------------------- one process


@pytest.mark.parametrize("producer_mode", MODES)
def test_only_a_producer_without_the_fence_marks_its_ring(
    make_ring: Callable[[], Ring], bells: Callable[[], Doorbell], producer_mode: str
) -> None:
    if producer_mode == "c" and CORE is None:
        pytest.skip("ringbuf._ringcore is not built")
    ring, bell = make_ring(), bells()

    with mode(producer_mode):
        Producer(ring, bell)

    expected = 0 if producer_mode == "c" else UNFENCED if fence.AVAILABLE else UNFENCED_UNREGISTERED
    assert ring._unfenced_word[0] == expected


def test_marking_a_ring_rings_the_bell_only_for_a_consumer_that_sleeps(
    make_ring: Callable[[], Ring], bells: Callable[[], Doorbell]
) -> None:
    if not fence.AVAILABLE:
        pytest.skip("without membarrier the marking producer rings the bell whether or not it sleeps")
    awake, asleep, bell = make_ring(), make_ring(), bells()
    asleep._sleeping_word[0] = 1  # as a consumer that chose the cheap fence before the mark leaves it

    with mode("python"):
        Producer(awake, bell)
        rung_awake = bell.drain()
        Producer(asleep, bell)
        rung_asleep = bell.drain()
        Producer(asleep, bell)  # marked already: nothing more to do
        rung_again = bell.drain()

    assert (rung_awake, rung_asleep, rung_again) == (0, 1, 0)


@pytest.mark.parametrize("consumer_mode", MODES)
def test_an_idle_consumer_with_an_exact_handshake_sleeps_until_its_timeout(
    make_ring: Callable[[], Ring], bells: Callable[[], Doorbell], barriers: list[int], consumer_mode: str
) -> None:
    skip_unless_exact(consumer_mode)
    ring, bell = make_ring(), bells()
    with mode("c" if CORE is not None else "python"):
        Producer(ring, bell)  # a producer that fences (where it can): the ring stays unmarked
    with mode(consumer_mode):
        consumer = Consumer([ring], bell, "block")
    counting = consumer._poll = CountingPoll(consumer._poll)  # type: ignore[assignment]

    woke = consumer.wait(timeout=0.3)

    assert woke is False
    assert 1 <= len(counting.timeouts) <= 3, f"woke {len(counting.timeouts)} times in 300 ms of idle"
    assert barriers[0] == (0 if consumer_mode == "c" else len(counting.timeouts))


@pytest.mark.parametrize("consumer_mode", MODES)
def test_a_consumer_falls_back_on_the_short_slice_when_a_producer_could_not_register(
    make_ring: Callable[[], Ring], bells: Callable[[], Doorbell], monkeypatch: pytest.MonkeyPatch, consumer_mode: str
) -> None:
    if consumer_mode == "c" and CORE is None:
        pytest.skip("ringbuf._ringcore is not built")
    monkeypatch.setattr(doorbell_module, "BLOCK_SLICE", 0.01)
    exact, inexact, bell = make_ring(), make_ring(), bells()
    inexact._unfenced_word[0] = UNFENCED_UNREGISTERED  # as a pure producer without membarrier leaves it
    with mode(consumer_mode):
        sleeps_exact = Consumer([exact], bell, "block")
        sleeps_short = Consumer([exact, inexact], bell, "block")
    long_polls = sleeps_exact._poll = CountingPoll(sleeps_exact._poll)  # type: ignore[assignment]
    short_polls = sleeps_short._poll = CountingPoll(sleeps_short._poll)  # type: ignore[assignment]

    sleeps_exact.wait(timeout=0.1)
    sleeps_short.wait(timeout=0.1)

    assert all(t <= 10.0 for t in short_polls.timeouts) and len(short_polls.timeouts) >= 2
    if consumer_mode == "c" or fence.AVAILABLE:
        assert max(long_polls.timeouts) > 10.0  # exact: one sleep up to the caller's timeout
    else:
        assert all(t <= 10.0 for t in long_polls.timeouts)  # no C fence and no membarrier: never exact


@pytest.mark.parametrize("consumer_mode", MODES)
def test_an_idle_async_consumer_with_an_exact_handshake_does_not_spin_the_loop(
    make_ring: Callable[[], Ring], bells: Callable[[], Doorbell], consumer_mode: str
) -> None:
    skip_unless_exact(consumer_mode)
    ring, bell = make_ring(), bells()
    with mode(consumer_mode):
        consumer = AsyncConsumer([ring], bell)

    async def idle() -> tuple[int, bool]:
        loop = asyncio.get_running_loop()
        selector = loop._selector  # type: ignore[attr-defined]
        real_select = selector.select
        passes = 0

        def counted(timeout: float | None = None) -> Any:
            nonlocal passes
            passes += 1
            return real_select(timeout)

        selector.select = counted
        task = loop.create_task(consumer.wait())
        await asyncio.sleep(0.3)
        done = task.done()
        task.cancel()
        return passes, done

    passes, done = asyncio.run(idle())
    consumer.close()

    assert done is False
    assert passes <= 5, f"the loop woke {passes} times in 300 ms of idle"
    assert not ring.consumer_sleeping()


@pytest.mark.parametrize("exact", [True, False])
def test_an_idle_async_consumer_wakes_once_per_slice_of_its_handshake(
    make_ring: Callable[[], Ring], bells: Callable[[], Doorbell], monkeypatch: pytest.MonkeyPatch, exact: bool
) -> None:
    consumer_mode = "c" if CORE is not None else "python"
    skip_unless_exact(consumer_mode)
    monkeypatch.setattr(doorbell_module, "BLOCK_SLICE", 30.0 if exact else 0.02)
    monkeypatch.setattr(doorbell_module, "IDLE_SLICE", 0.02 if exact else 30.0)
    ring, bell = make_ring(), bells()
    if not exact:
        ring._unfenced_word[0] = UNFENCED_UNREGISTERED  # as a pure producer without membarrier leaves it
    with mode(consumer_mode):
        consumer = AsyncConsumer([ring], bell)
    looks = 0
    real_barrier = consumer._barrier

    def counted() -> bool:
        nonlocal looks
        looks += 1
        return real_barrier()

    consumer._barrier = counted  # type: ignore[method-assign]

    async def idle_then_answer() -> tuple[int, bool]:
        task = asyncio.create_task(consumer.wait())
        await asyncio.sleep(0.3)
        idle_looks, idle_done = looks, task.done()
        assert ring.write(b"late")  # no doorbell: only the slice's timer brings the consumer back
        await asyncio.wait_for(task, timeout=5.0)
        return idle_looks, idle_done

    idle_looks, idle_done = asyncio.run(idle_then_answer())
    consumer.close()

    assert idle_done is False
    assert idle_looks >= 3  # each slice ended in another look at the rings and another sleep
    assert ring.read() == [b"late"]
