"""Fixtures for the wsfeed tests: one real wsfeed process per module over a Redis db of its own.

``feed`` is a ``FeedEnv``: the process (``url``), a ``Journal`` writing shard
stream entries into its Redis db, and the config it runs (symbols AAPL, MSFT
and 58 filler symbols, so that more than 1024 valid stream names exist).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deploy.config import Config, load_config
from tests.wsfeed.harness import FeedProcess, Journal, start_feed

SYMBOLS = ["AAPL", "MSFT", *(f"S{i:02d}" for i in range(58))]


@dataclass
class FeedEnv:
    process: FeedProcess
    journal: Journal
    config: Config
    redis_url: str

    @property
    def url(self) -> str:
        return self.process.url

    def shard_of(self, symbol: str) -> int:
        return self.config.shard_of(symbol)

    def symbol_id(self, symbol: str) -> int:
        found = self.config.symbol(symbol)
        assert found is not None
        return found.symbol_id


@pytest.fixture(scope="module")
def feed(services: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeedEnv]:
    tmp: Path = tmp_path_factory.mktemp("wsfeed")
    redis_url = services.redis_db_url()
    process = start_feed(tmp, redis_url, symbols=SYMBOLS)
    journal = Journal(redis_url)
    config = load_config(process.config_path, env={})
    try:
        yield FeedEnv(process, journal, config, redis_url)
    finally:
        journal.close()
        status = process.stop()
        assert status == 0, f"wsfeed exited with status {status}:\n{process.log_text()[-3000:]}"
