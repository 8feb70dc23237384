"""PostgreSQL side of persist: one statement (one round trip, one transaction) per write, idempotent on (shard, seq).

Owns: the SQL persist runs. A write holds one batch per shard (``rows.Batch``)
and is one prepared statement, run in the implicit transaction of a single
statement; every column of every table goes as one array literal (text,
``'{1,2,3}'``)::

    WITH p  AS (UPDATE persist_progress SET last_seq = <batch's last seq>
                WHERE shard = <its shard> AND last_seq = <the seq its batch follows>   -- for every shard
                RETURNING 1),
         w0 AS (INSERT INTO trades        SELECT unnest(<array of column 1>), unnest(<column 2>), ..),
         w1 AS (INSERT INTO order_history SELECT unnest(..), ..),
         w2 AS (INSERT INTO orders        SELECT unnest(..), ..),          -- orders the batches created
         w3 AS (UPDATE orders SET <UPDATED_COLUMNS> FROM (SELECT unnest(..), ..) u WHERE <primary key>)  -- changed
    SELECT 1 / (count(*) = <shards>)::int FROM p

The last line fails (division by zero) unless every shard's progress was what
its batch follows, and the failure undoes the whole statement: all or nothing,
raised as ``ProgressMismatch`` (another writer, or a commit whose answer was
lost). PostgreSQL runs the main query before the other data-modifying CTEs, so
a mismatch stops before any insert.

Why so (measured, ``loadtests/bench_persist.py``): the former BEGIN /
SELECT .. FOR UPDATE / four binary COPYs / UPDATE FROM a temporary table /
UPDATE / COMMIT cost about 13 round trips per shard and batch, and its UPDATE
FROM the temporary table (no statistics) was planned as a hash join over the
whole ``orders`` table, a cost that grew with the table. Text literals, not
binary arrays: asyncpg's binary array encoder runs an ``isinstance`` against
``collections.abc`` for every element (about 1 µs each), while ``str`` of an
int and a join cost a few tens of ns, and PostgreSQL's ``array_in`` parses an
element in about 0.2 µs. The arrays are unnested in the target list (a
ProjectSet node: one row per call, the arrays in lockstep), not in FROM:
``FROM unnest(a, b, ..)`` is one function scan per array, each materialised in
a tuplestore of its own and then zipped, which cost PostgreSQL a sixth of its
instructions per row (callgrind, ``loadtests/bench_persist.py --pg-callgrind``).
The plan is generic (prepared once per connection);
the changed orders are found by primary key: hash and merge joins are off for
this session, whose only joins are these key lookups (a table scan per batch
is never what it wants). Changed orders get only the columns events change
(``rows.UPDATED_COLUMNS``); the others never change after acceptance.

Large writes (``COPY_ROWS`` rows and more: a writer catching up) take the
other road, where per-row costs rule and binary COPY is cheaper for PostgreSQL
than parsing literals: one transaction of SELECT .. FOR UPDATE on the
progress rows (each must be what its batch follows, else ``ProgressMismatch``
and a rollback), COPY into trades, order_history and orders, COPY of the
changed orders into the temporary ``orders_stage`` and one UPDATE FROM it (a
nested loop on the primary key), and the progress moved.

Nothing here decides what to write (``persist/rows.py``) or talks to Redis.
Errors of the database are left to the caller, which retries the whole write.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg

from persist.rows import HISTORY_COLUMNS, ORDER_COLUMNS, TRADE_COLUMNS, UPDATED_COLUMNS, Batch, OrderKey

__all__ = ["HISTORY_COLUMNS", "ORDER_COLUMNS", "TRADE_COLUMNS", "ProgressMismatch", "write_batches"]

# Session settings of persist's connections (see the module docstring).
SERVER_SETTINGS = {"plan_cache_mode": "force_generic_plan", "enable_hashjoin": "off", "enable_mergejoin": "off"}

_TYPES = {
    "symbol_id": "int",
    "shard": "int",
    "client_order_id": "text",
    "side": "smallint",
    "order_type": "smallint",
    "tif": "smallint",
    "stp": "smallint",
    "status": "smallint",
    "taker_side": "smallint",
    "kind": "smallint",
}  # every other column is bigint


def _type(column: str) -> str:
    return _TYPES.get(column, "bigint")


def _unnest(columns: Sequence[str], first: int, alias: str = "u") -> str:
    """``unnest($first::text::<type>[], ..) AS alias(columns)``: one array literal per column."""
    params = ", ".join(f"${first + i}::text::{_type(c)}[]" for i, c in enumerate(columns))
    return f"unnest({params}) AS {alias}({', '.join(columns)})"


def _unnested(columns: Sequence[str], first: int) -> str:
    """``unnest($first::text::<type>[]) AS column, ..``: the rows of the arrays, unnested in a target list."""
    return ", ".join(f"unnest(${first + i}::text::{_type(c)}[]) AS {c}" for i, c in enumerate(columns))


def _build_write() -> str:
    n = 5  # $1..$3: the shards' arrays (shard, after_seq, last_seq), $4: how many
    parts = []
    for table, columns in (("trades", TRADE_COLUMNS), ("order_history", HISTORY_COLUMNS), ("orders", ORDER_COLUMNS)):
        parts.append(f"INSERT INTO {table} ({', '.join(columns)}) SELECT {_unnested(columns, n)}")
        n += len(columns)
    keyed = ("symbol_id", "order_id", *UPDATED_COLUMNS)
    assignments = ", ".join(f"{c} = u.{c}" for c in UPDATED_COLUMNS)
    parts.append(
        f"UPDATE orders o SET {assignments} FROM (SELECT {_unnested(keyed, n)}) u"
        " WHERE o.symbol_id = u.symbol_id AND o.order_id = u.order_id"
    )
    ctes = ", ".join(f"w{i} AS ({sql})" for i, sql in enumerate(parts))
    return (
        "WITH p AS (UPDATE persist_progress pp SET last_seq = v.last_seq, updated_at = now()"
        f" FROM {_unnest(('shard', 'after_seq', 'last_seq'), 1, 'v')}"
        f" WHERE pp.shard = v.shard AND pp.last_seq = v.after_seq RETURNING 1), {ctes}"
        " SELECT 1 / (count(*) = $4)::int FROM p"
    )


WRITE = _build_write()
COPY_ROWS = 2000  # rows in a write from which binary COPY costs less than parsing array literals (measured)
_STAGE_COLUMNS = ("symbol_id", "order_id", *UPDATED_COLUMNS)
_STAGE = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS orders_stage"
    f" ({', '.join(c + ' ' + _type(c) for c in _STAGE_COLUMNS)}) ON COMMIT DELETE ROWS"
)
_UPDATE_FROM_STAGE = (
    f"UPDATE orders o SET {', '.join(f'{c} = s.{c}' for c in UPDATED_COLUMNS)}"
    " FROM orders_stage s WHERE o.symbol_id = s.symbol_id AND o.order_id = s.order_id"
)
_LOCK = "SELECT shard, last_seq FROM persist_progress WHERE shard = ANY($1::int[]) FOR UPDATE"
_ADVANCE = (
    "UPDATE persist_progress p SET last_seq = v.last_seq, updated_at = now()"
    " FROM unnest($1::int[], $2::bigint[]) AS v(shard, last_seq) WHERE p.shard = v.shard"
)
_COID = ORDER_COLUMNS.index("client_order_id")
_LOAD = (
    f"SELECT {', '.join(ORDER_COLUMNS)} FROM orders o"
    " JOIN unnest($1::int[], $2::bigint[]) AS k(symbol_id, order_id) USING (symbol_id, order_id)"
)


class ProgressMismatch(Exception):
    """The database is not where this writer thought (another writer, or a commit whose answer was lost)."""

    code = -1000


async def connect(dsn: str, timeout: float = 5.0) -> asyncpg.Connection:
    """A connection with persist's session settings, ready to write (``prepare``)."""
    conn = await asyncpg.connect(dsn, timeout=timeout, server_settings=SERVER_SETTINGS)
    try:
        await prepare(conn)
    except BaseException:
        await conn.close()
        raise
    return conn


async def prepare(conn: asyncpg.Connection) -> None:
    """The COPY path's staging table, and the statement prepared (asyncpg keeps it in its statement cache)."""
    await conn.execute(_STAGE)
    await conn.prepare(WRITE)


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


def _ints(column: Sequence[int]) -> str:
    """An array literal of integers (plain ``int``s): PostgreSQL parses it (``array_in``) for far less than binary
    arrays cost here. ``repr`` of the tuple or list (``(1, 2, 3)``) writes it in C, at half the cost of joining
    ``str`` of each; array_in skips the blanks. One element: its tuple's repr would end in a comma."""
    return "{" + repr(column)[1:-1] + "}" if len(column) != 1 else f"{{{column[0]}}}"


def _texts(column: Sequence[str]) -> str:
    """An array literal of strings, each quoted (backslash and double quote escaped)."""
    return "{" + ",".join(['"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"' for t in column]) + "}"


def _columns(rows: list, count: int, text: int = -1) -> list[str]:
    """``rows`` as ``count`` array literals, one per column (column ``text`` holds strings)."""
    if not rows:
        return ["{}"] * count
    return [(_texts(c) if i == text else _ints(c)) for i, c in enumerate(zip(*rows, strict=True))]


async def write_batches(conn: asyncpg.Connection, batches: Sequence[Batch]) -> None:
    """Write ``batches`` (one per shard, each the events after its ``after``) and move every shard's progress to
    its batch's last seq, in one transaction: all of it, or nothing and ``ProgressMismatch``."""
    trades: list[tuple] = []
    history: list[tuple] = []
    created: list[tuple] = []
    changed: list[tuple] = []
    for batch in batches:
        trades += batch.trades
        history += batch.history
        new, old = batch.split_order_rows()
        created += new
        changed += old
    if len(trades) + len(history) + len(created) + len(changed) >= COPY_ROWS:
        await _copy(conn, batches, trades, history, created, changed)
        return
    try:
        await conn.fetchval(
            WRITE,
            _ints([b.shard for b in batches]),
            _ints([b.after for b in batches]),
            _ints([b.last_seq for b in batches]),
            len(batches),
            *_columns(trades, len(TRADE_COLUMNS)),
            *_columns(history, len(HISTORY_COLUMNS)),
            *_columns(created, len(ORDER_COLUMNS), _COID),
            *_columns(changed, 2 + len(UPDATED_COLUMNS)),
        )
    except asyncpg.DivisionByZeroError:  # the statement's check: some shard's progress is not what its batch follows
        await _mismatch(conn, batches)


async def _copy(conn: asyncpg.Connection, batches: Sequence[Batch], *rows: list[tuple]) -> None:
    """The same write for many rows: binary COPYs in one transaction (see the module docstring)."""
    trades, history, created, changed = rows
    shards = [b.shard for b in batches]
    async with conn.transaction():
        now = dict(await conn.fetch(_LOCK, shards))
        if any(now.get(b.shard) != b.after for b in batches):
            follows = {b.shard: b.after for b in batches}
            raise ProgressMismatch(f"database at seqs {now}, the batches follow {follows}: nothing written")
        for table, columns, records in (
            ("trades", TRADE_COLUMNS, trades),
            ("order_history", HISTORY_COLUMNS, history),
            ("orders", ORDER_COLUMNS, created),
            ("orders_stage", _STAGE_COLUMNS, changed),
        ):
            if records:
                await conn.copy_records_to_table(table, records=records, columns=columns)
        if changed:
            await conn.execute(_UPDATE_FROM_STAGE)
        await conn.execute(_ADVANCE, shards, [b.last_seq for b in batches])


async def _mismatch(conn: asyncpg.Connection, batches: Sequence[Batch]) -> None:
    now = await all_progress(conn)
    follows = {b.shard: b.after for b in batches}
    raise ProgressMismatch(f"database at seqs {now}, the batches follow {follows}: nothing written")
