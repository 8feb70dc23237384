-- order_history_order (symbol_id, order_id, seq) served no query: every read path (ingress/resources/history.py)
-- reads orders and trades, never order_history by order. It cost persist one more index entry (and WAL record) for
-- each of the ~2.3 history rows an order writes, about a tenth of PostgreSQL's instructions per order (callgrind).
-- The primary key (shard, seq, order_id) stays: it guards exactly-once writing.
DROP INDEX IF EXISTS order_history_order;
