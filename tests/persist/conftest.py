"""Fixtures of the persist tests: a fresh migrated database and a Redis database of their own per test."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from deploy.migrate import apply_migrations


@pytest.fixture
def urls(services: Any) -> tuple[str, str]:
    """(PostgreSQL DSN, Redis URL) of a fresh migrated database and a fresh Redis database."""
    dsn = services.create_database("persist")
    asyncio.run(apply_migrations(dsn))
    return dsn, services.redis_db_url()
