"""persist under faults, through a running exchange: killed mid-batch, and PostgreSQL stopped under load.

The order flow and the checks are those of the crash test (``tests/e2e/durability.py``):
once persist has caught up, every acknowledged order and trade is in PostgreSQL
exactly once and the books equal the reference engine's.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
from pathlib import Path

from deploy.embedded import start_postgres
from tests.e2e.api import Api
from tests.e2e.durability import check_durability, run_flow, wait_persisted

FLOW_S = 9.0


def _kill_persist(ex, times: int, killed: list[int]) -> None:
    rng = random.Random(5)
    for _ in range(times):
        time.sleep(rng.uniform(1.5, 2.5))
        pid = ex.pids("persist").get(0)
        if pid is None:
            continue
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and ex.pids("persist").get(0) in (None, pid):
            time.sleep(0.05)


def test_persist_killed_mid_batch_loses_nothing(exchange_factory) -> None:
    # arrange
    ex = exchange_factory(engine={"shards": 2}, rest={"workers": 2})
    api = Api(ex.rest_url, ex.admin_token)
    users = [api.new_user() for _ in range(3)]
    killed: list[int] = []
    killer = threading.Thread(target=_kill_persist, args=(ex, 3, killed))
    # act
    killer.start()
    flow = asyncio.run(run_flow(ex.rest_url, users, FLOW_S))
    killer.join()
    wait_persisted(api)
    # assert
    assert len(killed) == 3
    counts = check_durability(api, ex.config_path, ex.database_url, flow)
    assert counts["acked_new"] > 100


def test_postgres_stopped_and_started_under_load(exchange_factory, tmp_path: Path) -> None:
    # arrange: an exchange on a PostgreSQL of its own, which the test stops for a few seconds. The servers
    # are started from the main thread: they get a signal when the thread that started them ends.
    servers = [start_postgres(tmp_path / "own-pg")]
    try:
        ex = exchange_factory(engine={"shards": 2}, rest={"workers": 2}, postgres={"url": servers[0].url})
        api = Api(ex.rest_url, ex.admin_token)
        users = [api.new_user() for _ in range(3)]
        flows: list = []
        load = threading.Thread(target=lambda: flows.append(asyncio.run(run_flow(ex.rest_url, users, FLOW_S))))
        # act
        load.start()
        time.sleep(2.0)
        servers[0].stop()
        time.sleep(4.0)
        servers.append(start_postgres(tmp_path / "own-pg", port=servers[0].port))
        load.join()
        wait_persisted(api)
        # assert
        counts = check_durability(api, ex.config_path, ex.database_url, flows[0])
        assert counts["acked_new"] > 100
        assert "event=persist_retry" in ex.log_text() and "event=persist_recovered" in ex.log_text()
        ex.stop()
    finally:
        servers[-1].stop()
