"""Versioned database migrations: ``deploy/migrations/NNNN_name.sql``, applied in order at start.

``apply_migrations(dsn)`` applies every file not yet recorded in the table
``schema_migrations`` (version, name, checksum, applied_at), each in its own
transaction together with its record, under an advisory lock so that two
launchers sharing one database never apply the same file twice. It returns the
names applied by this call (``["0001_users"]``; ``[]`` when up to date). A file
whose content changed after it was applied is refused (``MigrationError``):
write a new migration instead of editing an applied one.

This module owns the schema's history; it must never drop or rewrite data on
its own initiative.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x65786368  # "exch": pg_advisory_lock key serialising migrations

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


class MigrationError(Exception):
    code = "migration"


@dataclass(frozen=True)
class Migration:
    version: str  # "0001"
    name: str  # "users"
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def label(self) -> str:
        return f"{self.version}_{self.name}"


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration file in ``directory``, in version order."""
    found: dict[str, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if match is None:
            raise MigrationError(f"migration file name {path.name!r} is not NNNN_lower_case_name.sql")
        version, name = match.groups()
        if version in found:
            raise MigrationError(f"migration version {version} is used twice: {found[version].label}, {path.stem}")
        found[version] = Migration(version=version, name=name, sql=path.read_text())
    return [found[v] for v in sorted(found)]


async def apply_migrations(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the migrations not yet recorded in ``schema_migrations``; return the labels applied now."""
    migrations = discover(directory)
    conn = await asyncpg.connect(dsn, timeout=30)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            await conn.execute(_CREATE_TABLE)
            rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
            recorded = {row["version"]: row for row in rows}
            for migration in migrations:
                row = recorded.get(migration.version)
                if row is not None:
                    if row["checksum"] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.label} changed after it was applied "
                            f"(recorded checksum {row['checksum'][:12]}, file {migration.checksum[:12]}): "
                            "add a new migration instead"
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        migration.version,
                        migration.name,
                        migration.checksum,
                    )
                applied_now.append(migration.label)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await conn.close()
    return applied_now
