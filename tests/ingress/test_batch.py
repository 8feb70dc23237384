"""``ingress/batch.py``: a batch's orders validate and answer exactly as single orders do.

The flat per-order paths (plain LIMIT orders through memo lookups packed
straight into wire bodies, FULL answers written as text from the raw Results
record) are compared with the reference of a single order: ``check_allowed`` +
``params.new_order`` for commands and errors (read back through the wire), and
``orjson.dumps`` of ``views.new_order`` / ``{"code", "msg"}`` for the answer bytes.
Every test runs on both cores of ``batch`` (the C core, ``ingress._batchcore``,
skipped where it is not built, and the Python path).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
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
from shards import wire
from shards.protocol import Fill, OrderResult, OrderView, Rejected
from tests.ingress.test_params import _sym


@pytest.fixture(autouse=True, params=["c", "python"])
def core(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param not in batch.CORES:
        pytest.skip("ingress._batchcore is not built: no C core to test")
    saved = batch.core_name()
    batch.select_core(request.param)
    yield request.param
    batch.select_core(saved)


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
    """The plan's per-order outcome, each command read back from the wire bodies it was packed into."""
    plan = batch.validate(catalog, orders, user_id)
    out: list[Any] = [None if text is None else orjson.loads(text) for text in plan.out]
    for shard, (positions, bodies) in enumerate(zip(plan.positions, plan.bodies, strict=True)):
        assert len(positions) == len(bodies)
        _, cmds = wire.decode_new_orders(wire.new_orders_record(1, bodies))
        for i, cmd in zip(positions, cmds, strict=True):
            assert out[i] is None and catalog.by_id[cmd.symbol_id].shard == shard
            out[i] = (shard, _without_generated_id(cmd, orders[i]), plan.resp_types.get(i, "FULL"))
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
    assert "FULL" not in batch.validate(catalog, ORDERS, 5).resp_types.values()


def test_error_texts_are_the_bytes_of_the_single_order_errors() -> None:
    catalog = _catalog()

    plan = batch.validate(catalog, ORDERS, 5)

    expected = _reference(_catalog(), ORDERS, 5)
    for text, ref in zip(plan.out, expected, strict=True):
        assert (text is None) is (type(ref) is tuple)
        if text is not None:
            assert text.encode() == orjson.dumps(ref)


def test_plain_limit_orders_skip_the_full_checks_once_their_values_are_known(monkeypatch) -> None:
    catalog = _catalog()
    plain = [_limit(), _limit(side="SELL", timeInForce="IOC", price="100.25", quantity="7")]
    batch.validate(catalog, plain, 1)  # first sight: the full checks, which remember the price and quantity texts
    calls = []
    full_checks = p.new_order
    monkeypatch.setattr(p, "new_order", lambda *args: calls.append(args) or full_checks(*args))

    plan = batch.validate(catalog, plain * 50, 1)

    _, cmds = wire.decode_new_orders(wire.new_orders_record(1, plan.bodies[0]))
    assert calls == [] and plan.out == [None] * 100 and plan.positions == [list(range(100)), []]
    assert [c.price for c in cmds[:2]] == [9950, 10025] and [c.qty for c in cmds[:2]] == [3, 7]


def test_generated_client_order_ids_are_fresh_and_in_order() -> None:
    catalog = _catalog()
    batch.validate(catalog, [_limit()], 1)

    plan = batch.validate(catalog, [_limit(), _limit(side="NOPE"), _limit(side="buy"), _limit()], 1)

    _, cmds = wire.decode_new_orders(wire.new_orders_record(1, plan.bodies[0]))
    ids = [cmd.client_order_id for cmd in cmds]
    single = p.new_order(catalog, _limit(), 1)[1].client_order_id  # the single-order path draws from the same stream
    assert len(ids) == 2 and ids[0] != ids[1]
    assert ids[0][:10] == ids[1][:10] == single[:10]  # this process's prefix, then the counter in hex
    assert int(ids[1][10:], 16) == int(ids[0][10:], 16) + 1  # no id drawn for the refused orders
    assert int(single[10:], 16) == int(ids[1][10:], 16) + 1


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
        time=1795549558025 + order_id // 7,  # runs of orders share a time, as a shard's batch does
        update_time=1795549558030,
        working_time=rng.choice((1795549558025, -1, 1795549558025 + order_id // 7)),
    )


def _result(rng: random.Random, rules: Any, order_id: int) -> OrderResult:
    fills = tuple(
        Fill(order_id * 10 + k, rng.choice((9950, 9951, 1)), rng.choice((1, 3))) for k in range(rng.randint(0, 3))
    )
    return OrderResult(_view(rng, rules, order_id), fills)


def _expected(rules: Any, resp_type: str, res: object) -> Any:
    if type(res) is OrderResult:
        return views.new_order(rules, res.order, res.fills, resp_type)
    if type(res) is Rejected:
        ex = rejected_error(res)
    elif isinstance(res, Exception):
        ex = error_of_exception(res)
    else:
        return {"code": -1000, "msg": f"unexpected engine answer {type(res).__name__}"}
    return {"code": ex.code, "msg": ex.msg}


def test_answers_are_the_bytes_of_single_order_views_and_errors() -> None:
    rng = random.Random(11)
    catalog = _catalog()
    plan = batch.Plan(400, catalog.shard_count)
    expected: list[Any] = []
    answers: list[list[tuple[int, object]]] = [[], []]
    chunk: list[list[Any]] = [[], []]  # per shard: (position, result) of the record being built

    def flush(shard: int) -> None:
        results = [res for _, res in chunk[shard]]
        answers[shard].append((len(results), wire.encode_results(9, results)))
        chunk[shard] = []

    for i in range(400):
        shard = rng.choice((0, 1))
        rules = catalog.rules[shard]
        resp_type = rng.choice(("FULL", "FULL", "FULL", "RESULT", "ACK"))
        if resp_type != "FULL":
            plan.resp_types[i] = resp_type
        plan.positions[shard].append(i)
        roll = rng.random()
        if roll < 0.05:  # a whole record's orders fail together: an engine failure, or something odd
            if chunk[shard]:
                flush(shard)
            failure = rng.choice((EngineBusy("shard 1"), EngineTimeout("shard 0"), SimpleNamespace(what="odd")))
            answers[shard].append((1, failure))
            expected.append(_expected(rules, resp_type, failure))
            continue
        res = Rejected(-2010, "insufficient balance for order 7 é") if roll < 0.2 else _result(rng, rules, i + 1)
        chunk[shard].append((i, res))
        expected.append(_expected(rules, resp_type, res))
        if rng.random() < 0.1:
            flush(shard)
    for shard in (0, 1):
        if chunk[shard]:
            flush(shard)

    busy = batch.render(catalog, plan, answers)

    assert batch.answer_bytes(plan) == orjson.dumps(expected)
    assert busy is any(type(a) is EngineBusy for shard in answers for _, a in shard) is True


def test_a_malformed_or_short_results_record_answers_status_unknown_for_its_orders() -> None:
    catalog = _catalog()
    rng = random.Random(3)
    plan = batch.Plan(4, catalog.shard_count)
    plan.positions[0] = [0, 1, 2, 3]
    good = wire.encode_results(1, [_result(rng, catalog.rules[0], 1)])
    short = wire.encode_results(2, [_result(rng, catalog.rules[0], 2)])  # answers 1 result for 2 orders
    answers = [[(1, good[:-3]), (2, short), (1, good)]]  # a cut record, a short one, a good one
    unknown = error_of_exception(EngineTimeout("x"))

    busy = batch.render(catalog, plan, answers + [[]])

    assert busy is False
    assert [orjson.loads(text) for text in plan.out[:3]] == [{"code": unknown.code, "msg": unknown.msg}] * 3
    assert orjson.loads(plan.out[3])["orderId"] == 1


def test_client_order_ids_that_json_escapes_are_escaped_as_orjson_does() -> None:
    catalog = _catalog()
    rules = catalog.rules[0]
    ids = ["a.b_c-d", "", 'q"uo\\te', "tab\tnl\n", "\u00e9t\u00e9", "0" * 36]
    results = [
        OrderResult(_view(random.Random(i), rules, i)._replace(client_order_id=c), ()) for i, c in enumerate(ids)
    ]
    plan = batch.Plan(len(ids), catalog.shard_count)
    plan.positions[0] = list(range(len(ids)))

    batch.render(catalog, plan, [[(len(ids), wire.encode_results(1, results))], []])

    assert batch.answer_bytes(plan) == orjson.dumps([views.full(rules, r.order, r.fills) for r in results])


def test_full_text_is_the_bytes_of_views_full() -> None:
    rng = random.Random(5)
    catalog = _catalog()
    results = [_result(rng, catalog.rules[i % 2], i + 1) for i in range(300)]
    results += [OrderResult(results[0].order._replace(client_order_id=c), ()) for c in ('a"b\\c', "", "x.y")]

    texts = [batch.full_text(catalog, r.order, r.fills) for r in results]

    by_id = catalog.by_id
    assert [t.encode() for t in texts] == [orjson.dumps(views.full(by_id[r.order.symbol_id], *r)) for r in results]
