"""Crash test: a steady order flow while random shards are SIGKILLed; nothing acknowledged is lost.

See ``tests/e2e/durability.py`` for the flow and the checks. Snapshots are
taken every second so that recoveries restore a snapshot and replay the
stream after it; the launcher restarts each killed shard. The streams must
have been trimmed meanwhile (snapshots and persist both cover their start).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time

import redis

from shards.stream import entry_range, stream_key
from tests.e2e.api import Api
from tests.e2e.durability import check_durability, run_flow, wait_persisted

FLOW_S = 12.0
KILLS = 3


def _killer(ex, shards: int, seed: int, killed: list[int]) -> None:
    rng = random.Random(seed)
    for _ in range(KILLS):
        time.sleep(rng.uniform(2.0, 3.0))
        shard = rng.randrange(shards)
        pid = ex.pids("shard").get(shard)
        if pid is None:
            continue
        os.kill(pid, signal.SIGKILL)
        killed.append(shard)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and ex.pids("shard").get(shard) in (None, pid):
            time.sleep(0.05)


def test_acknowledged_work_survives_shard_kills(exchange_factory) -> None:
    # arrange
    ex = exchange_factory(
        engine={"shards": 2, "snapshot_interval_s": 1},
        rest={"workers": 2, "answer_timeout_ms": 1000},
    )
    api = Api(ex.rest_url, ex.admin_token)
    users = [api.new_user() for _ in range(3)]
    killed: list[int] = []
    killer = threading.Thread(target=_killer, args=(ex, 2, 11, killed))
    # act
    killer.start()
    flow = asyncio.run(run_flow(ex.rest_url, users, FLOW_S))
    killer.join()
    wait_persisted(api)
    # assert
    assert len(killed) == KILLS
    counts = check_durability(api, ex.config_path, ex.database_url, flow)
    assert counts["acked_new"] > 100
    assert ex.log_text().count("event=shard_recovered") >= KILLS
    client = redis.Redis.from_url(ex.redis_url)
    for shard in (0, 1):  # trimmed below what the snapshots and persist covered
        first_id, fields = client.xrange(stream_key(shard), count=1)[0]
        assert entry_range(fields)[0] > 1, f"shard {shard}'s stream was never trimmed"
