"""Every bad input answers its contract code, names the parameter and value, and sends nothing."""

from __future__ import annotations

import orjson
import pytest

from ingress.auth import sign
from tests.ingress.harness import limit_order, now_ms

ORDER = "/api/v3/order"


def _base(**changes):
    order = limit_order("AAPL", "BUY", "101.25", "3")
    order.update(changes)
    return {k: v for k, v in order.items() if v is not None}


@pytest.mark.parametrize(
    ("params", "code", "fragments"),
    [
        (_base(symbol="NOPE"), -1121, ["NOPE"]),
        (_base(symbol=None), -1102, ["'symbol'"]),
        (_base(symbol=""), -1102, ["'symbol'"]),
        (_base(side="BUYY"), -1117, ["BUYY"]),
        (_base(side=None), -1102, ["'side'"]),
        (_base(type="STOP_LOSS"), -1116, ["STOP_LOSS"]),
        (_base(timeInForce=None), -1102, ["'timeInForce'"]),
        (_base(timeInForce="NOW"), -1100, ["'timeInForce'", "NOW"]),
        (_base(quantity="-3"), -1100, ["'quantity'", "-3"]),
        (_base(quantity="0"), -1013, ["quantity 0", "minQty 1"]),
        (_base(quantity="1000001"), -1013, ["quantity 1000001", "maxQty"]),
        (_base(quantity="9" * 25), -1100, ["'quantity'"]),
        (_base(quantity="1.5"), -1013, ["quantity 1.5", "stepSize 1"]),
        (_base(quantity="abc"), -1100, ["'quantity'", "abc"]),
        (_base(quantity="1e3"), -1100, ["'quantity'", "1e3"]),
        (_base(quantity=None), -1102, ["'quantity'"]),
        (_base(quantity=""), -1102, ["'quantity'"]),
        (_base(price="101.234"), -1013, ["price 101.234 is not a multiple of tickSize 0.01"]),
        (_base(price="101.250000000000000000001"), -1100, ["'price'"]),
        (_base(price="0"), -1013, ["price 0", "minPrice"]),
        (_base(price="2000000"), -1013, ["price 2000000", "maxPrice"]),
        (_base(price="1O1"), -1100, ["'price'", "1O1"]),
        (_base(price=None), -1102, ["'price'"]),
        (_base(newClientOrderId="bad id!"), -1100, ["'newClientOrderId'", "bad id!"]),
        (_base(selfTradePreventionMode="X"), -1100, ["'selfTradePreventionMode'"]),
        (_base(newOrderRespType="X"), -1100, ["'newOrderRespType'"]),
        (_base(icebergQty="1"), -1104, ["'icebergQty'"]),
        (_base(quoteOrderQty="10"), -1104, ["'quoteOrderQty'"]),
    ],
)
def test_bad_new_order_parameters(api, params, code, fragments) -> None:
    alice = api.new_user()
    res = api.signed("POST", ORDER, alice, params)
    assert res.status_code == 400, res.text
    assert res.json["code"] == code, res.text
    for fragment in fragments:
        assert fragment in res.json["msg"]
    assert api.engine.sent == []


def test_json_numbers_of_wrong_types_are_1100(api) -> None:
    alice = api.new_user()
    for changes, name in (({"quantity": True}, "quantity"), ({"price": [1]}, "price"), ({"side": 1}, "side")):
        res = api.signed("POST", ORDER, alice, _base(**changes), where="json")
        assert res.status_code == 400
        assert res.json["code"] == -1100
        assert f"'{name}'" in res.json["msg"]
    assert api.engine.sent == []


def test_malformed_json_body_names_the_problem(api) -> None:
    alice = api.new_user()
    body = b'{"symbol": "AAPL", "side": '
    qs = f"timestamp={now_ms()}"
    sig = sign(alice.secret, qs.encode() + body)
    res = api.request(
        "POST",
        ORDER,
        query_string=f"{qs}&signature={sig}",
        body=body,
        headers={"X-MBX-APIKEY": alice.api_key, "Content-Type": "application/json"},
    )
    assert res.status_code == 400
    assert res.json["code"] == -1100
    assert res.json["msg"].startswith("malformed JSON body")


def test_json_body_must_be_an_object(api) -> None:
    res = api.request("POST", ORDER, body=b"[1, 2]", headers={"Content-Type": "application/json"})
    assert res.status_code == 400
    assert res.json == {"code": -1100, "msg": "JSON body must be an object, got list"}


def test_oversized_body_is_413(make_api, make_config) -> None:
    api = make_api(make_config(rest={"max_body_bytes": 1024}))
    res = api.request(
        "POST", ORDER, body=b"a=" + b"1" * 2000, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert res.status_code == 413
    assert res.json["code"] == -1100
    assert "1024" in res.json["msg"]


def test_parameter_sent_twice_is_1100(api) -> None:
    res = api.get("/api/v3/depth", query_string="symbol=AAPL&symbol=MSFT")
    assert res.status_code == 400
    assert res.json["code"] == -1100
    assert "'symbol'" in res.json["msg"]


def test_unsupported_content_type_is_1100(api) -> None:
    res = api.request("POST", ORDER, body=b"<xml/>", headers={"Content-Type": "text/xml"})
    assert res.status_code == 400
    assert res.json["code"] == -1100
    assert "text/xml" in res.json["msg"]


def test_cancel_needs_an_order_reference(api) -> None:
    alice = api.new_user()
    res = api.signed("DELETE", ORDER, alice, {"symbol": "AAPL"})
    assert res.status_code == 400
    assert res.json["code"] == -1102
    assert "'orderId' or 'origClientOrderId'" in res.json["msg"]
    bad = api.signed("DELETE", ORDER, alice, {"symbol": "AAPL", "orderId": "12x"})
    assert bad.json["code"] == -1100
    assert "12x" in bad.json["msg"]


def test_amend_new_qty_is_checked(api) -> None:
    alice = api.new_user()
    res = api.signed(
        "PUT", "/api/v3/order/amend/keepPriority", alice, {"symbol": "AAPL", "orderId": 1, "newQty": "0.5"}
    )
    assert res.status_code == 400
    assert res.json["code"] == -1013
    assert "newQty 0.5" in res.json["msg"]
    assert api.engine.sent == []


def test_batch_over_100_orders_is_rejected_whole(api) -> None:
    alice = api.new_user()
    orders = [limit_order("AAPL", "BUY", "10", "1")] * 101
    res = api.signed("POST", "/api/v3/batchOrders", alice, {"orders": orders}, where="json")
    assert res.status_code == 400
    assert res.json["code"] == -1100
    assert "101" in res.json["msg"]
    assert api.engine.sent == []


def test_batch_needs_orders(api) -> None:
    alice = api.new_user()
    empty = api.signed("POST", "/api/v3/batchOrders", alice, {"orders": []}, where="json")
    missing = api.signed("POST", "/api/v3/batchOrders", alice, {}, where="json")
    not_a_list = api.signed("POST", "/api/v3/batchOrders", alice, {"orders": {"a": 1}}, where="json")
    assert (empty.json["code"], missing.json["code"], not_a_list.json["code"]) == (-1102, -1102, -1100)
    item_not_object = api.signed("POST", "/api/v3/batchOrders", alice, {"orders": [1]}, where="json")
    assert item_not_object.status_code == 200
    assert item_not_object.json == [{"code": -1100, "msg": "orders[0] must be an object, got int"}]


def test_batch_body_signature_covers_the_raw_json(api) -> None:
    alice = api.new_user()
    body = orjson.dumps({"orders": [limit_order("AAPL", "BUY", "10", "1")], "timestamp": now_ms()})
    sig = sign(alice.secret, body)
    res = api.request(
        "POST",
        "/api/v3/batchOrders",
        query_string=f"signature={sig}",
        body=body.replace(b'"10"', b'"11"'),
        headers={"X-MBX-APIKEY": alice.api_key, "Content-Type": "application/json"},
    )
    assert res.status_code == 401
    assert res.json["code"] == -1022


def test_query_string_that_is_not_utf8_is_1100(api) -> None:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": "/api/v3/depth", "raw_path": b"/api/v3/depth", "query_string": b"symbol=\xff", "root_path": "",
        "headers": [(b"host", b"test")], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 3000),
    }  # fmt: skip
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    api.run(api.app(scope, receive, send))

    assert sent[0]["status"] == 400
    assert orjson.loads(sent[1]["body"]) == {"code": -1100, "msg": "the query string is not valid UTF-8"}
