"""``ingress._batchcore`` against ``ingress/batch.py``'s Python path: the same plans and the same answer bytes.

Random batches (plain LIMIT orders, near misses of every kind, non-objects)
are validated with each core, and random Results records (FULL, ACK and
RESULT answers, rejects, fills, client order ids that JSON escapes, values
the C core leaves to Python, malformed and short records) are rendered with
each core; everything must come out identical, generated client order ids
included (drawn in batch order from the same stream). Where the C core is not
built these tests skip; ``tests/ingress/test_batch.py`` runs on both cores.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from ingress import batch
from ingress import params as p
from ingress.dispatch import EngineBusy, EngineTimeout
from ingress.symbols import Catalog, rules_of
from shards import wire
from shards.protocol import Fill, OrderResult, OrderView, Rejected
from tests.ingress.test_params import _sym

pytestmark = pytest.mark.skipif("c" not in batch.CORES, reason="ingress._batchcore is not built: no C core to compare")


@pytest.fixture(autouse=True)
def _restore_core() -> Iterator[None]:
    saved = batch.core_name()
    yield
    batch.select_core(saved)


def _catalog() -> Catalog:
    return Catalog(
        [
            rules_of(_sym(1, "AAPL", "0.01", "1", "0.01", "1000000", "1", "1000000"), shard=0),
            rules_of(_sym(2, "BTCUSD", "0.05", "0.001", "1", "500000", "0.002", "100"), shard=1),
            rules_of(_sym(3, "MSFT", "0.01", "1", "0.01", "1000000", "1", "1000000"), shard=1),
            rules_of(_sym(300, "ÉTÉ", "0.1", "0.01", "0.1", "1000", "0.01", "1000"), shard=0),  # non-ASCII name
        ]
    )


PRICES = ["99.5", "100.25", "25000.05", "0.01", "1", "99.555", "0", "-1", "1e3", "", " 1", "100.250", "1000001"]
QTYS = ["3", "7", "0.010", "0.002", "1.5", "0", "1000001", "", "2.0000", "12"]
SYMBOLS = ["AAPL", "BTCUSD", "MSFT", "ÉTÉ", "aapl", "NOPE", ""]


class Str(str):
    """A str subclass (as keys: the C core leaves the order to Python, which takes it as a str key).

    Not as values: the Python path itself takes a str subclass value when its text is in the memo tables (which
    the C core does not fill) and refuses it when not, so both cores' plans would differ by memo state alone."""


def _random_decimal(rng: random.Random) -> str:
    """A decimal text near the edges of the grammar, the grids and the ranges (often valid, often not)."""
    whole = str(rng.choice((0, 1, 2, 99, 100, 25000, 499999, 500000, 1000000, 1000001, 10**19, 10**20)))
    if rng.random() < 0.2:
        whole = "0" * rng.randint(1, 3) + whole  # leading zeros
    if rng.random() < 0.1:
        whole = whole + "0" * rng.randint(1, 3)
    if rng.random() < 0.3:
        return whole
    frac = rng.choice(("0", "00", "05", "5", "25", "001", "002", "010", "1", "50", "0500", "00000000000000000001"))
    if rng.random() < 0.2:
        frac += "0" * rng.randint(1, 20)  # trailing zeros past the grid (the checks drop them)
    return f"{whole}.{frac}"


def _random_order(rng: random.Random) -> Any:
    price = rng.choice(PRICES[:5]) if rng.random() < 0.7 else _random_decimal(rng)
    order: dict[str, Any] = {
        "symbol": rng.choice(SYMBOLS[:3]) if rng.random() < 0.8 else rng.choice(SYMBOLS),
        "side": "BUY" if rng.random() < 0.5 else "SELL",
        "type": "LIMIT",
        "timeInForce": rng.choice(("GTC", "IOC", "FOK")),
        "quantity": rng.choice(QTYS[:4]) if rng.random() < 0.7 else _random_decimal(rng),
        "price": price if rng.random() < 0.9 else rng.choice(PRICES),
    }
    if rng.random() < 0.05:
        order["quantity"] = rng.choice(QTYS)
    roll = rng.random()
    if roll < 0.6:
        return order
    name = rng.choice(list(order))
    odd: list[Any] = [
        None, 7, 99.5, True, ["x"], {"a": 1}, "", "buy", "GTX", "MARKET", "LIMIT_MAKER", "limit",
    ]  # fmt: skip
    if roll < 0.8:
        order[name] = rng.choice(odd)
    elif roll < 0.85:
        del order[name]
    elif roll < 0.9:
        order[rng.choice(("newClientOrderId", "newOrderRespType", "selfTradePreventionMode", "bogus"))] = rng.choice(
            ("ACK", "RESULT", "FULL", "mine-1", "NONE", "x")
        )
    elif roll < 0.93:
        del order["price"]
        order["quoteOrderQty"] = "10"
    elif roll < 0.96:
        return rng.choice(([], "order", 7, None, 1.5, (1, 2)))
    else:
        return {Str(k): v for k, v in order.items()}
    return order


def _plan(core: str, catalog: Catalog, orders: Any, user_id: int) -> tuple[Any, ...]:
    """The plan of ``orders`` with ``core``, each generated client order id as its place in the id stream."""
    batch.select_core(core)
    base = int(p.CLIENT_ORDER_IDS.next()[10:], 16)
    plan = batch.validate(catalog, orders, user_id)
    bodies = []
    for shard_bodies in plan.bodies:
        cmds = wire.decode_new_orders(wire.new_orders_record(1, shard_bodies))[1] if shard_bodies else []
        for cmd in cmds:
            coid = cmd.client_order_id
            generated = len(coid) > 10 and coid[0] == "x" and coid[:10] == p.CLIENT_ORDER_IDS.next()[:10]
            bodies.append(cmd._replace(client_order_id=int(coid[10:], 16) - base) if generated else cmd)
    return plan.out, plan.positions, plan.resp_types, bodies


@pytest.mark.parametrize("seed", range(60))
def test_random_batches_plan_the_same_with_both_cores(seed: int) -> None:
    rng = random.Random(seed)
    catalogs = {"c": _catalog(), "python": _catalog()}
    for _ in range(3):  # cold memo tables first, then warm ones
        orders = [_random_order(rng) for _ in range(rng.randint(1, 100))]
        user_id = rng.choice((1, 7, 2**40))

        results = {core: _plan(core, catalogs[core], orders, user_id) for core in ("c", "python")}

        assert results["c"] == results["python"]


def test_the_c_core_takes_plain_orders_and_draws_ids_in_batch_order() -> None:
    catalog = _catalog()
    plain = {"symbol": "AAPL", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "3", "price": "99.5"}
    batch.validate(catalog, [plain], 1)  # the full checks remember the texts
    orders = [plain, dict(plain, side="SELL"), dict(plain, price=99.5), plain, {**plain, "symbol": "MSFT"}]

    out, positions, _, bodies = _plan("c", catalog, orders, 9)

    assert out == [None] * 5 and positions == [[0, 1, 2, 3], [4]]
    assert [b.client_order_id for b in bodies] == [1, 2, 3, 4, 5]  # the refused-by-C order 2 drew its id in turn
    assert [b.side for b in bodies[:2]] == [1, 2] and bodies[2].price == bodies[0].price == 9950


VALID = [  # (symbol, price, quantity) on the grid and in range, at the edges of the grammar and the ranges
    ("AAPL", "0.01", "1"),
    ("AAPL", "1000000", "1000000"),
    ("AAPL", "1000000.00000", "3.000"),
    ("AAPL", "0001.5", "0012"),
    ("AAPL", "99.5000000000000000000", "7.00000000000000000000"),
    ("AAPL", "00000000000000000099.50", "1"),
    ("BTCUSD", "1", "0.002"),
    ("BTCUSD", "500000", "100"),
    ("BTCUSD", "25000.050", "100.000"),
    ("BTCUSD", "1.00", "0.0020"),
]


def test_the_c_core_takes_every_plain_order_on_the_grid_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = _catalog()
    orders = [
        {"symbol": sym, "side": "SELL", "type": "LIMIT", "timeInForce": "IOC", "quantity": qty, "price": price}
        for sym, price, qty in VALID
    ]
    expected = [p.new_order(_catalog(), o, 4)[1] for o in orders]  # (another catalog: these memo tables stay empty)
    off_grid = dict(orders[0], symbol="BTCUSD", price="25000.01")
    batch.select_core("c")
    monkeypatch.setattr(p, "new_order", lambda *args: pytest.fail(f"the full checks ran for {args[1]}"))

    plan = batch.validate(catalog, orders, 4)

    cmds = [c for bodies in plan.bodies if bodies for c in wire.decode_new_orders(wire.new_orders_record(1, bodies))[1]]
    by_position = dict(zip(plan.positions[0] + plan.positions[1], cmds, strict=True))
    assert plan.out == [None] * len(expected)
    assert [by_position[i]._replace(client_order_id="") for i in range(len(expected))] == [
        e._replace(client_order_id="") for e in expected
    ]
    with pytest.raises(pytest.fail.Exception):  # and an order off the grid is left to the full checks
        batch.validate(catalog, [off_grid], 4)


def test_ids_from_a_stream_the_core_cannot_take_apart_are_drawn_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    catalog = _catalog()
    plain = {"symbol": "AAPL", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "3", "price": "99.5"}
    ids = iter([b"first", b"y" * 40, b"third"])  # not map(b"...%x".__mod__, count()): the core takes each as it is
    monkeypatch.setattr(p.CLIENT_ORDER_IDS, "ids_bytes", ids)
    batch.select_core("c")

    plan = batch.validate(catalog, [plain, dict(plain, price="99.51"), plain], 1)

    cmds = wire.decode_new_orders(wire.new_orders_record(1, plan.bodies[0]))[1]
    assert [c.client_order_id for c in cmds] == ["first", "y" * 36, "third"]  # cut to the wire's 36, as struct does


def test_a_str_subclass_value_is_left_to_the_python_path() -> None:
    plain = {"symbol": "AAPL", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "3", "price": "99.5"}
    orders = [dict(plain, price=Str("99.5")), dict(plain, side=Str("BUY")), plain, plain]

    results = {core: _plan(core, _catalog(), orders, 1) for core in ("c", "python")}  # the memo tables still empty

    assert results["c"] == results["python"]
    out, positions = results["c"][:2]
    assert positions == [[2, 3], []] and all('"code":-1100' in text for text in out[:2])  # the full checks refuse them


def test_bind_refuses_a_wire_layout_it_does_not_write() -> None:
    from ingress import _batchcore

    layouts = {"new_order_body": "<IQ38pBBBqqqBq"}

    with pytest.raises(ValueError, match="new_order_body"):
        _batchcore.bind(layouts, ({}, {}, {}, {}, {}))
    batch._bind_core()  # bound again to the real layouts for the other tests
    assert batch.CORES == ("c", "python")


def test_a_user_id_the_wire_cannot_hold_is_refused_by_both_cores() -> None:
    catalog = _catalog()
    plain = {"symbol": "AAPL", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "3", "price": "99.5"}
    for core in ("c", "python"):
        batch.select_core(core)
        with pytest.raises((struct.error, wire.WireError)):  # packed by the memo lane (struct) or the full checks
            batch.validate(catalog, [plain, plain], 2**64)


# --- rendering ---------------------------------------------------------------------------------------------------


def _view(rng: random.Random, symbol_id: int, order_id: int, odd: bool) -> OrderView:
    filled = rng.choice((0, 0, 1, 4))
    view = OrderView(
        symbol_id=symbol_id,
        order_id=order_id if rng.random() < 0.9 else 2**64 - order_id,
        client_order_id=rng.choice(("x1a2b3c4d5e1", "client.id_9-Z", "", "0" * 36, "a-b")),
        user_id=3,
        side=rng.choice((1, 2)),
        order_type=rng.choice((1, 2, 3)),
        tif=rng.choice((1, 2, 3)),
        stp=rng.choice((0, 1, 2, 3)),
        price=rng.choice((0, 1, 9950, 10**7, 2**40)),
        orig_qty=rng.choice((1, 4, 100000)),
        executed_qty=filled,
        cum_quote=filled * rng.choice((0, 9950, 123457)),
        orig_quote_qty=rng.choice((0, 5)),
        status=rng.choice((1, 2, 3, 4, 5, 6, 7)),
        time=1795549558025 + order_id // 7,
        update_time=1795549558030,
        working_time=rng.choice((1795549558025, -1, 1795549558025 + order_id // 7)),
    )
    if odd:  # values the C core leaves to Python (or that Python itself writes oddly)
        field, value = rng.choice(
            (
                ("client_order_id", 'q"uo\\te'),
                ("client_order_id", "tab\tnl"),
                ("client_order_id", "\u00e9t\u00e9"),
                ("price", -5),
                ("orig_qty", -1),
                ("cum_quote", 2**62),
                ("price", 2**62),
                ("executed_qty", -(2**63)),
            )
        )
        view = view._replace(**{field: value})
    return view


def _result(rng: random.Random, symbol_id: int, order_id: int, odd: bool) -> OrderResult:
    fills = tuple(
        Fill(order_id * 10 + k, rng.choice((9950, 9951, 1, -3 if odd else 2)), rng.choice((1, 3)))
        for k in range(rng.choice((0, 0, 0, 1, 2, 3)))
    )
    return OrderResult(_view(rng, symbol_id, order_id, odd), fills)


def _random_answers(rng: random.Random, catalog: Catalog, n: int) -> tuple[batch.Plan, list[list[tuple[int, Any]]]]:
    """About n orders' answers, per shard a list of (count, Results record or failure), as ``call_orders`` gives."""
    positions: list[list[int]] = [[] for _ in range(catalog.shard_count)]
    resp_types: dict[int, str] = {}
    answers: list[list[tuple[int, Any]]] = [[] for _ in range(catalog.shard_count)]
    chunk: list[list[Any]] = [[] for _ in range(catalog.shard_count)]
    used = 0

    def position(shard: int) -> int:
        nonlocal used
        positions[shard].append(used)
        used += 1
        return used - 1

    def flush(shard: int) -> None:
        record = wire.encode_results(9, chunk[shard])
        count = len(chunk[shard])
        roll = rng.random()
        if roll < 0.03:
            record = record[:-3]  # cut
        elif roll < 0.06:
            count += 1  # a short answer: one result for each order but one
            position(shard)
        elif roll < 0.08:
            record += b"\x00\x01"  # trailing bytes (results_items ignores them)
        answers[shard].append((count, record))
        chunk[shard] = []

    by_shard: dict[int, list[int]] = {}
    for r in catalog.rules:
        by_shard.setdefault(r.shard, []).append(r.symbol_id)
    while used < n:
        shard = rng.randrange(catalog.shard_count)
        if rng.random() < 0.03:
            if chunk[shard]:
                flush(shard)
            answers[shard].append((1, rng.choice((EngineBusy("full"), EngineTimeout("late"), "odd"))))
            position(shard)
            continue
        if rng.random() < 0.1:
            res: Any = Rejected(rng.choice((-2010, -1013)), rng.choice(("insufficient balance é", "", "x" * 40)))
        else:
            res = _result(rng, rng.choice(by_shard[shard]), used + 1, odd=rng.random() < 0.1)
        i = position(shard)
        if rng.random() < 0.15:
            resp_types[i] = rng.choice(("ACK", "RESULT"))
        chunk[shard].append(res)
        if rng.random() < 0.1:
            flush(shard)
    for shard in range(catalog.shard_count):
        if chunk[shard]:
            flush(shard)
    plan = batch.Plan(used, catalog.shard_count)
    plan.positions = positions
    plan.resp_types = resp_types
    return plan, answers


def _render(core: str, catalog: Catalog, plan: batch.Plan, answers: Any) -> tuple[bytes, bool]:
    batch.select_core(core)
    copy = batch.Plan(len(plan.out), catalog.shard_count)
    copy.positions = [list(pos) for pos in plan.positions]
    copy.resp_types = dict(plan.resp_types)
    busy = batch.render(catalog, copy, answers)
    return batch.answer_bytes(copy), busy


@pytest.mark.parametrize("seed", range(40))
def test_random_results_render_the_same_bytes_with_both_cores(seed: int) -> None:
    rng = random.Random(seed)
    catalog = _catalog()
    plan, answers = _random_answers(rng, catalog, rng.randint(1, 300))

    c_answer = _render("c", catalog, plan, answers)
    py_answer = _render("python", _catalog(), plan, answers)

    assert c_answer == py_answer
    orjson.loads(c_answer[0])  # one JSON array


def test_an_unknown_symbol_in_a_results_record_raises_as_in_python() -> None:
    catalog = _catalog()
    plan = batch.Plan(2, catalog.shard_count)
    plan.positions[0] = [0, 1]
    rng = random.Random(1)
    record = wire.encode_results(1, [_result(rng, 1, 1, False), _result(rng, 77, 2, False)])
    errors = []
    for core in ("c", "python"):
        batch.select_core(core)
        with pytest.raises(KeyError) as info:
            batch.render(catalog, plan, [[(2, record)], [], []][: catalog.shard_count])
        errors.append(info.value.args)

    assert errors == [(77,), (77,)]


def test_the_c_core_answers_plain_results_itself() -> None:
    catalog = _catalog()
    rng = random.Random(2)
    results = [_result(rng, 1, i + 1, False) for i in range(50)]
    plan = batch.Plan(50, catalog.shard_count)
    plan.positions[0] = list(range(50))
    from ingress import _batchcore

    left = _batchcore.render(
        wire.encode_results(1, results), 50, plan.positions[0], plan.out, {}, batch._core_tables(catalog)[1]
    )

    assert left == []
    by_id = catalog.by_id
    assert [t.encode() for t in plan.out] == [
        orjson.dumps(batch.views.full(by_id[r.order.symbol_id], *r)) for r in results
    ]
