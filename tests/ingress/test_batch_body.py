"""batchOrders straight from the body's bytes (``batch.scan_body`` / ``place_scanned``) against the parsed path.

Random batches of plain LIMIT orders, written with random key orders and JSON
whitespace, must scan to the same wire bodies (client order ids drawn in the
same order) as ``batch.validate`` of the parsed orders; random mutations of
them must be declined or give the same bodies; every kind of body the scanner
must decline is declined whole. Over HTTP (the ingress app with in-process
engines), each batch is sent to two apps, one with the scanner and one
without, and both must answer the same bytes and send the same commands; one
test runs a plain batch through a running exchange. Where the C core is not
built the scanner declines everything (the first test); the rest skip.
"""

from __future__ import annotations

import itertools
import json
import random
import types
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from ingress import batch
from ingress import params as p
from ingress.auth import sign
from ingress.resources import orders as orders_resource
from ingress.symbols import Catalog
from shards import wire
from tests.ingress import local_engine
from tests.ingress.harness import limit_order, now_ms
from tests.ingress.test_batchcore import _catalog

needs_core = pytest.mark.skipif("c" not in batch.CORES, reason="ingress._batchcore is not built")
BATCH = "/api/v3/batchOrders"
PLAIN = [  # (symbol, prices, quantities): on the grid and in range of _catalog() and of tests/ingress/conftest.py
    ("AAPL", ["0.01", "99.5", "100.25", "1000000", "0001.50"], ["1", "3", "12", "7.000"]),
    ("MSFT", ["1", "99.99", "250.10"], ["1", "2", "1000000"]),
    ("BTCUSD", ["1", "25000.05", "500000", "1.00"], ["0.002", "1.5", "100", "0.0020"]),
]
WHITESPACE = ["", "", "", " ", "\n", "\t", "\r\n  "]


@pytest.fixture(autouse=True)
def _restore_core() -> Iterator[None]:
    saved = batch.core_name()
    yield
    batch.select_core(saved)


@pytest.fixture
def fixed_ids(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``restart()`` starts the generated client order ids afresh, at the same prefix and counter each time."""

    def restart() -> None:
        counter = itertools.count(1)
        monkeypatch.setattr(p.CLIENT_ORDER_IDS, "ids", map("xTESTTEST0{:x}".format, counter))
        monkeypatch.setattr(p.CLIENT_ORDER_IDS, "ids_bytes", map(b"xTESTTEST0%x".__mod__, counter))

    return restart


def _random_orders(rng: random.Random, n: int) -> list[dict[str, str]]:
    orders = []
    for _ in range(n):
        symbol, prices, qtys = rng.choice(PLAIN)
        orders.append(
            {
                "symbol": symbol,
                "side": rng.choice(("BUY", "SELL")),
                "type": "LIMIT",
                "timeInForce": rng.choice(("GTC", "IOC", "FOK")),
                "quantity": rng.choice(qtys),
                "price": rng.choice(prices),
            }
        )
    return orders


def _body(rng: random.Random, orders: list[dict[str, str]]) -> bytes:
    """``{"orders": [...]}`` with each order's keys in a random order and random JSON whitespace between tokens."""

    def ws() -> str:
        return rng.choice(WHITESPACE)

    texts = []
    for order in orders:
        items = list(order.items())
        rng.shuffle(items)
        texts.append("{" + ws() + ",".join(f'{ws()}"{k}"{ws()}:{ws()}"{v}"{ws()}' for k, v in items) + "}")
    inner = ",".join(ws() + t + ws() for t in texts)
    return f'{ws()}{{{ws()}"orders"{ws()}:{ws()}[{inner}]{ws()}}}{ws()}'.encode()


def _commands(plan: batch.Plan) -> list[Any]:
    return [wire.decode_new_orders(wire.new_orders_record(1, bodies))[1] if bodies else [] for bodies in plan.bodies]


def _scanned_plan(catalog: Catalog, body: bytes, user_id: int) -> batch.Plan | None:
    scanned = batch.scan_body(catalog, body)
    if scanned is None:
        return None
    plan = batch.Plan(len(scanned) // batch._CORE_MODULE.SCAN_RECORD, catalog.shard_count)
    coids, prefix = batch._coids()
    batch._CORE_MODULE.emit(scanned, user_id, coids, prefix, plan.positions, plan.bodies)
    return plan


def _same_plans(catalog: Catalog, body: bytes, user_id: int, restart: Any) -> bool:
    """Compares the scanned plan of ``body`` with the parsed one; False when the scanner declined it."""
    restart()
    scanned = _scanned_plan(catalog, body, user_id)
    if scanned is None:
        return False
    parsed = orjson.loads(body)  # the scanner took it: it must be JSON, an object of "orders" alone
    assert list(parsed) == ["orders"] and 1 <= len(parsed["orders"]) <= 100
    restart()
    plan = batch.validate(catalog, parsed["orders"], user_id)
    assert plan.out == scanned.out == [None] * len(parsed["orders"])  # every order plainly valid
    assert (scanned.positions, scanned.resp_types) == (plan.positions, plan.resp_types)
    assert scanned.bodies == plan.bodies
    return True


def test_without_the_c_core_every_body_is_declined() -> None:
    batch.select_core("python")
    body = _body(random.Random(1), _random_orders(random.Random(1), 3))

    assert batch.scan_body(_catalog(), body) is None


@needs_core
@pytest.mark.parametrize("seed", range(40))
def test_random_plain_batches_scan_to_the_bodies_of_the_parsed_orders(seed: int, fixed_ids: Any) -> None:
    rng = random.Random(seed)
    batch.select_core("c")
    catalog = _catalog()
    for _ in range(5):
        orders = _random_orders(rng, rng.choice((1, 2, rng.randint(1, 100), 100)))
        body = _body(rng, orders)

        assert _same_plans(catalog, body, rng.choice((1, 7, 2**40)), fixed_ids), body


MUTANTS = [
    b"\\", b"\\u0041", b'"', b",", b":", b"{", b"}", b"[", b"]", b" ", b"\x0b", b"\x00", b"\x1f", b"\x7f", b"\xff",
    b"\xc3\xa9", b"1", b"-", b".", b"e", b"null", b"true", b'"x":"1",', b',"x":"1"', b"\xef\xbb\xbf", b"/",
]  # fmt: skip


def _mutate(rng: random.Random, body: bytes) -> bytes:
    at = rng.randrange(len(body) + 1)
    roll = rng.random()
    if roll < 0.3:
        return body[:at] + rng.choice(MUTANTS) + body[at:]
    if roll < 0.6:
        return body[:at] + body[at + rng.randint(1, 3) :]
    if roll < 0.8:
        return body[:at] + rng.choice(MUTANTS) + body[at + 1 :]
    old, new = rng.choice(  # a field's value or name changed, or a field repeated or added
        [
            ('"LIMIT"', '"MARKET"'), ('"GTC"', '"gtc"'), ('"BUY"', '"buy"'), ('"AAPL"', '"NOPE"'), ('"1"', "1"),
            ('"1"', '"1.001"'), ('"1"', '"0"'), ('"1"', '""'), ('"price"', '"Price"'),
            ('"side"', '"side","side":"BUY"'), ('"side"', '"newOrderRespType":"ACK","side"'),
            ('"orders"', '"signature":"ab","orders"'), ('"type":"LIMIT",', ""), ('"1"', '"1e0"'), ('"1"', '" 1"'),
            ('"AAPL"', '"\\u0041APL"'),
        ]
    )  # fmt: skip
    return body.replace(old.encode(), new.encode(), 1)


@needs_core
@pytest.mark.parametrize("seed", range(40))
def test_random_mutations_are_declined_or_scan_to_the_bodies_of_the_parsed_orders(seed: int, fixed_ids: Any) -> None:
    rng = random.Random(1000 + seed)
    batch.select_core("c")
    catalog = _catalog()
    for _ in range(50):
        body = json.dumps({"orders": _random_orders(rng, rng.randint(1, 5))}, separators=(",", ":")).encode()
        for _ in range(rng.randint(1, 3)):
            body = _mutate(rng, body)
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None

        took = _same_plans(catalog, body, 7, fixed_ids)  # asserts the same plans where the scanner takes the body

        if parsed is None:
            assert not took, body


ORDER = b'{"symbol":"AAPL","side":"BUY","type":"LIMIT","timeInForce":"GTC","quantity":"3","price":"99.5"}'
DECLINED = {
    "another top-level key after": b'{"orders":[' + ORDER + b'],"recvWindow":"5000"}',
    "another top-level key before": b'{"recvWindow":"5000","orders":[' + ORDER + b"]}",
    "the signature in the body": b'{"orders":[' + ORDER + b'],"signature":"abc"}',
    "orders twice": b'{"orders":[' + ORDER + b'],"orders":[' + ORDER + b"]}",
    "orders as a string": b'{"orders":"[]"}',
    "no orders": b'{"orders":[]}',
    "an empty object": b"{}",
    "an array body": b"[" + ORDER + b"]",
    "101 orders": b'{"orders":[' + b",".join([ORDER] * 101) + b"]}",
    "a number value": ORDER.replace(b'"3"', b"3"),
    "a null value": ORDER.replace(b'"3"', b"null"),
    "a nested value": ORDER.replace(b'"3"', b'["3"]'),
    "an escape in a value": ORDER.replace(b'"BUY"', b'"\\u0042UY"'),
    "an escape in a key": ORDER.replace(b'"side"', b'"sid\\u0065"'),
    "a control character in a value": ORDER.replace(b'"BUY"', b'"BUY\t"'),
    "a duplicate key": ORDER.replace(b'"side":"BUY"', b'"side":"BUY","side":"BUY"'),
    "a 7th field": ORDER.replace(b'"side"', b'"newOrderRespType":"ACK","side"'),
    "a 5th field missing": ORDER.replace(b'"timeInForce":"GTC",', b""),
    "an empty order": b'{"orders":[{}]}',
    "an order that is not plainly valid": ORDER.replace(b'"99.5"', b'"99.555"'),
    "another order type": ORDER.replace(b'"LIMIT"', b'"LIMIT_MAKER"'),
    "an unknown symbol": ORDER.replace(b'"AAPL"', b'"NOPE"'),
    "a non-ASCII symbol": ORDER.replace(b'"AAPL"', '"ÉTÉ"'.encode()).replace(b'"99.5"', b'"1"'),
    "invalid UTF-8": ORDER.replace(b'"AAPL"', b'"AAPL\xff"'),
    "trailing garbage": b'{"orders":[' + ORDER + b"]}x",
    "a second object": b'{"orders":[' + ORDER + b"]}{}",
    "a trailing comma in the array": b'{"orders":[' + ORDER + b",]}",
    "a trailing comma in an order": ORDER[:-1] + b",}",
    "a vertical tab as whitespace": b'{"orders":\x0b[' + ORDER + b"]}",
    "a byte order mark": b'\xef\xbb\xbf{"orders":[' + ORDER + b"]}",
    "an empty body": b"",
    "whitespace alone": b" \n",
}


@needs_core
@pytest.mark.parametrize("case", sorted(DECLINED))
def test_every_body_the_scanner_must_not_take_is_declined_whole(case: str) -> None:
    batch.select_core("c")
    catalog = _catalog()
    good = b'{"orders":[' + ORDER + b"]}"
    assert batch.scan_body(catalog, good) is not None  # the same body without the flaw is taken

    assert batch.scan_body(catalog, DECLINED[case]) is None


@needs_core
def test_every_proper_prefix_of_a_body_is_declined() -> None:
    batch.select_core("c")
    catalog = _catalog()
    body = b' { "orders" : [ ' + ORDER + b" , " + ORDER + b" ] } "

    taken = [k for k in range(len(body) + 1) if batch.scan_body(catalog, body[:k]) is not None]

    assert taken == [len(body) - 1, len(body)]  # the whole body, with or without its last whitespace


# --- over HTTP: the ingress app, two apps side by side ------------------------------------------------------


@pytest.fixture
def twin_apps(make_api: Any, monkeypatch: pytest.MonkeyPatch, fixed_ids: Any) -> Any:
    """send(body, query=, signature=, content_type=) -> ((status, body, Retry-After, commands sent) with the
    scanner, the same without it, whether the scanner took the body): two apps over in-process engines stamping
    one fixed time."""
    fixed_ms = now_ms()
    monkeypatch.setattr(local_engine, "time", types.SimpleNamespace(time_ns=lambda: fixed_ms * 1_000_000))
    raw_api, parsed_api = make_api(), make_api()
    user = raw_api.new_user()
    scan_body = batch.scan_body
    taken: list[bool] = []

    def scan_and_note(catalog: Any, body: bytes) -> bytes | None:
        scanned = scan_body(catalog, body)
        taken.append(scanned is not None)
        return scanned

    def send(body: bytes, query: Any = None, signature: Any = None, content_type: str = "application/json") -> Any:
        qs = urlencode({"timestamp": fixed_ms, "recvWindow": 60000, **(query or {})})
        sig = signature or sign(user.secret, qs.encode() + body)
        headers = {"X-MBX-APIKEY": user.api_key, "Content-Type": content_type}
        out = []
        taken.clear()
        for api, scan in ((raw_api, scan_and_note), (parsed_api, lambda catalog, body: None)):
            monkeypatch.setattr(batch, "scan_body", scan)
            fixed_ids()
            start = len(api.engine.sent)
            res = api.request("POST", BATCH, query_string=f"{qs}&signature={sig}", body=body, headers=headers)
            out.append((res.status_code, res.content, res.headers.get("Retry-After"), api.engine.sent[start:]))
        monkeypatch.setattr(batch, "scan_body", scan_body)
        return out[0], out[1], taken == [True]

    return send


@needs_core
def test_random_batches_over_http_answer_the_same_bytes_and_send_the_same_commands(twin_apps: Any) -> None:
    batch.select_core("c")
    rng = random.Random(7)
    intact_bodies = 0
    for _ in range(12):
        orders = _random_orders(rng, rng.choice((1, rng.randint(2, 100), 100)))
        body = _body(rng, orders)
        for _ in range(rng.choice((0, 0, 1))):
            body = _mutate(rng, body)

        raw, parsed, scanned = twin_apps(body)

        assert raw == parsed
        try:
            intact = orjson.loads(body) == {"orders": orders}
        except orjson.JSONDecodeError:
            intact = False
        if intact:
            assert scanned and raw[0] == 200 and len(raw[3]) == len(orders)
            intact_bodies += 1
    assert intact_bodies >= 6


@needs_core
@pytest.mark.parametrize(
    "kw",
    [
        {"query": {"orders": json.dumps([limit_order("MSFT", "SELL", "100", "1")])}},  # the query string wins
        {"signature": "0" * 64},  # a bad signature: -1022, nothing sent
        {"content_type": "application/x-www-form-urlencoded"},  # not parsed as JSON at all
        {"content_type": "text/plain"},  # refused
        {"query": {"recvWindow": "0"}},
        {"query": {"bogus": "1"}},  # -1104 after the signature check
    ],
    ids=["orders-in-query", "bad-signature", "form", "text", "recv-window", "unexpected-param"],
)
def test_the_other_inputs_of_a_request_are_read_as_in_the_parsed_path(twin_apps: Any, kw: dict[str, Any]) -> None:
    batch.select_core("c")
    body = b'{"orders":[' + ORDER + b"," + ORDER.replace(b"BUY", b"SELL") + b"]}"

    raw, parsed, scanned = twin_apps(body, **kw)

    assert raw == parsed
    assert scanned == (kw.get("content_type") is None and "orders" not in kw.get("query", {}))
    assert raw[0] != 200 or "query" in kw


def test_a_plain_batch_through_a_running_exchange(exchange_factory: Any) -> None:
    from tests.e2e.api import Api

    ex = exchange_factory(engine={"shards": 2}, rest={"workers": 2})
    api = Api(ex.rest_url, ex.admin_token)
    maker, taker = api.new_user(), api.new_user()
    sells = [limit_order("AAPL", "SELL", "100.00", "2"), limit_order("MSFT", "SELL", "50.00", "1")]
    buys = [limit_order("AAPL", "BUY", "100.00", "3"), limit_order("MSFT", "BUY", "49.00", "1", timeInForce="IOC")]

    placed = api.batch(maker, sells)  # json.dumps: a space after every ':' and ','
    crossed = api.batch(taker, buys)
    open_orders = api.signed("GET", "/api/v3/openOrders", taker)

    assert placed.status == 200, placed.body
    assert [o["status"] for o in placed.body] == ["NEW", "NEW"]
    assert crossed.status == 200, crossed.body
    assert [o["status"] for o in crossed.body] == ["PARTIALLY_FILLED", "EXPIRED"]
    assert [(f["price"], f["qty"]) for f in crossed.body[0]["fills"]] == [("100.00", "2")]
    assert [(o["symbol"], o["executedQty"]) for o in open_orders.body] == [("AAPL", "2")]


@needs_core
def test_a_user_id_no_wire_body_holds_takes_the_parsed_path_after_the_scan(
    twin_apps: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch.select_core("c")
    monkeypatch.setattr(orders_resource, "MAX_USER_ID", 0)  # every user id is "too large" here
    body = b'{"orders":[' + ORDER + b"]}"

    raw, parsed, scanned = twin_apps(body)

    assert scanned and raw == parsed and raw[0] == 200
