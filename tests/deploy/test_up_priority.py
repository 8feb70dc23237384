"""``exchange up`` with ``[nice]``: a lowered role, the embedded PostgreSQL and every backend it forks run lowered,
in their own scheduling groups too (autogroup: each leads a session, where nice alone would change nothing)."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import launch, launcher_env, to_toml, wait_ready
from tests.deploy.conftest import SLEEPERS, embedded_database_url, group_nice, named_child

pytestmark = pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="no autogroup scheduling here")


def _wait_group_nice(pid: int, nice: int, timeout_s: float = 10.0) -> int | None:
    """``pid``'s group nice once it is ``nice``, or whatever it is at the timeout (the sweep runs once a second)."""
    deadline = time.monotonic() + timeout_s
    while group_nice(pid) != nice and time.monotonic() < deadline:
        time.sleep(0.1)
    return group_nice(pid)


def test_lowered_roles_postgres_and_its_later_backends_run_in_lowered_groups(private_tmp):
    config = private_tmp / "c.toml"
    settings = {"data_dir": str(private_tmp / "var"), "rest": {"port": 0, "workers": 1}, "engine": {"shards": 1},
                "wsfeed": {"port": 0}, "nice": {"persist": 7, "postgres": 6}}  # fmt: skip
    config.write_text(to_toml(settings))
    log = private_tmp / "up.log"
    proc = launch(config, launcher_env(SLEEPERS), log)
    try:
        wait_ready(proc, log, http=False)
        database_url = embedded_database_url(private_tmp)
        persist = named_child(proc.pid, "exchange: persist")
        shard = named_child(proc.pid, "exchange: shard")
        postmaster = int(re.search(r"event=postgres_ready pid=(\d+)", log.read_text()).group(1))

        backend = asyncio.run(_backend_nice(database_url))

        assert _wait_group_nice(persist, 7) == 7
        assert group_nice(shard) == 0
        assert _wait_group_nice(postmaster, 6) == 6
        assert backend == 6
        assert "event=postgres_backend_niced" in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


async def _backend_nice(database_url: str) -> int:
    """Connect (a backend forked after start-up), and return its group's nice once the sweep has lowered it."""
    conn = await asyncpg.connect(database_url)
    try:
        return await asyncio.to_thread(_wait_group_nice, conn.get_server_pid(), 6)
    finally:
        await conn.close()
