"""Shared fixtures: the session's embedded servers, and real ``exchange up`` processes.

- ``services`` (session): one embedded PostgreSQL and one embedded Redis for the
  whole test session (``deploy.embedded``), in a temporary folder; attributes
  ``database_url``, ``redis_url`` (Redis's unix socket) and ``redis_tcp_url``
  (the same server on 127.0.0.1); ``create_database()`` and ``redis_db_url()``
  (``tcp=True``: its TCP form) hand a test a fresh database or a flushed Redis
  logical db.
- ``exchange_factory`` (function): ``exchange_factory(**overrides)`` starts
  ``exchange up`` as a subprocess on a temporary data folder, a fresh database, a
  Redis db of its own and free ports, with a TOML file built from the defaults and
  ``overrides`` (top-level keys: ``engine={"shards": 2}``, ``rest={"workers": 1}``,
  ``symbols=[...]``). It waits for the launcher's ready line and then for
  ``GET /api/v3/ping`` (or, with stand-in roles, for the REST port to accept).
  Keyword arguments starting with ``_`` are not config: ``_roles={"shard":
  "role_sleeper"}`` replaces role modules by stand-ins from tests/deploy/,
  ``_env`` adds environment variables, ``_wait_http`` forces the readiness check,
  ``_redis_tcp=True`` gives the exchange the session Redis's TCP URL (default: its
  unix socket).
  At teardown each exchange gets SIGTERM; the fixture checks that it exited with
  status 0 and left no shared-memory segment.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from deploy import telemetry
from deploy.config import Config, load_config
from deploy.embedded import ServerProcess, ensure_database, start_postgres, start_redis, with_redis_db
from deploy.roles import ROLE_MODULES_ENV, ROLE_TABLE
from deploy.topology import instance_id

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_ROLES_DIR = REPO_ROOT / "tests" / "deploy"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0
_OVERRIDDEN_ENV = ("DATABASE_URL", "REDIS_URL", "EXCHANGE_ADMIN_TOKEN", "EXCHANGE_DATA_DIR", ROLE_MODULES_ENV)


# --- session servers ------------------------------------------------------------------


@dataclass
class Services:
    database_url: str
    redis_url: str
    data_dir: Path
    postgres: ServerProcess
    redis: ServerProcess
    _db_numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _redis_dbs: Iterator[int] = field(default_factory=lambda: itertools.cycle(range(1, 16)))

    def database_url_for(self, name: str) -> str:
        return self.database_url.rsplit("/", 1)[0] + "/" + name

    def create_database(self, prefix: str = "test") -> str:
        """A new, empty database in the session PostgreSQL; returns its URL."""
        import asyncio

        name = f"{prefix}_{os.getpid()}_{next(self._db_numbers)}"
        asyncio.run(ensure_database(self.database_url_for("postgres"), name))
        return self.database_url_for(name)

    @property
    def redis_tcp_url(self) -> str:
        return self.redis.tcp_url

    def redis_db_url(self, *, tcp: bool = False) -> str:
        """URL of a Redis logical db (1..15, db 0 is the session's), flushed: its unix socket, or ``tcp``."""
        import redis

        url = with_redis_db(self.redis_tcp_url if tcp else self.redis_url, next(self._redis_dbs))
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
        finally:
            client.close()
        return url


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    data_dir = Path(tempfile.mkdtemp(prefix="exchange-services-"))
    postgres = start_postgres(data_dir)
    try:
        redis = start_redis(data_dir, appendfsync="everysec")
    except BaseException:
        postgres.stop()
        raise
    try:
        yield Services(
            database_url=postgres.url, redis_url=redis.url, data_dir=data_dir, postgres=postgres, redis=redis
        )
    finally:
        postgres.stop(sig=signal.SIGQUIT)  # immediate shutdown: the folder is thrown away next
        redis.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


# --- running exchanges --------------------------------------------------------------------


def to_toml(data: Mapping[str, Any]) -> str:
    """A TOML document for a config dict (scalars, tables, tables of lists, arrays of tables)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, (str, Decimal, Path)):
            return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"cannot write {v!r} as TOML")

    def key(k: str) -> str:
        return k if k.replace("_", "").replace("-", "").isalnum() else value(k)

    lines = [f"{key(k)} = {value(v)}" for k, v in data.items() if not isinstance(v, (Mapping, list))]
    lines += [f"{key(k)} = {value(v)}" for k, v in data.items() if isinstance(v, list) and not _is_tables(v)]
    for k, v in data.items():
        if isinstance(v, Mapping):
            lines.append(f"\n[{key(k)}]")
            lines += [f"{key(kk)} = {value(vv)}" for kk, vv in v.items()]
    for k, v in data.items():
        if isinstance(v, list) and _is_tables(v):
            for table in v:
                lines.append(f"\n[[{key(k)}]]")
                lines += [f"{key(kk)} = {value(vv)}" for kk, vv in table.items()]
    return "\n".join(lines) + "\n"


def _is_tables(v: list[Any]) -> bool:
    return bool(v) and all(isinstance(x, Mapping) for x in v)


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in overrides.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def child_pids(parent: int, title_prefix: str) -> dict[int, int]:
    """Index -> pid of ``parent``'s children whose process title is ``<title_prefix> <index>``."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        title = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
        if ppid == parent and title.startswith(title_prefix + " "):
            tail = title[len(title_prefix) + 1 :].split(" ")[0]
            if tail.isdigit():
                found[int(tail)] = int(entry)
    return found


def shm_segments(instance: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir("/dev/shm") if n.startswith(instance + "-"))
    except FileNotFoundError:  # pragma: no cover - not Linux
        return []


@dataclass
class RunningExchange:
    rest_url: str
    ws_url: str
    admin_token: str
    data_dir: Path
    config_path: Path
    database_url: str
    redis_url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def instance(self) -> str:
        return instance_id(self.data_dir)

    def pids(self, role: str) -> dict[int, int]:
        """Index -> pid of this exchange's ``role`` processes, found by process title."""
        return child_pids(self.proc.pid, f"exchange: {role}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM the launcher and wait for it (SIGKILL after ``timeout``). Idempotent; returns its status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def launcher_env(roles: Mapping[str, str] | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _OVERRIDDEN_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(TEST_ROLES_DIR), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    if roles:
        env[ROLE_MODULES_ENV] = ",".join(f"{role}={module}" for role, module in roles.items())
    env.update(extra or {})
    return env


def launch(config_path: Path | None, env: Mapping[str, str], log_path: Path, *args: str) -> subprocess.Popen[bytes]:
    """Start ``exchange up`` as a subprocess, its output (stdout and stderr) in ``log_path``."""
    cmd = [sys.executable, "-m", "deploy.cli", "up", *args]
    if config_path is not None:
        cmd += ["--config", str(config_path)]
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, cwd=REPO_ROOT, env=dict(env), stdin=subprocess.DEVNULL, stdout=log, stderr=log)


def wait_ready(proc: subprocess.Popen[bytes], log_path: Path, *, http: bool) -> dict[str, str]:
    """Wait for the launcher's ``event=ready`` line, then for the REST API; return the line's fields."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    fields: dict[str, str] = {}
    while not fields:
        if proc.poll() is not None:
            raise RuntimeError(f"exchange up exited with status {proc.returncode}:\n{log_path.read_text()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"exchange up printed no ready line in {READY_TIMEOUT_S} s:\n{log_path.read_text()}")
        for line in log_path.read_text(errors="replace").splitlines():
            if " event=ready " in line:
                fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
        time.sleep(0.05)
    host, port = fields["rest"].removeprefix("http://").rsplit(":", 1)
    check: Callable[[], object]
    if http:
        check = lambda: urllib.request.urlopen(fields["rest"] + "/api/v3/ping", timeout=2).read()  # noqa: E731
    else:
        check = lambda: socket.create_connection((host, int(port)), timeout=2).close()  # noqa: E731
    while True:
        try:
            check()
            return fields
        except (OSError, urllib.error.URLError) as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"exchange not ready at {fields['rest']} ({exc!r}):\n{log_path.read_text()}"
                ) from exc
            time.sleep(0.05)


def wait_named(running: RunningExchange, config: Config) -> None:
    """Wait until every process of the role table has named itself (so ``pids()`` sees them all)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    for spec in ROLE_TABLE:
        want = set(range(spec.count(config)))
        while not want <= set(running.pids(spec.name)):
            if running.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"not every {spec.name} process started:\n{running.log_text()}")
            time.sleep(0.02)


@pytest.fixture
def exchange_factory(services: Services, tmp_path: Path) -> Iterator[Callable[..., RunningExchange]]:
    started: list[RunningExchange] = []
    counter = itertools.count()

    def factory(**overrides: Any) -> RunningExchange:
        roles = overrides.pop("_roles", None)
        extra_env = overrides.pop("_env", None)
        wait_http = overrides.pop("_wait_http", roles is None or "ingress" not in roles)
        redis_tcp = overrides.pop("_redis_tcp", False)
        n = next(counter)
        data_dir = tmp_path / f"data{n}"
        data_dir.mkdir()
        token = secrets.token_urlsafe(16)
        database_url = services.create_database("exchange")
        redis_url = services.redis_db_url(tcp=redis_tcp)
        base = {
            "data_dir": str(data_dir),
            "admin_token": token,
            "rest": {"port": 0},
            "wsfeed": {"port": 0},
            "postgres": {"url": database_url},
            "redis": {"url": redis_url},
        }
        config = merge(base, overrides)
        config_path = tmp_path / f"exchange{n}.toml"
        config_path.write_text(to_toml(config))
        log_path = tmp_path / f"exchange{n}.log"
        proc = launch(config_path, launcher_env(roles, extra_env), log_path)
        running = RunningExchange(
            rest_url="", ws_url="", admin_token=config["admin_token"], data_dir=data_dir, config_path=config_path,
            database_url=config["postgres"]["url"], redis_url=config["redis"]["url"], proc=proc, log_path=log_path,
        )  # fmt: skip
        started.append(running)
        fields = wait_ready(proc, log_path, http=wait_http)
        wait_named(running, load_config(config_path, env={}))
        running.rest_url = fields["rest"]
        running.ws_url = fields.get("ws", "")
        return running

    yield factory

    problems = []
    for running in started:
        status = running.stop()
        left = shm_segments(running.instance)
        if status != 0:
            problems.append(f"exchange up exited with status {status}:\n{running.log_text()[-4000:]}")
        if left:
            problems.append(f"exchange up left shared-memory segments {left}")
    if problems:
        pytest.fail("\n".join(problems))


def publish_while_failing(send: Callable[[list[list[bytes]]], Awaitable[object]], role: str,
                          tries: Callable[[], int], figures: Mapping[str, int]) -> bool:  # fmt: skip
    """Run ``telemetry.publish_every`` with ``send`` (which fails) until ``tries()`` reaches 3; True when the loop
    was still running then (a failing Redis must not end it). It stops cleanly afterwards."""

    async def scenario() -> bool:
        stop = asyncio.Event()
        task = asyncio.create_task(telemetry.publish_every(send, lambda: figures, role, 0, stop, interval_s=0.01))
        while tries() < 3:
            await asyncio.sleep(0.01)
        alive = not task.done()
        stop.set()
        await asyncio.wait_for(task, 5)
        return alive

    return asyncio.run(scenario())
