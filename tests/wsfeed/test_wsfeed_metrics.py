"""wsfeed's metrics: a real wsfeed process publishes its connections, subscriptions and messages to its Redis hash;
``figures`` reads the hub, and the publisher survives a Redis that fails, logging it once."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import redis

from deploy import telemetry
from tests.conftest import publish_while_failing
from tests.wsfeed.harness import recv_json, request, ws_connect
from wsfeed.hub import Hub
from wsfeed.main import figures, redis_sender

LIMIT_S = 15.0  # bound of the polling below, not an assertion
KEY = telemetry.key("wsfeed", 0)


def _published(client: redis.Redis, done: Any) -> dict[str, int]:
    """The hash once ``done(figures)`` holds, or as it is when ``LIMIT_S`` has passed."""
    deadline = time.monotonic() + LIMIT_S
    while True:
        found = telemetry.decode_figures(client.hgetall(KEY))
        if done(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_a_wsfeed_process_publishes_its_connections_and_messages(feed) -> None:
    sid, shard = feed.symbol_id("S07"), feed.shard_of("S07")
    client = redis.Redis.from_url(feed.redis_url)
    before = _published(client, lambda f: "connections" in f)

    async def scenario() -> tuple[dict[str, int], dict, int]:
        async with ws_connect(f"{feed.url}/stream?streams=s07@trade/s07@depth") as ws:
            await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1})
            feed.journal.write(shard, [feed.journal.trade(shard, sid, 100, 1)])
            trade = await recv_json(ws, 10)
            connected = await asyncio.to_thread(
                _published, client, lambda f: f.get("connections") == 1 and f.get("messages_sent", 0) > 0
            )
            ttl = await asyncio.to_thread(client.ttl, KEY)
        return connected, trade, ttl

    try:
        connected, trade, ttl = asyncio.run(scenario())
        after = _published(client, lambda f: f.get("connections") == 0)
    finally:
        client.close()

    assert trade["data"]["e"] == "trade"
    assert set(connected) == set(telemetry.WSFEED_FIELDS)
    assert before["connections"] == 0
    assert connected["connections"] == 1 and connected["subscriptions"] == 2
    assert connected["messages_sent"] > before.get("messages_sent", 0)
    assert connected["entries"] > before.get("entries", 0) and connected["events"] > before.get("events", 0)
    assert 0 < ttl <= telemetry.EXPIRE_S
    assert after["connections"] == 0 and after["subscriptions"] == 0


def test_figures_count_connections_and_subscriptions_of_the_hub() -> None:
    hub = Hub()
    one, two = _Conn(), _Conn()
    for c in (one, two):
        hub.add(c)  # type: ignore[arg-type]
    hub.subscribe(one, "aapl@trade")  # type: ignore[arg-type]
    hub.subscribe(two, "aapl@trade")  # type: ignore[arg-type]
    hub.subscribe(two, "msft@depth")  # type: ignore[arg-type]
    hub.delivered, hub.slow_closed = 9, 1

    found = figures(hub, SimpleNamespace(entries=5), SimpleNamespace(events_applied=12))  # type: ignore[arg-type]

    assert found == {"connections": 2, "subscriptions": 3, "messages_sent": 9, "slow_closed": 1, "entries": 5,
                     "events": 12}  # fmt: skip


class _Conn:
    """What the hub keeps of a client: hashable, with its stream set."""

    def __init__(self) -> None:
        self.streams: set[str] = set()


class _DeadPipeline:
    def execute_command(self, *args: Any) -> None:
        return None

    async def execute(self) -> None:
        raise ConnectionError("redis is down")


def test_the_publisher_survives_a_failing_redis_and_logs_it_once(capsys) -> None:
    calls = {"n": 0}

    def pipeline(transaction: bool = True) -> _DeadPipeline:
        calls["n"] += 1
        return _DeadPipeline()

    send = redis_sender(SimpleNamespace(pipeline=pipeline))

    alive = publish_while_failing(send, "wsfeed", lambda: calls["n"], {"connections": 0})
    err = capsys.readouterr().err

    assert alive
    assert err.count("event=metrics_publish_failed") == 1 and "role=wsfeed" in err
