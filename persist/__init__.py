"""persist: moves the engine's events from Redis into PostgreSQL (not built yet).

A later issue builds it: one process that reads every shard's Redis stream through a
consumer group, writes each batch to PostgreSQL in one transaction (binary COPY or a
multi-row insert, idempotent on ``(shard, seq)``) and acknowledges the entries only
after the commit. Until then this package holds nothing, and ``exchange up`` does not
start a persist process: orders, trades and history are not stored in PostgreSQL yet.
"""
