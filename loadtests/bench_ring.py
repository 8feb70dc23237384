"""Benchmark of ``ringbuf``: throughput and one-way latency between two real processes.

Owns: the ring figures reported against LIMITS.md. Never: asserts anything
(benchmarks report, tests assert).

Throughput (64-byte records, producer and consumer in two forked processes,
pinned to two CPUs with ``--pin``): one record per ``write``,
``write_batch`` of 64, and ``write_array``/``read_array`` of 64 and 1 024.
Each is measured next to a bare ring in the same run (fixed 64-byte slots, no
framing, no checks: the ceiling the lab measured), and reported as a ratio,
because absolute figures drift between runs and machines.

Latency: a producer paced at ``--rate`` (default 50 000/s) stamps each record
with ``perf_counter_ns`` (CLOCK_MONOTONIC, shared by all processes) and sends
it through ``Producer.send``; the consumer takes it with ``Consumer.recv``
(the public low-latency lane) under each strategy (spin, hybrid, yield,
block), and takes the difference; ``spin_read`` is the batch path instead
(``Consumer.wait`` then ``Ring.read``). p50/p99/p99.9 in us. The same run
measures the bare ring with a spinning consumer (``bare``). ``block_sleeping``
is ``block`` paced at ``--sleep-rate`` (default 2 000/s): the consumer sleeps
on the doorbell before every record, the path an exchange at moderate load
takes (one handshake and one wake-up per record). Each latency case also
reports the consumer's CPU time per record (``cpu_us``, from getrusage).

Handshake: ``handshake_ns`` is what a consumer pays to announce a sleep and
look again (the doorbell's steps c2-c4, no sleep: the fence, or membarrier),
with the ring's producer (built in a forked child, so it registers for
membarrier where the code says it must) busy on the other CPU.

Idle: a ``block`` consumer (and an ``AsyncConsumer``) waits on an empty ring
for a while; ``idle_block_cpu_pct`` / ``idle_async_cpu_pct`` is the CPU it
burnt, in percent of one core, and ``idle_*_polls`` how many times it called
``poll``/``epoll_wait`` (periodic wake-ups while idle).

Usage: ``python loadtests/bench_ring.py [--quick] [--pin] [--runs N]``; the
last stdout line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import resource
import select
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy's idle BLAS threads would take CPU from the pair

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ringbuf import AsyncConsumer, Consumer, Doorbell, Producer, Ring  # noqa: E402

CTX = mp.get_context("fork")
RECORD = 64
CAPACITY = 1 << 20
RECORD_DTYPE = np.dtype([("seq", "<u8"), ("body", "V56")])
PIN = False


def _pin(cpu: int) -> None:
    if PIN and hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[cpu % len(cpus)]})


def _run_pair(producer: Any, consumer: Any, name: str, count: int, *args: Any) -> float:
    """Fork ``producer`` and ``consumer``; return records/s from the start signal to the last record."""
    args = (name, count, *args)
    start = CTX.Event()
    results = CTX.Queue()
    procs = [
        CTX.Process(target=_child, args=(producer, 0, start, results, *args)),
        CTX.Process(target=_child, args=(consumer, 1, start, results, *args)),
    ]
    for proc in procs:
        proc.start()
    ready = [results.get(timeout=30) for _ in procs]
    assert all(item == "ready" for item in ready), ready
    t0 = time.perf_counter()
    start.set()
    done = dict(results.get(timeout=120) for _ in procs)
    for proc in procs:
        proc.join(timeout=30)
    return count / (done["end"] - t0)


def _child(fn: Any, cpu: int, start: Any, results: Any, *args: Any) -> None:
    _pin(cpu)
    fn(start, results, *args)


# ------------------------------------------------------------------ our ring


def _produce_single(start: Any, results: Any, name: str, count: int) -> None:
    ring = Ring.attach(name)
    write = ring.write
    record = b"r" * RECORD
    results.put("ready")
    start.wait()
    for _ in range(count):
        while not write(record):
            pass
    results.put(("producer", 0))
    ring.close()


def _produce_batch(start: Any, results: Any, name: str, count: int, batch: int) -> None:
    ring = Ring.attach(name)
    write_batch = ring.write_batch
    records = [b"r" * RECORD] * batch
    results.put("ready")
    start.wait()
    for _ in range(count // batch):
        left = records
        while left:
            left = left[write_batch(left) :]
    results.put(("producer", 0))
    ring.close()


def _produce_array(start: Any, results: Any, name: str, count: int, batch: int) -> None:
    ring = Ring.attach(name)
    write_array = ring.write_array
    arr = np.zeros(batch, RECORD_DTYPE)
    results.put("ready")
    start.wait()
    for _ in range(count // batch):
        left = arr
        while len(left):
            left = left[write_array(left) :]
    results.put(("producer", 0))
    ring.close()


def _consume(start: Any, results: Any, name: str, count: int, *extra: Any) -> None:
    ring = Ring.attach(name)
    read, commit = ring.read, ring.commit
    results.put("ready")
    start.wait()
    got = 0
    while got < count:
        records = read(1024)
        if records:
            got += len(records)
            commit()
    results.put(("end", time.perf_counter()))
    ring.close()


def _consume_array(start: Any, results: Any, name: str, count: int, batch: int) -> None:
    ring = Ring.attach(name)
    read_array, commit = ring.read_array, ring.commit
    results.put("ready")
    start.wait()
    got = 0
    while got < count:
        arr = read_array(RECORD_DTYPE, batch)
        if len(arr):
            got += len(arr)
            commit()
    results.put(("end", time.perf_counter()))
    ring.close()


# ---------------------------------------------------------------- bare ring
# Fixed 64-byte slots; the tail and head words (record counts) where the ring keeps its own, slots from
# byte 512. Only the segment is borrowed from Ring: none of its code runs.


def _bare_views(ring: Ring) -> tuple[Any, Any, Any, int]:
    buf = ring._shm.buf
    assert buf is not None
    return ring._mm, buf[128:136].cast("Q"), buf[256:264].cast("Q"), ring.capacity // RECORD


def _bare_produce(start: Any, results: Any, name: str, count: int, batch: int) -> None:
    ring = Ring.attach(name)
    mm, tail_q, head_q, slots = _bare_views(ring)
    record = b"r" * RECORD
    results.put("ready")
    start.wait()
    tail = head = 0
    for _ in range(count // batch):
        while tail + batch - head > slots:
            head = head_q[0]
        for _ in range(batch):
            off = 512 + (tail % slots) * RECORD
            mm[off : off + RECORD] = record
            tail += 1
        tail_q[0] = tail
    results.put(("producer", 0))
    del tail_q, head_q
    ring.close()


def _bare_produce_array(start: Any, results: Any, name: str, count: int, batch: int) -> None:
    ring = Ring.attach(name)
    mm, tail_q, head_q, slots = _bare_views(ring)
    data = np.frombuffer(mm, RECORD_DTYPE, slots, 512)
    arr = np.zeros(batch, RECORD_DTYPE)
    results.put("ready")
    start.wait()
    tail = head = 0
    for _ in range(count // batch):
        while tail + batch - head > slots:
            head = head_q[0]
        pos = tail % slots
        data[pos : pos + batch] = arr  # slots is a multiple of every batch used here
        tail += batch
        tail_q[0] = tail
    results.put(("producer", 0))
    del tail_q, head_q, data
    ring.close()


def _bare_consume(start: Any, results: Any, name: str, count: int, batch: int) -> None:
    ring = Ring.attach(name)
    mm, tail_q, head_q, slots = _bare_views(ring)
    results.put("ready")
    start.wait()
    head = 0
    out: list[bytes] = []
    while head < count:
        tail = tail_q[0]
        out.clear()
        while head < tail:
            off = 512 + (head % slots) * RECORD
            out.append(mm[off : off + RECORD])
            head += 1
        head_q[0] = head
    results.put(("end", time.perf_counter()))
    del tail_q, head_q
    ring.close()


def _bare_consume_array(start: Any, results: Any, name: str, count: int, batch: int) -> None:
    ring = Ring.attach(name)
    mm, tail_q, head_q, slots = _bare_views(ring)
    data = np.frombuffer(mm, RECORD_DTYPE, slots, 512)
    results.put("ready")
    start.wait()
    head = 0
    while head < count:
        tail = tail_q[0]
        if tail > head:
            pos = head % slots
            n = min(tail - head, slots - pos, batch)
            data[pos : pos + n].copy()
            head += n
            head_q[0] = head
    results.put(("end", time.perf_counter()))
    del tail_q, head_q, data
    ring.close()


# ------------------------------------------------------------------ latency


def _latency_producer(start: Any, results: Any, name: str, bell_fd: int, rate: int, seconds: float) -> None:
    ring = Ring.attach(name)
    record = bytearray(RECORD)
    stamp = memoryview(record)[:8].cast("Q")
    send = Producer(ring, Doorbell(bell_fd)).send
    clock = time.perf_counter_ns
    interval = 1_000_000_000 // rate
    count = int(rate * seconds)
    results.put("ready")
    start.wait()
    due = clock()
    for _ in range(count):
        due += interval
        while clock() < due:
            pass
        stamp[0] = clock()
        while not send(record):
            pass
    stamp[0] = 0  # end marker
    while not send(record):
        pass
    stamp.release()
    results.put(("producer", 0))
    ring.close()


def _latency_consumer(start: Any, results: Any, name: str, bell_fd: int, strategy: str) -> None:
    """One record at a time through the consumer's low-latency lane: ``Consumer.recv`` (for
    ``spin``, ``Ring.read_one`` polling the tail and copying the record in one frame), then
    ``Consumer.commit``. ``spin_read`` measures the batch path instead: ``wait`` then ``Ring.read``."""
    ring = Ring.attach(name)
    batch = strategy == "spin_read"
    consumer = Consumer([ring], Doorbell(bell_fd), "spin" if batch else strategy)
    recv, commit, wait, read = consumer.recv, consumer.commit, consumer.wait, ring.read
    clock = time.perf_counter_ns
    samples: list[int] = []
    results.put("ready")
    start.wait()
    cpu0 = _cpu_s()
    sent = 1  # 0: the end marker
    if batch:
        while sent:
            wait()
            records = read(64)
            now = clock()
            for record in records:
                sent = int.from_bytes(record[:8], "little")
                if sent == 0:
                    break
                samples.append(now - sent)
            commit()
    else:
        while sent:
            one = recv()
            now = clock()
            sent = int.from_bytes(one[:8], "little")  # type: ignore[index]
            if sent:
                samples.append(now - sent)
            commit()
    results.put(("cpu_s", _cpu_s() - cpu0))
    results.put(("samples", samples))
    ring.close()


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _latency_bare_producer(start: Any, results: Any, name: str, rate: int, seconds: float) -> None:
    """The same paced stamps through the bare ring, its stores inline in the loop."""
    ring = Ring.attach(name)
    mm, tail_q, head_q, slots = _bare_views(ring)
    record = bytearray(RECORD)
    stamp = memoryview(record)[:8].cast("Q")
    clock = time.perf_counter_ns
    interval = 1_000_000_000 // rate
    results.put("ready")
    start.wait()
    count = int(rate * seconds)
    due = clock()
    tail = 0
    limit = slots  # like the ring, read the consumer's head only when the cached room runs out
    for i in range(count + 1):
        due += interval
        while clock() < due:
            pass
        stamp[0] = clock() if i < count else 0  # 0: end marker
        while tail >= limit:
            limit = head_q[0] + slots
        off = 512 + (tail % slots) * RECORD
        mm[off : off + RECORD] = record
        tail += 1
        tail_q[0] = tail
    results.put(("producer", 0))
    for view in (stamp, tail_q, head_q):
        view.release()
    ring.close()


def _latency_bare_consumer(start: Any, results: Any, name: str) -> None:
    """The bare ring's spinning consumer: wait for the tail, copy the slots, store head."""
    ring = Ring.attach(name)
    mm, tail_q, head_q, slots = _bare_views(ring)
    clock = time.perf_counter_ns
    samples: list[int] = []
    results.put("ready")
    start.wait()
    head = 0
    running = True
    while running:
        while tail_q[0] == head:
            pass
        tail = tail_q[0]
        records = []
        while head < tail:
            off = 512 + (head % slots) * RECORD
            records.append(mm[off : off + RECORD])
            head += 1
        now = clock()
        for record in records:
            sent = int.from_bytes(record[:8], "little")
            if sent == 0:
                running = False
                break
            samples.append(now - sent)
        head_q[0] = head
    results.put(("samples", samples))
    for view in (tail_q, head_q):
        view.release()
    ring.close()


def _latency(strategy: str, rate: int, seconds: float) -> dict[str, float]:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    ring = Ring.create(name, CAPACITY)
    bell = Doorbell.create()
    try:
        start = CTX.Event()
        results = CTX.Queue()
        sides: list[tuple[Any, ...]]
        if strategy == "bare":
            sides = [(_latency_bare_producer, name, rate, seconds), (_latency_bare_consumer, name)]
        else:
            sides = [(_latency_producer, name, bell.fd, rate, seconds), (_latency_consumer, name, bell.fd, strategy)]
        procs = [
            CTX.Process(target=_child, args=(side[0], cpu, start, results, *side[1:])) for cpu, side in enumerate(sides)
        ]
        for proc in procs:
            proc.start()
        assert [results.get(timeout=30) for _ in procs] == ["ready", "ready"]
        start.set()
        done = dict(results.get(timeout=seconds + 60) for _ in range(len(procs) + (strategy != "bare")))
        for proc in procs:
            proc.join(timeout=30)
    finally:
        ring.close()
        ring.unlink()
        bell.close()
    count = len(done["samples"])
    samples = np.array(done["samples"][count // 20 :], dtype=np.float64) / 1000.0  # drop warm-up
    p50, p99, p999 = np.percentile(samples, [50, 99, 99.9])
    out = {"p50_us": round(p50, 2), "p99_us": round(p99, 2), "p999_us": round(p999, 1), "samples": len(samples)}
    if "cpu_s" in done:
        out["cpu_us"] = round(done["cpu_s"] * 1e6 / max(count, 1), 2)
    return out


# ---------------------------------------------------------------- handshake


def _busy_producer(name: str, bell_fd: int, ready: Any, stop: Any) -> None:
    ring = Ring.attach(name)
    Producer(ring, Doorbell(bell_fd))
    ready.set()
    while not stop.is_set():
        for _ in range(10_000):
            pass
    ring.close()


def _handshake(seconds: float) -> float:
    """ns per announce-and-look (steps c2-c4 of ``ringbuf.doorbell``) on an empty ring."""
    ring = Ring.create(f"bench-{uuid.uuid4().hex[:8]}", 4096)
    bell = Doorbell.create()
    ready, stop = CTX.Event(), CTX.Event()
    child = CTX.Process(target=_busy_producer, args=(ring.name, bell.fd, ready, stop))
    child.start()
    try:
        ready.wait(30)
        consumer = Consumer([ring], bell, "block")
        go_to_sleep, wake_up = consumer._go_to_sleep, consumer._wake_up
        clock = time.perf_counter_ns
        count = 0
        t0 = clock()
        end = t0 + int(seconds * 1e9)
        while clock() < end:
            for _ in range(100):
                go_to_sleep()
                wake_up()
            count += 100
        elapsed = clock() - t0
    finally:
        stop.set()
        child.join(timeout=30)
        ring.close()
        ring.unlink()
        bell.close()
    return elapsed / count


# --------------------------------------------------------------------- idle


class _CountingPoll:
    """``select.poll()`` that counts its ``poll`` calls (the Consumer's sleeps)."""

    def __init__(self) -> None:
        self._poll = select.poll()
        self.calls = 0

    def register(self, *args: Any) -> None:
        self._poll.register(*args)

    def poll(self, *args: Any) -> Any:
        self.calls += 1
        return self._poll.poll(*args)


def _idle(kind: str, seconds: float) -> dict[str, float]:
    """CPU (% of a core) and sleeps of a consumer that waits ``seconds`` on an empty ring, in this process."""
    ring = Ring.create(f"bench-{uuid.uuid4().hex[:8]}", 4096)
    bell = Doorbell.create()
    try:
        if kind == "block":
            consumer = Consumer([ring], bell, "block")
            counter = consumer._poll = _CountingPoll()  # type: ignore[assignment]
            cpu0 = _cpu_s()
            consumer.wait(timeout=seconds)
            cpu = _cpu_s() - cpu0
            polls = counter.calls
        else:
            async_consumer = AsyncConsumer([ring], bell)

            async def idle() -> tuple[float, int]:
                loop = asyncio.get_running_loop()
                selector = loop._selector  # type: ignore[attr-defined]
                real_select = selector.select
                calls = 0

                def counted(timeout: float | None = None) -> Any:
                    nonlocal calls
                    calls += 1
                    return real_select(timeout)

                selector.select = counted
                task = loop.create_task(async_consumer.wait())
                await asyncio.sleep(0.01)
                cpu0, calls = _cpu_s(), 0
                await asyncio.sleep(seconds)
                used, polls = _cpu_s() - cpu0, calls
                task.cancel()
                return used, polls

            cpu, polls = asyncio.run(idle())
            async_consumer.close()
    finally:
        ring.close()
        ring.unlink()
        bell.close()
    return {"cpu_pct": round(cpu / seconds * 100, 2), "polls": polls}


# --------------------------------------------------------------------- main


def _throughput(producer: Any, consumer: Any, count: int, *args: Any) -> float:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    ring = Ring.create(name, CAPACITY)
    try:
        return _run_pair(producer, consumer, name, count, *args)
    finally:
        ring.close()
        ring.unlink()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    global PIN
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="whole run under 30 s")
    parser.add_argument("--rate", type=int, default=50_000, help="paced rate of the latency runs, records/s")
    parser.add_argument("--sleep-rate", type=int, default=2_000, help="paced rate of block_sleeping, records/s")
    parser.add_argument("--runs", type=int, default=0, help="repetitions per throughput case (median kept)")
    parser.add_argument("--pin", action="store_true", help="pin producer and consumer to two CPUs")
    args = parser.parse_args(argv)
    PIN = args.pin
    runs = args.runs or (1 if args.quick else 3)
    scale = 1 if args.quick else 3
    cases: dict[str, tuple[tuple[Any, ...], tuple[Any, ...]]] = {
        "single": ((_produce_single, _consume, 600_000 * scale), (_bare_produce, _bare_consume, 600_000 * scale, 1)),
        "batch64": (
            (_produce_batch, _consume, 1_280_000 * scale, 64),
            (_bare_produce, _bare_consume, 1_280_000 * scale, 64),
        ),
        "numpy64": (
            (_produce_array, _consume_array, 3_200_000 * scale, 64),
            (_bare_produce_array, _bare_consume_array, 3_200_000 * scale, 64),
        ),
        "numpy1024": (
            (_produce_array, _consume_array, 6_144_000 * scale, 1024),
            (_bare_produce_array, _bare_consume_array, 6_144_000 * scale, 1024),
        ),
    }
    figures: dict[str, Any] = {"quick": args.quick, "cpus": os.cpu_count(), "pinned": PIN, "runs": runs}
    for case, (ours, bare) in cases.items():
        ours_rates, bare_rates = [], []
        for _ in range(runs):  # alternate, so that drift in the machine's load hits both alike
            ours_rates.append(_throughput(*ours))
            bare_rates.append(_throughput(*bare))
        ours_rate, bare_rate = statistics.median(ours_rates), statistics.median(bare_rates)
        figures[f"{case}_per_s"] = round(ours_rate)
        figures[f"bare_{case}_per_s"] = round(bare_rate)
        figures[f"{case}_vs_bare"] = round(ours_rate / bare_rate, 3)
        ratio = ours_rate / bare_rate
        print(f"{case:10s} {ours_rate / 1e6:6.2f} M/s   bare {bare_rate / 1e6:6.2f} M/s   ratio {ratio:.2f}")
    seconds = 0.6 if args.quick else 3.0
    strategies = ("bare", "spin", "spin_read", "hybrid", "yield", "block", "block_sleeping")  # bare: minimal ring
    for strategy in strategies:
        rate = args.sleep_rate if strategy == "block_sleeping" else args.rate
        lat = _latency(strategy.removesuffix("_sleeping"), rate, seconds if rate == args.rate else 2 * seconds)
        for key, value in lat.items():
            figures[f"latency_{strategy}_{key}"] = value
        figures_us = f"p50 {lat['p50_us']} us  p99 {lat['p99_us']} us  p99.9 {lat['p999_us']} us"
        cpu = f"  consumer cpu {lat['cpu_us']} us/rec" if "cpu_us" in lat else ""
        print(f"latency {strategy:5s} at {rate}/s: {figures_us}{cpu}")
    figures["latency_rate_per_s"] = args.rate
    figures["latency_sleep_rate_per_s"] = args.sleep_rate
    figures["handshake_ns"] = round(_handshake(0.5 if args.quick else 2.0))
    print(f"handshake (c2-c4, a producer busy elsewhere): {figures['handshake_ns']} ns")
    for kind in ("block", "async"):
        idle = _idle(kind, 0.5 if args.quick else 2.0)
        figures[f"idle_{kind}_cpu_pct"] = idle["cpu_pct"]
        figures[f"idle_{kind}_polls"] = idle["polls"]
        print(f"idle {kind:5s}: cpu {idle['cpu_pct']}% of a core, {idle['polls']} polls")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
