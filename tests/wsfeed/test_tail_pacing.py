"""The stream tailer under load: one read per ``wsfeed.read_interval_ms``, every entry applied, none skipped."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import redis.asyncio as aioredis

from deploy.config import build_config
from shards.events import decode_events
from tests.wsfeed.harness import Journal
from wsfeed.tail import Tailer


class CountingMarket:
    """Stands in for wsfeed.market.Market: keeps the sequence numbers it is given."""

    def __init__(self) -> None:
        self.seqs: list[int] = []

    def apply_packed(self, data: bytes, live: bool) -> None:
        self.seqs.extend(e.seq for e in decode_events(data))


def _follow_while_writing(url: str, interval_ms: int, entries: int) -> tuple[CountingMarket, int, float]:
    config = build_config({"wsfeed": {"read_interval_ms": interval_ms}, "engine": {"shards": 1}}, {"REDIS_URL": url})
    journal = Journal(url)

    async def main() -> tuple[CountingMarket, int, float]:
        client = aioredis.Redis.from_url(url)
        market = CountingMarket()
        tailer = Tailer(client, 1, market, config)  # type: ignore[arg-type]
        reads = 0

        def count_read() -> None:
            nonlocal reads
            reads += 1

        tailer.on_entry = count_read
        stop = asyncio.Event()
        task = asyncio.create_task(tailer.follow(stop))
        await asyncio.sleep(0.05)  # the first XREAD is waiting
        started = time.monotonic()
        for _ in range(entries):
            journal.write(0, [journal.trade(0, 1, 10_000, 1)])
            await asyncio.sleep(0.002)
        elapsed = time.monotonic() - started
        deadline = time.monotonic() + 10
        while len(market.seqs) < entries and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        stop.set()
        await task
        await client.aclose()
        return market, reads, elapsed

    try:
        return asyncio.run(main())
    finally:
        journal.close()


def test_a_loaded_tailer_reads_once_per_interval_and_applies_every_entry(services: Any) -> None:
    # arrange / act: 80 entries 2 ms apart, read at most every 100 ms
    market, reads, elapsed = _follow_while_writing(services.redis_db_url(), 100, 80)
    # assert
    assert market.seqs == list(range(1, 81))
    assert reads <= 2 + math.ceil(elapsed / 0.1), f"{reads} reads in {elapsed:.2f} s"
