"""Shared parts of the durability tests: a steady order flow with a record of every answer, and the checks.

The flow sends new orders (LIMIT GTC and IOC, both sides, a few price levels)
and cancels of its own acknowledged orders, each with a unique client order
id, from several concurrent clients. Every request ends in one of: 200 (the
answer), a 4xx with a contract code, 500/-1000 (fate unknown) or 503/-1008
(nothing accepted); anything else is recorded as a failure.

Checks, once persist has caught up:
- every acknowledged order and every trade of an acknowledged answer is in
  PostgreSQL, once (primary keys), trade ids of each symbol have no gap, and
  every order's executed quantity is the sum of its trades;
- the live books (GET depth) equal those of a reference ``Engine`` fed the
  commands the clients sent, in the order the exchange applied them (its
  per-shard sequence numbers in order_history); a command whose answer was
  lost counts when the exchange shows it applied, an acknowledged one always.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg

from deploy.config import load_config
from shards.engine import Engine
from shards.protocol import CancelOrder, NewOrder, QueryDepth
from tests.e2e.api import Api, User, async_signed

SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN")
CLEAR_5XX = {(500, -1000), (503, -1008)}


@dataclass
class Sent:
    kind: str  # "new" | "cancel"
    symbol: str
    user: User
    params: dict[str, Any]
    status: int = 0
    body: Any = None


@dataclass
class Flow:
    sent: list[Sent] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    open_ids: dict[tuple[str, int], list[int]] = field(default_factory=dict)  # (symbol, user) -> order ids


async def _client(session: aiohttp.ClientSession, url: str, users: list[User], flow: Flow, seed: int, stop_at: float):
    rng = random.Random(seed)
    n = 0
    while time.monotonic() < stop_at:
        n += 1
        user = rng.choice(users)
        symbol = rng.choice(SYMBOLS)
        mine = flow.open_ids.setdefault((symbol, user.user_id), [])
        if mine and rng.random() < 0.25:
            oid = mine.pop(rng.randrange(len(mine)))
            item = Sent("cancel", symbol, user, {"symbol": symbol, "orderId": oid})
            method = "DELETE"
        else:
            side = rng.choice(("BUY", "SELL"))
            price = f"{100 + rng.randint(-3, 3) * 0.01:.2f}"
            tif = "IOC" if rng.random() < 0.15 else "GTC"
            params = {"symbol": symbol, "side": side, "type": "LIMIT", "timeInForce": tif, "price": price,
                      "quantity": str(rng.randint(1, 5)), "newClientOrderId": f"s{seed}n{n}"}  # fmt: skip
            item = Sent("new", symbol, user, params)
            method = "POST"
        flow.sent.append(item)
        try:
            reply = await async_signed(session, url, method, "/api/v3/order", user, **item.params)
        except Exception as exc:  # noqa: BLE001 - a client without an answer is what the test looks for
            item.status = -1
            flow.failures.append(f"{method} {item.params}: no answer ({type(exc).__name__}: {exc})")
            continue
        item.status, item.body = reply.status, reply.body
        code = reply.code
        if reply.status == 200:
            if item.kind == "new" and reply.body["status"] in ("NEW", "PARTIALLY_FILLED"):
                mine.append(reply.body["orderId"])
        elif reply.status >= 500 and (reply.status, code) not in CLEAR_5XX:
            flow.failures.append(f"{method} {item.params}: unclear {reply.status} {reply.body}")
        elif 400 <= reply.status < 500 and not isinstance(code, int):
            flow.failures.append(f"{method} {item.params}: {reply.status} without a code {reply.body}")


async def run_flow(rest_url: str, users: list[User], seconds: float, clients: int = 4) -> Flow:
    flow = Flow()
    stop_at = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(_client(session, rest_url, users, flow, i, stop_at) for i in range(clients)))
    return flow


def wait_persisted(api: Api, timeout: float = 60.0) -> dict:
    """Wait until /health shows every shard up and no persist lag; returns the health body."""
    deadline = time.monotonic() + timeout
    body: Any = None
    while time.monotonic() < deadline:
        reply = api.get("/health")
        body = reply.body
        if reply.status == 200 and body["persist"]["lag"] == 0:
            return body
        time.sleep(0.1)
    raise AssertionError(f"persist did not catch up in {timeout} s: {body}")


async def _db_state(dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        return {
            "orders": await conn.fetch("SELECT * FROM orders"),
            "trades": await conn.fetch("SELECT * FROM trades"),
            "applied": await conn.fetch(
                "SELECT h.shard, h.seq, h.kind, h.symbol_id, h.order_id, o.client_order_id FROM order_history h"
                " JOIN orders o USING (symbol_id, order_id) WHERE h.kind IN (1, 3) ORDER BY h.shard, h.seq"
            ),
        }
    finally:
        await conn.close()


def check_durability(api: Api, config_path: Any, dsn: str, flow: Flow) -> dict[str, int]:
    """Every check of the module docstring; returns counts for the test to report."""
    assert not flow.failures, flow.failures[:5]
    config = load_config(config_path, env={})
    db = asyncio.run(_db_state(dsn))
    orders = {(r["symbol_id"], r["order_id"]): r for r in db["orders"]}
    trades = {(r["symbol_id"], r["trade_id"]): r for r in db["trades"]}
    # acknowledged orders and their fills are in PostgreSQL
    acked = [s for s in flow.sent if s.kind == "new" and s.status == 200]
    for s in acked:
        sid = config.symbol(s.symbol).symbol_id
        row = orders.get((sid, s.body["orderId"]))
        assert row is not None and row["client_order_id"] == s.params["newClientOrderId"], s.body
        for fill in s.body.get("fills", []):
            assert (sid, fill["tradeId"]) in trades, fill
    # trade ids without gaps; executed = sum of trades
    per_symbol: dict[int, list[int]] = {}
    executed: dict[tuple[int, int], int] = {}
    for (sid, tid), t in trades.items():
        per_symbol.setdefault(sid, []).append(tid)
        for oid in (t["maker_order_id"], t["taker_order_id"]):
            executed[(sid, oid)] = executed.get((sid, oid), 0) + t["qty"]
    for sid, ids in per_symbol.items():
        assert sorted(ids) == list(range(1, len(ids) + 1)), f"symbol {sid}: trade ids with gaps"
    for key, row in orders.items():
        assert row["executed_qty"] == executed.get(key, 0), key
    # the reference engine, fed the clients' commands in the exchange's order
    sent_new = {s.params["newClientOrderId"]: s for s in flow.sent if s.kind == "new"}
    cancels = {}
    for s in flow.sent:
        if s.kind == "cancel":
            cancels.setdefault((s.symbol, s.user.user_id, s.params["orderId"]), s)
    engines = {i: Engine([c.spec() for c in config.symbols_of_shard(i)]) for i in range(config.engine.shards)}
    applied_coids = set()
    for row in db["applied"]:
        engine = engines[row["shard"]]
        if row["kind"] == 1:
            s = sent_new.get(row["client_order_id"])
            assert s is not None, f"order {row['client_order_id']} was never sent"
            applied_coids.add(row["client_order_id"])
            p = s.params
            cmd = NewOrder(
                row["symbol_id"], s.user.user_id, p["newClientOrderId"], 1 if p["side"] == "BUY" else 2, 1,
                2 if p["timeInForce"] == "IOC" else 1, int(Decimal(p["price"]) * 100), int(p["quantity"]), 0, 2, 1,
            )  # fmt: skip
        else:
            order = orders[(row["symbol_id"], row["order_id"])]
            symbol = next(c.symbol for c in config.symbols if c.symbol_id == row["symbol_id"])
            s = cancels.get((symbol, order["user_id"], row["order_id"]))
            assert s is not None, f"cancel of order {row['order_id']} was never sent"
            cmd = CancelOrder(row["symbol_id"], order["user_id"], row["order_id"], "", 1)
        engine.apply(cmd)
    for s in acked:
        assert s.params["newClientOrderId"] in applied_coids
    for sym in SYMBOLS:
        rules = config.symbol(sym)
        ref = engines[config.shard_of(sym)].apply(QueryDepth(rules.symbol_id, 5000))
        live = api.get("/api/v3/depth", symbol=sym, limit=5000).body
        want_bids = [[f"{p / 100:.2f}", str(q)] for p, q in ref.bids]
        want_asks = [[f"{p / 100:.2f}", str(q)] for p, q in ref.asks]
        assert (live["bids"], live["asks"]) == (want_bids, want_asks), sym
    unknown = sum(1 for s in flow.sent if s.status >= 500)
    return {"sent": len(flow.sent), "acked_new": len(acked), "unknown": unknown, "trades": len(trades)}
