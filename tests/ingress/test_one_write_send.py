"""falcon's answers through ``OneWriteSend`` (``ingress/reply.py``, wired in ``ingress/app.py``) are the bytes
uvicorn writes for the two ASGI messages, in one socket write where it can vouch for them.

Two copies of the REST app (a local engine, no database: only routes that need none) run on real uvicorn
servers (uvloop, httptools: the worker's settings), one with ``one_write`` and one without; raw responses read
off a socket must be byte-identical (the ``date`` header aside). The fallbacks are checked on a recording
``send``: messages reach it unchanged and in order.
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

from deploy.config import load_config
from ingress.app import ExchangeApp, create_app
from ingress.reply import OneWriteSend, Replier
from tests.ingress.local_engine import LocalEngineClient
from tests.ingress.test_reply import _exchange, _no_date


class AppServer:
    """``create_app(..., one_write=one_write)`` on uvicorn in a thread, on 127.0.0.1."""

    def __init__(self, one_write: bool) -> None:
        config = load_config(None, env={})
        self.app: ExchangeApp = create_app(config, LocalEngineClient(config), one_write=one_write)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                loop="uvloop",
                http="httptools",
                lifespan="off",
                log_level="warning",
                access_log=False,
                proxy_headers=False,
            )
        )
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])))
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)

    @property
    def direct(self) -> int:
        return self.app.replier.direct if self.app.replier is not None else 0

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[AppServer, AppServer]]:
    one, two = AppServer(True), AppServer(False)
    yield one, two
    one.close()
    two.close()


def _plain(raw: bytes) -> bytes:
    """``raw`` with the clock readings (the date header, a serverTime field) masked."""
    return re.sub(rb'"serverTime":\d+', b'"serverTime":0', _no_date(raw))


def _quiet_access_log() -> None:
    """The access log off, as the worker runs (uvicorn checks for handlers per connection; the test run adds some)."""
    logging.getLogger("uvicorn.access").handlers = []


def _get(path: str, method: str = "GET", extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


@pytest.mark.parametrize(
    "path",
    [
        "/api/v3/ping",
        "/api/v3/ticker/bookTicker?symbol=NOPE",
        "/api/v3/exchangeInfo",
        "/api/v3/depth?symbol=NOPE",
        "/no/such/route",
    ],
)
def test_falcon_answers_in_one_write_are_byte_identical_to_uvicorns(servers: tuple[AppServer, AppServer], path: str):
    _quiet_access_log()
    one, two = servers
    before = one.direct

    [joined], _ = _exchange(one.port, [_get(path)], wait_close=False)
    [split], _ = _exchange(two.port, [_get(path)], wait_close=False)

    assert one.direct == before + 1
    assert _plain(joined) == _plain(split)
    assert b"\r\ncontent-length: " in joined


def test_keep_alive_and_connection_close_behave_as_with_two_writes(servers: tuple[AppServer, AppServer]) -> None:
    _quiet_access_log()
    one, two = servers
    requests = [_get("/api/v3/ping"), _get("/api/v3/exchangeInfo"), _get("/api/v3/ping", extra="Connection: close\r\n")]

    joined, joined_closed = _exchange(one.port, requests)
    split, split_closed = _exchange(two.port, requests)

    assert [_plain(r) for r in joined] == [_plain(r) for r in split]
    assert b"\r\nconnection: close\r\n" in joined[2]
    assert joined_closed and split_closed


def test_a_head_request_is_left_to_uvicorn(servers: tuple[AppServer, AppServer]) -> None:
    _quiet_access_log()
    one, two = servers
    before = one.direct
    request = _get("/api/v3/ping", method="HEAD")

    with (
        socket.create_connection(("127.0.0.1", one.port), timeout=5) as a,
        socket.create_connection(("127.0.0.1", two.port), timeout=5) as b,
    ):
        a.sendall(request)
        b.sendall(request)
        joined, split = a.recv(65536), b.recv(65536)

    assert one.direct == before
    assert _plain(joined) == _plain(split)


def _recording() -> tuple[list[dict[str, Any]], Any]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    return sent, send


START = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}


@pytest.mark.parametrize(
    "messages",
    [
        [START, {"type": "http.response.body", "body": b"{}"}],
        [START, {"type": "http.response.body", "body": b"{", "more_body": True}, {"type": "http.response.body"}],
        [{**START, "headers": [(b"content-length", b"5")]}, {"type": "http.response.body", "body": b"{}"}],
        [{**START, "headers": [(b"transfer-encoding", b"chunked")]}, {"type": "http.response.body", "body": b"{}"}],
    ],
    ids=["not-uvicorns-send", "streamed-body", "wrong-length", "chunked"],
)
def test_what_it_cannot_join_reaches_send_unchanged_and_in_order(messages: list[dict[str, Any]]) -> None:
    sent, send = _recording()
    replier = Replier()
    one = OneWriteSend(send, replier)

    async def run() -> None:
        for message in messages:
            await one(message)
        await one.flush()

    asyncio.run(run())

    assert sent == messages
    assert replier.direct == 0


def test_flush_hands_on_a_start_whose_body_never_came() -> None:
    sent, send = _recording()
    one = OneWriteSend(send, Replier())

    async def run() -> list[dict[str, Any]]:
        await one(START)
        held = list(sent)
        await one.flush()
        await one.flush()
        return held

    held = asyncio.run(run())

    assert held == []
    assert sent == [START]
