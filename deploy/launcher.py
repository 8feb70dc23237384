"""``exchange up``: start the whole exchange under one supervising launcher, and stop it in order.

Start, in this order (each step undone in reverse on the way out):
 1. check the role modules exist and the CPU affinity is possible (before touching anything);
 2. lock the data folder (``deploy.lock``): a second launcher on it fails at once;
 3. create every ring and every doorbell of the topology (removing stale segments
    a killed launcher may have left under this data folder's instance id);
 4. make the idle cpu cgroup when a ``[nice]`` role is ``"idle"`` (``deploy.idlegroup``; removed after the
    servers have stopped), start the embedded PostgreSQL (moved into that group when ``postgres`` is idle)
    and Redis unless ``postgres.url`` / ``redis.url`` are set, and apply the database migrations;
 5. bind the REST listening socket (and the WebSocket one once wsfeed exists);
 6. start the children (``python -m deploy.child ROLE INDEX``), print where the
    exchange listens and the admin token, then supervise (``deploy.supervisor``).

On SIGINT/SIGTERM/SIGHUP: ingress workers stop first, then the shards (SIGTERM:
they drain and exit; SIGKILL after a deadline), then the writers, then the
embedded servers, then every ring is unlinked and the lock released. A second
signal kills the children still draining (the embedded servers still get their
clean shutdown). If an embedded server dies,
the launcher stops everything and exits with status 1.

Signal handling lives here only; children are in sessions of their own, so a
terminal's Ctrl-C reaches the launcher alone and the order above holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from setproctitle import setproctitle

from deploy.config import Config, ConfigError
from deploy.embedded import ServerProcess, start_postgres, start_redis
from deploy.idlegroup import IdleGroup
from deploy.lock import DataDirLock
from deploy.log import log_event, set_process_name
from deploy.migrate import apply_migrations
from deploy.procs import child_pids, die_with_parent, lower_children, lower_priority
from deploy.roles import ROLE_TABLE, check_roles
from deploy.supervisor import Supervisor
from deploy.topology import ProcessContext, Topology, instance_id

CHILD_STOP_DEADLINE_S = 15.0
SERVER_STOP_DEADLINE_S = 30.0
BACKEND_SWEEP_S = 1.0  # how often the embedded PostgreSQL's new backends get their priority lowered
IDLE_GROUP_REMOVE_S = 5.0  # how long the idle cpu cgroup's removal waits for its last processes to exit


class LaunchError(Exception):
    code = "launch"


class _StopSignals:
    """SIGINT/SIGTERM/SIGHUP set a flag; a second one asks for a forced stop."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self.forced = False

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested is None:
            self.requested = name
            log_event("stop_requested", signal=name)
        else:
            self.forced = True
            log_event("stop_forced", "warning", signal=name)


def check_affinity(config: Config) -> None:
    """Every CPU named in ``affinity`` must be one this process may run on."""
    if not config.affinity or not hasattr(os, "sched_getaffinity"):
        return
    available = os.sched_getaffinity(0)
    for key, cpus in config.affinity.items():
        missing = sorted(set(cpus) - available)
        if missing:
            raise ConfigError(
                f"affinity.{key}", f"CPU {missing[0]} is not available here (available: {sorted(available)})"
            )


def _create_rings(topology: Topology, stack: contextlib.ExitStack) -> dict[str, int]:
    """Create every ring and doorbell; return the doorbell fds by ``role.index``."""
    from ringbuf import Doorbell, Ring

    for name in topology.ring_names():
        try:
            ring = Ring.create(name, topology.ring_bytes)
        except FileExistsError:
            Ring.unlink_name(name)
            log_event("stale_ring_removed", "warning", ring=name)
            ring = Ring.create(name, topology.ring_bytes)
        stack.callback(_unlink_ring, ring)
    fds = {}
    for role in topology.doorbell_roles():
        bell = Doorbell.create()
        stack.callback(bell.close)
        fds[role] = bell.fd
    log_event("rings_created", rings=len(topology.ring_names()), doorbells=len(fds), ring_bytes=topology.ring_bytes)
    return fds


def _unlink_ring(ring: Any) -> None:
    try:
        ring.unlink()
    except FileNotFoundError:
        log_event("ring_already_gone", "warning", ring=ring.name)
    ring.close()


def _listen(host: str, port: int, what: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise LaunchError(f"cannot listen on {host}:{port} for the {what}: {exc.strerror}") from None
    sock.listen(4096)
    sock.set_inheritable(True)
    return sock


def _idle_group(config: Config, stack: contextlib.ExitStack) -> IdleGroup | None:
    """The idle cpu cgroup of the roles set to ``"idle"`` in ``[nice]``, removed when the stack unwinds (after
    the processes in it have stopped); None when no role is, or when it cannot be made (they keep nice 19)."""
    if not config.idle:
        return None
    try:
        idle = IdleGroup.create()
    except OSError as exc:
        log_event("idle_group_unavailable", "warning", roles=",".join(sorted(config.idle)), error=repr(exc), nice=19)
        return None
    log_event("idle_group_created", path=str(idle.path), roles=",".join(sorted(config.idle)))
    stack.callback(_remove_idle_group, idle)
    return idle


def _join_idle(idle: IdleGroup, pid: int, name: str) -> None:
    try:
        idle.add(pid)
    except OSError as exc:  # gone already, or the group was taken away: it keeps its nice value
        log_event("idle_group_join_failed", "warning", process=name, pid=pid, error=repr(exc))


def _remove_idle_group(idle: IdleGroup) -> None:
    deadline = time.monotonic() + IDLE_GROUP_REMOVE_S
    while True:
        try:
            idle.remove()
            log_event("idle_group_removed", path=str(idle.path))
            return
        except FileNotFoundError:
            return
        except OSError as exc:  # EBUSY: a process in it has not exited yet
            if time.monotonic() > deadline:
                log_event("idle_group_left", "warning", path=str(idle.path), pids=idle.pids(), error=repr(exc))
                return
            time.sleep(0.05)


def _start_servers(
    config: Config, stack: contextlib.ExitStack, env: dict[str, str], idle: IdleGroup | None
) -> list[ServerProcess]:
    servers: list[ServerProcess] = []
    database_url, redis_url = config.postgres.url, config.redis.url
    if not database_url:
        pg = start_postgres(config.data_dir, nice=config.nice.get("postgres", 0))
        stack.callback(_stop_server, pg)
        servers.append(pg)
        database_url = pg.url
        if idle is not None and "postgres" in config.idle:
            # the server and the processes it forked at start; the backends it forks later start in its group
            for pid in (pg.proc.pid, *child_pids(pg.proc.pid)):
                _join_idle(idle, pid, "postgres")
    if not redis_url:
        redis = start_redis(config.data_dir, appendfsync=config.redis.appendfsync, unix_socket=config.redis.unix_socket)
        stack.callback(_stop_server, redis)
        servers.append(redis)
        redis_url = redis.url
    env["DATABASE_URL"] = database_url
    env["REDIS_URL"] = redis_url
    return servers


class _BackendPriority:
    """Lowers the priority of the embedded PostgreSQL's backends as they appear (``[nice] postgres``).

    Each backend leads a session of its own (PostgreSQL calls ``setsid``), so it inherits the postmaster's nice
    value but not its scheduling group's (``deploy.procs``): without this sweep, once a second, the writers'
    backends would compete with the order path as equals.
    """

    def __init__(self, servers: list[ServerProcess], nice: int) -> None:
        pg = next((s for s in servers if s.name == "postgres"), None)
        self.postmaster = pg.proc.pid if pg is not None and nice else 0
        self.nice = nice
        self.done: set[int] = set()
        self.next_sweep = 0.0
        if self.postmaster:  # its preexec could not set its group once it had switched to the postgres user
            lower_priority(nice, self.postmaster)

    def sweep(self) -> None:
        now = time.monotonic()
        if not self.postmaster or now < self.next_sweep:
            return
        self.next_sweep = now + BACKEND_SWEEP_S
        for pid in lower_children(self.postmaster, self.nice, self.done):
            log_event("postgres_backend_niced", pid=pid, nice=self.nice)


def _stop_server(server: ServerProcess) -> None:
    status = server.stop(SERVER_STOP_DEADLINE_S)
    log_event("server_stopped", server=server.name, pid=server.proc.pid, status=status)


def _print_banner(config: Config, rest: str, ws: str, token_source: str, servers: list[ServerProcess]) -> None:
    embedded = {s.name: s for s in servers}
    lines = [
        f"exchange is up (launcher pid {os.getpid()}, data folder {config.data_dir})",
        f"  REST API      {rest}",
    ]
    if ws:
        lines.append(f"  WebSocket     {ws}")
    if token_source == "generated":
        lines.append(f"  admin token   {config.admin_token}   (generated; set EXCHANGE_ADMIN_TOKEN to choose one)")
    else:
        lines.append(f"  admin token   {config.admin_token}   (from {token_source})")
    pg = embedded.get("postgres")
    lines.append(f"  PostgreSQL    embedded on 127.0.0.1:{pg.port}" if pg else "  PostgreSQL    DATABASE_URL")
    rd = embedded.get("redis")
    lines.append(
        f"  Redis         embedded on {f'{rd.socket_path} and ' if rd.socket_path else ''}127.0.0.1:{rd.port}, "
        f"appendfsync {config.redis.appendfsync}"
        if rd
        else "  Redis         REDIS_URL"
    )
    lines.append("Ctrl-C (or SIGTERM) stops it.")
    print("\n".join(lines), flush=True)


def up(config: Config, config_path: Path | None) -> int:
    """Run the exchange until a stop signal; return the exit status."""
    setproctitle("exchange: launcher")
    set_process_name("launcher")
    stop = _StopSignals()
    stop.install()
    modules = check_roles()
    check_affinity(config)
    token_source = "config file or EXCHANGE_ADMIN_TOKEN"
    if not config.admin_token:
        config = _with_token(config, secrets.token_urlsafe(24))
        token_source = "generated"
    roles = [spec for spec in ROLE_TABLE if spec.count(config) > 0]
    topology = Topology(
        instance=instance_id(config.data_dir),
        ingress_workers=config.rest.workers,
        shards=config.engine.shards,
        ring_bytes=config.engine.ring_bytes,
    )
    child_env = dict(os.environ)
    child_env["EXCHANGE_DATA_DIR"] = str(config.data_dir)
    child_env["EXCHANGE_ADMIN_TOKEN"] = config.admin_token
    status = 0
    with contextlib.ExitStack() as stack:
        lock = DataDirLock(config.data_dir)
        lock.acquire()
        stack.callback(_release_lock, lock)
        log_event("lock_acquired", path=str(lock.path), instance=topology.instance)
        doorbells = _create_rings(topology, stack)
        idle = _idle_group(config, stack)
        servers = _start_servers(config, stack, child_env, idle)
        applied = asyncio.run(apply_migrations(child_env["DATABASE_URL"]))
        log_event("migrations_applied", applied=",".join(applied) or "none")
        rest_sock = stack.enter_context(_listen(config.rest.host, config.rest.port, "REST API"))
        rest_url = "http://{}:{}".format(*rest_sock.getsockname()[:2])
        ws_fd, ws_url = -1, ""
        if any(spec.name == "wsfeed" for spec in roles):
            ws_sock = stack.enter_context(_listen(config.wsfeed.host, config.wsfeed.port, "WebSocket feed"))
            ws_fd, ws_url = ws_sock.fileno(), "ws://{}:{}".format(*ws_sock.getsockname()[:2])
        ctx = ProcessContext(
            topology=topology,
            config_path=str(config_path.absolute()) if config_path else None,
            doorbell_fds=doorbells,
            rest_listen_fd=rest_sock.fileno(),
            ws_listen_fd=ws_fd,
        )
        child_env.update(ctx.to_env())
        pass_fds = (*doorbells.values(), rest_sock.fileno(), *([ws_fd] if ws_fd >= 0 else []))

        def spawn(role: str, index: int) -> subprocess.Popen[bytes]:
            proc = subprocess.Popen(
                [sys.executable, "-m", "deploy.child", role, str(index)],
                env=child_env,
                pass_fds=pass_fds,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
            if idle is not None and role in config.idle:
                _join_idle(idle, proc.pid, f"{role}.{index}")
            return proc

        supervisor = Supervisor(spawn)
        for spec in roles:
            for index in range(spec.count(config)):
                supervisor.add(spec.name, index, spec.stop_rank)
        stack.callback(_stop_children, supervisor, stop)
        if stop.requested is None:
            supervisor.start_all()
            _print_banner(config, rest_url, ws_url, token_source, servers)
            fields = {"rest": rest_url, **({"ws": ws_url} if ws_url else {})}
            log_event("ready", **fields, data_dir=str(config.data_dir), roles=",".join(modules.values()))
        backends = _BackendPriority(servers, config.nice.get("postgres", 0))
        while stop.requested is None:
            supervisor.poll()
            backends.sweep()
            dead = [s for s in servers if not s.alive()]
            if dead:
                for server in dead:
                    log_event("server_died", "error", server=server.name, status=server.proc.returncode)
                status = 1
                break
            time.sleep(0.05)
        log_event("stopping", reason=stop.requested or "server_died")
    log_event("stopped", status=status)
    return status


def _release_lock(lock: DataDirLock) -> None:
    lock.release()
    log_event("lock_released", path=str(lock.path))


def _stop_children(supervisor: Supervisor, stop: _StopSignals) -> None:
    supervisor.stop_all(CHILD_STOP_DEADLINE_S, hurry=lambda: stop.forced)


def _with_token(config: Config, token: str) -> Config:
    import dataclasses

    return dataclasses.replace(config, admin_token=token)
