"""``AsyncConsumer.listen``: the callback form of the asyncio reader.

Its callback gets every record (already there, rung in, or left behind), the consumer sleeps
between passes (so producers ring) and not after ``close``, a pass never loops inside the loop's
callback, the slice timer and the watchdog bring back records written without a bell, and a
callback that raises stops the listening. Tests that must prove the doorbell (not a bounded sleep)
did the waking raise ``BLOCK_SLICE`` and ``IDLE_SLICE`` to 30 s."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
from collections.abc import Callable

import pytest

import ringbuf.doorbell as doorbell_module
from ringbuf import AsyncConsumer, BadRingConfig, Doorbell, Producer, Ring
from ringbuf.doorbell import UNFENCED_UNREGISTERED
from tests.ringbuf.children import echo

pytestmark = pytest.mark.usefixtures("lane")  # each test on the C lane and in pure Python
CTX = mp.get_context("fork")


class Reader:
    """An ``on_ready`` that takes everything from ``ring`` (or ``take`` records per call) and counts its calls."""

    def __init__(self, ring: Ring, take: int | None = None) -> None:
        self.ring = ring
        self.take = take
        self.got: list[bytes] = []
        self.calls = 0
        self.arrived: asyncio.Event | None = None
        self.want = 0

    def __call__(self) -> None:
        self.calls += 1
        records = self.ring.read() if self.take is None else self.ring.read(self.take)
        self.ring.commit()
        self.got += records
        if self.arrived is not None and len(self.got) >= self.want:
            self.arrived.set()

    async def until(self, count: int, timeout: float = 5.0) -> None:
        self.want = count
        self.arrived = asyncio.Event()
        if len(self.got) < count:
            await asyncio.wait_for(self.arrived.wait(), timeout)


def test_listen_hands_over_records_already_there_and_rung_in_and_sleeps_in_between(
    make_ring: Callable[[], Ring], bells: Callable[[], Doorbell], long_slice: None
) -> None:
    ring, bell = make_ring(), bells()
    producer = Producer(ring, bell)
    assert ring.write(b"before")
    consumer = AsyncConsumer([ring], bell)
    reader = Reader(ring)

    async def scenario() -> tuple[bool, bool]:
        consumer.listen(reader)
        await reader.until(1)
        await asyncio.sleep(0.01)
        asleep = ring.consumer_sleeping()
        asyncio.get_running_loop().call_later(0.05, producer.send, b"rung")
        await reader.until(2)
        await asyncio.sleep(0.01)
        return asleep, ring.consumer_sleeping()

    asleep_first, asleep_after = asyncio.run(scenario())
    consumer.close()

    assert reader.got == [b"before", b"rung"]
    assert asleep_first and asleep_after  # between passes the producer must ring
    assert not ring.consumer_sleeping()  # closed: nobody answers the bell, so nobody needs it rung
    assert not consumer.listening


def test_records_left_by_the_callback_come_in_later_passes_with_the_loop_running_between(
    make_ring: Callable[[], Ring], bells: Callable[[], Doorbell], long_slice: None
) -> None:
    ring, bell = make_ring(), bells()
    for k in range(5):
        assert ring.write(bytes([k]))
    consumer = AsyncConsumer([ring], bell)
    reader = Reader(ring, take=1)
    ticks: list[int] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()

        def tick() -> None:  # another callback: it must get turns between the passes
            ticks.append(reader.calls)
            if len(ticks) < 20:
                loop.call_soon(tick)

        consumer.listen(reader)
        loop.call_soon(tick)
        await reader.until(5)

    asyncio.run(scenario())
    consumer.close()

    assert reader.got == [bytes([k]) for k in range(5)]
    assert reader.calls == 5
    assert len(set(ticks[:6])) >= 5  # the passes interleaved with the other callback, one per loop pass


@pytest.mark.parametrize("exact", [True, False])
def test_a_record_written_without_a_bell_comes_with_the_slice_or_the_watchdog(
    make_ring: Callable[[], Ring], bells: Callable[[], Doorbell], monkeypatch: pytest.MonkeyPatch, exact: bool
) -> None:
    monkeypatch.setattr(doorbell_module, "BLOCK_SLICE", 30.0 if exact else 0.02)
    monkeypatch.setattr(doorbell_module, "IDLE_SLICE", 0.02 if exact else 30.0)
    ring, bell = make_ring(), bells()
    if not exact:
        ring._unfenced_word[0] = UNFENCED_UNREGISTERED  # as a pure producer without membarrier leaves it
    consumer = AsyncConsumer([ring], bell)
    reader = Reader(ring)

    async def scenario() -> None:
        consumer.listen(reader)
        await asyncio.sleep(0.1)
        assert ring.write(b"late")  # no doorbell: only the slice's timer or the watchdog brings it
        await reader.until(1)

    asyncio.run(scenario())
    consumer.close()

    assert reader.got == [b"late"]


def test_a_callback_that_raises_stops_the_listening_and_reaches_the_loops_handler(
    make_ring: Callable[[], Ring], bells: Callable[[], Doorbell], long_slice: None
) -> None:
    ring, bell = make_ring(), bells()
    producer = Producer(ring, bell)
    consumer = AsyncConsumer([ring], bell)
    seen: list[BaseException] = []

    def boom() -> None:
        raise RuntimeError("reader exploded")

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: seen.append(context["exception"]))
        consumer.listen(boom)
        await asyncio.sleep(0.01)
        producer.send(b"x")
        for _ in range(100):
            await asyncio.sleep(0.01)
            if seen:
                break

    asyncio.run(scenario())

    assert [str(exc) for exc in seen] == ["reader exploded"]
    assert not consumer.listening
    assert not ring.consumer_sleeping()


def test_listen_and_wait_exclude_each_other(make_ring: Callable[[], Ring], bells: Callable[[], Doorbell]) -> None:
    ring, bell = make_ring(), bells()
    consumer = AsyncConsumer([ring], bell)

    async def scenario() -> None:
        consumer.listen(lambda: None)
        with pytest.raises(BadRingConfig, match="listen"):
            consumer.listen(lambda: None)
        with pytest.raises(BadRingConfig, match="listens"):
            await consumer.wait()

    asyncio.run(scenario())
    consumer.close()


def test_listen_ping_pong_with_a_blocking_child_loses_no_wake_up(
    make_ring: Callable[[], Ring], bells: Callable[[], Doorbell], long_slice: None
) -> None:
    to_child, to_parent = make_ring(), make_ring()
    child_bell, parent_bell = bells(), bells()
    child = CTX.Process(target=echo, args=(to_child.name, to_parent.name, child_bell.fd, parent_bell.fd), daemon=True)
    child.start()
    producer = Producer(to_child, child_bell)
    consumer = AsyncConsumer([to_parent], parent_bell)
    rounds = 2000
    got: list[bytes] = []

    async def exchange() -> None:
        done = asyncio.get_running_loop().create_future()

        def on_ready() -> None:  # answer each echo from the callback: the next round starts there
            records = to_parent.read()
            to_parent.commit()
            got.extend(records)
            if len(got) == rounds:
                done.set_result(None)
            elif records:
                producer.send(len(got).to_bytes(8, "little"))

        consumer.listen(on_ready)
        producer.send((0).to_bytes(8, "little"))
        await asyncio.wait_for(done, timeout=30.0)

    asyncio.run(exchange())
    consumer.close()
    producer.send(b"stop")
    child.join(timeout=10)

    assert got == [k.to_bytes(8, "little") for k in range(rounds)]
    assert child.exitcode == 0


@pytest.mark.parametrize("linger", [True, False])
def test_a_lingering_consumer_stays_awake_for_one_pass_after_it_delivered(
    make_ring: Callable[[], Ring], bells: Callable[[], Doorbell], long_slice: None, linger: bool
) -> None:
    ring, bell = make_ring(), bells()
    assert ring.write(b"one")
    consumer = AsyncConsumer([ring], bell)
    reader = Reader(ring)
    right_after: list[bool] = []

    def on_ready() -> None:
        reader()
        asyncio.get_running_loop().call_soon(lambda: right_after.append(ring.consumer_sleeping()))

    async def scenario() -> bool:
        consumer.listen(on_ready, linger=linger)
        await reader.until(1)
        await asyncio.sleep(0.01)
        return ring.consumer_sleeping()

    asleep_later = asyncio.run(scenario())
    consumer.close()

    assert reader.got == [b"one"]
    assert right_after == [not linger]  # lingering: producers need not ring until its next pass
    assert asleep_later  # that pass found nothing: asleep until the bell
