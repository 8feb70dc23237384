"""Every REST endpoint once, over HTTP, through a running exchange (2 workers, 2 shards).

Real processes: ``exchange up`` with its ingress workers and shard processes,
the session's PostgreSQL and Redis (tests/conftest.py). One exchange per test
function keeps the suite fast; each test walks a whole scenario.
"""

from __future__ import annotations

import json
from decimal import Decimal

from tests.e2e.api import Api, now_ms, sign, signed_parts

ORDER = "/api/v3/order"


def _levels(levels):
    return [(Decimal(p), Decimal(q)) for p, q in levels]


def test_public_endpoints_answer_as_the_contract_says(exchange_factory):
    ex = exchange_factory(engine={"shards": 2}, rest={"workers": 2})
    api = Api(ex.rest_url, ex.admin_token)

    ping = api.get("/api/v3/ping")
    server_time = api.get("/api/v3/time")
    info = api.get("/api/v3/exchangeInfo")
    health = api.get("/health")
    depth = api.get("/api/v3/depth", symbol="MSFT", limit=5)
    ticker = api.get("/api/v3/ticker/bookTicker", symbol="MSFT")

    assert (ping.status, ping.body) == (200, {})
    assert abs(server_time.body["serverTime"] - now_ms()) < 60_000
    assert info.status == 200
    assert {s["symbol"] for s in info.body["symbols"]} >= {"AAPL", "MSFT", "GOOG"}
    assert health.status == 200, health.body
    assert health.body["status"] == "ok"
    assert [s["up"] for s in health.body["shards"]] == [True, True]
    assert depth.status == 200
    assert (depth.body["bids"], depth.body["asks"]) == ([], [])
    assert isinstance(depth.body["lastUpdateId"], int)
    assert ticker.status == 200
    assert ticker.body["symbol"] == "MSFT"


def test_order_lifecycle_through_every_signed_endpoint(exchange_factory):
    ex = exchange_factory(engine={"shards": 2}, rest={"workers": 2})
    api = Api(ex.rest_url, ex.admin_token)
    maker = api.new_user()
    taker = api.new_user()

    tested = api.signed("POST", "/api/v3/order/test", maker, symbol="AAPL", side="BUY", type="LIMIT",
                        timeInForce="GTC", quantity="10", price="100.00")  # fmt: skip
    buy = api.signed("POST", ORDER, maker, "query", symbol="AAPL", side="BUY", type="LIMIT", timeInForce="GTC",
                     quantity="10", price="100.00", newClientOrderId="buy-1")  # fmt: skip
    sell = api.signed("POST", ORDER, maker, "form", symbol="AAPL", side="SELL", type="LIMIT", timeInForce="GTC",
                      quantity="5", price="101.00")  # fmt: skip
    depth = api.get("/api/v3/depth", symbol="AAPL")
    ticker = api.get("/api/v3/ticker/bookTicker", symbol="AAPL")
    amended = api.signed("PUT", "/api/v3/order/amend/keepPriority", maker, symbol="AAPL",
                         orderId=buy.body["orderId"], newQty="4")  # fmt: skip
    queried = api.signed("GET", ORDER, maker, symbol="AAPL", origClientOrderId="buy-1")
    foreign = api.signed("GET", ORDER, taker, symbol="AAPL", orderId=buy.body["orderId"])
    cross = api.signed("POST", ORDER, taker, "json", symbol="AAPL", side="BUY", type="LIMIT", timeInForce="IOC",
                       quantity="3", price="101.00")  # fmt: skip
    open_before = api.signed("GET", "/api/v3/openOrders", maker, symbol="AAPL")
    canceled = api.signed("DELETE", ORDER, maker, symbol="AAPL", orderId=buy.body["orderId"])
    batch = api.batch(maker, [
        {"symbol": "AAPL", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "1", "price": "99.00"},
        {"symbol": "NOPE", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "1", "price": "99.00"},
        {"symbol": "MSFT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC", "quantity": "2", "price": "300"},
    ])  # fmt: skip
    cancel_all = api.signed("DELETE", "/api/v3/openOrders", maker, symbol="AAPL")
    open_after = api.signed("GET", "/api/v3/openOrders", maker)

    assert (tested.status, tested.body) == (200, {})
    assert buy.status == 200, buy.body
    assert (buy.body["status"], buy.body["clientOrderId"], buy.body["fills"]) == ("NEW", "buy-1", [])
    assert sell.status == 200 and sell.body["status"] == "NEW", sell.body
    assert _levels(depth.body["bids"]) == [(Decimal("100"), Decimal("10"))]
    assert _levels(depth.body["asks"]) == [(Decimal("101"), Decimal("5"))]
    assert Decimal(ticker.body["bidPrice"]) == 100 and Decimal(ticker.body["askQty"]) == 5
    assert amended.status == 200, amended.body
    assert Decimal(amended.body["amendedOrder"]["origQty"]) == 4
    assert queried.status == 200 and Decimal(queried.body["origQty"]) == 4 and queried.body["status"] == "NEW"
    assert (foreign.status, foreign.code) == (400, -2013)
    assert cross.status == 200, cross.body
    assert cross.body["status"] == "FILLED"
    assert [(Decimal(f["price"]), Decimal(f["qty"])) for f in cross.body["fills"]] == [(101, 3)]
    assert sorted(o["side"] for o in open_before.body) == ["BUY", "SELL"]
    assert canceled.status == 200 and canceled.body["status"] == "CANCELED"
    assert batch.status == 200, batch.body
    assert [entry.get("status", entry.get("code")) for entry in batch.body] == ["NEW", -1121, "NEW"]
    assert cancel_all.status == 200
    assert sorted(Decimal(o["price"]) for o in cancel_all.body) == [Decimal("99"), Decimal("101")]
    assert all(o["status"] == "CANCELED" for o in cancel_all.body)
    assert [(o["symbol"], o["side"]) for o in open_after.body] == [("MSFT", "SELL")]


def test_bad_requests_answer_their_contract_codes_over_http(exchange_factory):
    ex = exchange_factory(engine={"shards": 2}, rest={"workers": 2, "max_body_bytes": 16384})
    api = Api(ex.rest_url, ex.admin_token)
    user = api.new_user()
    good = {"symbol": "AAPL", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "1", "price": "10"}

    def post(**changes):
        params = {k: v for k, v in {**good, **changes}.items() if v is not None}
        return api.signed("POST", ORDER, user, **params)

    query, body, headers = signed_parts(user, good)
    bad_sig = api.request("POST", ORDER, query[:-4] + "0000", body, headers)
    no_key = api.request("POST", ORDER, query, body, {})
    unknown_key = api.request("POST", ORDER, query, body, {"X-MBX-APIKEY": "x" * 64})
    stale_query, _, _ = signed_parts(user, good, timestamp=now_ms() - 3_600_000)
    stale = api.request("POST", ORDER, stale_query, b"", headers)
    raw = b'{"symbol": "AAPL", '
    malformed_json = api.request("POST", ORDER, f"signature={sign(user.secret, raw)}", raw,
                                 {**headers, "Content-Type": "application/json"})  # fmt: skip
    huge = api.request("POST", ORDER, query, b"x" * 20_000, {**headers, "Content-Type": "text/plain"})
    too_many = api.batch(user, [good] * 101)
    bad_admin = api.request("POST", "/admin/v1/users", headers={"X-Admin-Token": "wrong"})
    cases = {
        "bad signature": (bad_sig, 401, -1022),
        "no api key": (no_key, 401, -2014),
        "unknown api key": (unknown_key, 401, -2015),
        "stale timestamp": (stale, 400, -1021),
        "unknown symbol": (post(symbol="NOPE"), 400, -1121),
        "off the tick grid": (post(price="10.001"), 400, -1013),
        "zero quantity": (post(quantity="0"), 400, -1013),
        "not a number": (post(quantity="ten"), 400, -1100),
        "missing price": (post(price=None), 400, -1102),
        "bad side": (post(side="UP"), 400, -1117),
        "bad type": (post(type="STOP"), 400, -1116),
        "unexpected parameter": (post(colour="red"), 400, -1104),
        "malformed json": (malformed_json, 400, -1100),
        "oversized body": (huge, 413, -1100),
        "batch over 100": (too_many, 400, -1100),
        "wrong admin token": (bad_admin, 401, -2015),
    }

    got = {name: (reply.status, reply.code) for name, (reply, _, _) in cases.items()}
    want = {name: (status, code) for name, (_, status, code) in cases.items()}
    assert got == want
    for name, (reply, _, _) in cases.items():
        assert reply.body["msg"], name
    assert api.signed("GET", "/api/v3/openOrders", user).body == []  # nothing bad changed anything


def test_json_body_with_numbers_for_price_and_quantity(exchange_factory):
    ex = exchange_factory(engine={"shards": 1}, rest={"workers": 1})
    api = Api(ex.rest_url, ex.admin_token)
    user = api.new_user()
    body = json.dumps({"symbol": "GOOG", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC", "quantity": 3,
                       "price": 150.5, "timestamp": now_ms()}).encode()  # fmt: skip
    headers = {"X-MBX-APIKEY": user.api_key, "Content-Type": "application/json"}

    reply = api.request("POST", ORDER, f"signature={sign(user.secret, body)}", body, headers)

    assert reply.status == 200, reply.body
    assert Decimal(reply.body["price"]) == Decimal("150.5")
    assert Decimal(reply.body["origQty"]) == 3
