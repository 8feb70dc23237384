"""Every process reaches Redis over the URL it is given: the embedded server's unix socket, or TCP.

The session Redis listens on both (``deploy.embedded``); ``exchange_factory``
hands an exchange the socket URL by default and the TCP URL with
``_redis_tcp=True``. One order crossing another must then go the whole way on
that transport: journaled by the shard, fanned out by wsfeed (a trade on the
WebSocket), written to PostgreSQL by persist (``myTrades``), and probed by the
ingress health check. Redis's own client list shows which transport each of
the exchange's connections came in on (flag ``U``: unix socket).
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest
import redis
from redis.connection import parse_url

from shards.stream import stream_key
from tests.e2e.api import Api
from tests.wsfeed.harness import request, until, ws_connect

SYMBOL = "AAPL"


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_an_order_goes_the_whole_way_on_either_redis_transport(exchange_factory, services, transport):
    # arrange: the exchange's Redis connections are the ones opened after this marker
    admin = redis.Redis.from_url(services.redis_tcp_url)
    first_id = int(admin.client_id()) + 1
    ex = exchange_factory(engine={"shards": 1}, rest={"workers": 1}, _redis_tcp=transport == "tcp")
    db = parse_url(ex.redis_url)["db"]
    api = Api(ex.rest_url, ex.admin_token)
    maker, taker = api.new_user(), api.new_user()

    def place(user, side: str) -> dict:
        reply = api.signed("POST", "/api/v3/order", user, symbol=SYMBOL, side=side, type="LIMIT",
                           timeInForce="GTC", price="100.00", quantity="3")  # fmt: skip
        assert reply.status == 200, reply
        return reply.body

    async def scenario() -> tuple[dict, dict]:
        async with ws_connect(f"{ex.ws_url}/ws/{SYMBOL.lower()}@trade") as ws:
            await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1})
            await asyncio.to_thread(place, maker, "SELL")
            taken = await asyncio.to_thread(place, taker, "BUY")
            trade = await until(ws, lambda m: m.get("e") == "trade", timeout=10)
        return taken, trade

    # act
    taken, trade = asyncio.run(scenario())
    deadline = time.monotonic() + 20
    while True:
        mine = api.signed("GET", "/api/v3/myTrades", taker, symbol=SYMBOL)
        if (mine.status == 200 and mine.body) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    health = api.get("/health")
    clients = [c for c in admin.client_list() if int(c["id"]) >= first_id and int(c["db"]) == db]
    journal = redis.Redis.from_url(ex.redis_url).xrange(stream_key(0))
    admin.close()

    # assert
    assert taken["status"] == "FILLED"
    assert (trade["s"], Decimal(trade["p"]), Decimal(trade["q"])) == (SYMBOL, 100, 3)
    assert mine.status == 200 and [Decimal(t["qty"]) for t in mine.body] == [3], mine
    assert health.status == 200 and health.body["redis"] == "ok", health.body
    assert len(journal) >= 2  # both orders' batches at least
    assert len(clients) >= 4, clients  # shard (journal, client), wsfeed, persist, ingress's health client
    if transport == "unix":
        assert all("U" in c["flags"] and c["addr"].startswith(str(services.redis.socket_path)) for c in clients)
    else:
        assert all("U" not in c["flags"] and c["addr"].startswith("127.0.0.1:") for c in clients)
