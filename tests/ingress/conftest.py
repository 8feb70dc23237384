"""Fixtures for the REST tests: a fresh database per test module, configs, app clients.

Uses the session ``services`` fixture (tests/conftest.py: embedded PostgreSQL
and Redis). Each test module gets its own database with the migrations
applied; each test gets its own app (ASGI startup/shutdown) over an in-process
engine (``local_engine.py``), so books never leak between tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from deploy.config import build_config
from deploy.migrate import apply_migrations
from tests.ingress.harness import ADMIN_TOKEN, ApiClient
from tests.ingress.local_engine import LocalEngineClient

# A symbol with fractional steps, beside two defaults on (by default) different shards.
SYMBOLS = [
    {
        "symbol": "AAPL", "base_asset": "AAPL", "quote_asset": "USD", "tick_size": "0.01", "step_size": "1",
        "min_price": "0.01", "max_price": "1000000", "min_qty": "1", "max_qty": "1000000",
    },
    {
        "symbol": "MSFT", "base_asset": "MSFT", "quote_asset": "USD", "tick_size": "0.01", "step_size": "1",
        "min_price": "0.01", "max_price": "1000000", "min_qty": "1", "max_qty": "1000000",
    },
    {
        "symbol": "BTCUSD", "base_asset": "BTC", "quote_asset": "USD", "tick_size": "0.05", "step_size": "0.001",
        "min_price": "1", "max_price": "500000", "min_qty": "0.002", "max_qty": "100",
    },
]  # fmt: skip


@pytest.fixture(scope="module")
def database_url(services: Any) -> str:
    dsn = services.create_database("ingress")
    asyncio.run(apply_migrations(dsn))
    return dsn


@pytest.fixture
def make_config(database_url: str, services: Any, tmp_path: Any) -> Callable[..., Any]:
    def make(**sections: Any) -> Any:
        raw: dict[str, Any] = {"symbols": SYMBOLS, "engine": {"shards": 2}}
        raw.update(sections)
        env = {
            "DATABASE_URL": database_url,
            "REDIS_URL": services.redis_url,
            "EXCHANGE_ADMIN_TOKEN": ADMIN_TOKEN,
            "EXCHANGE_DATA_DIR": str(tmp_path),
        }
        return build_config(raw, env)

    return make


@pytest.fixture
def make_api(make_config: Callable[..., Any]) -> Iterator[Callable[..., ApiClient]]:
    clients: list[ApiClient] = []

    def make(config: Any = None, engine: Any = None) -> ApiClient:
        config = config or make_config()
        client = ApiClient(config, engine if engine is not None else LocalEngineClient(config))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def api(make_api: Callable[..., ApiClient]) -> ApiClient:
    return make_api()
