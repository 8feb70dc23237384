"""Unit tests of the REST edge's pure parts: decimal conversion, formatting, signature text, client ids."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

import pytest

from ingress import params as p
from ingress.auth import strip_form_signature, strip_json_signature
from ingress.errors import FilterFailure, Malformed, MissingParam, UnexpectedParam
from ingress.symbols import Catalog, fixed, rules_of
from shards.protocol import NewOrder, OrderType, Side, StpMode, TimeInForce


def _sym(symbol_id: int, name: str, tick: str, step: str, min_price: str, max_price: str, min_qty: str, max_qty: str):
    return SimpleNamespace(
        symbol=name,
        symbol_id=symbol_id,
        base_asset=name[:3],
        quote_asset="USD",
        tick_size=Decimal(tick),
        step_size=Decimal(step),
        min_price=Decimal(min_price),
        max_price=Decimal(max_price),
        min_qty=Decimal(min_qty),
        max_qty=Decimal(max_qty),
    )


AAPL = rules_of(_sym(1, "AAPL", "0.01", "1", "0.01", "1000000", "1", "1000000"), shard=0)
BTC = rules_of(_sym(2, "BTCUSD", "0.05", "0.001", "1", "500000", "0.002", "100"), shard=1)
CATALOG = Catalog([AAPL, BTC])


@pytest.mark.parametrize(
    ("rules", "text", "ticks"),
    [
        (AAPL, "101.25", 10125),
        (AAPL, "101.250000", 10125),
        (AAPL, "0.01", 1),
        (AAPL, "1000000", 100000000),
        (AAPL, 101.25, 10125),
        (AAPL, 7, 700),
        (BTC, "20000.05", 400001),
        (BTC, "1", 20),
    ],
)
def test_price_to_ticks_is_exact(rules, text, ticks) -> None:
    assert p.price_ticks(rules, text) == ticks


@pytest.mark.parametrize(
    ("rules", "value", "error", "fragment"),
    [
        (AAPL, "101.234", FilterFailure, "price 101.234 is not a multiple of tickSize 0.01"),
        (BTC, "20000.07", FilterFailure, "price 20000.07 is not a multiple of tickSize 0.05"),
        (AAPL, "0", FilterFailure, "price 0 is below minPrice 0.01"),
        (AAPL, "0.00", FilterFailure, "below minPrice"),
        (AAPL, "1000000.01", FilterFailure, "price 1000000.01 is above maxPrice 1000000.00"),
        (AAPL, "99999999999999999999", FilterFailure, "above maxPrice"),
        (AAPL, "123456789012345678901", Malformed, "not a valid decimal"),
        (AAPL, "-1", Malformed, "parameter 'price' value -1"),
        (AAPL, "1e3", Malformed, "not a valid decimal"),
        (AAPL, "1,5", Malformed, "not a valid decimal"),
        (AAPL, ".5", Malformed, "not a valid decimal"),
        (AAPL, "5.", Malformed, "not a valid decimal"),
        (AAPL, " 5", Malformed, "not a valid decimal"),
        (AAPL, "٣", Malformed, "not a valid decimal"),
        (AAPL, "1.000000000000000000001", Malformed, "not a valid decimal"),
        (AAPL, True, Malformed, "not a valid decimal"),
        (AAPL, -2.5, Malformed, "not a valid decimal"),
        (AAPL, 1e300, Malformed, "not a valid decimal"),
        (AAPL, ["1"], Malformed, "not a valid decimal"),
    ],
)
def test_bad_prices_name_the_value(rules, value, error, fragment) -> None:
    with pytest.raises(error) as caught:
        p.price_ticks(rules, value)
    assert fragment in caught.value.msg


@pytest.mark.parametrize(
    ("value", "lots"),
    [("0.002", 2), ("1.5", 1500), ("100", 100000), ("0.0020", 2), (0.25, 250)],
)
def test_fractional_quantity_to_lots(value, lots) -> None:
    assert p.qty_lots(BTC, value) == lots


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("0.0015", "quantity 0.0015 is not a multiple of stepSize 0.001"),
        ("0.001", "quantity 0.001 is below minQty 0.002"),
        ("0", "quantity 0 is below minQty 0.002"),
        ("100.001", "quantity 100.001 is above maxQty 100.000"),
    ],
)
def test_bad_quantities_are_filter_failures(value, fragment) -> None:
    with pytest.raises(FilterFailure) as caught:
        p.qty_lots(BTC, value)
    assert fragment in caught.value.msg


def test_quote_amount_rounds_down_to_tick_times_step() -> None:
    # BTC quote unit = 0.05 * 0.001 = 0.00005
    assert p.quote_units(BTC, "1.00009") == 20001
    assert p.quote_units(BTC, "1.000099999") == 20001
    assert p.quote_units(AAPL, "100.019") == 10001
    with pytest.raises(FilterFailure, match="below the smallest quote amount 0.00005"):
        p.quote_units(BTC, "0.00004")


def test_formatting_uses_the_symbols_fixed_decimals() -> None:
    assert fixed(0, 2) == "0.00"
    assert fixed(5, 3) == "0.005"
    assert fixed(123456, 2) == "1234.56"
    assert fixed(42, 0) == "42"
    assert AAPL.price(10125) == "101.25"
    assert AAPL.qty(3) == "3"
    assert AAPL.quote(30375) == "303.75"
    assert BTC.price(400001) == "20000.05"
    assert BTC.qty(1500) == "1.500"
    assert BTC.quote(20001) == "1.00005"
    assert (BTC.tick_text, BTC.step_text, BTC.min_qty_text, BTC.max_price_text) == (
        "0.05",
        "0.001",
        "0.002",
        "500000.00",
    )


def test_new_limit_order_converts_every_field() -> None:
    params = {
        "symbol": "BTCUSD",
        "side": "SELL",
        "type": "LIMIT",
        "timeInForce": "IOC",
        "price": "20000.05",
        "quantity": "1.5",
        "newClientOrderId": "my-order.1_A",
        "selfTradePreventionMode": "EXPIRE_BOTH",
        "newOrderRespType": "ACK",
    }
    rules, cmd, resp_type = p.new_order(CATALOG, params, user_id=7)
    assert rules is BTC
    assert resp_type == "ACK"
    assert cmd == NewOrder(
        2, 7, "my-order.1_A", Side.SELL, OrderType.LIMIT, TimeInForce.IOC, 400001, 1500, 0, StpMode.EXPIRE_BOTH, 0
    )


def test_new_order_defaults() -> None:
    params = {"symbol": "AAPL", "side": "BUY", "type": "MARKET", "quoteOrderQty": "250.009"}
    _, cmd, resp_type = p.new_order(CATALOG, params, user_id=1)
    assert resp_type == "FULL"
    assert (cmd.order_type, cmd.tif, cmd.price, cmd.qty, cmd.quote_qty) == (
        OrderType.MARKET,
        TimeInForce.GTC,
        0,
        0,
        25000,
    )
    assert cmd.stp == StpMode.EXPIRE_MAKER
    assert p._CLIENT_ORDER_ID.fullmatch(cmd.client_order_id)


@pytest.mark.parametrize(
    ("params", "error", "fragment"),
    [
        ({"side": "BUY", "type": "MARKET", "quantity": "1"}, MissingParam, "'symbol'"),
        ({"symbol": "AAPL", "side": "BUY", "type": "LIMIT", "price": "1", "quantity": "1"},
         MissingParam, "'timeInForce'"),
        ({"symbol": "AAPL", "side": "BUY", "type": "LIMIT", "timeInForce": "GTD", "price": "1", "quantity": "1"},
         Malformed, "'timeInForce' value GTD"),
        ({"symbol": "AAPL", "side": "BUY", "type": "LIMIT_MAKER", "price": "1", "quantity": "1", "timeInForce": "GTC"},
         UnexpectedParam, "'timeInForce'"),
        ({"symbol": "AAPL", "side": "BUY", "type": "MARKET"}, MissingParam, "'quantity' or 'quoteOrderQty'"),
        ({"symbol": "AAPL", "side": "BUY", "type": "MARKET", "quantity": "1", "quoteOrderQty": "5"},
         UnexpectedParam, "'quoteOrderQty'"),
        ({"symbol": "AAPL", "side": "BUY", "type": "MARKET", "quantity": "1", "price": "5"},
         UnexpectedParam, "'price'"),
        ({"symbol": "AAPL", "side": "BUY", "type": "LIMIT_MAKER", "price": "1", "quantity": ""}, MissingParam,
         "'quantity'"),
        ({"symbol": "AAPL", "side": "BUY", "type": "MARKET", "quantity": "1", "newClientOrderId": "a b"},
         Malformed, "'newClientOrderId' value a b"),
        ({"symbol": "AAPL", "side": "BUY", "type": "MARKET", "quantity": "1", "newClientOrderId": "x" * 37},
         Malformed, "'newClientOrderId'"),
        ({"symbol": "AAPL", "side": "BUY", "type": "MARKET", "quantity": "1", "selfTradePreventionMode": "DECREMENT"},
         Malformed, "'selfTradePreventionMode' value DECREMENT"),
        ({"symbol": "AAPL", "side": "BUY", "type": "MARKET", "quantity": "1", "newOrderRespType": "SHORT"},
         Malformed, "'newOrderRespType' value SHORT"),
        ({"symbol": "AAPL", "side": 1, "type": "MARKET", "quantity": "1"}, Malformed, "'side' must be a string"),
    ],
)  # fmt: skip
def test_new_order_errors(params, error, fragment) -> None:
    with pytest.raises(error) as caught:
        p.new_order(CATALOG, params, user_id=1)
    assert fragment in caught.value.msg


def test_generated_client_order_ids_are_unique_and_valid() -> None:
    ids = [p.CLIENT_ORDER_IDS.next() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(p._CLIENT_ORDER_ID.fullmatch(i) for i in ids)


@pytest.mark.parametrize(
    ("text", "stripped"),
    [
        ("a=1&b=2&signature=abc", "a=1&b=2"),
        ("signature=abc&a=1&b=2", "a=1&b=2"),
        ("a=1&signature=abc&b=2", "a=1&b=2"),
        ("signature=abc", ""),
        ("a=1&xsignature=abc&b=2", "a=1&xsignature=abc&b=2"),
        ("xsignature=1&signature=abc", "xsignature=1"),
        ("a=1", "a=1"),
    ],
)
def test_form_signature_is_cut_wherever_it_stands(text, stripped) -> None:
    assert strip_form_signature(text) == stripped


@pytest.mark.parametrize(
    ("body", "stripped"),
    [
        (b'{"a":1,"signature":"ab12"}', b'{"a":1}'),
        (b'{"signature": "ab12", "a": 1}', b'{"a": 1}'),
        (b'{"a":1, "signature" : "ab12" ,"b":2}', b'{"a":1 ,"b":2}'),
        (b'{"signature":"ab12"}', b"{}"),
    ],
)
def test_json_signature_member_is_cut(body, stripped) -> None:
    assert strip_json_signature(body) == stripped
