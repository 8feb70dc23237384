"""persist's metrics: the writer's counters match what it wrote, published to its Redis hash with an expiry;
and the publishing loop (``deploy.telemetry.publish_every``) survives a Redis that fails, logging it once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from deploy import telemetry
from persist import main as persist_main
from shards.journal import RedisJournal
from tests.conftest import publish_while_failing
from tests.persist.flow import config_for, engine_of_shard, run_flow

LIMIT_S = 30.0  # bound of the polling below, not an assertion


async def _counts(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in ("orders", "trades", "order_history")}
    finally:
        await conn.close()


def test_persist_publishes_what_it_wrote(urls: tuple[str, str]) -> None:
    # arrange: one shard's flow journaled to Redis
    dsn, url = urls
    events = run_flow(engine_of_shard(0), RedisJournal(url, 0, []), 300, seed=3)
    key = telemetry.key("persist", 0)

    async def scenario() -> tuple[dict[str, int], int, dict[str, int]]:
        stop = asyncio.Event()
        task = asyncio.create_task(persist_main.serve(config_for(dsn, url), [0], 0, stop))
        client = aioredis.Redis.from_url(url)
        try:
            deadline = time.monotonic() + LIMIT_S
            published: dict[str, int] = {}
            while published.get("events") != len(events) and time.monotonic() < deadline and not task.done():
                await asyncio.sleep(0.05)
                published = telemetry.decode_figures(await client.hgetall(key))
            ttl = await client.ttl(key)
        finally:
            stop.set()
            writers = await task
            await client.aclose()
        return published, ttl, writers[0].figures()

    # act
    published, ttl, final = asyncio.run(scenario())
    counts = asyncio.run(_counts(dsn))

    # assert
    assert set(published) == set(telemetry.PERSIST_FIELDS)
    assert published["events"] == len(events) == final["events"]
    assert published["rows_trades"] == counts["trades"] > 0
    assert published["rows_history"] == counts["order_history"] > 0
    assert published["rows_orders"] >= counts["orders"] > 0  # an order changed in two writes counts twice
    assert published["commits"] >= 1 and published["last_commit_us"] > 0
    assert published["retries"] == 0
    assert 0 < ttl <= telemetry.EXPIRE_S


def test_publishing_survives_a_failing_redis_and_logs_it_once(capsys: Any) -> None:
    sent: list[list[list[bytes]]] = []

    async def failing(commands: list[list[bytes]]) -> None:
        sent.append(commands)
        raise ConnectionError("redis is down")

    alive = publish_while_failing(failing, "persist", lambda: len(sent), {"commits": 4})
    err = capsys.readouterr().err

    assert alive
    assert err.count("event=metrics_publish_failed") == 1 and "role=persist" in err
    assert sent[0] == [[b"HSET", b"exchange:metrics:persist:0", b"commits", b"4"],
                       [b"EXPIRE", b"exchange:metrics:persist:0", b"%d" % telemetry.EXPIRE_S]]  # fmt: skip
