"""``exchange up`` with roles set to ``"idle"`` in ``[nice]``: they, the embedded PostgreSQL and the backends it
forks later run in the launcher's idle cpu cgroup, which is gone after the stop; where no such group can be made,
they run at nice 19 instead and the log says why."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path

import asyncpg

from tests.conftest import launch, launcher_env, to_toml, wait_ready
from tests.deploy.conftest import SLEEPERS, embedded_database_url, named_child


def _cgroup_lines(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cgroup").read_text().splitlines()


async def _backend_cgroup(database_url: str) -> list[str]:
    """The cgroup lines of a backend forked now (the connection is open while they are read)."""
    conn = await asyncpg.connect(database_url)
    try:
        return _cgroup_lines(conn.get_server_pid())
    finally:
        await conn.close()


def test_idle_roles_postgres_and_its_later_backends_run_in_the_idle_group_until_the_stop(private_tmp):
    config = private_tmp / "c.toml"
    settings = {"data_dir": str(private_tmp / "var"), "rest": {"port": 0, "workers": 1}, "engine": {"shards": 1},
                "wsfeed": {"port": 0}, "nice": {"persist": "idle", "postgres": "idle"}}  # fmt: skip
    config.write_text(to_toml(settings))
    log = private_tmp / "up.log"
    proc = launch(config, launcher_env(SLEEPERS), log)
    try:
        wait_ready(proc, log, http=False)
        persist = named_child(proc.pid, "exchange: persist")
        shard = named_child(proc.pid, "exchange: shard")
        postmaster = int(re.search(r"event=postgres_ready pid=(\d+)", log.read_text()).group(1))
        created = re.search(r"event=idle_group_created path=(\S+)", log.read_text())

        backend = asyncio.run(_backend_cgroup(embedded_database_url(private_tmp)))
        if created is None:  # no idle group here: the fallback, said in the log
            assert "event=idle_group_unavailable" in log.read_text()
            assert os.getpriority(os.PRIO_PROCESS, persist) == 19
            assert os.getpriority(os.PRIO_PROCESS, postmaster) == 19
            return
        group = Path(created.group(1))
        name = "/" + group.name
        assert (group / "cpu.idle").read_text().strip() == "1"
        assert any(line.endswith(name) for line in _cgroup_lines(persist))
        assert any(line.endswith(name) for line in _cgroup_lines(postmaster))
        assert any(line.endswith(name) for line in backend)  # forked after the move: in its parent's group
        assert not any(line.endswith(name) for line in _cgroup_lines(shard))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert proc.returncode == 0
    assert not group.exists()
    assert "event=idle_group_removed" in log.read_text()
