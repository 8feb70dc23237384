"""``ingress/batch.py``: a batch's orders validate and answer exactly as single orders do.

The flat per-order paths (plain LIMIT orders through memo lookups, FULL answers
built in one expression) are compared with the reference of a single order:
``check_allowed`` + ``params.new_order`` for commands and errors, and
``orjson.dumps`` of ``views.new_order`` / ``{"code", "msg"}`` for the answer bytes.
"""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from ingress import batch, views
from ingress import params as p
from ingress.dispatch import EngineBusy, EngineTimeout
from ingress.errors import ApiError, Malformed, error_of_exception, rejected_error
from ingress.inputs import check_allowed
from ingress.symbols import Catalog, rules_of
from shards.protocol import Fill, OrderResult, OrderView, Rejected
from tests.ingress.test_params import _sym


def _catalog() -> Catalog:  # fresh rules per test: empty memo tables
    return Catalog(
        [
            rules_of(_sym(1, "AAPL", "0.01", "1", "0.01", "1000000", "1", "1000000"), shard=0),
            rules_of(_sym(2, "BTCUSD", "0.05", "0.001", "1", "500000", "0.002", "100"), shard=1),
        ]
    )


def _limit(**fields: Any) -> dict[str, Any]:
    order = {"symbol": "AAPL", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "3", "price": "99.5"}
    order.update(fields)
    return {name: value for name, value in order.items() if value is not ...}


ORDERS: list[Any] = [
    _limit(),
    _limit(side="SELL", timeInForce="IOC", price="100.25", quantity="7"),
    _limit(symbol="BTCUSD", price="25000.05", quantity="0.010"),
    _limit(symbol="aapl"),  # found upper-cased by the full checks
    _limit(symbol="NOPE"),
    _limit(side="buy"),
    _limit(side=["BUY"]),  # unhashable
    _limit(timeInForce="GTX"),
    _limit(timeInForce={"a": 1}),
    _limit(type="MARKET"),  # six fields, but not a LIMIT: price and timeInForce are refused
    _limit(type="LIMIT_MAKER"),
    _limit(type=7),
    _limit(price=99.5),  # a JSON number: no memo hit, converted by the full checks
    _limit(price=100),
    _limit(price="99.555"),  # off the tick grid
    _limit(price=""),
    _limit(price=None),
    _limit(quantity="0"),
    _limit(quantity=True),
    _limit(quantity="1.5"),
    _limit(price=..., quoteOrderQty="10"),  # six names, not the plain ones
    _limit(newClientOrderId="mine-1"),  # seven names
    _limit(newOrderRespType="ACK"),
    _limit(bogus="1"),
    _limit(price=...),
    {},
    [],
    "order",
    7,
    None,
]


def _reference(catalog: Catalog, orders: list[Any], user_id: int) -> list[Any]:
    """What a single order gives for each item: (shard, command without its generated id, respType) or the error."""
    out: list[Any] = []
    for i, item in enumerate(orders):
        try:
            if type(item) is not dict:
                raise Malformed(f"orders[{i}] must be an object, got {type(item).__name__}")
            check_allowed(item, p.ORDER_PARAMS)
            rules, cmd, resp_type = p.new_order(catalog, item, user_id)
        except ApiError as ex:
            out.append({"code": ex.code, "msg": ex.msg})
            continue
        out.append((rules.shard, _without_generated_id(cmd, item), resp_type))
    return out


def _without_generated_id(cmd: Any, item: dict[str, Any]) -> Any:
    return cmd if item.get("newClientOrderId") else cmd._replace(client_order_id="")


def _validated(catalog: Catalog, orders: list[Any], user_id: int) -> list[Any]:
    out, items, sent = batch.validate(catalog, orders, user_id)
    assert len(items) == len(sent)
    for (shard, cmd), (i, rules, resp_type) in zip(items, sent, strict=True):
        assert out[i] is None and rules.shard == shard and rules.symbol_id == cmd.symbol_id
        out[i] = (shard, _without_generated_id(cmd, orders[i]), resp_type)
    return out


@pytest.mark.parametrize("warm", [False, True], ids=["cold-memo", "warm-memo"])
def test_validate_gives_each_order_the_command_or_error_of_a_single_order(warm: bool) -> None:
    catalog = _catalog()
    if warm:  # the plain values are in the memo tables: the lookup path takes them
        _reference(catalog, ORDERS, 5)

    expected = _reference(_catalog(), ORDERS, 5)
    actual = _validated(catalog, ORDERS, 5)

    assert actual == expected
    assert sum(type(a) is tuple for a in actual) >= 8  # the list does place orders


def test_plain_limit_orders_skip_the_full_checks_once_their_values_are_known(monkeypatch) -> None:
    catalog = _catalog()
    plain = [_limit(), _limit(side="SELL", timeInForce="IOC", price="100.25", quantity="7")]
    batch.validate(catalog, plain, 1)  # first sight: the full checks, which remember the price and quantity texts
    calls = []
    full_checks = p.new_order
    monkeypatch.setattr(p, "new_order", lambda *args: calls.append(args) or full_checks(*args))

    out, items, _ = batch.validate(catalog, plain * 50, 1)

    assert calls == [] and out == [None] * 100 and len(items) == 100
    assert [c.price for _, c in items[:2]] == [9950, 10025] and [c.qty for _, c in items[:2]] == [3, 7]


def test_generated_client_order_ids_are_fresh_and_in_order() -> None:
    catalog = _catalog()
    batch.validate(catalog, [_limit()], 1)

    _, items, _ = batch.validate(catalog, [_limit(), _limit(side="NOPE"), _limit(side="buy"), _limit()], 1)

    ids = [cmd.client_order_id for _, cmd in items]
    assert len(ids) == 2 and ids[0] != ids[1]
    assert ids[0][:10] == ids[1][:10]  # this process's prefix, then the counter in hex
    assert int(ids[1][10:], 16) == int(ids[0][10:], 16) + 1  # no id drawn for the refused orders


def _view(rng: random.Random, rules: Any, order_id: int) -> OrderView:
    filled = rng.choice((0, 0, 1, 4))
    return OrderView(
        symbol_id=rules.symbol_id,
        order_id=order_id,
        client_order_id=rng.choice(("x1a2b3c4d5e1", "client.id_9-Z", "")),
        user_id=3,
        side=rng.choice((1, 2)),
        order_type=rng.choice((1, 2, 3)),
        tif=rng.choice((1, 2, 3)),
        stp=rng.choice((0, 1, 2, 3)),
        price=rng.choice((0, 1, 9950, 10**7)),
        orig_qty=rng.choice((1, 4, 100000)),
        executed_qty=filled,
        cum_quote=filled * rng.choice((0, 9950, 123457)),
        orig_quote_qty=0,
        status=rng.choice((1, 2, 3, 4, 5, 6, 7)),
        time=1795549558025 + order_id,
        update_time=1795549558030,
        working_time=rng.choice((1795549558025, -1)),
    )


def _result(rng: random.Random, rules: Any, order_id: int) -> OrderResult:
    fills = tuple(
        Fill(order_id * 10 + k, rng.choice((9950, 9951, 1)), rng.choice((1, 3))) for k in range(rng.randint(0, 3))
    )
    return OrderResult(_view(rng, rules, order_id), fills)


def test_answers_are_the_bytes_of_single_order_views_and_errors() -> None:
    rng = random.Random(11)
    rules = _catalog().rules
    sent = []
    results: list[object] = []
    for i in range(400):
        r = rules[i % 2]
        sent.append((i, r, rng.choice(("FULL", "FULL", "RESULT", "ACK"))))
        results.append(
            rng.choice(
                (
                    _result(rng, r, i + 1),
                    _result(rng, r, i + 1),
                    Rejected(-2010, "insufficient balance for order 7"),
                    EngineBusy("shard 1"),
                    EngineTimeout("shard 0"),
                    SimpleNamespace(what="odd"),
                )
            )
        )
    expected = []
    for (_, r, resp_type), res in zip(sent, results, strict=True):
        if type(res) is OrderResult:
            expected.append(views.new_order(r, res.order, res.fills, resp_type))
        elif type(res) is Rejected:
            ex = rejected_error(res)
            expected.append({"code": ex.code, "msg": ex.msg})
        elif isinstance(res, Exception):
            ex = error_of_exception(res)
            expected.append({"code": ex.code, "msg": ex.msg})
        else:
            expected.append({"code": -1000, "msg": "unexpected engine answer SimpleNamespace"})
    out: list[Any] = [None] * len(sent)

    busy = batch.fill_answers(out, sent, results)

    assert orjson.dumps(out) == orjson.dumps(expected)
    assert busy is any(type(r) is EngineBusy for r in results) is True
    assert batch.fill_answers([None], sent[:1], [Rejected(-2010, "no")]) is False
