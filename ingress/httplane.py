"""uvicorn's httptools protocol with the order fast lane served straight from the parser, without ASGI.

``LaneProtocol`` is what an ingress worker gives uvicorn as its ``http``
protocol class. Every request is served exactly as uvicorn's
``HttpToolsProtocol`` serves it, except a plain signed ``POST /api/v3/order``
(the request the fast lane of ``ingress/fastpath.py`` takes): that one goes
from ``on_headers_complete`` to ``FastOrderPost.answer``, run without a Task
(``drive``), and its answer is written in one socket write (``Replier.write_cycle``),
without the ASGI scope, the ``RequestResponseCycle``, ``run_asgi`` and the
app's dispatch, and without building the scope uvicorn makes at each
request's start (callgrind, one worker, paced single orders: 249k -> 222k
instructions per order, and 210k without the Task).

A request takes the lane only when nothing about it needs uvicorn: method
POST over HTTP/1.1, the URL exactly ``/api/v3/order`` with an ASCII query
string and no fragment, no body (no Content-Length other than 0, no
Transfer-Encoding), no ``Expect``, at most one ``X-MBX-APIKEY``, no upgrade,
no concurrency limit and no access log configured, and the app is the
exchange's (its ``fast_order`` set). Anything else is uvicorn's, unchanged.

The lane's request stands in uvicorn's per-connection state as a
``LaneCycle``: a request pipelined behind it is queued by uvicorn as behind
any other (and started by ``on_response_complete`` once the lane has
written), a graceful shutdown waits for its connection, which closes after
its answer, and a client that goes away marks it disconnected, so its
answer is dropped and nothing of it stays behind.

The coupling is to names of uvicorn's httptools protocol (``cycle``,
``headers``, ``url``, ``flow``, ``on_response_complete``, ``server_state``),
checked by ``lane_is_supported`` at start: where they differ, the
worker runs the plain ``httptools`` protocol (``tests/ingress/test_httplane.py``
compares the two on a real server).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from ingress.fastpath import PATH, failure, plain_headers
from ingress.reply import Replier, defaults_are_plain

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - uvicorn without httptools: no lane
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

log = logging.getLogger("ingress.httplane")

_PATH = PATH.encode()
_PATH_QUERY = _PATH + b"?"
_PROTOCOL_NAMES = ("on_headers_complete", "on_message_complete", "on_response_complete", "connection_lost")


class _NoEvent:
    """The ``message_event`` of a lane request: nothing waits on it (the lane reads no body)."""

    __slots__ = ()

    def set(self) -> None:
        return None


_NO_EVENT = _NoEvent()


class LaneCycle:
    """A lane request in uvicorn's place of a ``RequestResponseCycle``: the fields uvicorn's protocol and
    ``Replier.write_cycle`` read and write."""

    __slots__ = (
        "transport",
        "flow",
        "default_headers",
        "on_response",
        "keep_alive",
        "disconnected",
        "response_started",
        "response_complete",
        "waiting_for_100_continue",
        "chunked_encoding",
        "expected_content_length",
        "more_body",
        "body",
    )
    access_log = False
    message_event = _NO_EVENT

    def __init__(self, protocol: Any, keep_alive: bool) -> None:
        self.transport = protocol.transport
        self.flow = protocol.flow
        self.default_headers = protocol.server_state.default_headers
        self.on_response = protocol.on_response_complete
        self.keep_alive = keep_alive
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self.waiting_for_100_continue = False
        self.chunked_encoding = None
        self.expected_content_length = 0
        self.more_body = False
        self.body = b""


def lane_is_supported() -> bool:
    """True when uvicorn's httptools protocol has the methods ``LaneProtocol`` builds on."""
    return HttpToolsProtocol is not None and all(hasattr(HttpToolsProtocol, name) for name in _PROTOCOL_NAMES)


def drive(coro: Coroutine[Any, Any, None], loop: asyncio.AbstractEventLoop, failed: Callable[[], None]) -> None:
    """Run ``coro`` to its next wait now, and on from there, without a Task of its own.

    What the lane awaits (the engine's answer, a user lookup, a drain) is an asyncio future: its done
    callback runs the next step, as a Task's wakeup would, without the Task's creation and its first
    step scheduled for the next loop pass. A bare ``yield`` (``asyncio.sleep(0)``) gets the next loop
    pass. ``failed`` is called (inside the ``except``) when ``coro`` raises. Nothing cancels it: a
    graceful stop waits for the request as for any other, by waiting for its connection to close.
    """
    try:
        awaited = coro.send(None)
    except StopIteration:
        return
    except BaseException:
        failed()
        return
    if getattr(awaited, "_asyncio_future_blocking", False):
        awaited._asyncio_future_blocking = False  # type: ignore[union-attr]
        awaited.add_done_callback(lambda _: drive(coro, loop, failed))  # type: ignore[union-attr]
    else:
        loop.call_soon(drive, coro, loop, failed)


class LaneProtocol(HttpToolsProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's httptools protocol, with plain signed ``POST /api/v3/order`` requests answered by the fast lane."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        fast = getattr(self.app, "fast_order", None)  # None: another app, or uvicorn wrapped ours
        config = self.config
        if fast is not None and (
            self.limit_concurrency is not None
            or self.access_log
            or config.root_path
            or not defaults_are_plain(config.encoded_headers)
        ):
            fast = None
        self.lane = fast
        self.replier: Replier | None = getattr(fast, "replier", None)

    def on_message_begin(self) -> None:
        if self.lane is None:
            super().on_message_begin()
            return
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.scope = None  # built by uvicorn's on_message_begin when the request is not the lane's

    def _uvicorn_scope(self) -> None:
        """The ASGI scope uvicorn's ``on_message_begin`` builds, for a request the lane leaves to it."""
        url, headers, expect_100_continue = self.url, self.headers, self.expect_100_continue
        super().on_message_begin()  # resets these three: the parser has already given them
        self.url, self.expect_100_continue = url, expect_100_continue
        self.headers = self.scope["headers"] = headers

    def on_headers_complete(self) -> None:
        lane = self.lane
        if lane is not None:
            url = self.url
            parser = self.parser
            if (
                (url == _PATH or url.startswith(_PATH_QUERY))
                and parser.get_method() == b"POST"
                and parser.get_http_version() == "1.1"
                and url.isascii()
                and b"#" not in url
                and not parser.should_upgrade()
                and (self.cycle is None or self.cycle.response_complete)
            ):
                plain, api_key = plain_headers(self.headers)
                if plain:
                    self._start_lane(url[len(_PATH_QUERY) :], api_key, parser.should_keep_alive())
                    return
            self._uvicorn_scope()
        super().on_headers_complete()

    def _start_lane(self, query: bytes, api_key: bytes | None, keep_alive: bool) -> None:
        cycle = self.cycle = LaneCycle(self, keep_alive)
        drive(self._serve_lane(cycle, query, api_key), self.loop, self._lane_failed)

    def _lane_failed(self) -> None:
        log.exception("lane_request_failed path=%s", PATH)
        self.transport.close()

    async def _serve_lane(self, cycle: LaneCycle, query: bytes, api_key: bytes | None) -> None:
        try:
            answer = await self.lane.answer(query, api_key)
            if answer is None:  # the lane declines only a query string that is not UTF-8: never ASCII
                raise RuntimeError("the fast lane declined an ASCII query string")
        except Exception as ex:  # noqa: BLE001 - logged with a request id and answered 500 / -1000, as falcon does
            answer = failure(ex)
        status, headers, body = answer
        if cycle.disconnected:  # the client went away: nothing to write, nothing left behind
            return
        if cycle.flow.write_paused:
            await cycle.flow.drain()
            if cycle.disconnected:
                return
        if not self.replier.write_cycle(cycle, status, headers, body):  # type: ignore[union-attr]
            log.error("lane_answer_unwritable path=%s status=%d: closing the connection", PATH, status)
            cycle.transport.close()
