-- Room on each orders page for the updates persist makes when a resting order fills, is canceled or amended.
-- Those updates change only columns no index holds (persist/rows.py UPDATED_COLUMNS), so with free space on the
-- row's page PostgreSQL writes them as heap-only tuples: no new entry in any of the table's four indexes. At the
-- default fillfactor of 100 an order's page is full by the time it fills, and every such update wrote four index
-- entries. Measured (loadtests/bench_persist.py --pg-callgrind, 200 commands a write): 152.6k -> 144.8k PostgreSQL
-- instructions per command. Pages written from now on get the room; existing pages keep theirs.
ALTER TABLE orders SET (fillfactor = 80);
