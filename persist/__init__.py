"""persist: moves the engine's events from the shard streams in Redis into PostgreSQL.

``persist.main.run`` is the process (one, started by ``exchange up`` after the
shards and stopped after them): one writer for every shard stream, reading
them through a consumer group in one XREADGROUP, writing what one read brings
in one statement and one transaction, idempotent on ``(shard, seq)``, and
acknowledging only after the commit. ``persist.rows`` turns the packed events
into rows, ``persist.store`` holds the SQL, ``persist.streams`` the Redis
connection. The tables are in ``deploy/migrations/0002_history.sql``.
"""
