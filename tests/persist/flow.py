"""A deterministic order flow for persist tests: engine events journaled to a Redis stream, and the expected rows."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import asyncpg

from deploy.config import load_config
from persist import main as persist_main
from persist import store
from shards.engine import Engine
from shards.journal import RedisJournal
from shards.protocol import (
    CancelOrder,
    NewOrder,
    OrderResult,
    OrderStatus,
    QueryOpenOrders,
    TradeEvent,
)

OPEN = (int(OrderStatus.NEW), int(OrderStatus.PARTIALLY_FILLED))


def engine_of_shard(shard: int) -> Engine:
    config = load_config(None, env={})
    return Engine([s.spec() for s in config.symbols_of_shard(shard)])


def run_flow(engine: Engine, journal: RedisJournal, commands: int, seed: int, per_batch: int = 20) -> list:
    """Apply ``commands`` random orders and cancels, journaling every ``per_batch``; returns every event."""
    rng = random.Random(seed)
    symbols = list(engine._books)  # noqa: SLF001 - test-only: the shard's symbol ids
    accepted: list[tuple[int, int, int]] = []
    events: list = []
    for i in range(commands):
        ts = 1_700_000_000_000 + i
        sym = rng.choice(symbols)
        user = rng.randint(1, 5)
        if accepted and rng.random() < 0.2:
            s, oid, u = accepted.pop(rng.randrange(len(accepted)))
            engine.apply(CancelOrder(s, u, oid, "", ts))
        else:
            side = rng.choice((1, 2))
            price = 10_000 + rng.randint(-20, 20)
            otype, tif = (2, 1) if rng.random() < 0.1 else (1, rng.choice((1, 1, 1, 2)))
            cmd = NewOrder(
                sym, user, f"c{i}", side, otype, tif, 0 if otype == 2 else price, rng.randint(1, 50), 0, 0, ts
            )
            res = engine.apply(cmd)
            if type(res) is OrderResult and res.order.status in OPEN:
                accepted.append((sym, res.order.order_id, user))
        if (i + 1) % per_batch == 0 or i == commands - 1:
            batch = engine.take_events()
            journal.append(batch)
            events.extend(batch)
    return events


def open_orders(engine: Engine) -> dict[tuple[int, int], tuple[int, int, int]]:
    """(symbol_id, order_id) -> (status, executed, orig) of every open order, by asking the engine."""
    out = {}
    for user in range(1, 6):
        res = engine.apply(QueryOpenOrders(0, user))
        for o in res.orders:
            out[(o.symbol_id, o.order_id)] = (o.status, o.executed_qty, o.orig_qty)
    return out


def trade_count(events: list) -> int:
    return sum(1 for e in events if type(e) is TradeEvent)


def config_for(dsn: str, url: str) -> Any:
    return load_config(None, env={"DATABASE_URL": dsn, "REDIS_URL": url})


async def progress_of(dsn: str) -> dict[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return await store.all_progress(conn)
    finally:
        await conn.close()


def persist_until(dsn: str, url: str, targets: dict[int, int], limit_s: float = 30.0) -> None:
    """Run persist's writers in this process until every shard reached its target seq."""

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(persist_main.serve(config_for(dsn, url), sorted(targets), 0, stop))
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline and not task.done():
            done = await progress_of(dsn)
            if all(done.get(s, 0) >= t for s, t in targets.items()):
                break
            await asyncio.sleep(0.05)
        stop.set()
        await task

    asyncio.run(main())
