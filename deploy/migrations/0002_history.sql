-- Orders, trades, per-order history and persist progress, written by persist/ from the shard streams.
-- Money and quantities are integers in engine units: prices in ticks, quantities in lots, quote amounts
-- in tick*lot units of the symbol (deploy config: tick_size, step_size). Times are ms since the epoch.
-- Idempotency: persist_progress holds, per matching shard, the last stream sequence number written;
-- persist writes a batch and moves it forward in one transaction, so (shard, seq) is never written twice.

CREATE TABLE orders (
    symbol_id INTEGER NOT NULL,
    order_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    client_order_id TEXT NOT NULL,
    side SMALLINT NOT NULL,
    order_type SMALLINT NOT NULL,
    tif SMALLINT NOT NULL,
    stp SMALLINT NOT NULL,
    price BIGINT NOT NULL,
    orig_qty BIGINT NOT NULL,
    executed_qty BIGINT NOT NULL,
    cum_quote BIGINT NOT NULL,
    orig_quote_qty BIGINT NOT NULL,
    status SMALLINT NOT NULL,
    time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    shard INTEGER NOT NULL,
    last_seq BIGINT NOT NULL,
    PRIMARY KEY (symbol_id, order_id)
);
-- allOrders (by user and symbol, newest first or from an orderId; startTime/endTime on time)
CREATE INDEX orders_user_symbol_id ON orders (user_id, symbol_id, order_id);
CREATE INDEX orders_user_symbol_time ON orders (user_id, symbol_id, time);
-- GET /api/v3/order by origClientOrderId
CREATE INDEX orders_user_symbol_coid ON orders (user_id, symbol_id, client_order_id);

CREATE TABLE trades (
    symbol_id INTEGER NOT NULL,
    trade_id BIGINT NOT NULL,
    price BIGINT NOT NULL,
    qty BIGINT NOT NULL,
    quote_qty BIGINT NOT NULL,
    time BIGINT NOT NULL,
    maker_order_id BIGINT NOT NULL,
    taker_order_id BIGINT NOT NULL,
    maker_user_id BIGINT NOT NULL,
    taker_user_id BIGINT NOT NULL,
    taker_side SMALLINT NOT NULL,
    shard INTEGER NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (symbol_id, trade_id)
);
-- klines and ticker/24hr (a time range of one symbol)
CREATE INDEX trades_symbol_time ON trades (symbol_id, time);
-- myTrades (one user's trades on a symbol, as maker or as taker)
CREATE INDEX trades_maker_user ON trades (maker_user_id, symbol_id, trade_id);
CREATE INDEX trades_taker_user ON trades (taker_user_id, symbol_id, trade_id);

-- One row per event touching an order: accepted, trade (one row for each side), canceled, amended, expired.
CREATE TABLE order_history (
    shard INTEGER NOT NULL,
    seq BIGINT NOT NULL,
    symbol_id INTEGER NOT NULL,
    order_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    kind SMALLINT NOT NULL,
    status SMALLINT NOT NULL,
    price BIGINT NOT NULL,
    qty BIGINT NOT NULL,
    trade_id BIGINT NOT NULL,
    time BIGINT NOT NULL,
    PRIMARY KEY (shard, seq, order_id)
);
CREATE INDEX order_history_order ON order_history (symbol_id, order_id, seq);

CREATE TABLE persist_progress (
    shard INTEGER PRIMARY KEY,
    last_seq BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
