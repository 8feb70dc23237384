"""GET /metrics on the in-process app (``make_api``), and the worker publisher against the session Redis."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as aioredis

from deploy import telemetry as process_telemetry
from ingress.metrics_publisher import EXPIRE_S, WorkerTelemetry, worker_key
from tests.ingress.harness import limit_order
from tests.ingress.local_engine import LocalEngineClient
from tests.ingress.test_metrics_format import parse

ORDER = "/api/v3/order"


def test_metrics_is_prometheus_text_with_probes_and_this_workers_counters(api) -> None:
    api.get("/api/v3/nowhere")
    api.get("/api/v3/nowhere")

    res = api.get("/metrics")

    assert res.status_code == 200
    assert res.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    scrape = parse(res.text)
    assert scrape.value("exchange_up", component="shard", shard="0") == 1
    assert scrape.value("exchange_up", component="shard", shard="1") == 1
    assert scrape.value("exchange_up", component="redis") == 1
    assert scrape.value("exchange_up", component="postgres") == 1
    assert scrape.value("exchange_up", component="ingress", worker="0") == 1
    assert scrape.value("exchange_persist_lag_events", shard="0") >= 0
    assert scrape.value("exchange_ingress_http_error_answers_total", worker="0", code="404") == 2


def test_counted_errors_answer_as_before(api) -> None:
    res = api.get("/api/v3/nowhere")

    assert res.status_code == 404
    assert res.json == {"code": -1000, "msg": "no endpoint GET /api/v3/nowhere"}


def test_metrics_is_get_only_and_takes_no_parameters(api) -> None:
    posted = api.request("POST", "/metrics")
    with_param = api.get("/metrics", params={"x": "1"})

    assert posted.status_code == 405
    assert with_param.status_code == 400
    assert with_param.json["code"] == -1104


def test_metrics_with_redis_down_reports_it_and_leaves_its_samples_out(make_api) -> None:
    api = make_api()
    api.run(api.ctx.redis.aclose())
    api.ctx.redis = _DeadRedis()

    res = api.get("/metrics")

    assert res.status_code == 200
    scrape = parse(res.text)
    assert scrape.value("exchange_up", component="redis") == 0
    assert scrape.value("exchange_up", component="postgres") == 1
    assert scrape.values("exchange_journaled_seq") == {}
    assert scrape.values("exchange_persist_lag_events") == {}
    assert scrape.value("exchange_persisted_seq", shard="0") == 0
    assert set(scrape.values("exchange_up", component="ingress")) == {(("component", "ingress"), ("worker", "0"))}


def test_metrics_render_the_shards_persist_and_wsfeed_hashes(api) -> None:
    redis = api.ctx.redis
    shard, persist = process_telemetry.key("shard", 1), process_telemetry.key("persist", 0)
    figures = {
        shard: {"commands": 50, "batches": 4, "trades": 3, "journal_last_seq": 77},
        persist: {"commits": 6, "rows_orders": 10, "rows_trades": 3, "rows_history": 12, "last_commit_us": 900},
    }

    async def write() -> None:
        for key, mapping in figures.items():
            await redis.hset(key, mapping=mapping)
            await redis.expire(key, EXPIRE_S)

    api.run(write())
    try:
        res = api.get("/metrics")
    finally:
        api.run(redis.delete(shard, persist))

    scrape = parse(res.text)
    assert scrape.value("exchange_shard_commands_total", shard="1") == 50
    assert scrape.value("exchange_shard_trades_total", shard="1") == 3
    assert scrape.value("exchange_shard_journal_last_seq", shard="1") == 77
    assert scrape.values("exchange_shard_commands_total", shard="0") == {}  # no hash: left out
    assert scrape.value("exchange_up", component="shard", shard="0") == 1  # the ping says up
    assert scrape.value("exchange_up", component="persist", process="0") == 1
    assert scrape.value("exchange_persist_commits_total", process="0") == 6
    assert scrape.value("exchange_persist_rows_total", process="0", table="order_history") == 12
    assert scrape.value("exchange_persist_last_commit_microseconds", process="0") == 900
    assert scrape.value("exchange_up", component="wsfeed", process="0") == 0  # no hash: down
    assert scrape.values("exchange_wsfeed_connections") == {}
    assert scrape.types["exchange_shard_commands_total"] == "counter"
    assert scrape.types["exchange_shard_journal_last_seq"] == "gauge"


def test_metrics_with_a_shard_down(api) -> None:
    api.engine.up[1] = False

    scrape = parse(api.get("/metrics").text)

    assert scrape.value("exchange_up", component="shard", shard="0") == 1
    assert scrape.value("exchange_up", component="shard", shard="1") == 0


class _DeadRedis:
    async def ping(self) -> bool:
        raise ConnectionError("redis is down")

    async def xrevrange(self, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("redis is down")

    def pipeline(self, transaction: bool = True) -> Any:
        raise ConnectionError("redis is down")

    async def aclose(self) -> None:
        return None


# --- the publisher -------------------------------------------------------------------------


class _Stats:
    def __init__(self, sent: int) -> None:
        self.sent = sent

    def stats(self) -> dict[str, int]:
        return {"sent": self.sent, "answered": self.sent, "busy": 0, "timeouts": 0, "late_answers": 0,
                "bad_answers": 0, "pending": 0}  # fmt: skip


def test_publisher_writes_a_hash_with_expiry_that_other_workers_read(services) -> None:
    async def scenario() -> tuple[dict[int, dict[str, int]], bool, int]:
        redis = aioredis.Redis.from_url(services.redis_db_url())
        try:
            one, two = WorkerTelemetry(_Stats(7), 0, 2), WorkerTelemetry(_Stats(3), 1, 2)
            one.http_errors[404] = 2
            one.start(redis)
            try:
                while not await redis.exists(worker_key(0)):
                    await asyncio.sleep(0.01)
            finally:
                await one.stop()
            one.engine.sent = 99  # not published any more: the other worker sees the published figures
            readings = await two.read_all(redis)
            return readings.workers, readings.others_known, await redis.ttl(worker_key(0))
        finally:
            await redis.aclose()

    workers, known, ttl = asyncio.run(asyncio.wait_for(scenario(), 10))

    assert known is True
    assert workers[0] == {"sent": 7, "answered": 7, "busy": 0, "timeouts": 0, "late_answers": 0, "bad_answers": 0,
                          "pending": 0, "http:404": 2}  # fmt: skip
    assert workers[1]["sent"] == 3  # its own, live
    assert 0 < ttl <= EXPIRE_S


def test_publisher_survives_a_redis_that_fails(caplog) -> None:
    async def scenario() -> tuple[bool, tuple[dict[int, dict[str, int]], bool]]:
        telemetry = WorkerTelemetry(_Stats(1), 1, 2)
        telemetry.start(_DeadRedis())
        await asyncio.sleep(0.05)
        alive = not telemetry._task.done()  # type: ignore[union-attr]
        await telemetry.stop()
        return alive, await telemetry.read_all(_DeadRedis(), {"persist": 1})

    with caplog.at_level(logging.WARNING, logger="ingress.metrics"):
        alive, readings = asyncio.run(scenario())

    assert alive
    assert [r.getMessage() for r in caplog.records if "metrics_publish_failed" in r.getMessage()] != []
    assert (list(readings.workers), readings.others_known) == ([1], False)
    assert (readings.processes, readings.processes_known) == ({}, False)


def test_engine_counters_appear_once_orders_pass(make_api, make_config) -> None:
    config = make_config()
    engine = _CountingEngine(config)
    api = make_api(config, engine)
    alice = api.new_user()

    api.signed("POST", ORDER, alice, limit_order("AAPL", "BUY", "10", "1"))
    scrape = parse(api.get("/metrics").text)

    assert scrape.value("exchange_ingress_engine_requests_sent_total", worker="0") == len(engine.sent) >= 1
    assert scrape.types["exchange_ingress_engine_pending"] == "gauge"


class _CountingEngine(LocalEngineClient):
    """The in-process engine with the ``stats()`` of ``RingEngineClient`` (commands applied as sent)."""

    def stats(self) -> dict[str, int]:
        return {"sent": len(self.sent), "answered": len(self.sent), "pending": 0}
