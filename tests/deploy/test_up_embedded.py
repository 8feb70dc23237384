"""``exchange up`` with no DATABASE_URL / REDIS_URL: it runs its own PostgreSQL and Redis, and their data lasts."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from pathlib import Path

import asyncpg
import redis

from deploy.migrate import discover
from deploy.topology import instance_id
from tests.conftest import launch, launcher_env, shm_segments, to_toml, wait_ready

SLEEPERS = {"ingress": "role_sleeper", "shard": "role_sleeper"}


def _run_once(config: Path, data_dir: Path, log: Path, work) -> tuple[int, str]:
    """Start ``exchange up``, call ``work(database_url, redis_url)``, stop it; return (status, log)."""
    before = len(_starts(data_dir))
    proc = launch(config, launcher_env(SLEEPERS), log)
    try:
        wait_ready(proc, log, http=False)
        deadline = time.monotonic() + 30
        while len(_starts(data_dir)) < before + 2 and time.monotonic() < deadline:  # ingress 0 and shard 0
            time.sleep(0.05)
        last = _starts(data_dir)[-1]
        urls = last["database_url"], last["redis_url"]
        work(*urls)
    finally:
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(60)
    return status, log.read_text()


def _starts(data_dir: Path) -> list[dict]:
    path = data_dir / "roles.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _server_pids(text: str) -> list[int]:
    return [int(p) for p in re.findall(r"event=(?:postgres|redis)_ready pid=(\d+)", text)]


def test_up_without_urls_runs_embedded_servers_whose_data_survives_a_restart(private_tmp):
    tmp_path = private_tmp
    data_dir = tmp_path / "var"
    config = tmp_path / "c.toml"
    ports = {"rest": {"port": 0, "workers": 1}, "wsfeed": {"port": 0}}
    config.write_text(to_toml({"data_dir": str(data_dir), **ports, "engine": {"shards": 1}}))
    seen: dict[str, object] = {}

    def write(database_url: str, redis_url: str) -> None:
        async def insert() -> None:
            conn = await asyncpg.connect(database_url)
            await conn.execute("INSERT INTO users (api_key, secret_key) VALUES ('k1', 's1')")
            await conn.close()

        asyncio.run(insert())
        client = redis.Redis.from_url(redis_url)
        client.set("survives", "yes")
        client.close()
        seen["urls"] = (database_url, redis_url)

    def read(database_url: str, redis_url: str) -> None:
        async def fetch() -> tuple[list, list]:
            conn = await asyncpg.connect(database_url)
            users = await conn.fetch("SELECT api_key FROM users")
            versions = await conn.fetch("SELECT version FROM schema_migrations")
            await conn.close()
            return [r["api_key"] for r in users], [r["version"] for r in versions]

        seen["users"], seen["versions"] = asyncio.run(fetch())
        client = redis.Redis.from_url(redis_url)
        seen["key"] = client.get("survives")
        client.close()

    first_status, first_log = _run_once(config, data_dir, tmp_path / "first.log", write)
    second_status, second_log = _run_once(config, data_dir, tmp_path / "second.log", read)

    assert first_status == 0 and second_status == 0
    database_url, redis_url = seen["urls"]
    assert re.match(r"postgresql://postgres:[^@]+@127\.0\.0\.1:\d+/exchange$", database_url)
    socket_path = re.escape(str(data_dir / "redis" / "redis.sock"))
    assert re.match(rf"unix://:[^@]+@{socket_path}\?db=0$", redis_url)  # the embedded Redis's unix socket
    labels = [m.label for m in discover()]
    assert f"event=migrations_applied applied={','.join(labels)}" in first_log
    assert "event=migrations_applied applied=none" in second_log
    assert seen["users"] == ["k1"] and seen["versions"] == [m.version for m in discover()] and seen["key"] == b"yes"
    assert (data_dir / "redis" / "appendonly.aof").exists()
    for pid in _server_pids(first_log) + _server_pids(second_log):
        assert not Path(f"/proc/{pid}").exists()  # both servers stopped with the launcher
    assert second_log.index("event=child_stopped role=shard") < second_log.index("event=server_stopped")
    assert shm_segments(instance_id(data_dir)) == []


def test_up_with_unix_socket_off_gives_every_process_the_tcp_url(private_tmp):
    data_dir = private_tmp / "var"
    config = private_tmp / "c.toml"
    settings = {"data_dir": str(data_dir), "rest": {"port": 0, "workers": 1}, "wsfeed": {"port": 0},
                "engine": {"shards": 1}, "redis": {"unix_socket": False}}  # fmt: skip
    config.write_text(to_toml(settings))
    seen: list[str] = []

    status, log = _run_once(config, data_dir, private_tmp / "up.log", lambda _db, redis_url: seen.append(redis_url))

    assert status == 0
    assert re.match(r"redis://:[^@]+@127\.0\.0\.1:\d+/0$", seen[0])
    assert {line["redis_url"] for line in _starts(data_dir) if "redis_url" in line} == {seen[0]}
    assert not (data_dir / "redis" / "redis.sock").exists()
