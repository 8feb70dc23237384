"""The one-write reply (``ingress/reply.py``) puts on the wire exactly what uvicorn writes for the two ASGI messages.

A real uvicorn server (uvloop, httptools: the worker's settings) runs in a thread
with an app that answers each request twice over: ``/direct`` through
``Replier.write``, ``/asgi`` through the ASGI messages. Raw responses read off a
socket must be byte-identical (the ``date`` header aside, which may tick between
the two), keep-alive must go on working after a direct answer, and
``Connection: close`` / HTTP/1.0 must close the connection the same way.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from ingress.reply import Replier

BODY = b'{"symbol":"AAPL","orderId":1}'
CASES = {
    "/ok": (200, [(b"content-length", str(len(BODY)).encode()), (b"content-type", b"application/json")], BODY),
    "/busy": (
        503,
        [(b"content-type", b"application/json"), (b"content-length", b"15"), (b"retry-after", b"1")],
        b'{"code":-1008}\n',
    ),
    "/empty": (200, [(b"content-length", b"0")], b""),
}


class Server:
    """uvicorn in a thread on 127.0.0.1, serving ``app``; ``replier.direct`` counts one-write answers."""

    def __init__(self) -> None:
        self.replier = Replier()
        self.fallbacks = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            interface="asgi3",
            loop="uvloop",
            http="httptools",
            lifespan="off",
            log_level="warning",
            access_log=False,
            proxy_headers=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])))
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind, _, case = scope["path"].partition("/")[2].partition("/")
        status, headers, body = CASES["/" + case]
        if kind == "direct":
            if not self.replier.write(send, status, headers, body):
                self.fallbacks += 1
                await self.replier.reply(send, status, headers, body)
        else:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def _quiet_access_log() -> None:
    """The access log off, as the worker runs (uvicorn checks for handlers per connection; the test run adds some)."""
    logging.getLogger("uvicorn.access").handlers = []


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


def _read_response(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, f"connection closed before the headers: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
    while len(rest) < length:
        chunk = conn.recv(65536)
        assert chunk, "connection closed inside the body"
        rest += chunk
    return head + b"\r\n\r\n" + rest


def _exchange(port: int, requests: list[bytes], wait_close: bool = True) -> tuple[list[bytes], bool]:
    """The raw responses to ``requests`` sent one after another on one connection, and (``wait_close``)
    whether the server closed it after them (False: still open after 5 s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        responses = []
        for request in requests:
            conn.sendall(request)
            responses.append(_read_response(conn))
        closed = False
        if wait_close:
            conn.settimeout(5.0)
            try:
                closed = conn.recv(1) == b""
            except TimeoutError:
                closed = False
    return responses, closed


def _no_date(raw: bytes) -> bytes:
    return re.sub(rb"date: [^\r]*\r\n", b"date: <date>\r\n", raw)


def _request(path: str, version: str = "1.1", extra: str = "") -> bytes:
    return f"POST {path} HTTP/{version}\r\nHost: x\r\nContent-Length: 0\r\n{extra}\r\n".encode()


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_write_answer_is_byte_identical_to_the_asgi_messages(server: Server, case: str) -> None:
    _quiet_access_log()
    before = server.replier.direct

    [direct], _ = _exchange(server.port, [_request(f"/direct{case}")], wait_close=False)
    [asgi], _ = _exchange(server.port, [_request(f"/asgi{case}")], wait_close=False)

    assert (server.replier.direct, server.fallbacks) == (before + 1, 0)
    assert _no_date(direct) == _no_date(asgi)
    assert direct.startswith(f"HTTP/1.1 {CASES[case][0]} ".encode())
    assert b"\r\nserver: uvicorn\r\n" in direct


def test_keep_alive_goes_on_after_one_write_answers(server: Server) -> None:
    _quiet_access_log()
    requests = [_request("/direct/ok"), _request("/direct/busy"), _request("/asgi/ok"), _request("/direct/ok")]
    before = server.replier.direct

    responses, _ = _exchange(server.port, requests, wait_close=False)

    assert [r.split(b"\r\n", 1)[0] for r in responses] == [
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 503 Service Unavailable",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK",
    ]
    assert all(r.endswith(CASES["/ok"][2]) for i, r in enumerate(responses) if i != 1)
    assert server.replier.direct == before + 3


def test_with_the_access_log_on_uvicorn_writes_the_answer(server: Server) -> None:
    logging.getLogger("uvicorn.access").handlers = [logging.NullHandler()]  # uvicorn logs each answer it sends
    before = (server.replier.direct, server.fallbacks)

    [raw], _ = _exchange(server.port, [_request("/direct/ok")], wait_close=False)

    assert raw.endswith(BODY)
    assert (server.replier.direct, server.fallbacks) == (before[0], before[1] + 1)


@pytest.mark.parametrize(
    ("version", "extra"), [("1.1", "Connection: close\r\n"), ("1.0", "")], ids=["connection-close", "http-1.0"]
)
def test_a_request_that_ends_the_connection_is_closed_the_same_way(server: Server, version: str, extra: str) -> None:
    _quiet_access_log()
    [direct], direct_closed = _exchange(server.port, [_request("/direct/ok", version, extra)])
    [asgi], asgi_closed = _exchange(server.port, [_request("/asgi/ok", version, extra)])

    assert _no_date(direct) == _no_date(asgi)
    assert b"\r\nconnection: close\r\n" in direct
    assert direct_closed and asgi_closed


def test_a_send_that_is_not_uvicorns_gets_the_asgi_messages() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    replier = Replier()
    status, headers, body = CASES["/busy"]

    assert replier.write(send, status, headers, body) is False
    asyncio.run(replier.reply(send, status, headers, body))

    assert sent == [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    ]
    assert replier.direct == 0
