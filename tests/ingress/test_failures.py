"""Engine failures, unexpected errors, health and the admin endpoint."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import asyncpg

from ingress.dispatch import EngineBusy, EngineTimeout
from tests.ingress.harness import ADMIN_TOKEN, limit_order
from tests.ingress.local_engine import FailingEngineClient, LocalEngineClient

ORDER = "/api/v3/order"


def test_full_ring_answers_503_1008_with_retry_after(make_api, make_config) -> None:
    config = make_config()
    api = make_api(config, FailingEngineClient(2, EngineBusy))
    alice = api.new_user()
    res = api.signed("POST", ORDER, alice, limit_order("AAPL", "BUY", "10", "1"))
    assert res.status_code == 503
    assert res.json["code"] == -1008
    assert res.headers["retry-after"] == "1"


def test_silent_shard_answers_500_1000_status_unknown(make_api, make_config) -> None:
    api = make_api(make_config(), FailingEngineClient(2, EngineTimeout))
    alice = api.new_user()
    res = api.signed("DELETE", ORDER, alice, {"symbol": "AAPL", "orderId": 3})
    assert res.status_code == 500
    assert res.json["code"] == -1000
    assert "status unknown; query the order" in res.json["msg"]


def test_batch_reports_engine_failures_per_order(make_api, make_config) -> None:
    api = make_api(make_config(), FailingEngineClient(2, EngineBusy))
    alice = api.new_user()
    orders = [limit_order("AAPL", "BUY", "10", "1"), limit_order("AAPL", "BUY", "x", "1")]
    res = api.signed("POST", "/api/v3/batchOrders", alice, {"orders": orders}, where="json")
    assert res.status_code == 200
    assert [item["code"] for item in res.json] == [-1008, -1100]
    assert res.headers["retry-after"] == "1"


def test_open_orders_fan_out_failure_is_an_error(make_api, make_config) -> None:
    api = make_api(make_config(), FailingEngineClient(2, EngineTimeout))
    alice = api.new_user()
    res = api.signed("GET", "/api/v3/openOrders", alice)
    assert res.status_code == 500
    assert res.json["code"] == -1000


class _Exploding(LocalEngineClient):
    async def call(self, shard, cmd):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")


def test_unexpected_exception_is_1000_with_a_logged_request_id(make_api, make_config, caplog) -> None:
    config = make_config()
    api = make_api(config, _Exploding(config))
    with caplog.at_level(logging.ERROR, logger="ingress.errors"):
        res = api.get("/api/v3/depth", query_string="symbol=AAPL")
    assert res.status_code == 500
    assert res.json["code"] == -1000
    request_id = res.json["msg"].rsplit(" ", 1)[1]
    assert any(request_id in r.getMessage() and r.exc_info for r in caplog.records)
    assert "boom" not in res.json["msg"]


def test_health_ok(api) -> None:
    res = api.get("/health")
    assert res.status_code == 200
    assert res.json == {
        "status": "ok",
        "shards": [{"shard": 0, "up": True}, {"shard": 1, "up": True}],
        "redis": "ok",
        "postgres": "ok",
        "persist": {
            "lag": 0,
            "shards": [
                {"shard": 0, "journaled": 0, "persisted": 0, "lag": 0},
                {"shard": 1, "journaled": 0, "persisted": 0, "lag": 0},
            ],
        },
    }


def test_health_degraded_when_a_shard_is_down(api) -> None:
    api.engine.up[1] = False
    res = api.get("/health")
    assert res.status_code == 503
    assert res.json["status"] == "degraded"
    assert res.json["shards"] == [{"shard": 0, "up": True}, {"shard": 1, "up": False}]


def test_health_degraded_when_redis_is_down(make_api, make_config) -> None:
    api = make_api()
    api.run(api.ctx.redis.aclose())
    api.ctx.redis = _DeadRedis()
    res = api.get("/health")
    assert res.status_code == 503
    assert (res.json["status"], res.json["redis"], res.json["postgres"]) == ("degraded", "down", "ok")


class _DeadRedis:
    async def ping(self) -> bool:
        raise ConnectionError("redis is down")

    async def aclose(self) -> None:
        return None


def test_admin_creates_users_in_the_database(api, database_url) -> None:
    res = api.request("POST", "/admin/v1/users", headers={"X-Admin-Token": ADMIN_TOKEN})
    assert res.status_code == 200
    body = res.json
    assert set(body) == {"userId", "apiKey", "secretKey"}
    assert len(body["apiKey"]) == 64 and len(body["secretKey"]) == 64

    async def row() -> asyncpg.Record:
        conn = await asyncpg.connect(database_url)
        try:
            return await conn.fetchrow("SELECT api_key, secret_key FROM users WHERE id = $1", body["userId"])
        finally:
            await conn.close()

    assert tuple(asyncio.run(row())) == (body["apiKey"], body["secretKey"])


def test_admin_token_is_required(api) -> None:
    missing = api.request("POST", "/admin/v1/users")
    wrong = api.request("POST", "/admin/v1/users", headers={"X-Admin-Token": ADMIN_TOKEN + "x"})
    assert (missing.status_code, missing.json["code"]) == (401, -2014)
    assert (wrong.status_code, wrong.json["code"]) == (401, -2015)


def test_admin_without_a_configured_token_refuses_everyone(make_api, make_config) -> None:
    api = make_api(dataclasses.replace(make_config(), admin_token=""))
    res = api.request("POST", "/admin/v1/users", headers={"X-Admin-Token": "anything"})
    assert res.json["code"] == -2015
