"""The bare HTTP ceiling for bench_orders: falcon + orjson on uvicorn, W workers on one socket.

``python -m loadtests.bench_orders_bare --port P --workers 2`` binds
127.0.0.1:P, forks W workers that share the listening socket (as the
exchange's ingress workers do) and serves ``POST /bare``: read the body, parse
it as JSON, answer a small JSON object. Nothing else: the same stack as the
ingress without authentication, validation or the engine. SIGTERM stops it.
Used only by ``loadtests/bench_orders.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys

import falcon
import falcon.asgi
import orjson


class Bare:
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = orjson.loads(await req.stream.read())
        resp.data = orjson.dumps({"ok": True, "symbol": body.get("symbol"), "orderId": 1})
        resp.content_type = falcon.MEDIA_JSON


def _worker(sock: socket.socket) -> None:
    import uvicorn
    import uvloop

    app = falcon.asgi.App()
    app.add_route("/bare", Bare())
    config = uvicorn.Config(app, loop="uvloop", http="httptools", lifespan="off", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(server.serve(sockets=[sock]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(2048)
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            try:
                _worker(sock)
            finally:
                os._exit(0)
        children.append(pid)

    def stop(signum: int, frame: object) -> None:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"ready http://127.0.0.1:{args.port}", flush=True)
    for pid in children:
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except ChildProcessError:
                break
            except InterruptedError:
                continue
    return 0


if __name__ == "__main__":
    sys.exit(main())
