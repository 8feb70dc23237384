"""persist: moves the engine's events from the shard streams in Redis into PostgreSQL.

``persist.main.run`` is the process (one, started by ``exchange up`` after the
shards and stopped after them): a consumer group per shard stream, one
transaction per batch (binary COPY), idempotent on ``(shard, seq)``, XACK only
after the commit. ``persist.rows`` turns events into rows, ``persist.store``
holds the SQL. The tables are in ``deploy/migrations/0002_history.sql``.
"""
