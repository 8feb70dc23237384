"""PostgreSQL side of persist: one transaction per batch, idempotent on (shard, seq).

Owns: the SQL persist runs. A batch is written as::

    BEGIN
    SELECT last_seq FROM persist_progress WHERE shard = $1 FOR UPDATE   -- must equal what the batch follows
    COPY trades, COPY order_history                  (binary COPY)
    COPY orders (the orders the batch created)
    COPY orders_stage; UPDATE orders FROM orders_stage (orders that existed before the batch)
    UPDATE persist_progress SET last_seq = <batch's last seq>
    COMMIT

Nothing here decides what to write (``persist/rows.py``) or talks to Redis.
Errors of the database are left to the caller, which retries the whole batch.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from persist.rows import HISTORY_COLUMNS, ORDER_COLUMNS, TRADE_COLUMNS, Batch, OrderKey

_STAGE = "CREATE TEMPORARY TABLE IF NOT EXISTS orders_stage (LIKE orders) ON COMMIT DELETE ROWS"
_UPDATE = (
    "UPDATE orders o SET "
    + ", ".join(f"{c} = s.{c}" for c in ORDER_COLUMNS[2:])
    + " FROM orders_stage s WHERE o.symbol_id = s.symbol_id AND o.order_id = s.order_id"
)
_LOAD = (
    f"SELECT {', '.join(ORDER_COLUMNS)} FROM orders o"
    " JOIN unnest($1::int[], $2::bigint[]) AS k(symbol_id, order_id) USING (symbol_id, order_id)"
)

_ADVANCE = "UPDATE persist_progress SET last_seq = $2, updated_at = now() WHERE shard = $1"


class ProgressMismatch(Exception):
    """The database is not where this writer thought (another writer, or a commit whose answer was lost)."""

    code = -1000


async def prepare(conn: asyncpg.Connection) -> None:
    await conn.execute(_STAGE)


async def progress(conn: asyncpg.Connection, shard: int) -> int:
    """Last seq of ``shard`` written (0 when none); creates its progress row."""
    await conn.execute(
        "INSERT INTO persist_progress (shard, last_seq) VALUES ($1, 0) ON CONFLICT (shard) DO NOTHING", shard
    )
    return int(await conn.fetchval("SELECT last_seq FROM persist_progress WHERE shard = $1", shard))


async def all_progress(conn: asyncpg.Connection) -> dict[int, int]:
    return {r["shard"]: r["last_seq"] for r in await conn.fetch("SELECT shard, last_seq FROM persist_progress")}


async def load_orders(conn: asyncpg.Connection, keys: Iterable[OrderKey]) -> dict[OrderKey, list]:
    keys = list(keys)
    if not keys:
        return {}
    rows = await conn.fetch(_LOAD, [k[0] for k in keys], [k[1] for k in keys])
    return {(r["symbol_id"], r["order_id"]): list(r.values()) for r in rows}


async def write_batch(conn: asyncpg.Connection, batch: Batch, after_seq: int) -> None:
    """Write ``batch`` (events after ``after_seq``) and move the progress to its last seq, atomically."""
    async with conn.transaction():
        current = await conn.fetchval("SELECT last_seq FROM persist_progress WHERE shard = $1 FOR UPDATE", batch.shard)
        if current != after_seq:
            raise ProgressMismatch(f"shard {batch.shard}: database at seq {current}, batch follows {after_seq}")
        if batch.trades:
            await conn.copy_records_to_table("trades", records=batch.trades, columns=TRADE_COLUMNS)
        if batch.history:
            await conn.copy_records_to_table("order_history", records=batch.history, columns=HISTORY_COLUMNS)
        created, changed = batch.split_order_rows()
        if created:
            await conn.copy_records_to_table("orders", records=created, columns=ORDER_COLUMNS)
        if changed:
            await conn.copy_records_to_table("orders_stage", records=changed, columns=ORDER_COLUMNS)
            await conn.execute(_UPDATE)
        await conn.execute(
            "UPDATE persist_progress SET last_seq = $2, updated_at = now() WHERE shard = $1",
            batch.shard,
            batch.last_seq,
        )
