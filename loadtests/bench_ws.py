"""WebSocket fan-out: wsfeed against a bare ``websockets`` broadcast server, same clients, same run.

Settings (each measured on both servers, one after the other):
  A. 100 subscribers x 500 trades/s   (50 000 deliveries/s offered)
  B. 1 000 subscribers x 50 trades/s  (50 000 deliveries/s offered)

wsfeed is driven by SYNTHETIC stream entries: this script writes trade events
to the shard stream in Redis (``shards.stream.encode_entry``, one entry per
2 ms pacing tick holding the trades due) at the paced rate, exactly as a shard
would; no engine runs. Subscribers listen on ``bench@trade``. The bare server
(``_bare`` mode of this file) is websockets' ``broadcast`` of a ~110-byte
trade JSON made in the same process at the same pace: the technology's
ceiling, with no Redis hop. ``--bare-source redis`` makes the bare server
relay the same synthetic Redis stream instead (XREAD, decode, broadcast), so
that the ratio isolates wsfeed's own layer from the Redis hop and the
producer's CPU (on a 2-core box those tip saturated clients into backlog).

Delay: from the moment the trade was due on the pacing schedule to its
receipt by the client, p50/p99 (a producer or bare server that falls behind
its schedule pays for it: no coordinated omission). The engine's trade time
``T`` has millisecond resolution, so both servers carry that moment in
microseconds in the trade id ``t`` (synthetic trades: ids are free), and
clients subtract it from their receipt clock (one host, one clock).
Subscribers are spread over ``--client-procs`` processes (asyncio, uvloop
when present); deliveries/s counts messages received by all clients during
the measuring window, and each server's CPU time per delivery in that window
is printed too (the steadiest figure on a busy 2-core box, where the clients
are the limit). Both servers run with uvloop when present and
compression off.

``--feed-only`` measures instead wsfeed's CPU per event with no client and
no Redis, in this process: the bench_orders order flow (70% resting GTC
limits, 30% crossing IOC, 4 users, every default symbol, 2 shards) is run
through real engines (``shards.engine.Engine``), their ``take_encoded`` bytes
packed into stream entries of ``--batch`` orders each (as ``shards.stream``
writes them), ``--per-read`` entries of each shard encoded as one raw RESP
XREAD reply, and each reply parsed by hiredis and applied by the tailer
(``Tailer.apply_reply``: decode, books, candles, tickers, order tracker) with
no subscriber. It prints CPU µs per event and per order (best of
``--rounds``); ``--profile`` adds a cProfile listing. The Redis round trip
itself (one XREAD per read, about 60 µs of CPU here) is not in it.

Usage: ``python loadtests/bench_ws.py [--quick] [--duration S] [--client-procs N] [--bare-source self|redis]``
or ``python loadtests/bench_ws.py --feed-only [--quick] [--orders N] [--batch B] [--per-read R] [--profile]``.
``--quick`` (< 30 s): 1.5 s windows after 0.7 s + 1 s per 700 subscribers to connect.
The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SETTINGS = (("100x500", 100, 500), ("1000x50", 1000, 50))
TICK_S = 0.002
SYMBOL = "BENCH"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start (status {proc.poll()})") from None
            time.sleep(0.05)


def use_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def trade_json(trade_id: int, now_ms: int) -> bytes:
    return b'{"e":"trade","E":%d,"s":"BENCH","t":%d,"p":"101.25","q":"3","T":%d,"m":true}' % (now_ms, trade_id, now_ms)


# --- bare server (subprocess) -------------------------------------------------------


def bare_main(port: int, rate: int, redis_url: str = "") -> None:
    """Broadcast paced trades made here, or (``redis_url``) every trade appearing on shard 0's stream."""
    from websockets.asyncio.server import broadcast, serve

    use_uvloop()

    async def main() -> None:
        clients: set = set()

        async def handler(ws) -> None:
            clients.add(ws)
            try:
                await ws.wait_closed()
            finally:
                clients.discard(ws)

        async with serve(handler, "127.0.0.1", port, compression=None):
            if redis_url:
                await relay(redis_url, clients)
            start = time.monotonic()
            start_ns = time.time_ns()
            sent = 0
            while True:
                await asyncio.sleep(TICK_S)
                due = int((time.monotonic() - start) * rate) - sent
                for i in range(due):
                    at = start_ns + (sent + i) * 1_000_000_000 // rate  # when the trade was due: lag counts
                    broadcast(clients, trade_json(at // 1000, at // 1_000_000), text=True)
                sent += due

    async def relay(url: str, clients: set) -> None:
        import redis.asyncio as aioredis

        from shards.stream import decode_entry, stream_key

        client = aioredis.Redis.from_url(url)
        key = stream_key(0)
        last = (await client.xrevrange(key, count=1) or [(b"0-0", {})])[0][0]
        while True:
            found = await client.xread({key: last}, count=1000, block=1000)
            for _, entries in found or ():
                for entry_id, fields in entries:
                    last = entry_id
                    for e in decode_entry(fields):
                        broadcast(clients, trade_json(e.trade_id, e.ts), text=True)

    asyncio.run(main())


# --- subscriber process -------------------------------------------------------------


def client_main(url: str, count: int, settle_at: float, window_s: float, out: str) -> None:
    import orjson
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    use_uvloop()
    received = 0
    closed = 0
    delays: list[int] = []
    end_at = settle_at + window_s

    async def one() -> None:
        nonlocal received, closed
        async with connect(url, compression=None, open_timeout=60, max_queue=None) as ws:
            try:
                while True:
                    message = await ws.recv(decode=False)
                    now = time.time()
                    if now >= end_at:
                        return
                    if now >= settle_at:
                        received += 1
                        if len(delays) < 400_000:
                            delays.append(time.time_ns() // 1000 - orjson.loads(message)["t"])
            except ConnectionClosed:
                closed += 1

    async def main() -> None:
        tasks = [asyncio.create_task(one()) for _ in range(count)]
        await asyncio.wait(tasks, timeout=end_at - time.time() + 5)
        for t in tasks:
            t.cancel()

    asyncio.run(main())
    Path(out).write_text(json.dumps({"received": received, "delays": delays, "closed": closed}))


# --- orchestration ------------------------------------------------------------------


def percentile(values: list[int], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] / 1000.0  # ms


def run_clients(url: str, subs: int, procs: int, settle_s: float, window_s: float, tmp: Path) -> dict:
    settle_at = time.time() + settle_s
    outs, children = [], []
    for i in range(procs):
        n = subs // procs + (1 if i < subs % procs else 0)
        out = tmp / f"client{i}-{time.monotonic_ns()}.json"
        outs.append(out)
        children.append(
            subprocess.Popen(
                [sys.executable, __file__, "_client", url, str(n), repr(settle_at), repr(window_s), str(out)],
                stdin=subprocess.DEVNULL,
            )
        )
    return {"children": children, "outs": outs, "settle_at": settle_at, "window_s": window_s}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sample_cpu(pid: int, run: dict) -> float:
    """CPU seconds ``pid`` used during the measuring window (sleeps through it)."""
    time.sleep(max(0.0, run["settle_at"] - time.time()))
    before = cpu_seconds(pid)
    time.sleep(run["window_s"])
    return cpu_seconds(pid) - before


def collect(run: dict, server_cpu_s: float) -> dict:
    received, delays, closed = 0, [], 0
    for child, out in zip(run["children"], run["outs"], strict=True):
        child.wait(timeout=run["window_s"] + 60)
        data = json.loads(out.read_text())
        received += data["received"]
        delays += data["delays"]
        closed += data["closed"]
    return {
        "deliveries_per_s": round(received / run["window_s"]),
        "server_cpu_us_per_delivery": round(server_cpu_s / max(1, received) * 1e6, 2),
        "closed_early": closed,
        "p50_ms": _round(percentile(delays, 0.50)),
        "p99_ms": _round(percentile(delays, 0.99)),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def drive_redis(redis_url: str, rate: int, until: float) -> int:
    """Write paced synthetic trades to shard 0's stream until ``until`` (wall clock); returns how many."""
    import redis

    from shards.protocol import TradeEvent
    from shards.stream import encode_entry, stream_key

    client = redis.Redis.from_url(redis_url)
    key = stream_key(0)
    seq = int(client.get("bench:seq") or 0)
    start = time.monotonic()
    start_ns = time.time_ns()
    sent = 0
    while time.time() < until:
        time.sleep(TICK_S)
        due = int((time.monotonic() - start) * rate) - sent
        if due <= 0:
            continue
        events = []
        for i in range(due):
            seq += 1
            at = start_ns + (sent + i) * 1_000_000_000 // rate  # when the trade was due
            events.append(TradeEvent(seq, at // 1_000_000, 1, at // 1000, 10125, 3, 1, 2, 1, 2, 2))
        client.xadd(key, encode_entry(events), maxlen=100_000, approximate=True)
        sent += due
    client.set("bench:seq", seq)
    client.close()
    return sent


# --- --feed-only: wsfeed's own CPU per event, no clients, no Redis -----------------------------------------

MID_TICKS = 10_000


def feed_entries(orders: int, batch: int, seed: int = 1) -> tuple:
    """(config, [(shard, entry id, fields)]) for ``orders`` orders of the bench_orders flow through real engines."""
    import random

    from deploy.config import load_config
    from shards.engine import Engine
    from shards.protocol import NewOrder
    from shards.stream import entry_fields

    config = load_config(None)
    shards = config.engine.shards
    engines = [Engine([s.spec() for s in config.symbols_of_shard(i)]) for i in range(shards)]
    symbols = [(s.symbol_id, config.shard_of(s.symbol)) for s in config.symbols]
    rng = random.Random(seed)
    pending = [0] * shards
    first = [1] * shards
    count = [0] * shards
    start_ms = int(time.time() * 1000)
    out = []
    for i in range(orders):
        symbol_id, shard = symbols[i % len(symbols)]
        side = rng.choice((1, 2))
        sign = 1 if side == 1 else -1
        ts = start_ms + i // 5  # about 5 000 orders/s
        if rng.random() < 0.7:  # GTC, rests
            price = MID_TICKS - sign * rng.randint(1, 20)
            cmd = NewOrder(symbol_id, 1 + i % 4, f"c{i}", side, 1, 1, price, rng.randint(1, 3), 0, 2, ts)
        else:  # IOC through the mid
            cmd = NewOrder(
                symbol_id, 1 + i % 4, f"c{i}", side, 1, 2, MID_TICKS + sign * 20, rng.randint(5, 8), 0, 2, ts
            )
        engine = engines[shard]
        engine.apply(cmd)
        pending[shard] += 1
        if pending[shard] >= batch:
            count[shard] += 1
            fields = entry_fields(first[shard], engine.last_seq, engine.take_encoded(), bytes(32))
            out.append((shard, b"%d-0" % count[shard], fields))
            first[shard] = engine.last_seq + 1
            pending[shard] = 0
    return config, out


def _resp(value: bytes | list) -> bytes:
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    return b"*%d\r\n" % len(value) + b"".join(_resp(item) for item in value)


def xread_replies(entries: list, per_read: int, shards: int) -> list[bytes]:
    """Raw RESP XREAD replies, each with up to ``per_read`` entries of every shard."""
    from shards.stream import stream_key

    by_shard = [[(eid, f) for s, eid, f in entries if s == shard] for shard in range(shards)]
    replies = []
    at = 0
    while True:
        reply = []
        for shard in range(shards):
            chunk = by_shard[shard][at : at + per_read]
            if chunk:
                raw = [[eid, [x for pair in f.items() for x in pair]] for eid, f in chunk]
                reply.append([stream_key(shard).encode(), raw])
        if not reply:
            return replies
        replies.append(_resp(reply))
        at += per_read


def _feed_tailer(config: Any) -> Any:
    from ingress.symbols import Catalog
    from wsfeed.hub import Hub
    from wsfeed.market import Market
    from wsfeed.names import StreamNames
    from wsfeed.tail import Tailer

    market = Market(Catalog.from_config(config), StreamNames(s.symbol for s in config.symbols), Hub())
    return Tailer(None, config.engine.shards, market, None)


def _feed(tailer: Any, replies: list[bytes]) -> None:
    import hiredis

    for raw in replies:
        reader = hiredis.Reader()
        reader.feed(raw)
        tailer.apply_reply(reader.gets())


def feed_only(args: argparse.Namespace) -> int:
    orders = args.orders or (10_000 if args.quick else 40_000)
    rounds = args.rounds or (3 if args.quick else 5)
    config, entries = feed_entries(orders, args.batch)
    replies = xread_replies(entries, args.per_read, config.engine.shards)
    best = float("inf")
    events = 0
    for _ in range(rounds):
        tailer = _feed_tailer(config)
        started = time.process_time()
        _feed(tailer, replies)
        best = min(best, time.process_time() - started)
        events = tailer.market.events_applied
        if tailer.bad_entries:
            raise SystemExit(f"{tailer.bad_entries} entries could not be applied")
    per_event = best / events * 1e6
    per_order = best / orders * 1e6
    print(
        f"feed-only: {orders} orders, {len(entries)} entries ({args.batch} orders each), {len(replies)} reads, "
        f"{events} events: {per_event:.2f} us CPU/event, {per_order:.2f} us CPU/order (best of {rounds})",
        flush=True,
    )
    if args.profile:
        import cProfile
        import pstats

        tailer = _feed_tailer(config)
        profile = cProfile.Profile()
        profile.enable()
        _feed(tailer, replies)
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(20)
    summary = {
        "bench": "ws", "mode": "feed_only", "quick": args.quick, "orders": orders, "entries": len(entries),
        "orders_per_entry": args.batch, "reads": len(replies), "events": events, "rounds": rounds,
        "cpu_us_per_event": round(per_event, 3), "cpu_us_per_order": round(per_order, 3),
    }  # fmt: skip
    print(json.dumps(summary))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--duration", type=float, default=None, help="measuring window per phase, s")
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument(
        "--bare-source",
        choices=("self", "redis"),
        default="self",
        help="bare server's trades: made in the server (self), or relayed from the same Redis stream (redis)",
    )
    parser.add_argument("--feed-only", action="store_true", help="wsfeed's CPU per event, no clients, no Redis")
    parser.add_argument("--orders", type=int, default=0, help="--feed-only: orders (default 40 000, quick 10 000)")
    parser.add_argument("--batch", type=int, default=8, help="--feed-only: orders per stream entry")
    parser.add_argument("--per-read", type=int, default=4, help="--feed-only: entries of each shard per XREAD")
    parser.add_argument("--rounds", type=int, default=0, help="--feed-only: repetitions, the best counts")
    parser.add_argument("--profile", action="store_true", help="--feed-only: print a cProfile listing too")
    args = parser.parse_args()
    if args.feed_only:
        return feed_only(args)
    window = args.duration or (1.5 if args.quick else 10.0)

    from deploy.embedded import start_redis

    tmp = Path(tempfile.mkdtemp(prefix="bench-ws-"))
    redis_server = start_redis(tmp, appendfsync="everysec")
    feed = None
    results: dict = {}
    try:
        port = free_port()
        config = tmp / "feed.toml"
        config.write_text(
            f'data_dir = "{tmp}/data"\n[wsfeed]\nport = {port}\n[engine]\nshards = 1\n'
            f'[redis]\nurl = "{redis_server.url}"\n\n[[symbols]]\nsymbol = "{SYMBOL}"\nbase_asset = "{SYMBOL}"\n'
            'quote_asset = "USD"\ntick_size = "0.01"\nstep_size = "1"\nmin_price = "0.01"\nmax_price = "1000000"\n'
            'min_qty = "1"\nmax_qty = "1000000"\n'
        )
        feed = subprocess.Popen(
            [sys.executable, "-m", "wsfeed.main", "--config", str(config)],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(tmp / "feed.log", "ab"),
        )  # fmt: skip
        wait_port(port, feed, "wsfeed")
        for name, subs, rate in SETTINGS:
            settle = (0.7 if args.quick else 3.0) + subs / 700  # time to connect every subscriber
            # bare
            bare_port = free_port()
            source = [redis_server.url] if args.bare_source == "redis" else []
            bare = subprocess.Popen([sys.executable, __file__, "_bare", str(bare_port), str(rate), *source])
            try:
                wait_port(bare_port, bare, "bare server")
                run = run_clients(f"ws://127.0.0.1:{bare_port}/", subs, args.client_procs, settle, window, tmp)
                driver = None
                if source:
                    until = run["settle_at"] + window + 0.5
                    driver = threading.Thread(target=drive_redis, args=(redis_server.url, rate, until))
                    driver.start()
                bare_cpu = sample_cpu(bare.pid, run)
                if driver is not None:
                    driver.join()
                bare_res = collect(run, bare_cpu)
            finally:
                bare.terminate()
                bare.wait(10)
            # wsfeed, driven through Redis
            run = run_clients(f"ws://127.0.0.1:{port}/ws/bench@trade", subs, args.client_procs, settle, window, tmp)
            until = run["settle_at"] + window + 0.5
            driver = threading.Thread(target=drive_redis, args=(redis_server.url, rate, until))
            driver.start()
            feed_cpu = sample_cpu(feed.pid, run)
            driver.join()
            ours = collect(run, feed_cpu)
            ratio = {
                "delivery_ratio": round(ours["deliveries_per_s"] / bare_res["deliveries_per_s"], 3)
                if bare_res["deliveries_per_s"]
                else None,
                "p99_ratio": round(ours["p99_ms"] / bare_res["p99_ms"], 3)
                if ours["p99_ms"] and bare_res["p99_ms"]
                else None,
            }
            results[name] = {"offered_per_s": subs * rate, "bare": bare_res, "wsfeed": ours, **ratio}
            print(
                f"{name:8s} offered {subs * rate:6d}/s | bare {bare_res['deliveries_per_s']:6d}/s "
                f"p50 {bare_res['p50_ms']} ms p99 {bare_res['p99_ms']} ms | wsfeed "
                f"{ours['deliveries_per_s']:6d}/s p50 {ours['p50_ms']} ms p99 {ours['p99_ms']} ms | "
                f"rate x{ratio['delivery_ratio']} p99 x{ratio['p99_ratio']} | server CPU/delivery "
                f"bare {bare_res['server_cpu_us_per_delivery']} us, wsfeed {ours['server_cpu_us_per_delivery']} us",
                flush=True,
            )
    finally:
        if feed is not None:
            feed.terminate()
            with contextlib.suppress(Exception):
                feed.wait(15)
        redis_server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    summary = {"bench": "ws", "quick": args.quick, "window_s": window, "synthetic_entries": True}
    print(json.dumps({**summary, "bare_source": args.bare_source, **results}))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_bare":
        bare_main(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else "")
    elif len(sys.argv) > 1 and sys.argv[1] == "_client":
        client_main(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6])
    else:
        os.environ.setdefault("PYTHONPATH", str(REPO))
        sys.exit(main())
