"""Events per second from the shard streams in Redis into PostgreSQL (fsync on), against bare COPY; CPU per order.

Setup (not timed): an embedded PostgreSQL (fsync and synchronous commit on)
and Redis in a temporary folder; two matching engines fed a random order
flow (limit orders around a drifting price, a fifth of them crossing, some
IOC, cancels of resting orders), each batch of ``BATCH`` commands journaled
to its shard's stream by ``shards.journal.RedisJournal``, exactly as a shard does.

Timed, in the same run:
- ours: ``persist.main.serve`` (its writer for both shards: consumer groups,
  one transaction per read, XACK after commit) until both shards' progress
  reaches the last sequence number;
- bare: asyncpg ``copy_records_to_table`` of the same rows persist writes
  (trades, order history, one row per order) in batches of 10 000, one
  connection, into an empty copy of the same tables in the same server.

The ratio is bare time / our time for the same rows (1.0 = as fast as bare
COPY). CPU seconds of this process (persist's writers, plus a progress poll
every 20 ms) and of every PostgreSQL process over the same window are
reported per command.

Live (what the exchange sees at single-order load): a persist process
(``persist.main.run``, its own process, ``commit_interval_ms`` as the
exchange's default) while this process appends stream entries of
``--live-per-entry`` commands at ``--live-rate`` commands per second over
both shards, with the order flow of ``bench_orders.py`` (70% resting GTC
limits, 30% IOC limits crossing 20 ticks through the mid), for
``--live-seconds``; then until persist has caught up. Reported: CPU of the
persist process and of PostgreSQL (every server process: backends, WAL
writer, checkpointer, autovacuum) per command, from /proc.

Also measured: the time one ``RedisJournal.append_encoded`` takes (the
round trip a shard adds before answering a batch), p50 and p99, for a batch
of one command's events and of 64 commands' events. Events counts every event in the streams (depth updates and
rejections included, which persist reads but does not store).

Instructions (``--pg-callgrind``, needs valgrind; robust on a machine others load, unlike CPU
seconds): a PostgreSQL run under ``valgrind --tool=callgrind`` (autovacuum off), written to by
``store.write_batches`` directly (no Redis) with the live flow in writes of ``--pg-callgrind-sizes``
commands (both shards together); reported: the writing backend's instructions per command, less those
of a connection that only connects and prepares. Fsync and network time are the kernel's, not
counted; the CPU seconds of the live run see them.

Diagnostics: ``BENCH_CPU_DETAIL=1`` prints each measured process's CPU seconds
on stderr; ``BENCH_PERSIST_PROFILE=<file>`` runs the live persist process
under cProfile, timed in CPU seconds, and dumps its stats there.

Usage: ``python loadtests/bench_persist.py [--quick] [--commands N] [--live-rate R] [--live-per-entry N]
[--live-seconds S] [--skip-bulk] [--pg-callgrind] [--pg-callgrind-sizes 10,40,200]``; the last stdout line
is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pwd
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import asyncpg  # noqa: E402
import redis  # noqa: E402

from deploy.config import load_config  # noqa: E402
from deploy.embedded import PG_SYSTEM_USER, free_port, postgres_bin_dir, start_postgres, start_redis  # noqa: E402
from deploy.migrate import apply_migrations  # noqa: E402
from persist import main as persist_main  # noqa: E402
from persist import store  # noqa: E402
from persist.rows import HISTORY_COLUMNS, ORDER_COLUMNS, TRADE_COLUMNS, Batch  # noqa: E402
from shards.engine import Engine  # noqa: E402
from shards.events import encode_events  # noqa: E402
from shards.journal import RedisJournal  # noqa: E402
from shards.protocol import CancelOrder, NewOrder, OrderResult  # noqa: E402
from shards.stream import stream_key  # noqa: E402

BATCH = 512
COPY_BATCH = 10_000
SHARDS = 2
MID = 10_000


def generate(url: str, commands: int) -> tuple[int, list[list]]:
    """Journal ``commands`` per shard; returns (events, every shard's events)."""
    config = load_config(None, env={})
    all_events = []
    total = 0
    for shard in range(SHARDS):
        specs = [s.spec() for s in config.symbols_of_shard(shard)]
        engine = Engine(specs)
        journal = RedisJournal(url, shard, [])
        rng = random.Random(shard)
        resting: list[tuple[int, int, int]] = []
        mid = 10_000
        events = []
        for i in range(commands):
            spec = rng.choice(specs)
            user = rng.randint(1, 1000)
            if resting and rng.random() < 0.25:
                sym, oid, u = resting.pop(rng.randrange(len(resting)))
                engine.apply(CancelOrder(sym, u, oid, "", i))
            else:
                side = rng.choice((1, 2))
                cross = rng.random() < 0.2
                offset = rng.randint(0, 10)
                if side == 1:
                    price = mid + offset if cross else mid - offset - 1
                else:
                    price = mid - offset if cross else mid + offset + 1
                tif = 2 if cross and rng.random() < 0.5 else 1
                cmd = NewOrder(spec.symbol_id, user, f"b{i}", side, 1, tif, price, rng.randint(1, 20), 0, 0, i)
                res = engine.apply(cmd)
                if type(res) is OrderResult and res.order.status in (1, 2):
                    resting.append((spec.symbol_id, res.order.order_id, user))
                mid += rng.randint(-1, 1)
            if (i + 1) % BATCH == 0 or i == commands - 1:
                batch = engine.take_events()
                events.extend(batch)
                journal.append(batch)
        journal.close()
        total += len(events)
        all_events.append(events)
    return total, all_events


async def progress(dsn: str) -> dict[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return await store.all_progress(conn)
    finally:
        await conn.close()


def cpu_of(pids: list[int]) -> dict[int, float]:
    """CPU seconds (user + system) of each of ``pids`` still alive."""
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def postgres_pids(postmaster: int) -> list[int]:
    """The postmaster and its children (backends, WAL writer, checkpointer, autovacuum ...)."""
    pids = [postmaster]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                pids.append(int(entry))
    return pids


class CpuWindow:
    """CPU seconds of a set of processes between ``__init__`` and ``stop`` (processes that appear count whole)."""

    def __init__(self, pids_now) -> None:  # noqa: ANN001 - a zero-argument function giving the pids
        self.pids_now = pids_now
        self.before = cpu_of(pids_now())

    def stop(self) -> float:
        after = cpu_of(self.pids_now())
        self.by_pid = {pid: v - self.before.get(pid, 0.0) for pid, v in after.items()}
        if os.environ.get("BENCH_CPU_DETAIL"):
            for pid, v in sorted(self.by_pid.items(), key=lambda x: -x[1]):
                title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                print(f"  cpu {v:7.3f} s  {pid} {title[:80]}", file=sys.stderr)
        return sum(self.by_pid.values())


async def run_ours(dsn: str, url: str, targets: dict[int, int], postmaster: int) -> tuple[float, float, float]:
    """(seconds, CPU seconds of this process, CPU seconds of PostgreSQL) until persist reached ``targets``."""
    config = load_config(None, env={"DATABASE_URL": dsn, "REDIS_URL": url})
    stop = asyncio.Event()
    pg_cpu = CpuWindow(lambda: postgres_pids(postmaster))
    own_cpu = time.process_time()
    started = time.perf_counter()
    task = asyncio.create_task(persist_main.serve(config, list(range(SHARDS)), 0, stop))
    conn = await asyncpg.connect(dsn)
    try:
        while True:
            done = await store.all_progress(conn)
            if all(done.get(s, 0) >= t for s, t in targets.items()):
                break
            if task.done():
                task.result()
                raise RuntimeError("persist stopped before the end")
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        own = time.process_time() - own_cpu
        pg = pg_cpu.stop()
    finally:
        await conn.close()
    stop.set()
    await task
    return elapsed, own, pg


# --- live: a persist process under a paced flow ---------------------------------------------


Streams = list[list[tuple[bytes, int, int]]]  # per shard: (packed events, last seq, commands) of each entry


def generate_live(commands: int, per_entry: int) -> Streams:
    """Per shard: the stream entries (packed events, last seq, commands) of ``commands`` bench_orders-like orders."""
    config = load_config(None, env={})
    out = []
    for shard in range(SHARDS):
        specs = [s.spec() for s in config.symbols_of_shard(shard)]
        engine = Engine(specs)
        rng = random.Random(100 + shard)
        entries = []
        in_entry = 0
        for i in range(commands):
            spec = specs[i % len(specs)]
            side = rng.choice((1, 2))
            sign = 1 if side == 1 else -1
            if rng.random() < 0.7:  # passive: rests
                price, tif, qty = MID - sign * rng.randint(1, 20), 1, rng.randint(1, 3)
            else:  # aggressive: crosses, takes, expires the rest
                price, tif, qty = MID + sign * 20, 2, rng.randint(5, 8)
            engine.apply(NewOrder(spec.symbol_id, 1 + i % 4, f"l{shard}.{i}", side, 1, tif, price, qty, 0, 0, i))
            in_entry += 1
            if in_entry == per_entry or i == commands - 1:
                events = engine.take_events()
                entries.append((encode_events(events), events[-1].seq, in_entry))
                in_entry = 0
        out.append(entries)
    return out


PERSIST_CHILD = (
    "import os, sys; from deploy.config import build_config; import persist.main as m;"
    " c = build_config({'engine': {'shards': int(sys.argv[1])}, 'persist': eval(sys.argv[2])});"
    " p = os.environ.get('BENCH_PERSIST_PROFILE');"
    " exec(PROFILED) if p else m.run(c, None, 0)"
)  # the persist process as the exchange starts it (default commit_interval_ms)
PROFILED = (  # BENCH_PERSIST_PROFILE=file: the persist process under cProfile, in CPU time
    "import cProfile, time\npr = cProfile.Profile(time.process_time)\npr.runcall(m.run, c, None, 0)\npr.dump_stats(p)"
)


def run_live(dsn: str, url: str, postmaster: int, streams: Streams, rate: float, interval_ms: int | None) -> dict:
    """Feed ``streams`` at ``rate`` commands/s to a persist process; its CPU and PostgreSQL's per command."""
    _reset(dsn, url)
    env = dict(os.environ, DATABASE_URL=dsn, REDIS_URL=url, PYTHONPATH=str(REPO))
    code = PERSIST_CHILD.replace("exec(PROFILED)", f"exec({PROFILED!r})")
    settings = {} if interval_ms is None else {"commit_interval_ms": interval_ms}
    child = subprocess.Popen([sys.executable, "-c", code, str(SHARDS), repr(settings)], env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        client = redis.Redis.from_url(url)
        while not all(_has_group(client, s) for s in range(SHARDS)):  # ready: its writers are reading
            if time.monotonic() > deadline or child.poll() is not None:
                raise RuntimeError("the persist process did not start")
            time.sleep(0.05)
        time.sleep(0.3)
        journals = [RedisJournal(url, s, []) for s in range(SHARDS)]
        pg_cpu = CpuWindow(lambda: postgres_pids(postmaster))
        persist_cpu = CpuWindow(lambda: [child.pid])
        started = time.perf_counter()
        order = sorted((i, s) for s in range(SHARDS) for i in range(len(streams[s])))
        sent = 0
        for i, s in order:
            data, last_seq, n = streams[s][i]
            due = started + sent / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            journals[s].append_encoded(data, last_seq)
            sent += n
        fed_s = time.perf_counter() - started
        targets = {s: streams[s][-1][1] for s in range(SHARDS)}
        deadline = time.monotonic() + 60
        while True:
            done = asyncio.run(progress(dsn))
            if all(done.get(s, 0) >= t for s, t in targets.items()):
                break
            if time.monotonic() > deadline or child.poll() is not None:
                raise RuntimeError("the persist process did not catch up")
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        persist_s = persist_cpu.stop()
        pg_s = pg_cpu.stop()
        for j in journals:
            j.close()
        client.close()
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(20)
    return {
        "live_commands": sent,
        "live_rate_per_s": round(sent / fed_s),
        "live_catch_up_s": round(elapsed - fed_s, 3),
        "live_persist_cpu_us_per_order": round(persist_s * 1e6 / sent, 1),
        "live_postgres_cpu_us_per_order": round(pg_s * 1e6 / sent, 1),
    }


def _has_group(client: redis.Redis, shard: int) -> bool:
    try:
        return bool(client.xinfo_groups(stream_key(shard)))
    except redis.ResponseError:  # no stream yet
        return False


def _reset(dsn: str, url: str) -> None:
    """Empty tables and streams: the live run starts where a new exchange starts."""

    async def empty() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("TRUNCATE orders, trades, order_history, persist_progress")
        finally:
            await conn.close()

    asyncio.run(empty())
    client = redis.Redis.from_url(url)
    client.delete(*[stream_key(s) for s in range(SHARDS)])
    client.close()


async def run_bare(dsn: str, all_events: list[list]) -> tuple[float, int]:
    rows: dict[str, list] = {"trades": [], "order_history": [], "orders": []}
    for shard, events in enumerate(all_events):
        batch = Batch(shard, {})
        batch.add(events)
        rows["trades"] += batch.trades
        rows["order_history"] += batch.history
        rows["orders"] += batch.order_rows()
    columns = {"trades": TRADE_COLUMNS, "order_history": HISTORY_COLUMNS, "orders": ORDER_COLUMNS}
    conn = await asyncpg.connect(dsn)
    try:
        for table in rows:
            await conn.execute(f"CREATE TABLE bare_{table} (LIKE {table} INCLUDING ALL)")
        started = time.perf_counter()
        for table, records in rows.items():
            for i in range(0, len(records), COPY_BATCH):
                await conn.copy_records_to_table(
                    f"bare_{table}", records=records[i : i + COPY_BATCH], columns=columns[table]
                )
        elapsed = time.perf_counter() - started
    finally:
        await conn.close()
    return elapsed, sum(len(r) for r in rows.values())


def journal_latency(url: str, all_events: list[list], samples: int) -> dict[str, float]:
    """p50/p99 in µs of one journal append of 1 and of 64 commands' events (about 2.2 events each)."""
    from shards.events import encode_events

    events = all_events[0]
    out = {}
    for label, n in (("1cmd", 2), ("64cmd", 140)):
        data = encode_events(events[:n])
        journal = RedisJournal(url, 90 + n, [])
        times = []
        for _ in range(samples):
            t0 = time.perf_counter_ns()
            journal.append_encoded(data, journal.last_seq + n)
            times.append(time.perf_counter_ns() - t0)
        journal.client.delete(journal.key)
        journal.close()
        times.sort()
        out[f"journal_{label}_p50_us"] = round(times[len(times) // 2] / 1000, 1)
        out[f"journal_{label}_p99_us"] = round(times[int(len(times) * 0.99)] / 1000, 1)
    return out


# --- instructions: PostgreSQL under callgrind -----------------------------------------------


def _callgrind_ir(folder: Path, pid: int) -> int:
    """Instructions of process ``pid`` (its callgrind file, written when it exits)."""
    path = folder / f"callgrind.{pid}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                if line.startswith(("totals:", "summary:")):
                    return int(line.split()[1])
        time.sleep(0.1)
    raise RuntimeError(f"no callgrind totals for backend {pid} in {path}")


async def _callgrind_session(dsn: str, streams: Streams, per_shard: int) -> tuple[int, int]:
    """(backend pid, commands written) of one connection writing ``streams`` (``per_shard`` commands a shard a
    write; 0: connect and prepare only)."""
    conn = await store.connect(dsn)
    pid = await conn.fetchval("SELECT pg_backend_pid()")
    commands = 0
    caches: dict[int, dict] = {s: {} for s in range(SHARDS)}
    last = {s: 0 for s in range(SHARDS)}
    entries = min(len(e) for e in streams) if per_shard else 0
    for i in range(0, entries, per_shard or 1):
        batches = []
        for shard in range(SHARDS):
            batch = Batch(shard, caches[shard], last[shard])
            for data, _, n in streams[shard][i : i + per_shard]:
                batch.add_encoded(data)
                commands += n
            batches.append(batch)
        await store.write_batches(conn, batches)
        for batch in batches:
            last[batch.shard] = batch.last_seq
            batch.merge_into(caches[batch.shard])
    await conn.close()
    return pid, commands


async def _callgrind_reset(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE orders, trades, order_history, persist_progress")
        for shard in range(SHARDS):
            await store.progress(conn, shard)
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


def pg_callgrind(folder: Path, commands: int, sizes: list[int]) -> dict[str, float]:
    """PostgreSQL instructions per command of ``store.write_batches``, per write size (commands a write)."""
    if shutil.which("valgrind") is None:
        print("--pg-callgrind: valgrind is not installed (apt-get install -y valgrind); skipped", file=sys.stderr)
        return {}
    streams = generate_live(commands, 1)
    pg = start_postgres(folder)
    asyncio.run(apply_migrations(pg.url))
    pg.stop()
    out = folder / "callgrind"
    out.mkdir()
    user = pwd.getpwnam(PG_SYSTEM_USER) if os.geteuid() == 0 else None
    if user is not None:
        os.chown(out, user.pw_uid, user.pw_gid)
    port = free_port()
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/callgrind.%p",
           str(postgres_bin_dir() / "postgres"), "-D", str(folder / "postgres"), "-p", str(port),
           "-c", "listen_addresses=127.0.0.1",
           "-c", "unix_socket_directories=", "-c", "fsync=on", "-c", "autovacuum=off"]  # fmt: skip
    with open(folder / "callgrind.log", "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd="/", start_new_session=True,
                                user=user and user.pw_uid, group=user and user.pw_gid)  # fmt: skip
    dsn = pg.url.rsplit(":", 1)[0] + f":{port}/" + pg.url.rsplit("/", 1)[1]
    figures: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                asyncio.run(_callgrind_reset(dsn))
                break
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"PostgreSQL under valgrind did not start; see {folder}/callgrind.log") from None
                time.sleep(0.5)
        for size in sizes:
            asyncio.run(_callgrind_reset(dsn))
            idle_pid, _ = asyncio.run(_callgrind_session(dsn, streams, 0))
            pid, written = asyncio.run(_callgrind_session(dsn, streams, max(1, size // SHARDS)))
            per_command = (_callgrind_ir(out, pid) - _callgrind_ir(out, idle_pid)) / written
            figures[f"pg_ir_per_command_{size}"] = round(per_command)
            print(f"callgrind: PostgreSQL {per_command / 1000:.1f}k instructions per command, {size} commands a write")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run of well under 30 s")
    parser.add_argument("--commands", type=int, default=0, help="commands per shard")
    parser.add_argument("--live-rate", type=float, default=5000.0, help="live: commands per second, all shards")
    parser.add_argument("--live-per-entry", type=int, default=4, help="live: commands per stream entry")
    parser.add_argument("--live-seconds", type=float, default=0.0, help="live: seconds of feeding (default 4, 10)")
    parser.add_argument(
        "--live-commit-interval-ms", type=int, default=None, help="live: persist.commit_interval_ms (default: default)"
    )
    parser.add_argument("--skip-bulk", action="store_true", help="only the live run")
    parser.add_argument(
        "--pg-callgrind", action="store_true", help="PostgreSQL instructions per command under callgrind (slow)"
    )
    parser.add_argument("--pg-callgrind-sizes", default="10,40,200", help="commands a write, comma-separated")
    args = parser.parse_args()
    commands = args.commands or (25_000 if args.quick else 200_000)
    live_seconds = args.live_seconds or (4.0 if args.quick else 10.0)
    live_commands = int(args.live_rate * live_seconds / SHARDS)
    folder = Path(tempfile.mkdtemp(prefix="bench-persist-"))
    pg = start_postgres(folder)
    rd = start_redis(folder, appendfsync="everysec")
    try:
        dsn = pg.url
        asyncio.run(apply_migrations(dsn))
        postmaster = pg.proc.pid
        bulk: dict = {}
        if not args.skip_bulk:
            t0 = time.perf_counter()
            events, all_events = generate(rd.url, commands)
            gen_s = time.perf_counter() - t0
            targets = {s: all_events[s][-1].seq for s in range(SHARDS)}
            ours_s, ours_cpu, pg_cpu = asyncio.run(run_ours(dsn, rd.url, targets, postmaster))
            bare_s, rows = asyncio.run(run_bare(dsn, all_events))
            latency = journal_latency(rd.url, all_events, 2_000 if args.quick else 20_000)
            bulk = {
                "commands": commands * SHARDS,
                "events": events,
                "rows": rows,
                "ours_s": round(ours_s, 3),
                "ours_events_per_s": round(events / ours_s),
                "ours_rows_per_s": round(rows / ours_s),
                "ours_persist_cpu_us_per_command": round(ours_cpu * 1e6 / (commands * SHARDS), 1),
                "ours_postgres_cpu_us_per_command": round(pg_cpu * 1e6 / (commands * SHARDS), 1),
                "bare_copy_s": round(bare_s, 3),
                "bare_copy_rows_per_s": round(rows / bare_s),
                "ratio_vs_bare_copy": round(bare_s / ours_s, 3),
                "generate_s": round(gen_s, 1),
                **latency,
            }
            print(f"persist: {events} events ({rows} rows) in {ours_s:.2f} s; bare COPY of the rows {bare_s:.2f} s")
        streams = generate_live(live_commands, args.live_per_entry)
        live = run_live(dsn, rd.url, postmaster, streams, args.live_rate, args.live_commit_interval_ms)
        print(
            f"live: {live['live_commands']} commands at {live['live_rate_per_s']}/s, {args.live_per_entry} per entry;"
            f" CPU per order: persist {live['live_persist_cpu_us_per_order']} us,"
            f" PostgreSQL {live['live_postgres_cpu_us_per_order']} us"
        )
    finally:
        rd.stop()
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)
    instructions: dict[str, float] = {}
    if args.pg_callgrind:
        folder = Path(tempfile.mkdtemp(prefix="bench-persist-callgrind-"))
        try:
            sizes = [int(n) for n in args.pg_callgrind_sizes.split(",")]
            instructions = pg_callgrind(folder, 400 if args.quick else 2000, sizes)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    figures = {
        "bench": "persist",
        **bulk,
        "redis_appendfsync": "everysec",
        "live_per_entry": args.live_per_entry,
        **live,
        **instructions,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
