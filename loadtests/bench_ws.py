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

``--callgrind`` counts instructions (valgrind's callgrind, robust on a busy
box) of the same per-entry work by phase: the XREAD replies of the
``--feed-only`` flow are written to a file, and one valgrind run per stage
applies them (only what runs inside ``functools.reduce`` is counted: not the
imports nor the setup). Stages are cumulative and the same whatever the code:
hiredis parse; the tailer (with the market's entry method a no-op); entries
cut down to their OrderAccepted events; + DepthUpdate; + TradeEvent; every
event (no subscriber); every event with every public stream subscribed,
every user connected and the timers run on the orders' clock (the messages).
Each phase is the difference to the stage before (the subscribed one to
"all"), per entry, per event and per order.

``--follow`` measures the stream follower live: a child process follows the
shard streams of a real Redis (``Tailer.follow`` with a real market) while
this process writes one-order entries (a shard's commit at moderate load)
at ``--rates``, once per ``--intervals`` value (``wsfeed.read_interval_ms``)
with a silent client connected. It
prints the child's CPU per entry and per read (system time apart), entries
per read, and the delay from XADD to apply (Redis entry-id clock: ms).

Usage: ``python loadtests/bench_ws.py [--quick] [--duration S] [--client-procs N] [--bare-source self|redis]``
or ``python loadtests/bench_ws.py --feed-only [--quick] [--orders N] [--batch B] [--per-read R] [--profile]``
or ``python loadtests/bench_ws.py --callgrind [--quick] [--orders N]`` (valgrind; the stages run side by side;
--quick runs only the "all" and "subscribed" stages, ~22 s)
or ``python loadtests/bench_ws.py --follow [--quick] [--rates R,..] [--intervals MS,..] [--duration S]``.
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


# --- --callgrind: instructions by phase, robust on a shared box --------------------------------------------------

CG_ORDERS_PER_MS = 5  # feed_entries paces its orders at about 5 000/s: the simulated clock of the timers follows it
# Stages, cumulative: (name, event types kept in the entries (None: all), what the stage adds).
# The types: 1 OrderAccepted, 7 DepthUpdate, 2 TradeEvent, then the rest (shards/events.py).
CG_STAGES = (
    ("parse", None, "hiredis parse of the XREAD replies"),
    ("tail", None, "tailer: entries and their fields (before the walker: + decode_events)"),
    ("accepted", (1,), "OrderAccepted: order state"),
    ("depth", (1, 7), "DepthUpdate: levels, best bid/ask"),
    ("trades", (1, 7, 2), "TradeEvent: last trade, 1s candle and rolls, taker and maker fills"),
    ("all", None, "OrderExpired and the rest: orders leaving"),
    ("subscribed", None, "every public stream subscribed, every user connected, timers: the messages"),
)
CG_QUICK_STAGES = ("all", "subscribed")  # --quick: the headline figures only (a stage: Python under valgrind)


class _NullClient:
    """Takes every frame and drops it (the publish cost without a socket)."""

    combined = False
    listen_key = None

    def __init__(self) -> None:
        self.streams: set[str] = set()
        self.frames = 0

    def send_frame(self, frame: bytes) -> None:
        self.frames += 1

    def send(self, data: bytes) -> None:
        self.frames += 1


def _cg_child(path: str, stage: str) -> None:
    """Runs under callgrind: only what runs inside ``functools.reduce`` is counted (not imports nor setup)."""
    import functools
    import pickle

    import hiredis

    from deploy.config import load_config
    from wsfeed import market as market_module

    with open(path, "rb") as f:
        start_ms, variants = pickle.load(f)
    replies = variants[stage]
    config = load_config(None)
    tailer = _feed_tailer(config)
    market = tailer.market
    if stage == "tail":  # the walker (or, before it, Market.apply after decode_events) does nothing
        name = "apply_packed" if hasattr(market, "apply_packed") else "apply"
        setattr(market, name, lambda *args: None)
    clock = [start_ms]
    market_module.now_ms = lambda: clock[0]
    subscribed = stage == "subscribed"
    client = _NullClient()
    if subscribed:
        hub = market.hub
        for st in market.symbols.values():
            n = st.names
            for stream in (n.trade, n.depth, n.depth100, n.book_ticker, n.ticker, *(s for _, s in n.klines)):
                hub.subscribe(client, stream)
        for user_id in range(1, 5):
            hub.users[user_id] = {client: None}
    per_reply_ms = float(os.environ.get("CG_MS_PER_REPLY", "12.8"))
    count = [0]

    def step(_: object, raw: bytes) -> None:
        reader = hiredis.Reader()
        reader.feed(raw)
        found = reader.gets()
        if stage == "parse":
            return
        tailer.apply_reply(found)
        if subscribed:  # the timers, on the clock of the orders
            n = count[0] = count[0] + 1
            clock[0] = start_ms + int(n * per_reply_ms)
            if n % max(1, round(100 / per_reply_ms)) == 0:
                market.flush_depth100()
            if n % max(1, round(250 / per_reply_ms)) == 0:
                market.flush_klines()
            if n % max(1, round(1000 / per_reply_ms)) == 0:
                market.flush_tickers()

    functools.reduce(step, replies if stage != "base" else [], None)
    if tailer.bad_entries:
        raise SystemExit(f"{tailer.bad_entries} entries could not be applied")
    print(json.dumps({"stage": stage, "frames": client.frames}), flush=True)


def _cg_total(out_file: Path) -> int:
    for line in out_file.read_text().splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out_file}")


def _cg_prepare(orders: int, batch: int, per_read: int, path: Path) -> tuple[list, int, int]:
    """Write to ``path`` the XREAD replies of every stage (entries cut down to its event types);
    (entries, events, reads)."""
    import pickle

    from shards.events import decode_events, encode_events
    from shards.stream import FIELD_EVENTS

    config, entries = feed_entries(orders, batch)
    decoded = [decode_events(f[FIELD_EVENTS]) for _, _, f in entries]
    codes = {"OrderAccepted": 1, "DepthUpdate": 7, "TradeEvent": 2}
    variants = {}
    for stage, kept, _ in CG_STAGES:
        cut = entries
        if kept is not None:
            cut = []
            for (shard, entry_id, fields), events in zip(entries, decoded, strict=True):
                mine = [e for e in events if codes.get(type(e).__name__) in kept]
                cut.append((shard, entry_id, {**fields, FIELD_EVENTS: encode_events(mine)}))
        variants[stage] = xread_replies(cut, per_read, config.engine.shards)
    variants["base"] = []
    start_ms = min(e.ts for e in decoded[0])
    path.write_bytes(pickle.dumps((start_ms, variants)))
    return entries, sum(len(d) for d in decoded), len(variants["all"])


def callgrind(args: argparse.Namespace) -> int:
    """Instructions (callgrind Ir) per entry, event and order for each phase of wsfeed's per-entry work."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--callgrind needs valgrind (apt-get install -y valgrind)")
    orders = args.orders or (2_000 if args.quick else 8_000)
    tmp = Path(tempfile.mkdtemp(prefix="bench-ws-cg-"))
    rows: dict[str, dict] = {}
    try:
        data = tmp / "replies.pickle"
        entries, events, reads = _cg_prepare(orders, args.batch, args.per_read, data)
        per_reply_ms = orders / CG_ORDERS_PER_MS / reads
        previous = 0
        stages = [row for row in CG_STAGES if not args.quick or row[0] in CG_QUICK_STAGES]
        started = time.monotonic()
        procs = {  # every stage at once: each is one process under valgrind, the machine's cores share them
            stage: subprocess.Popen(
                [
                    "valgrind",
                    "--tool=callgrind",
                    "--toggle-collect=functools_reduce",
                    f"--callgrind-out-file={tmp / f'cg.{stage}'}",
                    sys.executable,
                    __file__,
                    "_cg",
                    str(data),
                    stage,
                ],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "CG_MS_PER_REPLY": repr(per_reply_ms)},
            )  # fmt: skip
            for stage, _, _ in stages
        }
        outputs = {stage: proc.communicate() for stage, proc in procs.items()}
        for stage, _, what in stages:
            out = tmp / f"cg.{stage}"
            stdout, stderr = outputs[stage]
            if procs[stage].returncode != 0:
                raise SystemExit(f"stage {stage} failed:\n{stdout[-2000:]}\n{stderr[-3000:]}")
            total = _cg_total(out)
            part = total - previous
            previous = total if stage != "subscribed" else previous
            frames = json.loads(stdout.strip().splitlines()[-1])["frames"]
            rows[stage] = {
                "ir": total, "phase_ir": part, "phase_ir_per_entry": round(part / len(entries)),
                "phase_ir_per_event": round(part / events), "phase_ir_per_order": round(part / orders),
                "frames": frames,
            }  # fmt: skip
            print(
                f"{stage:10s} total {total:>12,d} Ir | phase {part:>11,d} Ir = {part / len(entries):>9,.0f}/entry "
                f"{part / events:>6,.0f}/event {part / orders:>7,.0f}/order | {what} "
                f"({time.monotonic() - started:.0f} s{f', {frames} frames' if frames else ''})",
                flush=True,
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    full = rows["all"]["ir"]
    subscribed = rows["subscribed"]["ir"]
    print(
        f"no subscriber: {full / orders:,.0f} Ir/order, {full / events:,.0f} Ir/event; every stream subscribed: "
        f"{subscribed / orders:,.0f} Ir/order ({orders} orders, {len(entries)} entries, {events} events; the "
        "subscribed phase is counted from 'all')",
        flush=True,
    )
    summary = {
        "bench": "ws", "mode": "callgrind", "quick": args.quick, "orders": orders, "entries": len(entries),
        "events": events, "orders_per_entry": args.batch, "ir_per_order_no_subscriber": round(full / orders),
        "ir_per_order_subscribed": round(subscribed / orders), "stages": rows,
    }  # fmt: skip
    print(json.dumps(summary))
    return 0


# --- --follow: the tailer's CPU and delay on a live Redis stream at a moderate rate ------------------------------


def _follow_child(url: str, interval_ms: int, expected: int, timeout_s: float, out: str) -> None:
    """Follow the shard streams (empty at start) until ``expected`` entries were applied; write CPU and delays.

    A silent client is connected, as in a live feed."""
    import resource

    import redis.asyncio as aioredis

    from deploy.config import build_config
    from ingress.symbols import Catalog
    from wsfeed.hub import Hub
    from wsfeed.market import Market
    from wsfeed.names import StreamNames
    from wsfeed.tail import Tailer

    use_uvloop()
    config = build_config({"wsfeed": {"read_interval_ms": interval_ms}}, {"REDIS_URL": url})
    delays: list[float] = []
    reads = [0]

    async def main() -> dict:
        redis_client = aioredis.Redis.from_url(url)
        hub = Hub()
        hub.clients[_NullClient()] = None  # type: ignore[index]
        market = Market(Catalog.from_config(config), StreamNames(s.symbol for s in config.symbols), hub)
        tailer = Tailer(redis_client, config.engine.shards, market, config)
        await tailer.catch_up()
        apply_reply = tailer.apply_reply

        def timed(found: list) -> bool:
            now = time.time() * 1000
            reads[0] += 1
            for _, entries in found:
                for entry_id, _ in entries:
                    delays.append(now - int(entry_id.split(b"-")[0]))
            return apply_reply(found)

        tailer.apply_reply = timed  # type: ignore[method-assign]
        stop = asyncio.Event()
        task = asyncio.create_task(tailer.follow(stop))
        Path(out + ".ready").write_text("1")
        deadline = time.monotonic() + timeout_s
        while not delays and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        before = resource.getrusage(resource.RUSAGE_SELF)
        while tailer.entries < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        after = resource.getrusage(resource.RUSAGE_SELF)
        user, sys_ = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
        stop.set()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        await redis_client.aclose()
        return {"entries": tailer.entries, "cpu_s": user + sys_, "sys_s": sys_, "reads": reads[0], "delays": delays}

    Path(out).write_text(json.dumps(asyncio.run(main())))


def follow_bench(args: argparse.Namespace) -> int:
    """CPU per entry of the stream follower and the delay it adds, for read intervals at moderate entry rates."""
    import redis

    from deploy.embedded import start_redis
    from shards.stream import stream_key

    rates = [int(r) for r in args.rates.split(",")] if args.rates else ([2500] if args.quick else [1000, 2500, 5000])
    intervals = [int(i) for i in args.intervals.split(",")] if args.intervals else [2, 0, 1, 5, 10]
    window = args.duration or (1.5 if args.quick else 4.0)
    longest = max(rates) * window
    config, entries = feed_entries(int(longest) + 10, 1)  # one order per entry: a shard's commit at moderate load
    tmp = Path(tempfile.mkdtemp(prefix="bench-ws-follow-"))
    server = start_redis(tmp, appendfsync="everysec")
    results: dict[str, dict] = {}
    try:
        client = redis.Redis.from_url(server.url)
        keys = [stream_key(i) for i in range(config.engine.shards)]
        for rate in rates:
            count = int(rate * window)
            for interval in intervals:
                client.delete(*keys)
                out = str(tmp / f"follow-{rate}-{interval}.json")
                argv = [sys.executable, __file__, "_follow", server.url, str(interval), str(count), repr(window + 20)]
                child = subprocess.Popen([*argv, out], cwd=REPO, stdin=subprocess.DEVNULL)
                deadline = time.monotonic() + 30
                while not Path(out + ".ready").exists():
                    if child.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"follower did not start (status {child.poll()})")
                    time.sleep(0.01)
                time.sleep(0.2)  # its first XREAD is waiting
                start = time.monotonic()
                for i, (shard, _, fields) in enumerate(entries[:count]):
                    due = start + i / rate
                    wait = due - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                    client.xadd(keys[shard], fields)
                child.wait(timeout=window + 30)
                data = json.loads(Path(out).read_text())
                delays = sorted(data["delays"])
                row = {
                    "entries": data["entries"], "reads": data["reads"],
                    "entries_per_read": round(data["entries"] / max(1, data["reads"]), 2),
                    "cpu_us_per_entry": round(data["cpu_s"] / max(1, data["entries"]) * 1e6, 2),
                    "sys_us_per_entry": round(data["sys_s"] / max(1, data["entries"]) * 1e6, 2),
                    "cpu_us_per_read": round(data["cpu_s"] / max(1, data["reads"]) * 1e6, 1),
                    "delay_p50_ms": round(delays[len(delays) // 2], 2) if delays else None,
                    "delay_p99_ms": round(delays[int(len(delays) * 0.99)], 2) if delays else None,
                }  # fmt: skip
                results[f"{rate}/s {interval}ms"] = row
                pacing = f"read_interval_ms {interval:2d}"
                print(
                    f"{rate:5d} entries/s, {pacing}: {row['cpu_us_per_entry']:6.2f} us CPU/entry "
                    f"({row['sys_us_per_entry']:.2f} system), {row['cpu_us_per_read']:6.1f} us/read, "
                    f"{row['entries_per_read']:5.2f} entries/read, delay p50 {row['delay_p50_ms']} ms "
                    f"p99 {row['delay_p99_ms']} ms",
                    flush=True,
                )
        client.close()
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({"bench": "ws", "mode": "follow", "quick": args.quick, "window_s": window, **results}))
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
    parser.add_argument(
        "--follow", action="store_true", help="the follower's CPU per entry and delay per read interval, live Redis"
    )
    parser.add_argument("--rates", default="", help="--follow: entries/s, comma-separated (default 1000,2500,5000)")
    parser.add_argument("--intervals", default="", help="--follow: read_interval_ms values (2,0,1,5,10)")
    parser.add_argument(
        "--callgrind", action="store_true", help="instructions per entry/event/order by phase, under valgrind"
    )
    args = parser.parse_args()
    if args.callgrind:
        return callgrind(args)
    if args.follow:
        return follow_bench(args)
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
    elif len(sys.argv) > 1 and sys.argv[1] == "_follow":
        _follow_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6])
    elif len(sys.argv) > 1 and sys.argv[1] == "_cg":
        _cg_child(sys.argv[2], sys.argv[3])
    elif len(sys.argv) > 1 and sys.argv[1] == "_client":
        client_main(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6])
    else:
        os.environ.setdefault("PYTHONPATH", str(REPO))
        sys.exit(main())
