"""History endpoints over PostgreSQL, fed the way production feeds it: engine -> Redis stream -> persist.

The app runs in process (``tests/ingress/harness.py``) over local engines whose
events are journaled to Redis by ``RedisJournal``; ``persist`` then writes them
to a fresh database, and the endpoints read them back.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from deploy.config import build_config
from deploy.migrate import apply_migrations
from ingress.resources.history import INTERVALS
from shards.journal import RedisJournal
from tests.ingress.harness import ADMIN_TOKEN, ApiClient, limit_order
from tests.ingress.local_engine import LocalEngineClient
from tests.persist.flow import persist_until


class _Journaled:
    """One shard's engine whose ``take_events`` journals the events to the shard's stream first."""

    def __init__(self, engine: Any, journal: RedisJournal) -> None:
        self.engine = engine
        self.journal = journal
        self.apply = engine.apply

    def take_events(self) -> list:
        events = self.engine.take_events()
        self.journal.append(events)
        return events

    @property
    def last_seq(self) -> int:
        return self.engine.last_seq


class JournalingEngine(LocalEngineClient):
    """The in-process engines of the REST tests, journaling each command's events to the shard's stream."""

    def __init__(self, config: Any, url: str) -> None:
        super().__init__(config)
        self.journals = [RedisJournal(url, i, []) for i in range(self.shard_count)]
        self.engines = [_Journaled(e, j) for e, j in zip(self.engines, self.journals, strict=True)]  # type: ignore[misc]

    def targets(self) -> dict[int, int]:
        return {i: e.last_seq for i, e in enumerate(self.engines)}


@pytest.fixture
def setup(services: Any, tmp_path: Any) -> Any:
    dsn = services.create_database("history")
    asyncio.run(apply_migrations(dsn))
    url = services.redis_db_url()
    env = {
        "DATABASE_URL": dsn,
        "REDIS_URL": url,
        "EXCHANGE_ADMIN_TOKEN": ADMIN_TOKEN,
        "EXCHANGE_DATA_DIR": str(tmp_path),
    }
    config = build_config({"engine": {"shards": 2}}, env)
    engine = JournalingEngine(config, url)
    api = ApiClient(config, engine)
    yield api, engine, dsn, url
    api.close()


def test_history_endpoints_show_what_was_traded(setup: Any) -> None:
    # arrange: A sells 5 @ 100, B buys 3 then 2 (IOC); A places and cancels a sell @ 101
    api, engine, dsn, url = setup
    a, b = api.new_user(), api.new_user()
    sell = api.signed("POST", "/api/v3/order", a, limit_order("AAPL", "SELL", "100.00", "5")).json
    api.signed("POST", "/api/v3/order", b, limit_order("AAPL", "BUY", "100.00", "3"))
    api.signed("POST", "/api/v3/order", b, limit_order("AAPL", "BUY", "100.00", "2", timeInForce="IOC"))
    other = api.signed("POST", "/api/v3/order", a, limit_order("AAPL", "SELL", "101.00", "1")).json
    api.signed("DELETE", "/api/v3/order", a, {"symbol": "AAPL", "orderId": other["orderId"]})
    # act
    persist_until(dsn, url, engine.targets())
    trades = api.get("/api/v3/trades", params={"symbol": "AAPL"}).json
    klines = {i: api.get("/api/v3/klines", params={"symbol": "AAPL", "interval": i}).json for i in INTERVALS}
    ticker = api.get("/api/v3/ticker/24hr", params={"symbol": "AAPL"}).json
    tickers = api.get("/api/v3/ticker/24hr").json
    orders_a = api.signed("GET", "/api/v3/allOrders", a, {"symbol": "AAPL"}).json
    mine_a = api.signed("GET", "/api/v3/myTrades", a, {"symbol": "AAPL"}).json
    mine_b = api.signed("GET", "/api/v3/myTrades", b, {"symbol": "AAPL", "fromId": 2}).json
    past = api.signed("GET", "/api/v3/order", a, {"symbol": "AAPL", "orderId": sell["orderId"]})
    # assert
    assert [(t["id"], t["price"], t["qty"], t["quoteQty"], t["isBuyerMaker"]) for t in trades] == [
        (1, "100.00", "3", "300.00", False),
        (2, "100.00", "2", "200.00", False),
    ]
    for interval, rows in klines.items():
        assert len(rows) == 1, interval
        row = rows[0]
        assert row[1:6] == ["100.00", "100.00", "100.00", "100.00", "5"], interval
        assert (row[7], row[8], row[9], row[10]) == ("500.00", 2, "5", "500.00"), interval
        assert row[6] > row[0]
    assert (ticker["count"], ticker["volume"], ticker["lastPrice"], ticker["firstId"], ticker["lastId"]) == (
        2, "5", "100.00", 1, 2,
    )  # fmt: skip
    assert (ticker["askPrice"], ticker["weightedAvgPrice"], ticker["priceChangePercent"]) == (
        "0.00", "100.000000", "0.000",
    )  # fmt: skip
    assert len(tickers) == 7 and {t["symbol"] for t in tickers} >= {"AAPL", "MSFT"}
    assert [(o["orderId"], o["status"], o["executedQty"]) for o in orders_a] == [
        (sell["orderId"], "FILLED", "5"),
        (other["orderId"], "CANCELED", "0"),
    ]
    assert [(t["id"], t["isMaker"], t["isBuyer"], t["orderId"]) for t in mine_a] == [
        (1, True, False, sell["orderId"]),
        (2, True, False, sell["orderId"]),
    ]
    assert [(t["id"], t["isMaker"], t["isBuyer"]) for t in mine_b] == [(2, False, True)]
    assert past.status_code == 200
    assert (past.json["status"], past.json["executedQty"], past.json["cummulativeQuoteQty"]) == (
        "FILLED", "5", "500.00",
    )  # fmt: skip


def test_history_rejects_bad_parameters_and_unknown_orders(setup: Any) -> None:
    api, _engine, _dsn, _url = setup
    a = api.new_user()
    bad_interval = api.get("/api/v3/klines", params={"symbol": "AAPL", "interval": "7m"})
    bad_limit = api.get("/api/v3/trades", params={"symbol": "AAPL", "limit": "1001"})
    unknown = api.signed("GET", "/api/v3/order", a, {"symbol": "AAPL", "orderId": 999})
    assert (bad_interval.status_code, bad_interval.json["code"]) == (400, -1100)
    assert (bad_limit.status_code, bad_limit.json["code"]) == (400, -1100)
    assert (unknown.status_code, unknown.json["code"]) == (400, -2013)
