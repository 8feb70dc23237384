"""``exchange up`` as a real process tree, with stand-in roles (tests/deploy/role_*.py) and the session servers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from deploy.lock import DataDirLock
from deploy.topology import instance_id
from tests.conftest import child_pids, launch, launcher_env, shm_segments, to_toml, wait_ready

SLEEPERS = {"ingress": "role_sleeper", "shard": "role_sleeper"}


def _records(data_dir: Path, name: str = "roles.log") -> list[dict]:
    path = data_dir / name
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _title(pid: int) -> str:
    return subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()


def _wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_processes_name_themselves_in_ps(exchange_factory):
    ex = exchange_factory(_roles=SLEEPERS, rest={"workers": 2}, engine={"shards": 2})

    shards, ingress = ex.pids("shard"), ex.pids("ingress")

    assert _title(ex.proc.pid) == "exchange: launcher"
    assert sorted(shards) == [0, 1] and sorted(ingress) == [0, 1]
    assert [_title(shards[i]) for i in (0, 1)] == ["exchange: shard 0", "exchange: shard 1"]
    assert [_title(ingress[i]) for i in (0, 1)] == ["exchange: ingress 0", "exchange: ingress 1"]


def test_children_get_urls_doorbells_and_the_rest_socket(exchange_factory):
    ex = exchange_factory(_roles=SLEEPERS, rest={"workers": 1}, engine={"shards": 2})
    starts = _wait_for(
        lambda: [r for r in _records(ex.data_dir) if r["event"] == "start"][2:] and _records(ex.data_dir)
    )

    assert {(r["role"], r["index"]) for r in starts} == {("ingress", 0), ("shard", 0), ("shard", 1)}
    assert {r["database_url"] for r in starts} == {ex.database_url}
    assert {r["redis_url"] for r in starts} == {ex.redis_url}
    assert all(r["doorbells"] == ["ingress.0", "shard.0", "shard.1"] and r["rest_fd"] >= 0 for r in starts)
    assert len(shm_segments(ex.instance)) == 4  # a command and an answer ring per (worker, shard)


def test_clean_stop_goes_ingress_then_shards_then_servers_and_unlinks_every_ring(exchange_factory):
    ex = exchange_factory(_roles=SLEEPERS, rest={"workers": 2}, engine={"shards": 2})
    _wait_for(lambda: len(_records(ex.data_dir)) == 4, what="four children started")
    assert len(shm_segments(ex.instance)) == 8

    ex.proc.send_signal(signal.SIGINT)  # what Ctrl-C in a terminal sends
    status = ex.proc.wait(60)

    stops = [r for r in _records(ex.data_dir) if r["event"] == "stop"]
    ingress_times = [r["t"] for r in stops if r["role"] == "ingress"]
    shard_times = [r["t"] for r in stops if r["role"] == "shard"]
    assert status == 0
    assert len(ingress_times) == 2 and len(shard_times) == 2
    assert max(ingress_times) < min(shard_times)
    assert all(r["redis_ok"] for r in stops if r["role"] == "shard")  # Redis still up while shards drain
    assert shm_segments(ex.instance) == []
    log = ex.log_text()
    assert log.index("event=child_stopped role=shard") < log.index("event=lock_released") < log.index("event=stopped")
    lock = DataDirLock(ex.data_dir)
    lock.acquire()  # released
    lock.release()


def test_a_child_killed_with_sigkill_is_restarted(exchange_factory):
    ex = exchange_factory(_roles=SLEEPERS, rest={"workers": 1}, engine={"shards": 2})
    old = ex.pids("shard")[1]

    os.kill(old, signal.SIGKILL)
    new = _wait_for(lambda: (pid := ex.pids("shard").get(1)) not in (None, old) and pid, what="shard 1 restarted")

    assert _title(new) == "exchange: shard 1"
    assert re.search(
        rf"event=child_exit role=shard index=1 pid={old} status=-9 reason=SIGKILL .*restart_in=0.100s", ex.log_text()
    )
    assert ex.pids("shard")[0] != new


def test_a_child_that_keeps_exiting_is_restarted_with_growing_backoff(exchange_factory):
    ex = exchange_factory(
        _roles={"ingress": "role_sleeper", "shard": "role_exit"}, rest={"workers": 1}, engine={"shards": 1}
    )

    exits = ex.data_dir / "exits.log"

    pids = _wait_for(lambda: exits.exists() and len(p := exits.read_text().split()) >= 4 and p, what="four runs")

    delays = re.findall(r"event=child_exit role=shard index=0 pid=\d+ status=0 .*restart_in=(\S+)", ex.log_text())
    assert len(set(pids)) == len(pids)
    assert delays[:3] == ["0.100s", "0.200s", "0.400s"]


def test_second_launcher_on_the_same_data_folder_is_refused(exchange_factory, tmp_path):
    ex = exchange_factory(_roles=SLEEPERS, rest={"workers": 1}, engine={"shards": 1})
    before = (ex.pids("shard"), ex.pids("ingress"))

    second = subprocess.run(
        [*launch_cmd(ex.config_path)], env=launcher_env(SLEEPERS), capture_output=True, text=True, timeout=60
    )

    assert second.returncode == 1
    assert f"data folder {ex.data_dir} is in use by another exchange (pid {ex.proc.pid}" in second.stderr
    assert ex.proc.poll() is None and (ex.pids("shard"), ex.pids("ingress")) == before
    assert len(shm_segments(ex.instance)) == 2


def launch_cmd(config_path: Path) -> list[str]:
    import sys

    return [sys.executable, "-m", "deploy.cli", "up", "--config", str(config_path)]


def test_a_missing_role_module_fails_at_once_without_starting_anything(services, tmp_path):
    data_dir = tmp_path / "data"
    config = tmp_path / "c.toml"
    config.write_text(
        to_toml({"data_dir": str(data_dir), "rest": {"port": 0}, "wsfeed": {"port": 0},
                 "postgres": {"url": services.database_url}, "redis": {"url": services.redis_url}})
    )  # fmt: skip
    roles = {"ingress": "no_such_role_module", "shard": "role_sleeper"}

    result = subprocess.run(launch_cmd(config), env=launcher_env(roles), capture_output=True, text=True, timeout=60)

    assert result.returncode == 1
    assert "role 'ingress': module 'no_such_role_module' cannot be found" in result.stderr
    assert "child_start" not in result.stderr
    assert not data_dir.exists()  # not even the lock was taken


def test_a_killed_launcher_takes_its_children_along_and_the_folder_can_be_reused(services, tmp_path):
    data_dir = tmp_path / "data"
    config = tmp_path / "c.toml"
    config.write_text(
        to_toml({"data_dir": str(data_dir), "rest": {"port": 0, "workers": 1}, "wsfeed": {"port": 0},
                 "engine": {"shards": 1}, "postgres": {"url": services.database_url},
                 "redis": {"url": services.redis_url}})
    )  # fmt: skip
    log = tmp_path / "first.log"
    first = launch(config, launcher_env(SLEEPERS), log)
    wait_ready(first, log, http=False)

    def named_children() -> list[int]:
        return [
            *child_pids(first.pid, "exchange: shard").values(),
            *child_pids(first.pid, "exchange: ingress").values(),
        ]

    children = _wait_for(lambda: len(c := named_children()) == 2 and c, what="both children named")

    first.kill()
    first.wait()
    gone = _wait_for(lambda: all(not Path(f"/proc/{pid}").exists() for pid in children), what="children to exit")
    second_log = tmp_path / "second.log"
    second = launch(config, launcher_env(SLEEPERS), second_log)
    try:
        wait_ready(second, second_log, http=False)
    finally:
        second.send_signal(signal.SIGTERM)
        status = second.wait(60)

    assert gone
    assert status == 0
    assert shm_segments(instance_id(data_dir)) == []


@pytest.mark.parametrize("fsync", ["always"])
def test_appendfsync_reaches_config(fsync, tmp_path):
    from deploy.config import load_config

    config = tmp_path / "c.toml"
    config.write_text(to_toml({"redis": {"appendfsync": fsync}}))

    assert load_config(config, env={}).redis.appendfsync == fsync
