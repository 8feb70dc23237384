"""Entry point of a wsfeed process: ``run(config, ctx, index)``; also ``python -m wsfeed.main [--config F]``.

Start: connect to Redis (``config.redis.url``), catch up with the shard
streams (``wsfeed.tail``), then serve WebSocket connections on the listening
socket inherited from the launcher (``ctx.ws_listen_fd``; several wsfeed
processes share it and the kernel spreads connections over them) or, when
there is none (``-1``), on ``config.wsfeed.host:port`` of its own. Compression
is off (permessage-deflate costs about half again the CPU per message).

After catch-up the start-up objects are frozen out of the cyclic garbage
collector's sight (``gc.freeze``) and its young generation is collected less
often (``GC_YOUNG_THRESHOLD``).

Tasks: the stream follower, the 100 ms / 250 ms / 1 s timers (depth@100ms,
klines, tickers), the listenKey upkeep and the metrics publisher (once a second the
counters of ``figures``: open connections and subscriptions from ``wsfeed.hub``,
messages sent and slow clients closed, entries and events applied; to the hash
``exchange:metrics:wsfeed:<index>``, ``deploy/telemetry.py``; a failure is logged
once). A task that dies stops the process (exit status 1 through the exception)
instead of leaving it half alive.

Stop: SIGTERM or SIGINT (the only signal handling of this process) closes the
listening side, closes every connection with 1001 (going away) and returns.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
from typing import Any

import redis.asyncio as aioredis
from websockets.asyncio.server import serve

from deploy import telemetry
from deploy.config import Config, load_config
from deploy.log import log_event
from deploy.topology import ProcessContext, Topology
from ingress.symbols import Catalog
from wsfeed.hub import Hub
from wsfeed.market import Market
from wsfeed.names import StreamNames
from wsfeed.server import MAX_MESSAGE_BYTES, PING_INTERVAL_S, PING_TIMEOUT_S, WRITE_LIMIT, Server
from wsfeed.tail import Tailer

log = logging.getLogger("wsfeed.main")

# Each read allocates containers (reply lists, unpacked tuples, asyncio handles) that almost all die young and
# never in cycles; the default threshold (700) collected several times per read. Open orders are tuples of numbers
# and bytes, which the collector untracks, so the older generations stay small.
GC_YOUNG_THRESHOLD = 10_000


async def _every(period_s: float, action: Any, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), period_s)
        action()


def figures(hub: Hub, tailer: Tailer, market: Market) -> dict[str, int]:
    """This process's counters now, as published (``telemetry.WSFEED_FIELDS``); read once a second."""
    return {
        "connections": len(hub.clients),
        "subscriptions": sum(map(len, hub.subs.values())),
        "messages_sent": hub.delivered,
        "slow_closed": hub.slow_closed,
        "entries": tailer.entries,
        "events": market.events_applied,
    }


def redis_sender(redis: Any) -> Any:
    """``send(commands)`` for ``telemetry.publish_every``: the commands in one pipeline (one round trip)."""

    async def send(commands: list[list[bytes]]) -> None:
        pipe = redis.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        await pipe.execute()

    return send


async def serve_feed(config: Config, ctx: ProcessContext, index: int, stop: asyncio.Event) -> None:
    """Run one wsfeed process until ``stop`` is set."""
    if not config.redis.url:
        raise RuntimeError("redis.url is empty: wsfeed needs the resolved REDIS_URL")
    redis = aioredis.Redis.from_url(config.redis.url, socket_connect_timeout=2.0, health_check_interval=30)
    hub = Hub()
    catalog = Catalog.from_config(config)
    names = StreamNames(s.symbol for s in config.symbols)
    market = Market(catalog, names, hub)
    tailer = Tailer(redis, config.engine.shards, market, config)
    server = Server(hub, names, redis)
    tailer.load_snapshots()
    replayed = await tailer.catch_up()
    log_event("wsfeed_caught_up", index=index, entries=replayed, events=market.events_applied)
    # Start-up objects (modules, symbol tables, the state caught up) live as long as the process: keep the
    # cyclic GC from scanning them again and again; the young generation is collected less often (see GC_*).
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    if ctx.ws_listen_fd >= 0:
        sock = socket.socket(fileno=os.dup(ctx.ws_listen_fd))
        where: dict[str, Any] = {"sock": sock}
    else:
        where = {"host": config.wsfeed.host, "port": config.wsfeed.port, "reuse_address": True}
    async with serve(
        server.handler,
        process_request=server.process_request,
        compression=None,
        max_size=MAX_MESSAGE_BYTES,
        ping_interval=PING_INTERVAL_S,
        ping_timeout=PING_TIMEOUT_S,
        write_limit=WRITE_LIMIT,
        max_queue=16,
        **where,
    ) as ws_server:
        address = ws_server.sockets[0].getsockname() if ws_server.sockets else ("?", 0)
        log_event("wsfeed_listening", index=index, host=address[0], port=address[1])
        tasks = [
            asyncio.create_task(tailer.follow(stop), name="follow"),
            asyncio.create_task(_every(0.1, market.flush_depth100, stop), name="depth100"),
            asyncio.create_task(_every(0.25, market.flush_klines, stop), name="klines"),
            asyncio.create_task(_every(1.0, market.flush_tickers, stop), name="tickers"),
            asyncio.create_task(server.check_listen_keys(stop), name="listenkeys"),
            asyncio.create_task(server.follow_closed_keys(stop), name="closedkeys"),
            asyncio.create_task(
                telemetry.publish_every(
                    redis_sender(redis), lambda: figures(hub, tailer, market), "wsfeed", index, stop
                ),
                name="metrics",
            ),
        ]
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        failed = [t for t in done if t is not stopper and not t.cancelled() and t.exception() is not None]
        stop.set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        ws_server.close(close_connections=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws_server.wait_closed(), 5.0)
    with contextlib.suppress(Exception):
        await redis.aclose()
    log_event(
        "wsfeed_stopped", index=index, delivered=hub.delivered, slow_closed=hub.slow_closed, entries=tailer.entries
    )
    if failed:
        raise RuntimeError(f"wsfeed task {failed[0].get_name()} died") from failed[0].exception()


def run(config: Config, ctx: ProcessContext, index: int) -> None:
    """Serve until SIGTERM/SIGINT (blocking)."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve_feed(config, ctx, index, stop)

    asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    """Standalone: one wsfeed process on ``config.wsfeed.host:port`` (tests, development)."""
    parser = argparse.ArgumentParser(prog="python -m wsfeed.main")
    parser.add_argument("--config", default=None, help="TOML file (default: built-in defaults)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = load_config(args.config)
    topology = Topology(instance="wsfeed", ingress_workers=0, shards=config.engine.shards, ring_bytes=0)
    run(config, ProcessContext(topology=topology, config_path=args.config), 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
