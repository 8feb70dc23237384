"""Events per second from the shard streams in Redis into PostgreSQL (fsync on), against bare binary COPY.

Setup (not timed): an embedded PostgreSQL (fsync and synchronous commit on)
and Redis in a temporary folder; two matching engines fed a random order
flow (limit orders around a drifting price, a fifth of them crossing, some
IOC, cancels of resting orders), each batch of ``BATCH`` commands journaled
to its shard's stream by ``shards.journal.RedisJournal``, exactly as a shard does.

Timed, in the same run:
- ours: ``persist.main.serve`` (one writer per shard, consumer groups, one
  transaction per read, XACK after commit) until both shards' progress
  reaches the last sequence number;
- bare: asyncpg ``copy_records_to_table`` of the same rows persist writes
  (trades, order history, one row per order) in batches of 10 000, one
  connection, into an empty copy of the same tables in the same server.

The ratio is bare time / our time for the same rows (1.0 = as fast as bare
COPY). Also measured: the time one ``RedisJournal.append_encoded`` takes (the
round trip a shard adds before answering a batch), p50 and p99, for a batch
of one command's events and of 64 commands' events. Events counts every event in the streams (depth updates and
rejections included, which persist reads but does not store).

Usage: ``python loadtests/bench_persist.py [--quick] [--commands N]``; the last
stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402

from deploy.config import load_config  # noqa: E402
from deploy.embedded import start_postgres, start_redis  # noqa: E402
from deploy.migrate import apply_migrations  # noqa: E402
from persist import main as persist_main  # noqa: E402
from persist import store  # noqa: E402
from persist.rows import HISTORY_COLUMNS, ORDER_COLUMNS, TRADE_COLUMNS, Batch  # noqa: E402
from shards.engine import Engine  # noqa: E402
from shards.journal import RedisJournal  # noqa: E402
from shards.protocol import CancelOrder, NewOrder, OrderResult  # noqa: E402

BATCH = 512
COPY_BATCH = 10_000
SHARDS = 2


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


async def run_ours(dsn: str, url: str, targets: dict[int, int]) -> float:
    config = load_config(None, env={"DATABASE_URL": dsn, "REDIS_URL": url})
    stop = asyncio.Event()
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
            await asyncio.sleep(0.005)
    finally:
        await conn.close()
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    return elapsed


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run of well under 30 s")
    parser.add_argument("--commands", type=int, default=0, help="commands per shard")
    args = parser.parse_args()
    commands = args.commands or (25_000 if args.quick else 200_000)
    folder = Path(tempfile.mkdtemp(prefix="bench-persist-"))
    pg = start_postgres(folder)
    rd = start_redis(folder, appendfsync="everysec")
    try:
        dsn = pg.url
        asyncio.run(apply_migrations(dsn))
        t0 = time.perf_counter()
        events, all_events = generate(rd.url, commands)
        gen_s = time.perf_counter() - t0
        targets = {s: all_events[s][-1].seq for s in range(SHARDS)}
        ours_s = asyncio.run(run_ours(dsn, rd.url, targets))
        bare_s, rows = asyncio.run(run_bare(dsn, all_events))
        latency = journal_latency(rd.url, all_events, 2_000 if args.quick else 20_000)
    finally:
        rd.stop()
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)
    figures = {
        "bench": "persist",
        "commands": commands * SHARDS,
        "events": events,
        "rows": rows,
        "ours_s": round(ours_s, 3),
        "ours_events_per_s": round(events / ours_s),
        "ours_rows_per_s": round(rows / ours_s),
        "bare_copy_s": round(bare_s, 3),
        "bare_copy_rows_per_s": round(rows / bare_s),
        "ratio_vs_bare_copy": round(bare_s / ours_s, 3),
        "generate_s": round(gen_s, 1),
        "redis_appendfsync": "everysec",
        **latency,
    }
    print(f"persist: {events} events ({rows} rows) in {ours_s:.2f} s; bare COPY of the rows {bare_s:.2f} s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
