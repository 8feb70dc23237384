"""Signed order endpoints over the ASGI app: happy paths, response shapes, ownership."""

from __future__ import annotations

import orjson

from tests.ingress.harness import limit_order

ORDER = "/api/v3/order"

FULL_FIELDS = {
    "symbol", "orderId", "orderListId", "clientOrderId", "transactTime", "price", "origQty", "executedQty",
    "cummulativeQuoteQty", "status", "timeInForce", "type", "side", "workingTime", "selfTradePreventionMode", "fills",
}  # fmt: skip


def test_new_limit_order_full_answer(api) -> None:
    alice = api.new_user()
    res = api.signed("POST", ORDER, alice, limit_order("AAPL", "BUY", "101.25", "3", newClientOrderId="a-1"))
    assert res.status_code == 200, res.text
    body = res.json
    assert set(body) == FULL_FIELDS
    assert body["symbol"] == "AAPL"
    assert body["orderId"] >= 1
    assert body["orderListId"] == -1
    assert body["clientOrderId"] == "a-1"
    assert (body["price"], body["origQty"], body["executedQty"], body["cummulativeQuoteQty"]) == (
        "101.25",
        "3",
        "0",
        "0.00",
    )
    assert (body["status"], body["timeInForce"], body["type"], body["side"]) == ("NEW", "GTC", "LIMIT", "BUY")
    assert body["selfTradePreventionMode"] == "EXPIRE_MAKER"
    assert body["fills"] == []
    assert body["transactTime"] == body["workingTime"] > 0


def test_ack_and_result_shapes(api) -> None:
    alice = api.new_user()
    ack = api.signed("POST", ORDER, alice, limit_order("AAPL", "BUY", "10", "1", newOrderRespType="ACK")).json
    assert set(ack) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}
    result = api.signed("POST", ORDER, alice, limit_order("AAPL", "BUY", "10", "1", newOrderRespType="RESULT")).json
    assert set(result) == FULL_FIELDS - {"fills"}


def test_crossing_orders_of_two_users_fill_at_the_makers_price(api) -> None:
    alice, bob = api.new_user(), api.new_user()
    api.signed("POST", ORDER, alice, limit_order("BTCUSD", "SELL", "20000.05", "0.5"))
    api.signed("POST", ORDER, alice, limit_order("BTCUSD", "SELL", "20000.10", "1"))

    res = api.signed("POST", ORDER, bob, limit_order("BTCUSD", "BUY", "20001", "0.75"))

    assert res.status_code == 200, res.text
    body = res.json
    assert body["status"] == "FILLED"
    assert body["executedQty"] == "0.750"
    assert body["cummulativeQuoteQty"] == "15000.05000"  # 0.5*20000.05 + 0.25*20000.10
    fills = body["fills"]
    assert [(f["price"], f["qty"], f["commission"], f["commissionAsset"]) for f in fills] == [
        ("20000.05", "0.500", "0", "USD"),
        ("20000.10", "0.250", "0", "USD"),
    ]
    assert fills[0]["tradeId"] < fills[1]["tradeId"]


def test_market_buy_by_quote_amount_rounds_down(api) -> None:
    alice, bob = api.new_user(), api.new_user()
    api.signed("POST", ORDER, alice, limit_order("AAPL", "SELL", "100", "10"))
    res = api.signed(
        "POST", ORDER, bob, {"symbol": "AAPL", "side": "BUY", "type": "MARKET", "quoteOrderQty": "350.999"}
    )
    assert res.status_code == 200, res.text
    body = res.json
    assert body["type"] == "MARKET"
    assert body["executedQty"] == "3"
    assert body["cummulativeQuoteQty"] == "300.00"
    assert api.engine.sent[-1][1].quote_qty == 35099


def test_market_sell_by_quantity(api) -> None:
    alice, bob = api.new_user(), api.new_user()
    api.signed("POST", ORDER, alice, limit_order("AAPL", "BUY", "99.5", "2"))
    res = api.signed("POST", ORDER, bob, {"symbol": "AAPL", "side": "SELL", "type": "MARKET", "quantity": "5"})
    body = res.json
    assert (body["status"], body["executedQty"], body["price"]) == ("EXPIRED", "2", "0.00")


def test_limit_maker_that_would_cross_is_2010(api) -> None:
    alice, bob = api.new_user(), api.new_user()
    api.signed("POST", ORDER, alice, limit_order("AAPL", "SELL", "100", "1"))
    order = {"symbol": "AAPL", "side": "BUY", "type": "LIMIT_MAKER", "price": "100", "quantity": "1"}
    res = api.signed("POST", ORDER, bob, order)
    assert res.status_code == 400
    assert res.json["code"] == -2010


def test_query_and_cancel_by_order_id_and_client_order_id(api) -> None:
    alice = api.new_user()
    first = api.signed("POST", ORDER, alice, limit_order("MSFT", "BUY", "300", "5", newClientOrderId="m1")).json
    api.signed("POST", ORDER, alice, limit_order("MSFT", "BUY", "301", "6", newClientOrderId="m2"))

    got = api.signed("GET", ORDER, alice, {"symbol": "MSFT", "orderId": first["orderId"]})
    assert got.status_code == 200
    assert got.json["clientOrderId"] == "m1"
    assert got.json["origQty"] == "5"
    assert got.json["status"] == "NEW"
    assert got.json["orderListId"] == -1
    assert got.json["origQuoteOrderQty"] == "0.00"

    by_client_id = api.signed("GET", ORDER, alice, {"symbol": "MSFT", "origClientOrderId": "m2"})
    assert by_client_id.json["price"] == "301.00"

    canceled = api.signed("DELETE", ORDER, alice, {"symbol": "MSFT", "origClientOrderId": "m1"})
    assert canceled.status_code == 200
    assert canceled.json["status"] == "CANCELED"
    assert canceled.json["orderId"] == first["orderId"]
    assert canceled.json["origClientOrderId"] == "m1"

    again = api.signed("DELETE", ORDER, alice, {"symbol": "MSFT", "orderId": first["orderId"]})
    assert again.status_code == 400
    assert again.json["code"] == -2013


def test_another_users_order_answers_2013_like_an_unknown_id(api) -> None:
    alice, mallory = api.new_user(), api.new_user()
    order_id = api.signed("POST", ORDER, alice, limit_order("AAPL", "BUY", "50", "2")).json["orderId"]

    for method, params in (
        ("GET", {"symbol": "AAPL", "orderId": order_id}),
        ("DELETE", {"symbol": "AAPL", "orderId": order_id}),
        ("PUT", {"symbol": "AAPL", "orderId": order_id, "newQty": "1"}),
    ):
        path = "/api/v3/order/amend/keepPriority" if method == "PUT" else ORDER
        theirs = api.signed(method, path, mallory, params)
        unknown = api.signed(method, path, mallory, params | {"orderId": 999999})
        assert theirs.status_code == unknown.status_code == 400
        assert theirs.json["code"] == unknown.json["code"] == -2013
    assert api.signed("GET", ORDER, alice, {"symbol": "AAPL", "orderId": order_id}).json["status"] == "NEW"


def test_amend_keep_priority_reduces_the_quantity(api) -> None:
    alice = api.new_user()
    order_id = api.signed("POST", ORDER, alice, limit_order("AAPL", "SELL", "120", "10")).json["orderId"]
    res = api.signed(
        "PUT", "/api/v3/order/amend/keepPriority", alice, {"symbol": "AAPL", "orderId": order_id, "newQty": "4"}
    )
    assert res.status_code == 200, res.text
    body = res.json
    assert set(body) == {"transactTime", "executionId", "amendedOrder"}
    assert body["amendedOrder"]["origQty"] == "4"
    assert body["amendedOrder"]["orderId"] == order_id
    depth = api.get("/api/v3/depth", query_string="symbol=AAPL").json
    assert depth["asks"] == [["120.00", "4"]]


def test_open_orders_of_one_symbol_and_of_all_shards(api) -> None:
    alice, bob = api.new_user(), api.new_user()
    api.signed("POST", ORDER, alice, limit_order("AAPL", "BUY", "10", "1"))
    api.signed("POST", ORDER, alice, limit_order("MSFT", "BUY", "20", "2"))
    api.signed("POST", ORDER, alice, limit_order("BTCUSD", "BUY", "30", "0.003"))
    api.signed("POST", ORDER, bob, limit_order("AAPL", "BUY", "11", "1"))

    one = api.signed("GET", "/api/v3/openOrders", alice, {"symbol": "AAPL"})
    assert one.status_code == 200
    assert [(o["symbol"], o["price"]) for o in one.json] == [("AAPL", "10.00")]

    every = api.signed("GET", "/api/v3/openOrders", alice)
    assert every.status_code == 200
    assert sorted((o["symbol"], o["origQty"]) for o in every.json) == [
        ("AAPL", "1"),
        ("BTCUSD", "0.003"),
        ("MSFT", "2"),
    ]
    shards_asked = {shard for shard, cmd in api.engine.sent if type(cmd).__name__ == "QueryOpenOrders"}
    assert shards_asked == {0, 1}


def test_cancel_all_open_orders_on_a_symbol(api) -> None:
    alice, bob = api.new_user(), api.new_user()
    api.signed("POST", ORDER, alice, limit_order("AAPL", "BUY", "10", "1"))
    api.signed("POST", ORDER, alice, limit_order("AAPL", "SELL", "12", "1"))
    api.signed("POST", ORDER, bob, limit_order("AAPL", "BUY", "9", "1"))

    res = api.signed("DELETE", "/api/v3/openOrders", alice, {"symbol": "AAPL"})

    assert res.status_code == 200
    assert sorted(o["price"] for o in res.json) == ["10.00", "12.00"]
    assert {o["status"] for o in res.json} == {"CANCELED"}
    assert api.get("/api/v3/depth", query_string="symbol=AAPL").json["bids"] == [["9.00", "1"]]


def test_order_test_checks_but_sends_nothing(api) -> None:
    alice = api.new_user()
    ok = api.signed("POST", "/api/v3/order/test", alice, limit_order("AAPL", "BUY", "10", "1"))
    bad = api.signed("POST", "/api/v3/order/test", alice, limit_order("AAPL", "BUY", "10.001", "1"))
    assert (ok.status_code, ok.json) == (200, {})
    assert bad.status_code == 400
    assert bad.json["code"] == -1013
    assert api.engine.sent == []


def test_form_body_and_json_body_are_accepted(api) -> None:
    alice = api.new_user()
    form = api.signed("POST", ORDER, alice, limit_order("AAPL", "BUY", "10", "1"), where="form")
    as_json = api.signed(
        "POST",
        ORDER,
        alice,
        {"symbol": "BTCUSD", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "price": 20000.05, "quantity": 0.25},
        where="json",
    )
    assert form.status_code == 200, form.text
    assert as_json.status_code == 200, as_json.text
    assert (as_json.json["price"], as_json.json["origQty"]) == ("20000.05", "0.250")


def test_query_string_wins_over_the_body(api) -> None:
    alice = api.new_user()
    res = api.signed("POST", ORDER, alice, limit_order("AAPL", "BUY", "10", "1"), where="form", query={"quantity": "7"})
    assert res.status_code == 200, res.text
    assert res.json["origQty"] == "7"


def test_batch_orders_answer_each_order_in_order(api) -> None:
    alice, bob = api.new_user(), api.new_user()
    api.signed("POST", ORDER, alice, limit_order("MSFT", "SELL", "100", "1"))
    orders = [
        limit_order("AAPL", "BUY", "10", "1"),
        limit_order("AAPL", "BUY", "10.001", "1"),
        {"symbol": "MSFT", "side": "BUY", "type": "LIMIT_MAKER", "price": "100", "quantity": "1"},
        limit_order("MSFT", "BUY", "100", "1", newOrderRespType="ACK"),
        limit_order("NOPE", "BUY", "1", "1"),
        limit_order("AAPL", "BUY", "10", "1", bogus="1"),
    ]

    res = api.signed("POST", "/api/v3/batchOrders", bob, {"orders": orders}, where="json")

    assert res.status_code == 200, res.text
    out = res.json
    assert len(out) == 6
    assert out[0]["status"] == "NEW"
    assert out[1]["code"] == -1013
    assert out[2]["code"] == -2010
    assert set(out[3]) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}
    assert out[4]["code"] == -1121
    assert out[5]["code"] == -1104
    assert len(api.engine.sent) == 1 + 3


def test_batch_orders_as_a_form_parameter_holding_json(api) -> None:
    alice = api.new_user()
    orders = orjson.dumps([limit_order("AAPL", "BUY", "10", "1")]).decode()
    res = api.signed("POST", "/api/v3/batchOrders", alice, {"orders": orders}, where="form")
    assert res.status_code == 200, res.text
    assert res.json[0]["status"] == "NEW"
