"""deploy.migrate against the session PostgreSQL: applied once, recorded, idempotent, edits refused."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from deploy.migrate import MigrationError, apply_migrations, discover
from persist.rows import ORDER_COLUMNS


async def _fetch(dsn: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(query)
    finally:
        await conn.close()


def test_migrations_apply_once_and_are_recorded(services):
    dsn = services.create_database("migrate")

    first = asyncio.run(apply_migrations(dsn))
    second = asyncio.run(apply_migrations(dsn))

    assert first[0] == "0001_users" and first == [m.label for m in discover()]
    assert second == []
    rows = asyncio.run(_fetch(dsn, "SELECT version, name FROM schema_migrations ORDER BY version"))
    assert [(r["version"], r["name"]) for r in rows][0] == ("0001", "users")
    assert len(rows) == len(first)


def test_users_table_matches_the_contract(services):
    dsn = services.create_database("migrate")
    asyncio.run(apply_migrations(dsn))

    columns = asyncio.run(
        _fetch(
            dsn,
            "SELECT column_name, data_type, is_nullable, is_identity FROM information_schema.columns "
            "WHERE table_name = 'users' ORDER BY ordinal_position",
        )
    )

    assert [(c["column_name"], c["data_type"], c["is_nullable"]) for c in columns] == [
        ("id", "bigint", "NO"),
        ("api_key", "text", "NO"),
        ("secret_key", "text", "NO"),
        ("created_at", "timestamp with time zone", "NO"),
    ]
    assert columns[0]["is_identity"] == "YES"


async def _first_page_row_after_update(dsn: str) -> tuple[int, int]:
    """Fill the first page of ``orders`` as persist does (one insert of many orders), then make the update persist
    makes when a resting order fills (only ``UPDATED_COLUMNS``); (rows on the first page, the updated row's page)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            f"INSERT INTO orders ({', '.join(ORDER_COLUMNS)}) SELECT 1, n, 7, 'coid-' || n, 1, 1, 1, 0, 10000, 5, 0, 0,"
            " 0, 1, 1700000000000 + n, 1700000000000 + n, 0, n FROM generate_series(1, 400) n"
        )
        first_page = await conn.fetchval("SELECT count(*) FROM orders WHERE (ctid::text::point)[0] = 0")
        await conn.execute(
            "UPDATE orders SET executed_qty = 5, cum_quote = 50000, status = 3, update_time = update_time + 1,"
            " last_seq = 401 WHERE symbol_id = 1 AND order_id = 1"
        )
        page = await conn.fetchval("SELECT (ctid::text::point)[0]::int FROM orders WHERE order_id = 1")
        return first_page, page
    finally:
        await conn.close()


def test_an_order_that_fills_is_updated_in_place_on_its_page(services):
    dsn = services.create_database("migrate")
    asyncio.run(apply_migrations(dsn))

    first_page, page = asyncio.run(_first_page_row_after_update(dsn))

    assert first_page > 1  # the insert filled the first page as far as its fillfactor lets it
    assert page == 0  # the new version stayed on its page: a heap-only tuple, no new index entries


def test_an_edited_applied_migration_is_refused(services, tmp_path):
    dsn = services.create_database("migrate")
    (tmp_path / "0001_things.sql").write_text("CREATE TABLE things (id INT);")
    asyncio.run(apply_migrations(dsn, tmp_path))
    (tmp_path / "0001_things.sql").write_text("CREATE TABLE things (id BIGINT);")

    with pytest.raises(MigrationError, match="0001_things changed after it was applied"):
        asyncio.run(apply_migrations(dsn, tmp_path))


def test_a_failing_migration_leaves_no_record_and_later_ones_unapplied(services, tmp_path):
    dsn = services.create_database("migrate")
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE ok (id INT);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE bad (id INT); SELECT no_such_function();")
    (tmp_path / "0003_later.sql").write_text("CREATE TABLE later (id INT);")

    with pytest.raises(asyncpg.UndefinedFunctionError):
        asyncio.run(apply_migrations(dsn, tmp_path))

    rows = asyncio.run(_fetch(dsn, "SELECT version FROM schema_migrations"))
    tables = asyncio.run(_fetch(dsn, "SELECT tablename FROM pg_tables WHERE tablename IN ('ok', 'bad', 'later')"))
    assert [r["version"] for r in rows] == ["0001"]
    assert [t["tablename"] for t in tables] == ["ok"]


def test_badly_named_or_duplicate_files_are_refused(tmp_path):
    (tmp_path / "0001_a.sql").write_text("")
    (tmp_path / "0001_b.sql").write_text("")
    with pytest.raises(MigrationError, match="version 0001 is used twice"):
        discover(tmp_path)

    (tmp_path / "0001_b.sql").unlink()
    (tmp_path / "2-Users.sql").write_text("")
    with pytest.raises(MigrationError, match="2-Users.sql"):
        discover(tmp_path)


def test_order_history_keeps_its_primary_key_and_nothing_else(services):
    dsn = services.create_database("migrate")

    asyncio.run(apply_migrations(dsn))

    indexes = asyncio.run(
        _fetch(dsn, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'order_history' ORDER BY indexname")
    )
    assert [i["indexname"] for i in indexes] == ["order_history_pkey"]
    assert "(shard, seq, order_id)" in indexes[0]["indexdef"]


def test_dropping_order_history_order_keeps_the_rows_of_a_database_at_0002(services, tmp_path):
    # arrange: a database migrated up to 0002, with a history row
    dsn = services.create_database("migrate")
    for migration in discover()[:2]:
        (tmp_path / f"{migration.label}.sql").write_text(migration.sql)
    asyncio.run(apply_migrations(dsn, tmp_path))
    row = "(0, 1, 1, 7, 3, 1, 1, 10000, 5, 0, 1700000000000)"
    asyncio.run(_fetch(dsn, f"INSERT INTO order_history VALUES {row} RETURNING 1"))
    before = asyncio.run(_fetch(dsn, "SELECT indexname FROM pg_indexes WHERE tablename = 'order_history'"))
    # act
    applied = asyncio.run(apply_migrations(dsn))
    # assert
    assert sorted(i["indexname"] for i in before) == ["order_history_order", "order_history_pkey"]
    assert applied[0] == "0003_drop_order_history_order"
    rows = asyncio.run(_fetch(dsn, "SELECT * FROM order_history"))
    assert [tuple(r) for r in rows] == [(0, 1, 1, 7, 3, 1, 1, 10000, 5, 0, 1700000000000)]
    after = asyncio.run(_fetch(dsn, "SELECT indexname FROM pg_indexes WHERE tablename = 'order_history'"))
    assert [i["indexname"] for i in after] == ["order_history_pkey"]
