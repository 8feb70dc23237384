"""Public endpoints over the ASGI app: ping, time, exchangeInfo, depth, bookTicker, unknown routes."""

from __future__ import annotations

from tests.ingress.harness import limit_order, now_ms


def test_ping_answers_an_empty_object(api) -> None:
    res = api.get("/api/v3/ping")
    assert res.status_code == 200
    assert res.json == {}
    assert res.headers["content-type"].startswith("application/json")


def test_time_is_the_server_clock_in_ms(api) -> None:
    before = now_ms()
    res = api.get("/api/v3/time")
    after = now_ms()
    assert res.status_code == 200
    assert before <= res.json["serverTime"] <= after


def test_exchange_info_publishes_every_symbol_with_its_filters(api) -> None:
    res = api.get("/api/v3/exchangeInfo")
    assert res.status_code == 200
    body = res.json
    assert body["timezone"] == "UTC"
    assert isinstance(body["serverTime"], int)
    assert body["rateLimits"] == []
    assert [s["symbol"] for s in body["symbols"]] == ["AAPL", "MSFT", "BTCUSD"]
    btc = body["symbols"][2]
    assert btc == {
        "symbol": "BTCUSD",
        "status": "TRADING",
        "baseAsset": "BTC",
        "quoteAsset": "USD",
        "baseAssetPrecision": 3,
        "quoteAssetPrecision": 5,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "1.00", "maxPrice": "500000.00", "tickSize": "0.05"},
            {"filterType": "LOT_SIZE", "minQty": "0.002", "maxQty": "100.000", "stepSize": "0.001"},
        ],
    }


def test_exchange_info_for_one_symbol(api) -> None:
    res = api.get("/api/v3/exchangeInfo", query_string="symbol=MSFT")
    assert res.status_code == 200
    assert [s["symbol"] for s in res.json["symbols"]] == ["MSFT"]


def test_exchange_info_unknown_symbol_is_1121(api) -> None:
    res = api.get("/api/v3/exchangeInfo", query_string="symbol=NOPE")
    assert res.status_code == 400
    assert res.json["code"] == -1121
    assert "NOPE" in res.json["msg"]


def test_depth_shows_levels_best_first_as_decimal_strings(api) -> None:
    alice = api.new_user()
    for price, qty in (("20000.05", "0.5"), ("19999.95", "1.25"), ("20000.00", "0.002")):
        assert api.signed("POST", "/api/v3/order", alice, limit_order("BTCUSD", "BUY", price, qty)).status_code == 200
    assert api.signed("POST", "/api/v3/order", alice, limit_order("BTCUSD", "SELL", "20100", "2")).status_code == 200

    res = api.get("/api/v3/depth", query_string="symbol=BTCUSD")

    assert res.status_code == 200
    assert res.json == {
        "lastUpdateId": 4,
        "bids": [["20000.05", "0.500"], ["20000.00", "0.002"], ["19999.95", "1.250"]],
        "asks": [["20100.00", "2.000"]],
    }


def test_depth_limit_cuts_levels(api) -> None:
    alice = api.new_user()
    for price in ("10", "11", "12"):
        api.signed("POST", "/api/v3/order", alice, limit_order("AAPL", "BUY", price, "1"))
    res = api.get("/api/v3/depth", query_string="symbol=AAPL&limit=2")
    assert res.status_code == 200
    assert res.json["bids"] == [["12.00", "1"], ["11.00", "1"]]


def test_depth_sends_the_default_limit_100(api) -> None:
    api.get("/api/v3/depth", query_string="symbol=AAPL")
    assert api.engine.sent[-1][1].limit == 100


def test_depth_limit_errors(api) -> None:
    for qs, code, fragment in (
        ("symbol=AAPL&limit=5001", -1100, "5001"),
        ("symbol=AAPL&limit=0", -1100, "'limit'"),
        ("symbol=AAPL&limit=ten", -1100, "'limit'"),
        ("limit=10", -1102, "'symbol'"),
        ("symbol=XYZ", -1121, "XYZ"),
        ("symbol=AAPL&depth=3", -1104, "'depth'"),
    ):
        res = api.get("/api/v3/depth", query_string=qs)
        assert res.status_code == 400, qs
        assert res.json["code"] == code, qs
        assert fragment in res.json["msg"], qs
    assert api.engine.sent == []


def test_book_ticker_for_one_symbol(api) -> None:
    alice = api.new_user()
    api.signed("POST", "/api/v3/order", alice, limit_order("AAPL", "BUY", "100.5", "7"))
    api.signed("POST", "/api/v3/order", alice, limit_order("AAPL", "SELL", "101", "3"))
    res = api.get("/api/v3/ticker/bookTicker", query_string="symbol=AAPL")
    assert res.status_code == 200
    assert res.json == {"symbol": "AAPL", "bidPrice": "100.50", "bidQty": "7", "askPrice": "101.00", "askQty": "3"}


def test_book_ticker_of_every_symbol_across_shards(api) -> None:
    alice = api.new_user()
    api.signed("POST", "/api/v3/order", alice, limit_order("MSFT", "SELL", "300", "4"))
    res = api.get("/api/v3/ticker/bookTicker")
    assert res.status_code == 200
    assert res.json == [
        {"symbol": "AAPL", "bidPrice": "0.00", "bidQty": "0", "askPrice": "0.00", "askQty": "0"},
        {"symbol": "MSFT", "bidPrice": "0.00", "bidQty": "0", "askPrice": "300.00", "askQty": "4"},
        {"symbol": "BTCUSD", "bidPrice": "0.00", "bidQty": "0.000", "askPrice": "0.00", "askQty": "0.000"},
    ]


def test_unknown_route_is_404_with_a_json_error(api) -> None:
    res = api.get("/api/v3/nothing")
    assert res.status_code == 404
    assert res.json == {"code": -1000, "msg": "no endpoint GET /api/v3/nothing"}


def test_wrong_method_is_405_with_a_json_error(api) -> None:
    res = api.request("POST", "/api/v3/depth")
    assert res.status_code == 405
    assert res.json["code"] == -1000
    assert "POST" in res.json["msg"]
