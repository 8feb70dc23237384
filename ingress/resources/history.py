"""History endpoints read from PostgreSQL: trades, klines, 24h tickers, allOrders, myTrades, past orders.

Rows come from the tables persist writes (``deploy/migrations/0002_history.sql``),
so they trail the engine by persist's lag (milliseconds under light load,
bounded by persist's batch time and PostgreSQL's commit rate under heavy
load; /health shows it). Open orders are merged from the owning shard into
allOrders, where they may be fresher. ``find_order`` answers GET /api/v3/order
for an order the shard no longer holds.

Every query here is served by an index of the migration (named next to it).
A database that does not answer gives 503 with code -1000. Nothing here logs
or writes.
"""

from __future__ import annotations

import calendar
import time
from typing import Any

import falcon
import falcon.asgi

from ingress import params as p
from ingress import views
from ingress.errors import ApiError, Malformed
from ingress.resources.base import Context, answer
from ingress.symbols import SymbolRules, fixed
from shards.protocol import BookTickerView, OrdersResult, OrderView, QueryBookTicker, QueryOpenOrders

TRADES = frozenset(("symbol", "limit"))
KLINES = frozenset(("symbol", "interval", "startTime", "endTime", "limit", "timeZone"))
TICKER = frozenset(("symbol", "type"))
ALL_ORDERS = frozenset(("symbol", "orderId", "startTime", "endTime", "limit")) | p.SIGNED_PARAMS
MY_TRADES = frozenset(("symbol", "orderId", "startTime", "endTime", "fromId", "limit")) | p.SIGNED_PARAMS
DEFAULT_LIMIT = 500
MAX_LIMIT = 1000
TIME_MAX = (1 << 62) - 1
DAY_MS = 86_400_000
_S, _M, _H = 1000, 60_000, 3_600_000
INTERVALS = {
    "1s": _S, "1m": _M, "3m": 3 * _M, "5m": 5 * _M, "15m": 15 * _M, "30m": 30 * _M, "1h": _H, "2h": 2 * _H,
    "4h": 4 * _H, "6h": 6 * _H, "8h": 8 * _H, "12h": 12 * _H, "1d": DAY_MS, "3d": 3 * DAY_MS, "1w": 7 * DAY_MS,
    "1M": 0,
}  # fmt: skip
WEEK_OFFSET_MS = 3 * DAY_MS  # weeks open on Monday; 1970-01-01 was a Thursday
ORDER_COLS = (
    "symbol_id, order_id, client_order_id, user_id, side, order_type, tif, stp, price, orig_qty, executed_qty,"
    " cum_quote, orig_quote_qty, status, time, update_time, time"
)

# --- SQL (index used) ------------------------------------------------------------------------
# trades_pkey (symbol_id, trade_id)
SQL_TRADES = (
    "SELECT trade_id, price, qty, quote_qty, time, taker_side FROM trades WHERE symbol_id = $1"
    " ORDER BY trade_id DESC LIMIT $2"
)
# trades_symbol_time (symbol_id, time)
SQL_KLINES = """
SELECT b, (array_agg(price ORDER BY trade_id))[1], max(price), min(price), (array_agg(price ORDER BY trade_id DESC))[1],
       sum(qty), sum(quote_qty), count(*),
       coalesce(sum(qty) FILTER (WHERE taker_side = 1), 0), coalesce(sum(quote_qty) FILTER (WHERE taker_side = 1), 0)
FROM (SELECT {bucket} AS b, trade_id, price, qty, quote_qty, taker_side FROM trades
      WHERE symbol_id = $1 AND time >= $2 AND time <= $3) t
GROUP BY b ORDER BY b {order} LIMIT $4
"""
BUCKET_FIXED = "(time + $5) / $6 * $6 - $5"
BUCKET_MONTH = "(extract(epoch FROM date_trunc('month', to_timestamp(time / 1000) AT TIME ZONE 'UTC')) * 1000)::bigint"
# trades_symbol_time (symbol_id, time), one range per symbol
SQL_TICKER = """
SELECT symbol_id, count(*), min(trade_id), max(trade_id), max(price), min(price), sum(qty), sum(quote_qty),
       (array_agg(price ORDER BY trade_id))[1], (array_agg(price ORDER BY trade_id DESC))[1],
       (array_agg(qty ORDER BY trade_id DESC))[1]
FROM trades WHERE symbol_id = ANY($1::int[]) AND time >= $2 AND time <= $3 GROUP BY symbol_id
"""
# orders_user_symbol_id / orders_user_symbol_time
SQL_ALL_ORDERS = (
    f"SELECT {ORDER_COLS} FROM orders WHERE user_id = $1 AND symbol_id = $2 AND order_id >= $3"
    " AND time >= $4 AND time <= $5 ORDER BY order_id {order} LIMIT $6"
)
# trades_maker_user / trades_taker_user
SQL_MY_TRADES = """
SELECT * FROM (
  SELECT trade_id, maker_order_id AS order_id, price, qty, quote_qty, time, taker_side = 2 AS is_buyer, true AS is_maker
  FROM trades WHERE maker_user_id = $1 AND symbol_id = $2 AND trade_id >= $3 AND time >= $4 AND time <= $5
  UNION ALL
  SELECT trade_id, taker_order_id, price, qty, quote_qty, time, taker_side = 1, false
  FROM trades WHERE taker_user_id = $1 AND symbol_id = $2 AND trade_id >= $3 AND time >= $4 AND time <= $5
) t WHERE $6 = 0 OR order_id = $6 ORDER BY trade_id {order}, is_maker LIMIT $7
"""
# orders_pkey / orders_user_symbol_coid
SQL_ORDER_BY_ID = f"SELECT {ORDER_COLS} FROM orders WHERE symbol_id = $1 AND order_id = $2 AND user_id = $3"
SQL_ORDER_BY_COID = (
    f"SELECT {ORDER_COLS} FROM orders WHERE user_id = $1 AND symbol_id = $2 AND client_order_id = $3"
    " ORDER BY order_id DESC LIMIT 1"
)


def _unavailable(exc: Exception) -> ApiError:
    return ApiError(-1000, f"history is unavailable: the database did not answer ({type(exc).__name__})", 503)


async def _fetch(ctx: Context, sql: str, *args: Any) -> list:
    pool = ctx.pool
    if pool is None:
        raise ApiError(-1000, "history is unavailable: no database pool", 503)
    try:
        return await pool.fetch(sql, *args)
    except (OSError, TimeoutError) as exc:
        raise _unavailable(exc) from None
    except Exception as exc:
        if type(exc).__module__.startswith("asyncpg"):
            raise _unavailable(exc) from None
        raise


def _time(params: dict[str, Any], name: str, default: int) -> int:
    value = p.integer(params, name)
    return default if value is None else value


def _signed_fixed(units: int, decimals: int) -> str:
    return ("-" if units < 0 else "") + fixed(abs(units), decimals)


def _view(row: Any) -> OrderView:
    return OrderView(*row)


async def find_order(ctx: Context, rules: SymbolRules, user_id: int, order_id: int, coid: str) -> dict | None:
    """The order as GET /api/v3/order shows it, from PostgreSQL; None when it is not there."""
    if order_id:
        rows = await _fetch(ctx, SQL_ORDER_BY_ID, rules.symbol_id, order_id, user_id)
    else:
        rows = await _fetch(ctx, SQL_ORDER_BY_COID, user_id, rules.symbol_id, coid)
    return views.order(rules, _view(rows[0])) if rows else None


class Trades:
    """GET /api/v3/trades: the latest trades of a symbol, oldest first."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        ctx = self.ctx
        params = await ctx.public(req, TRADES)
        rules = p.symbol_rules(ctx.catalog, params)
        limit = p.limit(params, DEFAULT_LIMIT, MAX_LIMIT)
        rows = await _fetch(ctx, SQL_TRADES, rules.symbol_id, limit)
        answer(
            resp,
            [
                {
                    "id": r[0],
                    "price": rules.price(r[1]),
                    "qty": rules.qty(r[2]),
                    "quoteQty": rules.quote(r[3]),
                    "time": r[4],
                    "isBuyerMaker": r[5] == 2,
                    "isBestMatch": True,
                }
                for r in reversed(rows)
            ],
        )


def _month_end(open_ms: int) -> int:
    t = time.gmtime(open_ms // 1000)
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return calendar.timegm((year, month, 1, 0, 0, 0)) * 1000 - 1


class Klines:
    """GET /api/v3/klines: candles aggregated from the trades (periods with trades only)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        ctx = self.ctx
        params = await ctx.public(req, KLINES)
        rules = p.symbol_rules(ctx.catalog, params)
        interval = p.required_text(params, "interval")
        if interval not in INTERVALS:
            raise Malformed(f"invalid interval {interval!r}; one of {' '.join(INTERVALS)}")
        limit = p.limit(params, DEFAULT_LIMIT, MAX_LIMIT)
        width = INTERVALS[interval]
        start = p.integer(params, "startTime")
        end = _time(params, "endTime", TIME_MAX)
        newest_first = start is None
        if start is None:  # the latest ``limit`` periods up to endTime
            reach = (width or 31 * DAY_MS) * limit
            start = max(0, min(end, int(time.time() * 1000)) - reach)
        order = "DESC" if newest_first else "ASC"
        if width:
            offset = WEEK_OFFSET_MS if interval == "1w" else 0
            sql = SQL_KLINES.format(bucket=BUCKET_FIXED, order=order)
            rows = await _fetch(ctx, sql, rules.symbol_id, start, end, limit, offset, width)
        else:
            sql = SQL_KLINES.format(bucket=BUCKET_MONTH, order=order)
            rows = await _fetch(ctx, sql, rules.symbol_id, start, end, limit)
        if newest_first:
            rows = list(reversed(rows))
        out = []
        for b, o, h, lo, c, vol, quote, n, tb, tq in rows:
            close_time = b + width - 1 if width else _month_end(b)
            out.append(
                [
                    b, rules.price(o), rules.price(h), rules.price(lo), rules.price(c), rules.qty(int(vol)),
                    close_time, rules.quote(int(quote)), n, rules.qty(int(tb)), rules.quote(int(tq)), "0",
                ]
            )  # fmt: skip
        answer(resp, out)


class Ticker24h:
    """GET /api/v3/ticker/24hr: one symbol's rolling 24 h statistics, or every symbol's (an array)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        ctx = self.ctx
        params = await ctx.public(req, TICKER)
        one = p.optional_text(params, "symbol") is not None
        rules_list = [p.symbol_rules(ctx.catalog, params)] if one else list(ctx.catalog.rules)
        now = int(time.time() * 1000)
        since = now - DAY_MS
        rows = await _fetch(ctx, SQL_TICKER, [r.symbol_id for r in rules_list], since, now)
        stats = {r[0]: r for r in rows}
        tops: list[Any] = await ctx.engine.call_batch([(r.shard, QueryBookTicker(r.symbol_id)) for r in rules_list])
        out = [
            self._ticker(r, stats.get(r.symbol_id), top, since, now) for r, top in zip(rules_list, tops, strict=True)
        ]
        answer(resp, out[0] if one else out)

    @staticmethod
    def _ticker(rules: SymbolRules, row: Any, top: Any, since: int, now: int) -> dict[str, Any]:
        if type(top) is not BookTickerView:
            top = BookTickerView(rules.symbol_id, 0, 0, 0, 0)
        if row is None:
            count, first_id, last_id, high, low, vol, quote, open_p, last_p, last_q = 0, -1, -1, 0, 0, 0, 0, 0, 0, 0
        else:
            _, count, first_id, last_id, high, low, vol, quote, open_p, last_p, last_q = row
            vol, quote = int(vol), int(quote)
        pd = rules.price_decimals
        change = last_p - open_p
        percent = (change * 100_000 // open_p if change >= 0 else -(-change * 100_000 // open_p)) if open_p else 0
        weighted = quote * rules.tick_units * 10_000 // vol if vol else 0
        return {
            "symbol": rules.symbol,
            "priceChange": _signed_fixed(change * rules.tick_units, pd),
            "priceChangePercent": _signed_fixed(percent, 3),
            "weightedAvgPrice": fixed(weighted, pd + 4),
            "lastPrice": rules.price(last_p),
            "lastQty": rules.qty(last_q),
            "bidPrice": rules.price(top.bid_price),
            "bidQty": rules.qty(top.bid_qty),
            "askPrice": rules.price(top.ask_price),
            "askQty": rules.qty(top.ask_qty),
            "openPrice": rules.price(open_p),
            "highPrice": rules.price(high),
            "lowPrice": rules.price(low),
            "volume": rules.qty(vol),
            "quoteVolume": rules.quote(quote),
            "openTime": since,
            "closeTime": now,
            "firstId": first_id,
            "lastId": last_id,
            "count": count,
        }


class AllOrders:
    """GET /api/v3/allOrders: the user's orders on a symbol, open and closed, oldest first."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        ctx = self.ctx
        params, user_id = await ctx.signed(req, ALL_ORDERS)
        rules = p.symbol_rules(ctx.catalog, params)
        limit = p.limit(params, DEFAULT_LIMIT, MAX_LIMIT)
        from_id = p.integer(params, "orderId") or 0
        start = p.integer(params, "startTime")
        end = _time(params, "endTime", TIME_MAX)
        newest_first = from_id == 0 and start is None
        start = start or 0
        sql = SQL_ALL_ORDERS.format(order="DESC" if newest_first else "ASC")
        rows = await _fetch(ctx, sql, user_id, rules.symbol_id, from_id, start, end, limit)
        orders = {r[1]: _view(r) for r in rows}
        try:  # open orders from the shard are at least as fresh as PostgreSQL's copy
            live = await ctx.engine.call(rules.shard, QueryOpenOrders(rules.symbol_id, user_id))
        except Exception:
            live = None
        if type(live) is OrdersResult:
            for o in live.orders:
                if o.order_id >= from_id and start <= o.time <= end:
                    orders[o.order_id] = o
        ids = sorted(orders)
        ids = ids[-limit:] if newest_first else ids[:limit]
        answer(resp, [views.order(rules, orders[i]) for i in ids])


class MyTrades:
    """GET /api/v3/myTrades: the user's trades on a symbol, oldest first."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        ctx = self.ctx
        params, user_id = await ctx.signed(req, MY_TRADES)
        rules = p.symbol_rules(ctx.catalog, params)
        limit = p.limit(params, DEFAULT_LIMIT, MAX_LIMIT)
        from_id = p.integer(params, "fromId")
        start = p.integer(params, "startTime")
        end = _time(params, "endTime", TIME_MAX)
        order_id = p.integer(params, "orderId") or 0
        newest_first = from_id is None and start is None
        sql = SQL_MY_TRADES.format(order="DESC" if newest_first else "ASC")
        rows = await _fetch(ctx, sql, user_id, rules.symbol_id, from_id or 0, start or 0, end, order_id, limit)
        if newest_first:
            rows = list(reversed(rows))
        answer(
            resp,
            [
                {
                    "symbol": rules.symbol,
                    "id": r[0],
                    "orderId": r[1],
                    "orderListId": -1,
                    "price": rules.price(r[2]),
                    "qty": rules.qty(r[3]),
                    "quoteQty": rules.quote(r[4]),
                    "commission": "0",
                    "commissionAsset": rules.quote_asset,
                    "time": r[5],
                    "isBuyer": r[6],
                    "isMaker": r[7],
                    "isBestMatch": True,
                }
                for r in rows
            ],
        )


def register(app: falcon.asgi.App, ctx: Context) -> None:
    """Add the history routes to ``app``."""
    app.add_route("/api/v3/trades", Trades(ctx))
    app.add_route("/api/v3/klines", Klines(ctx))
    app.add_route("/api/v3/ticker/24hr", Ticker24h(ctx))
    app.add_route("/api/v3/allOrders", AllOrders(ctx))
    app.add_route("/api/v3/myTrades", MyTrades(ctx))
