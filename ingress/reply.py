"""A whole HTTP response in one socket write, for the fast lane on uvicorn's httptools protocol.

An ASGI response is two messages, and uvicorn writes each at once: the status
line and headers, then the body, so every answer costs two ``send`` system
calls (each a trip through the loopback TCP stack) plus uvicorn's per-header
checks. ``Replier.reply`` writes the same bytes in one ``transport.write``
when ``send`` is the bound ``send`` of uvicorn's httptools
``RequestResponseCycle`` and nothing asks for the general path; it then sets
the cycle's state exactly as uvicorn's own ``send`` does for a response with a
Content-Length (started, complete, message event set, connection closed when
not keep-alive, ``on_response`` called). The bytes are those uvicorn would
write: status line, uvicorn's default headers (``date``, ``server``), the
given headers, the optional ``connection: close``, the body
(``tests/ingress/test_reply.py`` compares them on a real server).

It falls back to the two ASGI messages whenever it cannot vouch for that: a
``send`` of any other server or version, the access log on, a response
already started, writing paused by flow control, a disconnected client, or
default headers that uvicorn would interpret (connection, content-length,
transfer-encoding). Never logs, never raises for a condition it can check.

``OneWriteSend`` gives the same one write to an ASGI app that sends the two
messages itself (falcon, for every route but the fast lane): it holds the
``http.response.start`` message and, when the whole body follows in one
``http.response.body``, answers both with ``Replier.write``; anything it cannot
vouch for (a HEAD request, a streamed body, a content-length that is not the
body's, a header uvicorn interprets or would refuse) goes to uvicorn's ``send``
as the messages it was given, in order. ``flush`` hands on a start still held
when the app ends without a body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

try:  # the coupling is to these names of uvicorn's httptools protocol, checked at import
    from uvicorn.protocols.http.httptools_impl import HEADER_RE as _HEADER_RE
    from uvicorn.protocols.http.httptools_impl import HEADER_VALUE_RE as _HEADER_VALUE_RE
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE as _STATUS_LINE
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle as _Cycle
except ImportError:  # pragma: no cover - uvicorn without httptools: always the ASGI path
    _Cycle = None
    _STATUS_LINE = {}
    _HEADER_RE = _HEADER_VALUE_RE = None

Send = Callable[[dict[str, Any]], Awaitable[None]]
Header = tuple[bytes, bytes]

_CYCLE_FIELDS = (
    "transport",
    "flow",
    "access_log",
    "default_headers",
    "message_event",
    "on_response",
    "disconnected",
    "keep_alive",
    "waiting_for_100_continue",
    "response_started",
    "response_complete",
    "chunked_encoding",
    "expected_content_length",
)
_INTERPRETED = frozenset((b"connection", b"content-length", b"transfer-encoding"))
_CLOSE = b"connection: close\r\n"


def defaults_are_plain(defaults: Sequence[Header]) -> bool:
    """True when none of uvicorn's default headers is one it would interpret (connection, content-length,
    transfer-encoding): then a response can be written with them as they are."""
    return not _INTERPRETED.intersection(name.lower() for name, _ in defaults)


def _cycle_is_known() -> bool:
    """True when uvicorn's RequestResponseCycle sets every field this module reads and writes."""
    if _Cycle is None:
        return False
    init = getattr(_Cycle.__init__, "__code__", None)
    names = set(init.co_names) if init is not None else set()
    return all(field in names for field in _CYCLE_FIELDS) and 200 in _STATUS_LINE


class Replier:
    """``await replier.reply(send, status, headers, body)``: one write where it can, the ASGI messages elsewhere.

    ``write`` is its synchronous first half (no coroutine on the hot path): True when it answered.
    """

    def __init__(self) -> None:
        self.enabled = _cycle_is_known()
        self._defaults_of: object = None  # the default_headers list the cached bytes were made from
        self._defaults = b""  # those headers as uvicorn writes them
        self._defaults_ok = False  # False when uvicorn would interpret one of them: the ASGI path then
        self.direct = 0  # answers written in one go (tests read it)

    async def reply(self, send: Send, status: int, headers: Sequence[Header], body: bytes) -> None:
        """Answer ``status`` with ``headers`` (lower-case names, one content-length) and ``body``."""
        if not self.write(send, status, headers, body):
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    def write(self, send: Send, status: int, headers: Sequence[Header], body: bytes) -> bool:
        """The one-write answer when it can vouch for it (True); False: nothing done, send the ASGI messages."""
        cycle = getattr(send, "__self__", None)
        if (
            type(cycle) is not _Cycle
            or not self.enabled
            or cycle.response_started
            or cycle.access_log
            or cycle.disconnected
            or cycle.flow.write_paused
        ):
            return False
        return self.write_cycle(cycle, status, headers, body)

    def write_cycle(self, cycle: Any, status: int, headers: Sequence[Header], body: bytes) -> bool:
        """``write`` to a cycle already known to be writable (uvicorn's, or ``httplane.LaneCycle``): False,
        nothing written, only when uvicorn would interpret one of its default headers."""
        defaults = cycle.default_headers
        if defaults is not self._defaults_of:
            self._load_defaults(defaults)
        if not self._defaults_ok:
            return False
        self._write(cycle, status, headers, body)
        return True

    def _load_defaults(self, defaults: list[Header]) -> None:
        self._defaults_of = defaults
        lines = [(name.lower(), value) for name, value in defaults]  # uvicorn writes names lower-cased
        self._defaults_ok = defaults_are_plain(lines)
        self._defaults = b"".join(name + b": " + value + b"\r\n" for name, value in lines)

    def _write(self, cycle: Any, status: int, headers: Sequence[Header], body: bytes) -> None:
        self.direct += 1
        cycle.response_started = True
        cycle.waiting_for_100_continue = False
        cycle.chunked_encoding = False
        cycle.expected_content_length = 0
        parts = [_STATUS_LINE[status], self._defaults]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        keep_alive = cycle.keep_alive
        if not keep_alive:
            parts.append(_CLOSE)
        parts += (b"\r\n", body)
        transport = cycle.transport
        transport.write(b"".join(parts))
        cycle.response_complete = True
        cycle.message_event.set()
        if not keep_alive:
            transport.close()
        cycle.on_response()


class OneWriteSend:
    """An ASGI ``send`` for one request that joins a start and a whole body into one ``Replier.write``.

    ``await app(scope, receive, one)`` then ``await one.flush()``: the messages reach ``send``
    unchanged (or as one write with the same bytes), in the order the app sent them.
    """

    __slots__ = ("send", "replier", "held", "passing")

    def __init__(self, send: Send, replier: Replier) -> None:
        self.send = send
        self.replier = replier
        self.held: dict[str, Any] | None = None  # the start message, until its body comes
        self.passing = False  # True once the messages go to ``send`` as they come

    async def __call__(self, message: dict[str, Any]) -> None:
        if self.passing:
            await self.send(message)
            return
        start = self.held
        if start is None:
            if message["type"] == "http.response.start" and not message.get("trailers"):
                self.held = message
                return
            self.passing = True
            await self.send(message)
            return
        self.held = None
        self.passing = True
        if (
            message["type"] == "http.response.body"
            and not message.get("more_body", False)
            and self._write(start, message.get("body", b""))
        ):
            return
        await self.send(start)
        await self.send(message)

    def _write(self, start: dict[str, Any], body: bytes) -> bool:
        """The one write of ``start`` and ``body`` when uvicorn would write the same bytes (True)."""
        status = start["status"]
        if status not in _STATUS_LINE or status in (204, 304):
            return False
        headers = []
        length = -1
        for name, value in start.get("headers", ()):
            name = name.lower()
            if _HEADER_RE.search(name) or _HEADER_VALUE_RE.search(value):  # type: ignore[union-attr]
                return False  # uvicorn refuses it: let it
            if name == b"content-length":
                if length != -1 or not value.isdigit():
                    return False
                length = int(value)
            elif name in _INTERPRETED:
                return False
            headers.append((name, value))
        if length != len(body):
            return False
        cycle = getattr(self.send, "__self__", None)
        if type(cycle) is not _Cycle or cycle.scope["method"] == "HEAD":  # uvicorn writes no body for HEAD
            return False
        return self.replier.write(self.send, status, headers, body)

    async def flush(self) -> None:
        """Hand on a start message still held (the app ended without sending its body)."""
        start = self.held
        if start is not None:
            self.held = None
            self.passing = True
            await self.send(start)
