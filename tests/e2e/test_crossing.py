"""Crossing orders from two users, from many concurrent clients, on symbols of two shards.

Every acknowledged order is checked against a reference replay: a plain
price-time-priority book fed with the acknowledged orders in the order the
engine accepted them (order ids grow in acceptance order within a symbol).
The replay gives each taker's fills (maker price, quantities), the open
orders left with their executed quantity and status, and the final depth;
the exchange must agree on all of them. (Closed orders are not queryable
until order history exists, so they are checked by their absence.)
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from decimal import Decimal

import aiohttp

from shards.routing import shard_for
from tests.e2e.api import Api, async_signed

CLIENTS = 20
ORDERS_PER_CLIENT = 16
SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN", "TSLA", "NVDA", "META")


@dataclass
class RefOrder:
    order_id: int
    side: str
    price: Decimal
    qty: Decimal
    tif: str
    executed: Decimal = Decimal(0)
    fills: list[tuple[Decimal, Decimal]] = field(default_factory=list)
    status: str = "NEW"
    ack_status: str = ""  # its status right after its own matching: what the acknowledgement shows

    @property
    def open(self) -> Decimal:
        return self.qty - self.executed


def replay(orders: list[RefOrder]) -> tuple[dict[int, RefOrder], list[RefOrder], list[RefOrder]]:
    """Apply ``orders`` (in acceptance order) to an empty book; the final state of every order and both sides."""
    bids: list[RefOrder] = []  # best first: price desc, then order id
    asks: list[RefOrder] = []  # best first: price asc, then order id
    for order in orders:
        book, other = (bids, asks) if order.side == "BUY" else (asks, bids)
        while other and order.open:
            best = other[0]
            if (order.side == "BUY" and best.price > order.price) or (
                order.side == "SELL" and best.price < order.price
            ):
                break
            qty = min(order.open, best.open)
            order.executed += qty
            best.executed += qty
            order.fills.append((best.price, qty))
            if not best.open:
                best.status = "FILLED"
                other.pop(0)
            else:
                best.status = "PARTIALLY_FILLED"
        if not order.open:
            order.status = "FILLED"
        elif order.tif == "IOC":
            order.status = "EXPIRED"
        else:
            order.status = "PARTIALLY_FILLED" if order.executed else "NEW"
            book.append(order)
            if order.side == "BUY":
                book.sort(key=lambda o: (-o.price, o.order_id))
            else:
                book.sort(key=lambda o: (o.price, o.order_id))
        order.ack_status = order.status
    return {o.order_id: o for o in orders}, bids, asks


def _depth(side: list[RefOrder]) -> list[tuple[Decimal, Decimal]]:
    levels: dict[Decimal, Decimal] = {}
    for o in side:
        levels[o.price] = levels.get(o.price, Decimal(0)) + o.open
    return list(levels.items())


async def _client(rest_url: str, users, symbols, seed: int) -> list[tuple[dict, object, object]]:
    rng = random.Random(seed)
    out = []
    async with aiohttp.ClientSession() as session:
        for _ in range(ORDERS_PER_CLIENT):
            params = {
                "symbol": rng.choice(symbols),
                "side": rng.choice(("BUY", "SELL")),
                "type": "LIMIT",
                "timeInForce": "IOC" if rng.random() < 0.2 else "GTC",
                "quantity": str(rng.randint(1, 10)),
                "price": str(Decimal(rng.randint(196, 204)) / 2),  # 98.00 .. 102.00 around a mid of 100
                "selfTradePreventionMode": "NONE",
            }
            user = rng.choice(users)
            reply = await async_signed(session, rest_url, "POST", "/api/v3/order", user, **params)
            out.append((params, user, reply))
    return out


def test_concurrent_crossing_orders_obey_the_matching_rules(exchange_factory):
    # the shards wait with "hybrid" here (spin, then sleep on the doorbell); the other e2e tests use "block"
    ex = exchange_factory(engine={"shards": 2, "wait_strategy": "hybrid", "spin_us": 20}, rest={"workers": 2})
    api = Api(ex.rest_url, ex.admin_token)
    users = [api.new_user(), api.new_user()]
    on_shard = {shard_for(s, 2): s for s in reversed(SYMBOLS)}
    symbols = [on_shard[0], on_shard[1]]

    async def flood():
        return await asyncio.gather(*(_client(ex.rest_url, users, symbols, seed) for seed in range(CLIENTS)))

    sent = [pair for batch in asyncio.run(flood()) for pair in batch]

    assert all(reply.status == 200 for _, _, reply in sent), [r.body for _, _, r in sent if r.status != 200][:3]
    for symbol in symbols:
        acks = sorted((r.body for params, _, r in sent if params["symbol"] == symbol), key=lambda b: b["orderId"])
        reference = [
            RefOrder(a["orderId"], a["side"], Decimal(a["price"]), Decimal(a["origQty"]), a["timeInForce"])
            for a in acks
        ]
        final, bids, asks = replay(reference)
        trade_ids: list[int] = []

        for ack in acks:  # the taker's own view at acknowledgement
            ref = final[ack["orderId"]]
            assert [(Decimal(f["price"]), Decimal(f["qty"])) for f in ack["fills"]] == ref.fills, (ack, ref)
            assert Decimal(ack["executedQty"]) == sum((q for _, q in ref.fills), Decimal(0)), ack
            assert ack["status"] == ref.ack_status, (ack, ref)
            trade_ids += [f["tradeId"] for f in ack["fills"]]
        open_now = {}  # every order's state now: makers were filled after their acknowledgement
        for user in users:
            for order in api.signed("GET", "/api/v3/openOrders", user, symbol=symbol).body:
                open_now[order["orderId"]] = (order["status"], Decimal(order["executedQty"]))
        open_ref = {o.order_id: (o.status, o.executed) for o in bids + asks}
        assert open_now == open_ref
        depth = api.get("/api/v3/depth", symbol=symbol, limit=5000).body
        assert [(Decimal(p), Decimal(q)) for p, q in depth["bids"]] == _depth(bids)
        assert [(Decimal(p), Decimal(q)) for p, q in depth["asks"]] == _depth(asks)
        traded = sum((q for o in reference for _, q in o.fills), Decimal(0))
        assert sum((o.executed for o in reference), Decimal(0)) == 2 * traded  # every lot has a buyer and a seller
        assert traded > 0
        assert trade_ids == sorted(set(trade_ids))  # unique, and in the order the trades happened
