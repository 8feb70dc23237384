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


def test_books_survive_a_clean_restart_of_the_whole_exchange(exchange_factory, tmp_path) -> None:
    # arrange: resting orders, then `exchange up` stopped (final snapshots) and started again on the same folder
    from tests.conftest import launch, launcher_env, wait_ready

    ex = exchange_factory(engine={"shards": 2})
    api = Api(ex.rest_url, ex.admin_token)
    user, taker = api.new_user(), api.new_user()
    for i, symbol in enumerate(("AAPL", "MSFT", "GOOG")):
        for side, price in (("BUY", "99.00"), ("SELL", "101.00")):
            order = {"symbol": symbol, "side": side, "type": "LIMIT", "timeInForce": "GTC",
                     "quantity": str(i + 1), "price": price}  # fmt: skip
            assert api.signed("POST", "/api/v3/order", user, **order).status == 200
    before = {s: api.get("/api/v3/depth", symbol=s).body for s in ("AAPL", "MSFT", "GOOG")}
    assert ex.stop() == 0
    # act
    log_path = tmp_path / "restart.log"
    proc = launch(ex.config_path, launcher_env(), log_path)
    try:
        fields = wait_ready(proc, log_path, http=True)
        again = Api(fields["rest"], ex.admin_token)
        after = {s: again.get("/api/v3/depth", symbol=s).body for s in ("AAPL", "MSFT", "GOOG")}
        fresh = again.signed("POST", "/api/v3/order", taker, symbol="AAPL", side="SELL", type="LIMIT",
                             timeInForce="GTC", quantity="1", price="99.00")  # fmt: skip
    finally:
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(60)
    # assert
    assert [(b["bids"], b["asks"]) for b in after.values()] == [(b["bids"], b["asks"]) for b in before.values()]
    assert fresh.status == 200 and fresh.body["status"] == "FILLED"
    assert status == 0
    assert "event=shard_recovered" in log_path.read_text()
