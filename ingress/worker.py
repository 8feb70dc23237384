"""An ingress worker process: the REST app on uvicorn over the shared listening socket.

Owns: this process's event loop (uvloop), its RingEngineClient, the uvicorn
server on the socket the launcher bound (``ctx.rest_listen_fd``, shared by all
W workers; the kernel spreads connections over them) and this process's
signal handling (house rule 1). Never: binds a socket, creates a ring, or
answers a request itself (``ingress.app`` does).

Stop: uvicorn catches SIGTERM/SIGINT while it serves, stops accepting,
finishes the requests in flight (at most ``GRACEFUL_S``), runs the app's
lifespan shutdown and returns; the engine client is closed after it. uvicorn
then re-raises the signals it caught, so ``run`` installs its own handlers
first and the re-raised signal lands on them instead of killing the process:
a clean stop exits 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket

import uvicorn
import uvloop

from deploy.config import Config
from deploy.log import log_event, set_process_name
from deploy.topology import ProcessContext
from ingress.app import create_app
from ingress.engine_client import RingEngineClient
from ingress.httplane import LaneProtocol, lane_is_supported

GRACEFUL_S = 5  # longest wait for requests in flight at stop
# Allocations between young-generation collections (CPython's default: 700). A batch of 100 orders
# allocates over a thousand containers (parsed orders, commands, answers, views), almost none in
# cycles, so the default collects at least once per batch for nothing: about 3% of the worker's
# instructions per batched order (callgrind, in-process batch harness). Older generations keep theirs.
GC_YOUNG_THRESHOLD = 10_000


class _StopFlag:
    """A stop asked for before uvicorn took over the signals (during start-up)."""

    requested = False


async def _serve(config: Config, ctx: ProcessContext, index: int, stop: _StopFlag) -> None:
    client = RingEngineClient(config, ctx, index)
    client.start()
    try:
        app = create_app(config, client)
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                loop="uvloop",
                http=LaneProtocol if lane_is_supported() else "httptools",  # the order lane without ASGI
                lifespan="on",
                log_level="warning",
                access_log=False,
                proxy_headers=False,  # nothing reads the client address: skip that per-request middleware
                timeout_graceful_shutdown=GRACEFUL_S,
            )
        )
        sock = socket.socket(fileno=ctx.rest_listen_fd)
        # Start-up objects (routes, symbol tables, config) live as long as the process: keep the
        # cyclic GC from scanning them again on every collection.
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        log_event("ingress_start", worker=index, pid=os.getpid(), shards=client.shard_count, lane=lane_is_supported())
        server.should_exit = stop.requested  # a SIGTERM during start-up: start, then stop at once
        await server.serve(sockets=[sock])
    finally:
        stats = client.stats()
        await client.close()
        log_event(
            "ingress_stop",
            worker=index,
            sent=stats["sent"],
            answered=stats["answered"],
            busy=stats["busy"],
            timeouts=stats["timeouts"],
            late_answers=stats["late_answers"],
            bad_answers=stats["bad_answers"],
            pending=stats["pending"],
        )


def run(config: Config, ctx: ProcessContext, index: int) -> None:
    """The ingress worker: serve the REST API until SIGTERM/SIGINT, then return."""
    set_process_name(f"ingress.{index}")
    logging.basicConfig(level=logging.WARNING, format=f"level=%(levelname)s proc=ingress.{index} %(message)s")

    stop = _StopFlag()

    def on_signal(signum: int, frame: object) -> None:
        """Before serving: remember the stop. After: uvicorn re-raising a signal it handled."""
        stop.requested = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(config, ctx, index, stop))
