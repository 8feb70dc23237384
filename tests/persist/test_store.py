"""persist's SQL and its Redis connection against the session PostgreSQL and Redis.

A write goes as one statement with array literals (small writes) or as binary
COPYs (from ``store.COPY_ROWS`` rows), and both must agree: strings come back
exactly as sent, a shard whose progress is not what its batch follows leaves
every table as it was (all shards of the write included), and a changed order
keeps the columns events never touch.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import asyncpg
import pytest
import redis

from deploy.migrate import apply_migrations
from persist import store
from persist.rows import Batch
from persist.streams import StreamClient
from shards.protocol import OrderAccepted, OrderCanceled, TradeEvent

TS = 1_700_000_000_000
ODD_IDS = ['q"uote', "back\\slash", "com,ma", "{brace}", "NULL", "", " spaced ", "ünï-cødé", "x" * 36]


@pytest.fixture
def dsn(services: Any) -> str:
    url = services.create_database("store")
    asyncio.run(apply_migrations(url))
    return url


def _accepted(seq: int, order_id: int, coid: str, side: int = 1, price: int = 100, qty: int = 5) -> OrderAccepted:
    return OrderAccepted(seq, TS + seq, 1, order_id, 7, coid, side, 1, 1, 0, price, qty, 0)


async def _write(dsn: str, batches: list[Batch]) -> None:
    conn = await store.connect(dsn)
    try:
        await store.prepare(conn)
        for b in batches:
            await store.progress(conn, b.shard)
        await store.write_batches(conn, batches)
    finally:
        await conn.close()


async def _fetch(dsn: str, sql: str) -> list[tuple]:
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


@pytest.mark.parametrize("copy_rows", [store.COPY_ROWS, 0], ids=["statement", "copy"])
def test_client_order_ids_come_back_exactly_as_sent(dsn: str, copy_rows: int, monkeypatch: Any) -> None:
    # arrange
    monkeypatch.setattr(store, "COPY_ROWS", copy_rows)
    batch = Batch(0, {}, 0)
    batch.add([_accepted(i + 1, i + 1, coid) for i, coid in enumerate(ODD_IDS)])
    # act
    asyncio.run(_write(dsn, [batch]))
    # assert
    rows = asyncio.run(_fetch(dsn, "SELECT client_order_id FROM orders ORDER BY order_id"))
    assert [r[0] for r in rows] == ODD_IDS


@pytest.mark.parametrize("copy_rows", [store.COPY_ROWS, 0], ids=["statement", "copy"])
def test_a_shard_behind_its_batch_leaves_every_table_untouched(dsn: str, copy_rows: int, monkeypatch: Any) -> None:
    # arrange: shard 0 follows seq 0 as the database says; shard 1's batch claims to follow seq 5
    monkeypatch.setattr(store, "COPY_ROWS", copy_rows)
    good = Batch(0, {}, 0)
    good.add([_accepted(1, 1, "a")])
    bad = Batch(1, {}, 5)
    bad.add([_accepted(6, 2, "b")])
    # act
    with pytest.raises(store.ProgressMismatch, match="nothing written"):
        asyncio.run(_write(dsn, [good, bad]))
    # assert
    assert asyncio.run(_fetch(dsn, "SELECT count(*) FROM orders")) == [(0,)]
    assert asyncio.run(_fetch(dsn, "SELECT count(*) FROM order_history")) == [(0,)]
    assert asyncio.run(_fetch(dsn, "SELECT shard, last_seq FROM persist_progress ORDER BY shard")) == [(0, 0), (1, 0)]


@pytest.mark.parametrize("copy_rows", [store.COPY_ROWS, 0], ids=["statement", "copy"])
def test_a_later_batch_updates_the_orders_it_changes_and_keeps_the_rest(
    dsn: str, copy_rows: int, monkeypatch: Any
) -> None:
    # arrange: a resting sell, then (next batch) a buy that fills 3 of it and a cancel of the rest
    monkeypatch.setattr(store, "COPY_ROWS", copy_rows)
    first = Batch(0, {}, 0)
    first.add([_accepted(1, 1, "sell", side=2)])
    cache: dict = {}
    second_events = [
        _accepted(2, 2, "buy", side=1, qty=3),
        TradeEvent(3, TS + 3, 1, 1, 100, 3, 1, 2, 7, 7, 1),
        OrderCanceled(4, TS + 4, 1, 1, 7, 2),
    ]

    async def both() -> None:
        await _write(dsn, [first])
        first.merge_into(cache)
        second = Batch(0, cache, first.last_seq)
        second.add(second_events)
        conn = await store.connect(dsn)
        try:
            await store.write_batches(conn, [second])
        finally:
            await conn.close()

    # act
    asyncio.run(both())
    # assert
    orders = asyncio.run(_fetch(dsn, "SELECT * FROM orders ORDER BY order_id"))
    assert orders == [
        (1, 1, 7, "sell", 2, 1, 1, 0, 100, 5, 3, 300, 0, 4, TS + 1, TS + 4, 0, 4),  # CANCELED after 3 filled
        (1, 2, 7, "buy", 1, 1, 1, 0, 100, 3, 3, 300, 0, 3, TS + 2, TS + 3, 0, 3),  # FILLED
    ]
    history = asyncio.run(_fetch(dsn, "SELECT * FROM order_history ORDER BY seq, order_id"))
    assert history == [
        (0, 1, 1, 1, 7, 1, 1, 100, 5, 0, TS + 1),
        (0, 2, 1, 2, 7, 1, 1, 100, 3, 0, TS + 2),
        (0, 3, 1, 1, 7, 2, 2, 100, 3, 1, TS + 3),
        (0, 3, 1, 2, 7, 2, 3, 100, 3, 1, TS + 3),
        (0, 4, 1, 1, 7, 3, 4, 100, 2, 0, TS + 4),
    ]
    trades = asyncio.run(_fetch(dsn, "SELECT * FROM trades"))
    assert trades == [(1, 1, 100, 3, 300, TS + 3, 1, 2, 7, 7, 1, 0, 3)]
    assert asyncio.run(_fetch(dsn, "SELECT last_seq FROM persist_progress")) == [(4,)]


@pytest.mark.parametrize("tcp", [False, True], ids=["unix", "tcp"])
def test_the_stream_client_reports_error_replies_and_reconnects(services: Any, tcp: bool) -> None:
    families = []

    async def main() -> tuple[list, list, list]:
        client = StreamClient(services.redis_db_url(tcp=tcp), 5.0)
        try:
            first = await client.call([[b"SET", b"k", b"1"], [b"INCR", b"k"]])
            assert client._writer is not None
            families.append(client._writer.get_extra_info("socket").family)
            with pytest.raises(redis.ResponseError):
                await client.call([[b"XADD", b"k", b"*", b"f", b"v"], [b"GET", b"k"]])  # k is not a stream
            same = await client.call([[b"GET", b"k"]])
            client.close()
            again = await client.call([[b"GET", b"k"]])
            return first, same, again
        finally:
            client.close()

    first, same, again = asyncio.run(main())
    assert first == [b"OK", 2]
    assert same == again == [b"2"]
    assert families == [socket.AF_INET if tcp else socket.AF_UNIX]


@pytest.mark.parametrize("values", [(), (7,), [-(2**63), 2**63 - 1, 0, -5], tuple(range(1000))], ids=len)
def test_integer_array_literals_come_back_as_the_integers(dsn: str, values: Any) -> None:
    # arrange
    literal = store._ints(values)  # noqa: SLF001 - the literal writer itself

    # act
    back = asyncio.run(_fetchval(dsn, "SELECT $1::text::bigint[]", literal))

    # assert
    assert back == list(values)


async def _fetchval(dsn: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()
