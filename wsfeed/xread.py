"""The stream follower's own Redis connection: ``XREAD`` packed by hand, replies parsed by hiredis, nothing else.

``XReadConnection.read(last, count, block_ms)`` sends one
``XREAD COUNT <count> BLOCK <block_ms> STREAMS <keys...> <ids...>`` and
returns Redis's raw reply: ``None`` when the block timed out, else
``[[key, [[entry_id, [field, value, ...]], ...]], ...]`` (bytes throughout, in
the order Redis sent them; no dict per entry).

Why not redis-py: its asyncio client spends about 130 µs of CPU per command
(connection pool, retry wrapper, ``wait_for``, observability hooks, packing
through encoders, a dict per entry) where this costs a write, a read and the
hiredis parse. The follower reads up to 500 times a second under load, so
that overhead was most of wsfeed's CPU per order.

The connection takes its address and credentials from a redis-py client's
pool (``connection_kwargs``: host/port or unix ``path``, ``username``,
``password``, ``db``), so it reaches the same server as the rest of the
process. A lost connection, a reply that does not come within the block time
plus ``REPLY_MARGIN_S``, or an error reply raise (``ConnectionError``,
``TimeoutError``: both ``OSError``; ``redis.exceptions.ResponseError``) and
close the connection; the next ``read`` connects again. One read at a time.
A TLS connection (``rediss://``) is not made here: ``XReadConnection.like``
then gives ``RedisPyXRead``, the same reads through the redis-py client.
Never writes to a stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import hiredis
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import ResponseError

from shards.journal import pack_command

CONNECT_TIMEOUT_S = 2.0
REPLY_MARGIN_S = 5.0


def _b(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiter: asyncio.Future[Any] | None = None
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        reply = self.reader.gets()
        if reply is not False:
            self.waiter = None
            waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = ConnectionError(f"redis connection lost: {exc!r}")
        waiter = self.waiter
        self.waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(self.lost)


class XReadConnection:
    """A connection of its own to the Redis server of ``kwargs`` (redis-py ``connection_kwargs``)."""

    def __init__(self, kwargs: Mapping[str, Any]) -> None:
        self.kwargs = dict(kwargs)
        self._proto: _Protocol | None = None

    @classmethod
    def like(cls, client: Any) -> XReadConnection | RedisPyXRead:
        """A connection to the server that the redis-py client ``client`` talks to.

        Plain TCP and unix sockets only: for anything else (TLS) the same reads go through ``client`` itself.
        """
        pool = client.connection_pool
        if pool.connection_class in (Connection, UnixDomainSocketConnection):
            return cls(pool.connection_kwargs)
        return RedisPyXRead(client)

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        kw = self.kwargs
        if kw.get("path"):
            connecting = loop.create_unix_connection(_Protocol, kw["path"])
        else:
            connecting = loop.create_connection(_Protocol, kw.get("host", "127.0.0.1"), int(kw.get("port", 6379)))
        _, proto = await asyncio.wait_for(connecting, kw.get("socket_connect_timeout") or CONNECT_TIMEOUT_S)
        self._proto = proto
        try:
            if kw.get("password"):
                auth = [b"AUTH", _b(kw["username"]), _b(kw["password"])] if kw.get("username") else None
                await self._call(auth or [b"AUTH", _b(kw["password"])], CONNECT_TIMEOUT_S)
            if kw.get("db"):
                await self._call([b"SELECT", _b(kw["db"])], CONNECT_TIMEOUT_S)
        except BaseException:
            self.close()
            raise
        return proto

    async def _call(self, args: list[bytes], timeout_s: float) -> Any:
        proto = self._proto if self._proto is not None else await self._connect()
        if proto.lost is not None or proto.transport is None:
            self.close()
            raise proto.lost or ConnectionError("redis connection is closed")
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        proto.waiter = waiter
        proto.transport.write(pack_command(args))
        timer = loop.call_later(timeout_s, _expire, waiter)
        try:
            reply = await waiter
        except BaseException:
            self.close()  # a reply may still come: never reuse a connection out of step with its replies
            raise
        finally:
            timer.cancel()
        if isinstance(reply, hiredis.ReplyError):
            raise ResponseError(str(reply))
        return reply

    async def read(self, last: Mapping[str, bytes | str], count: int, block_ms: int) -> list | None:
        """One XREAD of the streams in ``last`` after the entry ids given there (raw reply, see module doc)."""
        args = [b"XREAD", b"COUNT", b"%d" % count, b"BLOCK", b"%d" % block_ms, b"STREAMS"]
        args += [_b(key) for key in last]
        args += [_b(entry_id) for entry_id in last.values()]
        return await self._call(args, block_ms / 1000 + REPLY_MARGIN_S)

    def close(self) -> None:
        proto = self._proto
        self._proto = None
        if proto is not None and proto.transport is not None:
            proto.transport.close()


class RedisPyXRead:
    """The same ``read`` through a redis-py client (TLS connections): its reply reshaped into the raw form."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def read(self, last: Mapping[str, bytes | str], count: int, block_ms: int) -> list | None:
        found = await self.client.xread(dict(last), count=count, block=block_ms)
        if not found:
            return None
        return [
            [key, [[entry_id, [x for pair in fields.items() for x in pair]] for entry_id, fields in entries]]
            for key, entries in found
        ]

    def close(self) -> None:
        pass


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("no reply from redis in time"))
