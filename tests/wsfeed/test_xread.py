"""The follower's own XREAD connection (``wsfeed.xread``) against the session's real Redis."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection, SSLConnection
from redis.exceptions import ResponseError

from wsfeed.xread import RedisPyXRead, XReadConnection


def _run(url: str, body: Any) -> Any:
    async def main() -> Any:
        client = aioredis.Redis.from_url(url)
        conn = XReadConnection.like(client)
        try:
            return await body(conn)
        finally:
            conn.close()
            await client.aclose()

    return asyncio.run(main())


@pytest.mark.parametrize("tcp", [False, True], ids=["unix", "tcp"])
def test_read_returns_the_raw_entries_after_the_given_ids(services: Any, tcp: bool) -> None:
    # arrange: two streams in a logical db (the connection must SELECT it and AUTH as the URL says)
    url = services.redis_db_url(tcp=tcp)
    sync = redis.Redis.from_url(url)
    first = sync.xadd("s:a", {b"f": b"1", b"e": b"\x01\x02"})
    second = sync.xadd("s:a", {b"f": b"2", b"e": b"\x03"})
    sync.xadd("s:b", {b"e": b"b"})

    families = []

    # act
    async def body(conn: XReadConnection) -> Any:
        found = await conn.read({"s:a": first, "s:b": "0-0"}, 10, 100)
        assert conn._proto is not None and conn._proto.transport is not None
        families.append(conn._proto.transport.get_extra_info("socket").family)
        return found

    found = _run(url, body)
    # assert
    assert families == [socket.AF_INET if tcp else socket.AF_UNIX]
    assert found == [[b"s:a", [[second, [b"f", b"2", b"e", b"\x03"]]]], [b"s:b", [[found[1][1][0][0], [b"e", b"b"]]]]]


def test_a_block_that_times_out_gives_none_and_an_error_reply_raises(services: Any) -> None:
    # arrange
    url = services.redis_db_url()
    redis.Redis.from_url(url).set("plain", b"x")

    # act
    async def body(conn: XReadConnection) -> Any:
        empty = await conn.read({"nothing": "0-0"}, 10, 20)
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await conn.read({"plain": "0-0"}, 10, 20)
        again = await conn.read({"nothing": "0-0"}, 10, 20)  # reconnects after the failed call
        return empty, again

    empty, again = _run(url, body)
    # assert
    assert empty is None and again is None


def test_a_connection_killed_by_the_server_raises_and_the_next_read_reconnects(services: Any) -> None:
    # arrange
    url = services.redis_db_url()
    sync = redis.Redis.from_url(url)
    entry = sync.xadd("s:k", {b"e": b"k"})

    # act
    async def body(conn: XReadConnection) -> Any:
        reading = asyncio.create_task(conn.read({"s:k": entry}, 10, 2000))
        await asyncio.sleep(0.2)  # the read is blocked in Redis
        db = sync.connection_pool.connection_kwargs["db"]
        blocked = [c["id"] for c in sync.client_list() if c["cmd"] == "xread" and int(c["db"]) == db]
        assert len(blocked) == 1
        sync.client_kill_filter(_id=blocked[0])
        with pytest.raises(ConnectionError):
            await reading
        later = sync.xadd("s:k", {b"e": b"later"})
        return later, await conn.read({"s:k": entry}, 10, 100)

    later, found = _run(url, body)
    # assert
    assert found == [[b"s:k", [[later, [b"e", b"later"]]]]]


def test_a_tls_client_reads_through_redis_py_in_the_same_raw_form(services: Any) -> None:
    # arrange: a client whose pool makes TLS connections gets the redis-py reader, here pointed at plain Redis
    url = services.redis_db_url(tcp=True)  # TLS is TCP: the plain connection class below needs host and port
    sync = redis.Redis.from_url(url)
    entry = sync.xadd("s:t", {b"f": b"1", b"e": b"x"})

    async def body(conn: Any) -> Any:
        client = aioredis.Redis.from_url(url)
        try:
            client.connection_pool.connection_class = SSLConnection  # what rediss:// sets
            reader = XReadConnection.like(client)
            client.connection_pool.connection_class = Connection  # reach the test's plain Redis all the same
            # act
            return type(reader), await reader.read({"s:t": "0-0"}, 10, 50), await conn.read({"s:t": "0-0"}, 10, 50)
        finally:
            await client.aclose()

    kind, via_redis_py, direct = _run(url, body)
    # assert
    assert kind is RedisPyXRead
    assert via_redis_py == direct == [[b"s:t", [[entry, [b"f", b"1", b"e", b"x"]]]]]
