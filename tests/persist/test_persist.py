"""persist end to end against the session PostgreSQL and Redis: rows, idempotency, a failing commit, a killed writer."""

from __future__ import annotations

import asyncio
import math
import os
import random
import signal
import subprocess
import sys
import time
from typing import Any

import asyncpg
import redis

from persist import main as persist_main
from persist import store
from shards.journal import RedisJournal
from shards.protocol import NewOrder
from shards.stream import stream_key
from tests.persist.flow import engine_of_shard, open_orders, persist_until, progress_of, run_flow, trade_count

TERMINAL = {3, 4, 5, 6, 7}


async def _rows(dsn: str) -> dict[str, list]:
    conn = await asyncpg.connect(dsn)
    try:
        return {
            "orders": [tuple(r) for r in await conn.fetch("SELECT * FROM orders ORDER BY symbol_id, order_id")],
            "trades": [tuple(r) for r in await conn.fetch("SELECT * FROM trades ORDER BY symbol_id, trade_id")],
            "history": [
                tuple(r) for r in await conn.fetch("SELECT * FROM order_history ORDER BY shard, seq, order_id")
            ],
        }
    finally:
        await conn.close()


def _journal(url: str, shard: int) -> RedisJournal:
    return RedisJournal(url, shard, [])


def _check_rows(rows: dict[str, list], engines: dict[int, Any], events: dict[int, list]) -> None:
    assert len(rows["trades"]) == sum(trade_count(ev) for ev in events.values())
    assert len({(t[0], t[1]) for t in rows["trades"]}) == len(rows["trades"])
    accepted = sum(1 for ev in events.values() for e in ev if type(e).__name__ == "OrderAccepted")
    assert len(rows["orders"]) == accepted
    live = {}
    for engine in engines.values():
        live.update(open_orders(engine))
    executed: dict[tuple[int, int], int] = {}
    for t in rows["trades"]:
        for oid in (t[6], t[7]):
            executed[(t[0], oid)] = executed.get((t[0], oid), 0) + t[3]
    for o in rows["orders"]:
        key = (o[0], o[1])
        assert o[10] == executed.get(key, 0), f"order {key}: executed {o[10]} != its trades"
        if key in live:
            assert (o[13], o[10], o[9]) == live[key], f"order {key} differs from the engine"
        else:
            assert o[13] in TERMINAL, f"order {key} is closed in the engine but has status {o[13]}"


def test_persist_writes_every_event_and_replay_changes_nothing(urls: tuple[str, str]) -> None:
    # arrange: two shards' flows journaled to Redis
    dsn, url = urls
    engines = {s: engine_of_shard(s) for s in (0, 1)}
    events = {s: run_flow(engines[s], _journal(url, s), 600, seed=s) for s in (0, 1)}
    targets = {s: events[s][-1].seq for s in (0, 1)}
    # act
    persist_until(dsn, url, targets)
    first = asyncio.run(_rows(dsn))
    client = redis.Redis.from_url(url)
    for s in (0, 1):  # deliver every entry again from the start
        client.xgroup_setid(stream_key(s), persist_main.GROUP, "0")
    persist_until(dsn, url, targets)
    second = asyncio.run(_rows(dsn))
    # assert
    assert asyncio.run(progress_of(dsn)) == targets
    _check_rows(first, engines, events)
    assert second == first
    pending = client.xpending(stream_key(0), persist_main.GROUP)
    assert pending["pending"] == 0


def test_a_failed_commit_is_retried_and_loses_nothing(urls: tuple[str, str], monkeypatch: Any) -> None:
    # arrange: the first two batches fail inside their transaction
    dsn, url = urls
    engine = engine_of_shard(0)
    events = run_flow(engine, _journal(url, 0), 300, seed=7)
    real = store.write_batches
    failures = {"left": 2}

    async def failing(conn: Any, batches: Any) -> None:
        if failures["left"]:
            failures["left"] -= 1
            async with conn.transaction():
                for batch in batches:
                    await conn.copy_records_to_table("trades", records=batch.trades, columns=store.TRADE_COLUMNS)
                raise asyncpg.exceptions.ConnectionDoesNotExistError("simulated loss mid-batch")
        await real(conn, batches)

    monkeypatch.setattr(store, "write_batches", failing)
    # act
    persist_until(dsn, url, {0: events[-1].seq})
    # assert
    assert failures["left"] == 0
    _check_rows(asyncio.run(_rows(dsn)), {0: engine}, {0: events})


PERSIST_CHILD = (
    "import sys; from deploy.config import load_config; import persist.main as m; m.run(load_config(None), None, 0)"
)


def test_persist_killed_mid_batch_and_restarted(urls: tuple[str, str]) -> None:
    # arrange: a real persist process, SIGKILLed at random moments while it writes
    dsn, url = urls
    engines = {s: engine_of_shard(s) for s in (0, 1)}
    events = {s: run_flow(engines[s], _journal(url, s), 1500, seed=10 + s, per_batch=5) for s in (0, 1)}
    targets = {s: events[s][-1].seq for s in (0, 1)}
    env = dict(os.environ, DATABASE_URL=dsn, REDIS_URL=url)
    rng = random.Random(3)
    # act
    for _ in range(4):
        child = subprocess.Popen([sys.executable, "-c", PERSIST_CHILD], env=env, cwd=os.getcwd())
        time.sleep(rng.uniform(0.6, 1.2))
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    persist_until(dsn, url, targets)
    # assert
    assert asyncio.run(progress_of(dsn)) == targets
    _check_rows(asyncio.run(_rows(dsn)), engines, events)


def test_a_loaded_writer_commits_once_per_interval_and_loses_nothing(urls: tuple[str, str]) -> None:
    # arrange: a writer pacing its commits at 250 ms, and 60 shard batches journaled 5 ms apart while it runs
    dsn, url = urls
    engine = engine_of_shard(0)
    journal = _journal(url, 0)
    symbol_id = sorted(engine._books)[0]  # noqa: SLF001 - test-only: a symbol of the shard
    interval_s = 0.25

    async def main() -> tuple[int, float]:
        stop = asyncio.Event()
        writer = persist_main.Writer(dsn, url, [0], "persist-0", stop, commit_interval_s=interval_s)
        task = asyncio.create_task(writer.run())
        started = time.monotonic()
        for i in range(60):
            engine.apply(NewOrder(symbol_id, 1, f"p{i}", 1, 1, 1, 10_000 - i, 1, 0, 0, 1_700_000_000_000 + i))
            journal.append(engine.take_events())
            await asyncio.sleep(0.005)
        elapsed = time.monotonic() - started
        deadline = time.monotonic() + 20
        while (await progress_of(dsn)).get(0, 0) < engine.last_seq and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        stop.set()
        await task
        await writer.close()
        return writer.batches, elapsed

    # act
    batches, elapsed = asyncio.run(main())
    # assert: every order is there, in far fewer transactions than the 60 entries
    rows = asyncio.run(_rows(dsn))
    assert len(rows["orders"]) == 60
    assert asyncio.run(progress_of(dsn)) == {0: engine.last_seq}
    assert batches <= 2 + math.ceil(elapsed / interval_s), f"{batches} commits in {elapsed:.2f} s"


def test_a_read_cut_into_many_statements_writes_every_event_once(urls: tuple[str, str], monkeypatch: Any) -> None:
    # arrange: every entry its own statement
    dsn, url = urls
    monkeypatch.setattr(persist_main, "STATEMENT_BYTES", 1)
    engines = {s: engine_of_shard(s) for s in (0, 1)}
    events = {s: run_flow(engines[s], _journal(url, s), 300, seed=20 + s, per_batch=7) for s in (0, 1)}
    targets = {s: events[s][-1].seq for s in (0, 1)}
    # act
    persist_until(dsn, url, targets)
    # assert
    assert asyncio.run(progress_of(dsn)) == targets
    _check_rows(asyncio.run(_rows(dsn)), engines, events)


def test_writes_by_binary_copy_give_the_same_rows(urls: tuple[str, str], monkeypatch: Any) -> None:
    # arrange: every write large enough for the COPY path, and a replay of every entry afterwards
    dsn, url = urls
    monkeypatch.setattr(store, "COPY_ROWS", 0)
    engines = {s: engine_of_shard(s) for s in (0, 1)}
    events = {s: run_flow(engines[s], _journal(url, s), 400, seed=30 + s, per_batch=9) for s in (0, 1)}
    targets = {s: events[s][-1].seq for s in (0, 1)}
    # act
    persist_until(dsn, url, targets)
    client = redis.Redis.from_url(url)
    for s in (0, 1):
        client.xgroup_setid(stream_key(s), persist_main.GROUP, "0")
    first = asyncio.run(_rows(dsn))
    persist_until(dsn, url, targets)
    # assert
    assert asyncio.run(progress_of(dsn)) == targets
    _check_rows(first, engines, events)
    assert asyncio.run(_rows(dsn)) == first
