"""deploy.embedded: how the embedded servers run, and how a failed start is reported."""

from __future__ import annotations

import asyncio
import os
import socket
import stat

import asyncpg
import pytest
import redis

from deploy.embedded import EmbeddedError, start_redis


def test_redis_runs_with_its_append_only_file_on_loopback(services):
    client = redis.Redis.from_url(services.redis_url)
    try:
        settings = {k: client.config_get(k)[k] for k in ("appendonly", "appendfsync", "bind", "dir", "save")}
    finally:
        client.close()

    assert settings["appendonly"] == "yes"
    assert settings["appendfsync"] == "everysec"
    assert settings["bind"] == "127.0.0.1"
    assert settings["dir"] == str(services.data_dir / "redis")
    assert settings["save"] == ""


def test_redis_refuses_clients_without_the_password(services):
    with socket.create_connection(("127.0.0.1", services.redis.port), timeout=5) as conn:
        conn.sendall(b"PING\r\n")
        reply = conn.recv(100)

    assert reply.startswith(b"-NOAUTH")


def test_postgres_listens_on_loopback_only_with_fsync_on(services):
    async def settings() -> dict[str, str]:
        conn = await asyncpg.connect(services.database_url)
        try:
            return {name: await conn.fetchval(f"SHOW {name}") for name in ("listen_addresses", "fsync", "port")}
        finally:
            await conn.close()

    shown = asyncio.run(settings())

    assert shown == {"listen_addresses": "127.0.0.1", "fsync": "on", "port": str(services.postgres.port)}


def test_postgres_refuses_a_wrong_password(services):
    bad = services.database_url.replace("postgres:", "postgres:wrong", 1).replace("@", "x@", 1)

    with pytest.raises(asyncpg.InvalidPasswordError):
        asyncio.run(asyncpg.connect(bad))


def test_credentials_file_is_private(services):
    mode = stat.S_IMODE(os.stat(services.data_dir / "credentials.json").st_mode)

    assert mode == 0o600


def test_a_server_that_fails_to_start_is_reported_with_its_log(tmp_path):
    with pytest.raises(EmbeddedError) as info:
        start_redis(tmp_path, appendfsync="sometimes")

    message = str(info.value)
    assert "embedded Redis exited at start" in message
    assert str(tmp_path / "redis.log") in message
    assert "appendfsync" in message  # the log tail names the bad directive
