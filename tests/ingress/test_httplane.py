"""``LaneProtocol`` (``ingress/httplane.py``) answers on the wire exactly what uvicorn's httptools protocol does.

Two real uvicorn servers (uvloop, the worker's settings) run the exchange app
over equal fresh engines and the same database: one with ``LaneProtocol``, one
with plain ``httptools``. The same raw requests, one after another on one
connection, must give the same bytes (the ``date`` header and millisecond
times aside); the lane server must have answered its plain signed orders
without calling the ASGI app. Pipelined requests keep their order, a client
that goes away leaves nothing behind, and a graceful stop lets a lane request
in flight finish with ``connection: close``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import uvicorn

from ingress.app import ExchangeApp, create_app
from ingress.auth import sign
from ingress.httplane import LaneProtocol, drive, lane_is_supported
from tests.ingress.harness import ADMIN_TOKEN, TestUser, now_ms
from tests.ingress.local_engine import SubmittingEngineClient

pytestmark = pytest.mark.skipif(not lane_is_supported(), reason="uvicorn without the httptools protocol")

ORDER = "/api/v3/order"
LIMIT = {"symbol": "AAPL", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "price": "10.00", "quantity": "2"}


class GatedEngine(SubmittingEngineClient):
    """``submit`` answers only once ``gate`` is set (an engine that is slow to answer)."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.gate: asyncio.Event | None = None
        self.waiting = 0

    def submit(self, shard: int, cmd: object) -> asyncio.Future[Any]:
        fut = asyncio.get_running_loop().create_future()
        self.waiting += 1

        async def answer() -> None:
            assert self.gate is not None
            await self.gate.wait()
            self.waiting -= 1
            fut.set_result(self._apply(shard, cmd))

        asyncio.get_running_loop().create_task(answer())
        return fut


class Server:
    """uvicorn in a thread on 127.0.0.1 serving the exchange app over ``engine``, with the given protocol."""

    def __init__(self, config: Any, engine: Any, http: Any) -> None:
        self.engine = engine
        self.app = create_app(config, engine)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.loop: asyncio.AbstractEventLoop | None = None
        uvicorn_config = uvicorn.Config(
            self.app, loop="uvloop", http=http, lifespan="on", log_level="warning", access_log=False,
            proxy_headers=False, timeout_graceful_shutdown=5,
        )  # fmt: skip
        self.server = uvicorn.Server(uvicorn_config)
        self.thread = threading.Thread(target=self._run)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)

    def _run(self) -> None:
        async def serve() -> None:
            self.loop = asyncio.get_running_loop()
            if isinstance(self.engine, GatedEngine):
                self.engine.gate = asyncio.Event()
            await self.server.serve(sockets=[self.sock])

        asyncio.run(serve())

    def call(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the server's loop."""
        assert self.loop is not None
        self.loop.call_soon_threadsafe(fn)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()


def _quiet_access_log() -> None:
    """The access log off, as the worker runs it (uvicorn checks for handlers per connection, and pytest adds
    its capture handlers for each test's run): with it on, uvicorn writes every answer itself."""
    logging.getLogger("uvicorn.access").handlers = []


@pytest.fixture
def servers(make_config: Callable[..., Any]) -> Iterator[tuple[Server, Server]]:
    config = make_config()
    lane = Server(config, SubmittingEngineClient(config), LaneProtocol)
    plain = Server(config, SubmittingEngineClient(config), "httptools")
    yield lane, plain
    lane.close()
    plain.close()


def _read_response(conn: socket.socket, buffered: bytearray) -> bytes:
    """One response off ``conn``; bytes read past it stay in ``buffered``."""
    while b"\r\n\r\n" not in buffered:
        chunk = conn.recv(65536)
        assert chunk, f"connection closed before the headers: {bytes(buffered)!r}"
        buffered += chunk
    head, _, rest = bytes(buffered).partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
    while len(rest) < length:
        chunk = conn.recv(65536)
        assert chunk, "connection closed inside the body"
        rest += chunk
    buffered[:] = rest[length:]
    return head + b"\r\n\r\n" + rest[:length]


def _closed_after(conn: socket.socket) -> bool:
    conn.settimeout(5.0)
    try:
        return conn.recv(1) == b""
    except TimeoutError:
        return False


def _send_all(port: int, requests: list[bytes], *, pipelined: bool = False) -> tuple[list[bytes], bool]:
    """The raw responses to ``requests`` on one connection (one write for all when ``pipelined``), and whether
    the server closed the connection after the last (waited for only when a request asked for it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        buffered = bytearray()
        responses = []
        if pipelined:
            conn.sendall(b"".join(requests))
            responses = [_read_response(conn, buffered) for _ in requests]
        else:
            for request in requests:
                conn.sendall(request)
                responses.append(_read_response(conn, buffered))
        asks_close = any(b"Connection: close" in r or b"HTTP/1.0" in r.split(b"\r\n", 1)[0] for r in requests)
        return responses, asks_close and _closed_after(conn)


def _same_bytes(raw: bytes) -> bytes:
    """A response with what differs between two servers taken out: the date, ms times, generated client ids
    (each worker draws its own)."""
    raw = re.sub(rb"date: [^\r]*\r\n", b"date: <date>\r\n", raw)
    raw = re.sub(rb'"clientOrderId":"(?!lane-|p[0-9])[^"]*"', b'"clientOrderId":"<generated>"', raw)
    return re.sub(rb"\b1[0-9]{12}\b", b"<ms>", raw)


def _new_user(server: Server) -> TestUser:
    request = f"POST /admin/v1/users HTTP/1.1\r\nHost: x\r\nX-Admin-Token: {ADMIN_TOKEN}\r\nContent-Length: 0\r\n\r\n"
    [raw], _ = _send_all(server.port, [request.encode()])
    body = raw.partition(b"\r\n\r\n")[2].decode()
    fields = dict(re.findall(r'"(userId|apiKey|secretKey)":"?([^",}]+)', body))
    return TestUser(int(fields["userId"]), fields["apiKey"], fields["secretKey"])


def _order(user: TestUser, params: dict[str, Any], *, signature: str | None = None, extra: str = "",
           version: str = "1.1", key: str | None = None, path: str = ORDER) -> bytes:  # fmt: skip
    query = urlencode(params | {"timestamp": now_ms(), "recvWindow": 60000})
    query += f"&signature={signature or sign(user.secret, query)}"
    api_key = user.api_key if key is None else key
    head = f"POST {path}?{query} HTTP/{version}\r\nHost: x\r\n"
    if api_key:
        head += f"X-MBX-APIKEY: {api_key}\r\n"
    return (head + extra + "\r\n").encode()


def _asgi_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the requests that reach the ASGI app (``ExchangeApp.__call__``), from now on."""
    paths: list[str] = []
    original = ExchangeApp.__call__

    async def counting(self: ExchangeApp, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            paths.append(scope["path"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(ExchangeApp, "__call__", counting)
    return paths


def test_orders_and_errors_answer_byte_for_byte_like_uvicorn(servers, monkeypatch) -> None:
    lane, plain = servers
    _quiet_access_log()
    user = _new_user(lane)
    requests = [
        _order(user, LIMIT),
        _order(user, LIMIT | {"side": "SELL", "price": "9.00", "quantity": "1", "newOrderRespType": "RESULT"}),
        _order(user, LIMIT | {"newOrderRespType": "ACK", "newClientOrderId": "lane-1"}),
        _order(user, LIMIT, signature="0" * 64),  # bad signature: 401, -1022
        _order(user, LIMIT | {"symbol": "NOPE"}),  # unknown symbol: -1121
        _order(user, LIMIT | {"price": "10.001"}),  # off the tick grid
        _order(user, {k: v for k, v in LIMIT.items() if k != "quantity"}),  # missing parameter
        _order(user, LIMIT, key=""),  # no API key: -2014
        _order(user, LIMIT, key="x" * 64),  # unknown API key: -2015
        _order(user, LIMIT, extra="Content-Length: 0\r\n"),
        b"GET /api/v3/ping HTTP/1.1\r\nHost: x\r\n\r\n",
        _order(user, LIMIT | {"quantity": "3"}),
    ]
    asgi_paths = _asgi_calls(monkeypatch)

    lane_answers, _ = _send_all(lane.port, requests)
    lane_asgi = list(asgi_paths)
    plain_answers, _ = _send_all(plain.port, requests)

    assert [_same_bytes(a) for a in lane_answers] == [_same_bytes(a) for a in plain_answers]
    assert [a.split(b"\r\n", 1)[0] for a in lane_answers[:4]] == [b"HTTP/1.1 200 OK"] * 3 + [
        b"HTTP/1.1 401 Unauthorized"
    ]
    assert lane_asgi == ["/api/v3/ping"]  # every order went through the lane, the ping through ASGI
    assert asgi_paths[len(lane_asgi) :] == [ORDER] * 10 + ["/api/v3/ping", ORDER]


def test_requests_the_lane_leaves_to_uvicorn_answer_alike_through_asgi(servers, monkeypatch) -> None:
    lane, plain = servers
    _quiet_access_log()
    user = _new_user(lane)
    body = urlencode(LIMIT | {"timestamp": now_ms()})
    requests = [
        _order(user, LIMIT, extra="Transfer-Encoding: chunked\r\n") + b"0\r\n\r\n",  # an empty chunked body
        f"POST {ORDER} HTTP/1.1\r\nHost: x\r\nX-MBX-APIKEY: {user.api_key}\r\nContent-Type: "
        f"application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode(),  # a body
        _order(user, LIMIT, extra=f"X-MBX-APIKEY: {user.api_key}\r\n"),  # the key twice
        _order(user, LIMIT, path="/api/v3/order/"),  # another path (falcon's trailing slash rule)
        f"POST {ORDER}?symbol=".encode() + b"\xc3\x28 HTTP/1.1\r\nHost: x\r\n\r\n",  # the parser's 400
    ]  # fmt: skip
    asgi_paths = _asgi_calls(monkeypatch)

    lane_answers, _ = _send_all(lane.port, requests)

    assert asgi_paths == [ORDER, ORDER, ORDER, ORDER + "/"]  # none took the lane; httptools refused the last
    assert lane_answers[-1].startswith(b"HTTP/1.1 400 Bad Request")
    plain_answers, _ = _send_all(plain.port, requests)
    assert [_same_bytes(a) for a in lane_answers] == [_same_bytes(a) for a in plain_answers]


@pytest.mark.parametrize(("version", "extra"), [("1.1", "Connection: close\r\n"), ("1.0", "")], ids=["close", "1.0"])
def test_a_lane_request_that_ends_the_connection_closes_it_like_uvicorn(servers, version, extra) -> None:
    lane, plain = servers
    _quiet_access_log()
    user = _new_user(lane)
    request = _order(user, LIMIT, version=version, extra=extra)

    [lane_answer], lane_closed = _send_all(lane.port, [request])
    [plain_answer], plain_closed = _send_all(plain.port, [request])

    assert _same_bytes(lane_answer) == _same_bytes(plain_answer)
    assert b"\r\nconnection: close\r\n" in lane_answer
    assert lane_closed and plain_closed


def test_pipelined_requests_are_answered_in_order(servers) -> None:
    lane, plain = servers
    _quiet_access_log()
    user = _new_user(lane)
    requests = [
        _order(user, LIMIT | {"newClientOrderId": "p1"}),
        b"GET /api/v3/ping HTTP/1.1\r\nHost: x\r\n\r\n",
        _order(user, LIMIT | {"newClientOrderId": "p2"}),
        _order(user, LIMIT | {"newClientOrderId": "p3"}),
        b"GET /api/v3/time HTTP/1.1\r\nHost: x\r\n\r\n",
    ]

    lane_answers, _ = _send_all(lane.port, requests, pipelined=True)
    plain_answers, _ = _send_all(plain.port, requests, pipelined=True)

    assert [b'"clientOrderId":"p' in a for a in lane_answers] == [True, False, True, True, False]
    assert [re.findall(rb'"clientOrderId":"(p\d)"', a) for a in lane_answers] == [[b"p1"], [], [b"p2"], [b"p3"], []]
    assert [_same_bytes(a) for a in lane_answers] == [_same_bytes(a) for a in plain_answers]


def _send_in_pieces(port: int, request: bytes, size: int) -> bytes:
    """The raw response to ``request`` written ``size`` bytes at a time, each piece its own TCP segment."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for start in range(0, len(request), size):
            conn.sendall(request[start : start + size])
            time.sleep(0.001)  # the server reads each piece on its own
        return _read_response(conn, bytearray())


@pytest.mark.parametrize("size", [1, 7, 64])
def test_a_request_that_arrives_in_pieces_is_answered_like_one_that_arrives_whole(servers, monkeypatch, size) -> None:
    lane, plain = servers
    _quiet_access_log()
    user = _new_user(lane)
    asgi_paths = _asgi_calls(monkeypatch)

    lane_answer = _send_in_pieces(lane.port, _order(user, LIMIT | {"newClientOrderId": f"piece-{size}"}), size)
    plain_answer = _send_in_pieces(plain.port, _order(user, LIMIT | {"newClientOrderId": f"piece-{size}"}), size)

    assert lane_answer.startswith(b"HTTP/1.1 200 OK")
    assert f'"clientOrderId":"piece-{size}"'.encode() in lane_answer
    assert asgi_paths == [ORDER]  # the lane took the order whatever its pieces; only the plain server's went to ASGI
    assert _same_bytes(lane_answer) == _same_bytes(plain_answer)


def test_a_client_that_goes_away_mid_request_leaves_nothing_behind(make_config) -> None:
    _quiet_access_log()
    config = make_config()
    server = Server(config, GatedEngine(config), LaneProtocol)
    try:
        user = _new_user(server)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            conn.sendall(_order(user, LIMIT))
            deadline = time.monotonic() + 10
            while server.engine.waiting == 0:  # the order reached the engine
                assert time.monotonic() < deadline
                time.sleep(0.01)
        while server.server.server_state.connections:  # the server saw the client go
            assert time.monotonic() < deadline
            time.sleep(0.01)

        server.call(server.engine.gate.set)  # the engine answers after the client left

        while server.engine.waiting:
            assert time.monotonic() < deadline, "the engine still holds the order"
            time.sleep(0.01)
        [again], _ = _send_all(server.port, [b"GET /api/v3/ping HTTP/1.1\r\nHost: x\r\n\r\n"])
        assert again.startswith(b"HTTP/1.1 200 OK")
    finally:
        server.call(server.engine.gate.set)
        server.close()


def test_a_graceful_stop_lets_a_lane_request_in_flight_answer_and_close(make_config) -> None:
    _quiet_access_log()
    config = make_config()
    server = Server(config, GatedEngine(config), LaneProtocol)
    closer = None
    try:
        user = _new_user(server)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            conn.sendall(_order(user, LIMIT))
            deadline = time.monotonic() + 10
            while server.engine.waiting == 0:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            server.server.should_exit = True  # uvicorn stops: the busy connection is told to close after it
            closer = threading.Thread(target=server.close)
            closer.start()
            time.sleep(0.3)
            server.call(server.engine.gate.set)

            answer = _read_response(conn, bytearray())

            assert answer.startswith(b"HTTP/1.1 200 OK")
            assert b"\r\nconnection: close\r\n" in answer
            assert _closed_after(conn)
    finally:
        server.call(server.engine.gate.set)
        if closer is not None:
            closer.join(15)
        else:
            server.close()


def test_drive_runs_a_coroutine_through_its_awaits_without_a_task() -> None:
    steps: list[str] = []
    failures: list[int] = []

    async def lane_like(answer: asyncio.Future[int]) -> None:
        steps.append(f"started in a task: {asyncio.current_task() is not None}")
        steps.append(f"answer {await answer}")
        await asyncio.sleep(0)  # a bare yield: the next loop pass
        steps.append("done")

    def protocol_callback(answer: asyncio.Future[int]) -> None:  # as uvicorn's data_received runs: no task
        drive(lane_like(answer), asyncio.get_running_loop(), lambda: failures.append(1))
        steps.append("drive returned")

    async def main() -> None:
        answer = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(protocol_callback, answer)
        await asyncio.sleep(0)
        answer.set_result(7)
        for _ in range(5):
            await asyncio.sleep(0)

    asyncio.run(main())

    assert steps == ["started in a task: False", "drive returned", "answer 7", "done"]
    assert failures == []


def test_drive_reports_a_coroutine_that_raises() -> None:
    class Stop(BaseException):
        pass

    failures: list[str] = []

    async def failing(answer: asyncio.Future[int]) -> None:
        await answer
        raise Stop

    async def main() -> None:
        answer = asyncio.get_running_loop().create_future()

        def failed() -> None:
            failures.append(type(sys.exc_info()[1]).__name__)  # called inside the except: the error is there

        drive(failing(answer), asyncio.get_running_loop(), failed)
        answer.set_result(1)
        await asyncio.sleep(0)

    asyncio.run(main())

    assert failures == ["Stop"]
