"""deploy.embedded: how the embedded servers run, and how a failed start is reported."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from pathlib import Path

import asyncpg
import pytest
import redis
from redis.connection import parse_url

from deploy.embedded import (
    SUN_PATH_MAX,
    EmbeddedError,
    credentials,
    redis_socket_path,
    redis_url,
    start_redis,
    with_redis_db,
)


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


def test_redis_listens_on_a_private_unix_socket_that_its_url_names(services):
    # arrange
    path = services.data_dir / "redis" / "redis.sock"
    client = redis.Redis.from_url(services.redis_url)
    # act
    answered = client.ping()
    socket_mode = stat.S_IMODE(os.stat(path).st_mode)
    folder_mode = stat.S_IMODE(os.stat(path.parent).st_mode)
    unixsocket = client.config_get("unixsocket")["unixsocket"]
    client.close()
    # assert
    assert services.redis.socket_path == path and services.redis_url.startswith("unix://:")
    assert services.redis_url.endswith(f"@{path}?db=0")
    assert answered and unixsocket == str(path)
    assert (socket_mode, folder_mode) == (0o700, 0o700)
    password = credentials(services.data_dir)["redis_password"]
    assert services.redis.tcp_url == f"redis://:{password}@127.0.0.1:{services.redis.port}/0"
    assert redis.Redis.from_url(services.redis.tcp_url).ping()  # and on TCP, for tools


def test_redis_refuses_unix_clients_without_the_password(services):
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(5)
        conn.connect(str(services.redis.socket_path))
        conn.sendall(b"PING\r\n")
        reply = conn.recv(100)

    assert reply.startswith(b"-NOAUTH")


@pytest.mark.parametrize("extra", [0, 1])
def test_a_socket_path_too_long_for_sun_path_falls_back_to_tcp(tmp_path, capfd, extra):
    # arrange: a data folder whose socket path is exactly the longest allowed, or one byte more
    room = SUN_PATH_MAX - len(os.fsencode(tmp_path / "redis" / "redis.sock")) - 1
    data_dir = tmp_path / ("d" * (room + extra))
    # act
    server = start_redis(data_dir)
    try:
        answered = redis.Redis.from_url(server.url).ping()
    finally:
        server.stop()
    log = capfd.readouterr().err
    # assert
    if extra:
        assert server.socket_path is None and redis_socket_path(data_dir) is None
        assert server.url == server.tcp_url and server.url.startswith("redis://")
        assert "event=redis_unix_socket_skipped" in log and "bytes=108 limit=107" in log
    else:
        assert server.socket_path == data_dir / "redis" / "redis.sock"
        assert len(os.fsencode(server.socket_path)) == SUN_PATH_MAX
        assert server.url.startswith("unix://") and "redis_unix_socket_skipped" not in log
    assert answered


def test_redis_without_the_unix_socket_is_tcp_only(tmp_path):
    # arrange
    server = start_redis(tmp_path, unix_socket=False)
    try:
        # act
        client = redis.Redis.from_url(server.url)
        unixsocket = client.config_get("unixsocket")["unixsocket"]
        client.close()
    finally:
        server.stop()
    # assert
    assert server.url == server.tcp_url and server.url.startswith("redis://:")
    assert server.socket_path is None and unixsocket == ""
    assert not (tmp_path / "redis" / "redis.sock").exists()


@pytest.mark.parametrize(
    ("url", "db", "expected"),
    [
        ("redis://:pw@127.0.0.1:6379/0", 5, "redis://:pw@127.0.0.1:6379/5"),
        ("redis://127.0.0.1:6379", 2, "redis://127.0.0.1:6379/2"),
        ("rediss://u:p@h:1/3?ssl_cert_reqs=none", 7, "rediss://u:p@h:1/7?ssl_cert_reqs=none"),
        ("unix://:pw@/var/x/redis.sock?db=0", 9, "unix://:pw@/var/x/redis.sock?db=9"),
        ("unix:///tmp/r.sock?password=a%2Bb&db=1", 4, "unix:///tmp/r.sock?password=a%2Bb&db=4"),
        ("unix:///tmp/r.sock", 3, "unix:///tmp/r.sock?db=3"),
    ],
)
def test_with_redis_db_names_another_logical_db_in_either_url_form(url, db, expected):
    assert with_redis_db(url, db) == expected


def test_redis_url_quotes_the_password_and_the_socket_path():
    url = redis_url("a/b@c", socket_path=Path("/tmp/with space/redis.sock"), db=2)

    options = parse_url(url)

    assert url == "unix://:a%2Fb%40c@/tmp/with%20space/redis.sock?db=2"
    assert (options["password"], options["path"], options["db"]) == ("a/b@c", "/tmp/with space/redis.sock", 2)


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
