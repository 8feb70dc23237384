"""Orders per second and latency through the whole exchange, against the bare HTTP ceiling.

Starts its own exchange (``exchange up`` as a subprocess: temp data folder,
embedded PostgreSQL and Redis, 2 ingress workers and 2 shards unless told
otherwise), creates users, and drives it with wrk (Debian package ``wrk``;
``apt-get install -y wrk``) and a Lua script that cycles through pre-signed
requests (``bench_orders_wrk.lua``): timestamps with ``recvWindow=60000`` stay
valid for the run, and no ``newClientOrderId`` is sent, so every order is new.
Without wrk it falls back to an asyncio raw-socket client
(``bench_orders_client.py``), which on 2 cores measures itself more than the
server: install wrk for real figures.

Phases, each with the same load tool, threads and connections:
1. bare: ``bench_orders_bare.py`` (falcon + orjson on uvicorn, 2 workers on one
   socket) parsing a ~150-byte JSON body: the HTTP ceiling of this machine.
2. single: signed ``POST /api/v3/order`` (parameters in the query string) at
   full speed: orders/s and latency p50/p99/p99.9.
3. batch: signed ``POST /api/v3/batchOrders`` of 100 orders: orders/s (per-order
   errors inside the answers are counted and left out).
4. paced: single orders at half the saturated rate, or at ``--paced-rate R``
   orders/s (and, in phase 1, the bare endpoint at half of its own: the floor
   this machine and load tool give a paced tail, measured in the same run).
   wrk2 is not packaged, so
   the pace comes from wrk's ``delay()`` hook: each of C connections waits a
   random think time (exponential, mean ``BENCH_DELAY_MS``) after every
   answer, C chosen so that C / (delay + latency) is the target rate. Random
   think times make the C connections' sends a Poisson stream; a fixed delay
   kept them in step from their common start, so the phase measured bursts
   of C requests queueing behind each other. This is a closed loop: a server stall delays
   the next requests instead of queueing them, so the tail it shows is a lower
   bound (coordinated omission); the achieved rate is reported beside it.

Order flow, on every configured symbol round robin, around a mid of 100.00:
70% GTC limits 1..20 ticks away from the mid on the passive side (they rest),
30% IOC limits 20 ticks through the mid (they cross and take what rests, the
rest expires). Takers take more than makers add, so books stay bounded.

Persistence catch-up: persist and PostgreSQL run at a lower CPU priority
(``[nice]``), so during a saturated phase they fall behind and catch up from
Redis afterwards. Before the batch and the paced phases the benchmark waits
(bounded: ``CATCH_UP_S``, quick ``CATCH_UP_QUICK_S``) until ``GET /health``
shows no persist lag, so a phase neither starts with the previous one's backlog
nor hides its own: the batch phase's catch-up time and CPU are measured, and
``batch_sustained_orders_per_s`` is its orders over window + catch-up (what the
exchange sustains with every order in PostgreSQL), ``batch_with_catch_up_*``
the CPU per batched order of persist and PostgreSQL with their catch-up.

CPU time per order is reported for every process: ingress workers, shards,
persist, wsfeed, PostgreSQL and Redis; on 2 cores they compete for the CPU.

Usage: ``python loadtests/bench_orders.py [--quick] [--duration S] [--connections N] [--paced-rate R]``.
The last stdout line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
LUA = HERE / "bench_orders_wrk.lua"
BATCH = 100
MID_TICKS = 10_000  # 100.00 with tick 0.01
READY_TIMEOUT_S = 120.0
ROLES = ("ingress", "shard", "persist", "wsfeed", "postgres", "redis")  # processes whose CPU per order is reported
BARE_BODY = {
    "symbol": "AAPL",
    "side": "BUY",
    "type": "LIMIT",
    "timeInForce": "GTC",
    "quantity": "12",
    "price": "100.25",
    "timestamp": 1_700_000_000_000,
    "recvWindow": 60000,
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


CATCH_UP_S = 120.0  # longest wait for persist to catch up after a phase
CATCH_UP_QUICK_S = 8.0  # the same with --quick (the run stays under 30 s; a lag left is reported)
PACE_DELAY_MS = 10  # mean think time of a paced connection between an answer and its next request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(method: str, url: str, headers: dict[str, str] | None = None) -> object:
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


# --- the exchange under test ------------------------------------------------------------


class Exchange:
    """``exchange up`` in a subprocess with a temp data folder and config."""

    def __init__(
        self, workdir: Path, workers: int, shards: int, wait_strategy: str = "block", settings: Sequence[str] = ()
    ) -> None:
        self.token = secrets.token_urlsafe(16)
        self.workdir = workdir
        self.log_path = workdir / "exchange.log"
        sections: dict[str, dict[str, str]] = {
            "rest": {"port": str(free_port()), "workers": str(workers), "answer_timeout_ms": "5000",
                     "recv_window_max_ms": "60000"},
            "engine": {"shards": str(shards), "wait_strategy": f'"{wait_strategy}"'},
            "wsfeed": {"port": str(free_port())},  # not 4000: runs beside another exchange must not collide
        }  # fmt: skip
        for setting in settings:  # "section.key=value", value in TOML syntax
            name, _, value = setting.partition("=")
            section, _, key = name.partition(".")
            sections.setdefault(section, {})[key] = value
        config = workdir / "exchange.toml"
        config.write_text(
            f'data_dir = "{workdir / "data"}"\nadmin_token = "{self.token}"\n\n'
            + "".join(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) + "\n"
                      for name, keys in sections.items())
        )  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        env["PYTHONPATH"] = str(REPO)
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "deploy.cli", "up", "--config", str(config)],
                cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            )  # fmt: skip
        self.rest_url = self._wait_ready()

    def _wait_ready(self) -> str:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exchange up exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            for line in self.log_path.read_text(errors="replace").splitlines():
                if " event=ready " in line:
                    url = dict(p.split("=", 1) for p in line.split() if "=" in p)["rest"]
                    self._wait_http(url, deadline)
                    return url
            time.sleep(0.1)
        raise RuntimeError(f"exchange not ready in {READY_TIMEOUT_S} s:\n{self.log_path.read_text()}")

    @staticmethod
    def _wait_http(url: str, deadline: float) -> None:
        while True:
            try:
                http_json("GET", url + "/api/v3/ping")
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def new_user(self) -> tuple[str, str]:
        body = http_json("POST", self.rest_url + "/admin/v1/users", {"X-Admin-Token": self.token})
        return body["apiKey"], body["secretKey"]  # type: ignore[index]

    def persist_lag(self) -> int | None:
        """Events in Redis not yet in PostgreSQL, summed over shards (``GET /health``; None: unknown)."""
        try:
            body = http_json("GET", self.rest_url + "/health")
        except urllib.error.HTTPError as exc:  # 503 (degraded) still carries the body
            body = json.loads(exc.read())
        return body.get("persist", {}).get("lag")  # type: ignore[union-attr]

    def wait_persisted(self, limit_s: float) -> tuple[float, int | None]:
        """Wait until persist has caught up (lag 0) or ``limit_s`` passed; (seconds waited, lag left)."""
        started = time.monotonic()
        lag = self.persist_lag()
        while lag != 0 and time.monotonic() - started < limit_s:
            time.sleep(0.05)
            lag = self.persist_lag()
        return time.monotonic() - started, lag

    def symbols(self) -> list[str]:
        info = http_json("GET", self.rest_url + "/api/v3/exchangeInfo")
        return [s["symbol"] for s in info["symbols"]]  # type: ignore[index]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class BareServer:
    def __init__(self, workers: int) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "bench_orders_bare.py"), "--port", str(self.port), "--workers", str(workers)],
            cwd=REPO, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"bare server did not start: {line!r}")
        self.url = f"http://127.0.0.1:{self.port}"
        time.sleep(0.5)  # the socket listens already; let the workers import and start

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- CPU accounting ----------------------------------------------------------------------


def children_by_title(parent: int) -> dict[str, int]:
    """Process title -> pid of ``parent``'s children (the exchange's ``exchange: ingress 0``, ...)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            title = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            found[title] = int(entry)
    return found


def role_pids(launcher: int, workers: int, shards: int, timeout_s: float = 30.0) -> dict[str, list[int]]:
    """Role -> pids of the launcher's children (``ROLES``; postgres and redis empty: ``server_pids``), once each
    child has named itself (a child at a low priority may do so well after the exchange said it was ready)."""
    expected = {"ingress": workers, "shard": shards, "persist": 1, "wsfeed": 1}
    deadline = time.monotonic() + timeout_s
    while True:
        titles = children_by_title(launcher)
        found = {role: [pid for title, pid in titles.items() if title.startswith(f"exchange: {role} ")]
                 for role in ROLES}  # fmt: skip
        if all(len(found[role]) >= n for role, n in expected.items()) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def server_pids(root: int, workdir: Path) -> dict[str, list[int]]:
    """The PostgreSQL and Redis processes of the exchange: under ``root``, or under one naming ``workdir``.

    (The embedded PostgreSQL daemonizes, so its postmaster is found by its data folder, and its backends
    by their parent.)
    """
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        commands[int(entry)] = raw.replace(b"\0", b" ").decode(errors="replace")
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    roots = {root} | {pid for pid, command in commands.items() if str(workdir) in command}
    found: dict[str, list[int]] = {"postgres": [], "redis": []}
    for pid, command in commands.items():
        ancestor = pid
        while ancestor not in roots and ancestor > 1:
            ancestor = parents.get(ancestor, 0)
        if ancestor not in roots:
            continue
        if "redis-server" in command:
            found["redis"].append(pid)
        elif command.startswith("postgres") or "/postgres " in command:
            found["postgres"].append(pid)
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of ``pids`` so far (0 for a process that is gone)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


# --- requests ------------------------------------------------------------------------------


def _price(ticks: int) -> str:
    return str(Decimal(ticks) / 100)


def order_params(rng: random.Random, symbol: str) -> dict[str, str]:
    side = rng.choice(("BUY", "SELL"))
    sign = 1 if side == "BUY" else -1
    if rng.random() < 0.7:  # passive: rests
        price = MID_TICKS - sign * rng.randint(1, 20)
        return {"symbol": symbol, "side": side, "type": "LIMIT", "timeInForce": "GTC",
                "quantity": str(rng.randint(1, 3)), "price": _price(price)}  # fmt: skip
    price = MID_TICKS + sign * 20  # aggressive: crosses, takes, expires the rest
    return {"symbol": symbol, "side": side, "type": "LIMIT", "timeInForce": "IOC",
            "quantity": str(rng.randint(5, 8)), "price": _price(price)}  # fmt: skip


def _sign(secret: str, text: bytes) -> str:
    return hmac.new(secret.encode(), text, hashlib.sha256).hexdigest()


def write_single_requests(path: Path, users: list[tuple[str, str]], symbols: list[str], count: int, seed: int) -> None:
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    with open(path, "w", encoding="ascii") as f:
        for i in range(count):
            key, secret = users[i % len(users)]
            params = order_params(rng, symbols[i % len(symbols)])
            params["timestamp"] = str(now)
            params["recvWindow"] = "60000"
            query = urlencode(params)
            f.write(f"POST\t/api/v3/order?{query}&signature={_sign(secret, query.encode())}\t{key}\t\t\n")


def write_batch_requests(path: Path, users: list[tuple[str, str]], symbols: list[str], count: int, seed: int) -> None:
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    with open(path, "w", encoding="ascii") as f:
        for i in range(count):
            key, secret = users[i % len(users)]
            orders = [order_params(rng, symbols[(i + k) % len(symbols)]) for k in range(BATCH)]
            body = json.dumps({"orders": orders}, separators=(",", ":"))
            query = urlencode({"timestamp": now, "recvWindow": 60000})
            sig = _sign(secret, query.encode() + body.encode())
            f.write(f"POST\t/api/v3/batchOrders?{query}&signature={sig}\t{key}\tapplication/json\t{body}\n")


def write_bare_requests(path: Path) -> None:
    body = json.dumps(BARE_BODY, separators=(",", ":"))
    with open(path, "w", encoding="ascii") as f:
        f.write(f"POST\t/bare\t-\tapplication/json\t{body}\n")


# --- load tool -----------------------------------------------------------------------------


def run_load(url: str, requests: Path, *, threads: int, connections: int, duration: float, delay_ms: int = 0,
             count_codes: bool = False, watch: dict[str, list[int]] | None = None) -> dict:  # fmt: skip
    """One load run; the parsed BENCH_JSON figures plus 'tool' and 'cpu_s' (CPU seconds per ``watch`` group)."""
    env = dict(os.environ)
    if delay_ms:
        env["BENCH_DELAY_MS"] = str(delay_ms)
    if count_codes:
        env["BENCH_COUNT_CODES"] = "1"
    wrk = shutil.which("wrk")
    if wrk:
        cmd = [wrk, f"-t{threads}", f"-c{max(connections, threads)}", f"-d{duration:.0f}s", "--timeout", "10s",
               "-s", str(LUA), url, "--", str(requests)]  # fmt: skip
        tool = "wrk"
    else:
        cmd = [sys.executable, str(HERE / "bench_orders_client.py"), url, str(requests), "--connections",
               str(connections), "--duration", str(duration), "--delay-ms", str(delay_ms)]  # fmt: skip
        if count_codes:
            cmd.append("--count-codes")
        tool = "asyncio-client"
    watch = watch or {}
    before = {name: cpu_seconds(pids) for name, pids in watch.items()}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 60)
    cpu_s = {name: cpu_seconds(pids) - before[name] for name, pids in watch.items()}
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"{tool} printed no figures (status {out.returncode}):\n{out.stdout}\n{out.stderr}")
    figures = json.loads(line.removeprefix("BENCH_JSON "))
    figures["tool"] = tool
    figures["cpu_s"] = cpu_s
    seconds = figures["duration_us"] / 1e6
    figures["ok_per_s"] = (figures["requests"] - figures["status_errors"]) / seconds
    return figures


def run_paced(url: str, requests: Path, load: dict, target: float, quick: bool) -> tuple[dict, int]:
    """A paced run at ``target`` requests/s (``PACE_DELAY_MS`` think time per connection); (figures, connections).

    C connections each wait a random think time after every answer. A 1 s run at a guess measures what one
    connection does; C is then scaled to the target (not with ``quick``: the guess, delay + 1 ms per request).
    """
    threads = load["threads"]
    guess = max(threads, round(target * (PACE_DELAY_MS + 1) / 1000))
    connections = guess
    if not quick:
        probe = run_load(url, requests, **{**load, "connections": guess, "duration": 1.0}, delay_ms=PACE_DELAY_MS)
        connections = max(threads, round(guess * target / max(probe["ok_per_s"], 1.0)))
    return run_load(url, requests, **{**load, "connections": connections}, delay_ms=PACE_DELAY_MS), connections


def _ms(us: float) -> float:
    return round(us / 1000, 3)


def _describe(name: str, f: dict, unit: str = "req/s", per: int = 1) -> None:
    log(
        f"{name:>8}: {f['ok_per_s'] * per:>10.0f} {unit}  p50 {_ms(f['p50_us'])} ms  p99 {_ms(f['p99_us'])} ms  "
        f"p99.9 {_ms(f['p999_us'])} ms  ({f['requests']} requests, {f['status_errors']} non-2xx, "
        f"{f['read_errors'] + f['connect_errors'] + f['timeouts']} socket errors, {f['tool']})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short phases, whole run under 30 s")
    parser.add_argument("--duration", type=int, help="seconds per phase (default 10, --quick 2)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--wait-strategy", default="block", choices=("block", "yield", "spin"))
    parser.add_argument(
        "--paced-rate", type=float, default=0.0, help="orders/s of the paced phase (default: half the saturated rate)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (logs, data)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="an exchange config setting, value in TOML syntax (e.g. persist.commit_interval_ms=0); repeatable",
    )  # fmt: skip
    args = parser.parse_args(argv)
    duration = float(args.duration or (2 if args.quick else 10))
    if not shutil.which("wrk"):
        log("wrk not found: falling back to the asyncio client (install it: apt-get install -y wrk)")
    workdir = Path(tempfile.mkdtemp(prefix="bench-orders-"))
    load = {"threads": args.threads, "connections": args.connections, "duration": duration}
    started = time.monotonic()
    try:
        bare_file = workdir / "bare.tsv"
        write_bare_requests(bare_file)
        bare_server = BareServer(args.workers)
        try:
            watch = {"bare": list(children_by_title(bare_server.proc.pid).values())}
            if not args.quick:
                run_load(bare_server.url, bare_file, **{**load, "duration": 1.0})  # warm-up
            bare = run_load(bare_server.url, bare_file, **load, watch=watch)
            _describe("bare", bare)
            bare_paced, _ = run_paced(bare_server.url, bare_file, load, bare["ok_per_s"] / 2, args.quick)
            _describe("bare paced", bare_paced)
        finally:
            bare_server.stop()

        log(f"starting the exchange ... ({time.monotonic() - started:.1f} s)")
        ex = Exchange(workdir, args.workers, args.shards, args.wait_strategy, args.set)
        try:
            log(f"exchange ready at {ex.rest_url} ({time.monotonic() - started:.1f} s)")
            watch = role_pids(ex.proc.pid, args.workers, args.shards)
            users = [ex.new_user() for _ in range(4)]
            symbols = ex.symbols()
            single_file = workdir / "single.tsv"
            batch_file = workdir / "batch.tsv"
            write_single_requests(single_file, users, symbols, 20_000, seed=1)
            write_batch_requests(batch_file, users, symbols, 300, seed=2)
            run_load(ex.rest_url, single_file, **{**load, "duration": 1.0})  # warm-up: caches, connections
            watch.update(server_pids(ex.proc.pid, workdir))  # after the warm-up: every backend is connected
            single = run_load(ex.rest_url, single_file, **load, watch=watch)
            _describe("single", single, "orders/s")
            catch_up_limit = CATCH_UP_QUICK_S if args.quick else CATCH_UP_S
            ex.wait_persisted(catch_up_limit)  # the batch window starts without the single phase's backlog
            batch = run_load(ex.rest_url, batch_file, **{**load, "connections": 16}, count_codes=True, watch=watch)
            batch_seconds = batch["duration_us"] / 1e6
            batch["orders"] = (batch["requests"] - batch["status_errors"]) * BATCH - batch["codes_in_bodies"]
            batch["orders_per_s"] = batch["orders"] / batch_seconds
            _describe("batch", batch, "orders/s", BATCH)
            writers = {role: watch[role] for role in ("persist", "postgres")}
            before = {role: cpu_seconds(pids) for role, pids in writers.items()}
            catch_up_s, lag_left = ex.wait_persisted(catch_up_limit)
            catch_up_cpu = {role: cpu_seconds(pids) - before[role] for role, pids in writers.items()}
            sustained = batch["orders"] / (batch_seconds + catch_up_s) if lag_left == 0 else None
            log(
                f"persist caught up {catch_up_s:.1f} s after the batch window: {round(sustained or 0)} orders/s "
                "sustained with every order in PostgreSQL"
                if lag_left == 0
                else f"persist still {lag_left} events behind {catch_up_s:.1f} s after the batch window"
            )
            target = args.paced_rate or single["ok_per_s"] / 2
            ex.wait_persisted(catch_up_limit)  # the paced phase measures a steady state, not the batch's backlog
            paced, connections = run_paced(ex.rest_url, single_file, load, target, args.quick)
            _describe("paced", paced, "orders/s")
        finally:
            status = ex.stop()
            if status != 0:
                log(f"exchange exited with status {status}; log: {ex.log_path}")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"kept {workdir}")
    log(f"done in {time.monotonic() - started:.1f} s")

    def cpu_us(run: dict, role: str, count: float) -> float:
        return round(run["cpu_s"][role] * 1e6 / max(count, 1), 1)

    bare_cpu = cpu_us(bare, "bare", bare["requests"])
    single_cpu = {role: cpu_us(single, role, single["requests"]) for role in ROLES}
    batch_cpu = {role: cpu_us(batch, role, batch["orders"]) for role in ROLES}
    with_catch_up = {
        role: round((batch["cpu_s"][role] + catch_up_cpu[role]) * 1e6 / max(batch["orders"], 1), 1) for role in writers
    }
    log(
        f"CPU per request: bare {bare_cpu} us; per single order: "
        + ", ".join(f"{role} {single_cpu[role]} us" for role in ROLES)
        + "; per batched order: "
        + ", ".join(f"{role} {batch_cpu[role]} us" for role in ROLES)
        + " (with their catch-up: "
        + ", ".join(f"{role} {us} us" for role, us in with_catch_up.items())
        + ")"
    )
    figures = {
        "tool": single["tool"],
        "workers": args.workers,
        "shards": args.shards,
        "wait_strategy": args.wait_strategy,
        "settings": args.set,
        "connections": args.connections,
        "duration_s": duration,
        "single_orders_per_s": round(single["ok_per_s"]),
        "single_non_2xx": single["status_errors"],
        "single_p50_ms": _ms(single["p50_us"]),
        "single_p99_ms": _ms(single["p99_us"]),
        "single_p999_ms": _ms(single["p999_us"]),
        "batch_orders_per_s": round(batch["orders_per_s"]),
        "batch_requests_per_s": round(batch["ok_per_s"]),
        "batch_p50_ms": _ms(batch["p50_us"]),
        "batch_p99_ms": _ms(batch["p99_us"]),
        "batch_p999_ms": _ms(batch["p999_us"]),
        "batch_order_errors": batch["codes_in_bodies"],
        "batch_catch_up_s": round(catch_up_s, 2),
        "batch_persist_lag_left": lag_left,
        "batch_sustained_orders_per_s": round(sustained) if sustained is not None else None,
        **{f"batch_with_catch_up_{role}_cpu_us_per_order": us for role, us in with_catch_up.items()},
        "bare_req_per_s": round(bare["ok_per_s"]),
        "ratio_single_to_bare": round(single["ok_per_s"] / bare["ok_per_s"], 3),
        "paced_target_per_s": round(target),
        "paced_orders_per_s": round(paced["ok_per_s"]),
        "paced_connections": connections,
        "paced_delay_ms": PACE_DELAY_MS,
        "paced_p50_ms": _ms(paced["p50_us"]),
        "paced_p99_ms": _ms(paced["p99_us"]),
        "paced_p999_ms": _ms(paced["p999_us"]),
        "bare_paced_req_per_s": round(bare_paced["ok_per_s"]),
        "bare_paced_p50_ms": _ms(bare_paced["p50_us"]),
        "bare_paced_p99_ms": _ms(bare_paced["p99_us"]),
        "bare_paced_p999_ms": _ms(bare_paced["p999_us"]),
        "bare_cpu_us_per_req": bare_cpu,
        **{f"single_{role}_cpu_us_per_order": single_cpu[role] for role in ROLES},
        **{f"batch_{role}_cpu_us_per_order": batch_cpu[role] for role in ROLES},
        "cpu_ratio_single_to_bare": round(bare_cpu / max(single_cpu["ingress"] + single_cpu["shard"], 0.1), 3),
    }
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
