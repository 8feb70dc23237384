"""persist's connection to Redis: raw RESP on one asyncio stream, replies parsed by hiredis.

Owns: one connection (``redis://``, ``rediss://`` or ``unix://`` URL, as
redis-py reads it: user, password, db), the consumer-group commands persist
sends, and their replies as hiredis gives them (lists of bytes, no dicts).
Several commands go out in one write and their replies are read together
(``call``): persist sends the XACKs of a committed batch with the next
XREADGROUP, one round trip for both. Measured here: about a third of
redis-py's asyncio client CPU for a read and an ack (no task per send, no
reply callbacks).

Never: retries (the caller does), or keeps a connection after an error:
any failure closes it, and the next call connects again. Errors are raised
as redis-py's (``redis.ConnectionError``, ``redis.TimeoutError``,
``redis.ResponseError``), which the caller already handles.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from typing import Any

import hiredis
import redis
from redis.connection import SSLConnection, parse_url

from shards.journal import pack_command

READ_BYTES = 1 << 16


class StreamClient:
    """One Redis connection for reading streams through a consumer group."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.options = parse_url(url)
        self.timeout_s = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._parser = hiredis.Reader()

    async def _connect(self) -> None:
        o = self.options
        if "path" in o:
            self._reader, self._writer = await asyncio.open_unix_connection(o["path"])
        else:
            tls = ssl.create_default_context() if o.get("connection_class") is SSLConnection else None
            self._reader, self._writer = await asyncio.open_connection(
                o.get("host", "localhost"), o.get("port", 6379), ssl=tls
            )
        self._parser = hiredis.Reader()
        hello: list[bytes] = []
        if o.get("password"):
            auth = [b"AUTH", str(o["password"]).encode()]
            if o.get("username"):
                auth.insert(1, str(o["username"]).encode())
            hello.append(pack_command(auth))
        if o.get("db"):
            hello.append(pack_command([b"SELECT", b"%d" % int(o["db"])]))
        if hello:
            await self._exchange(b"".join(hello), len(hello))

    async def _exchange(self, data: bytes, replies: int) -> list[Any]:
        assert self._writer is not None and self._reader is not None
        self._writer.write(data)
        parser = self._parser
        out = []
        while len(out) < replies:
            reply = parser.gets()
            if reply is False:
                chunk = await self._reader.read(READ_BYTES)
                if not chunk:
                    raise redis.ConnectionError("Redis closed the connection")
                parser.feed(chunk)
                continue
            if isinstance(reply, hiredis.ReplyError):
                out.append(redis.ResponseError(str(reply)))
            else:
                out.append(reply)
        return out

    async def call(self, commands: Sequence[Sequence[bytes]]) -> list[Any]:
        """Send ``commands`` in one write; their replies, in order (an error reply raises, after all are read)."""
        try:
            async with asyncio.timeout(self.timeout_s):
                if self._writer is None:
                    await self._connect()
                replies = await self._exchange(b"".join(pack_command(c) for c in commands), len(commands))
        except TimeoutError:
            self.close()
            raise redis.TimeoutError(f"Redis did not answer within {self.timeout_s} s") from None
        except OSError as exc:
            self.close()
            raise redis.ConnectionError(f"Redis connection failed: {exc}") from exc
        except BaseException:
            self.close()
            raise
        for reply in replies:
            if isinstance(reply, redis.ResponseError):
                raise reply
        return replies

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
