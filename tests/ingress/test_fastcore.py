"""The single order's C path (``_batchcore.scan_query``, ``order_body``, ``render_order``) against the Python path.

The fast lane (``ingress/fastpath.py``) hands a signed ``POST /api/v3/order``
query string to the C core, which takes only a plainly valid LIMIT order and
declines everything else before anything happened; the Python path stays the
reference. Here:

- the scanner alone: what it takes and what it declines (a table), and for
  many random query strings, valid and subtly invalid, that whatever it takes
  the Python checks (``inputs``, ``params.new_order``, ``auth``'s reading of
  signature, timestamp and recvWindow) take too, giving the same command,
  signed payload and values;
- ``render_order``: the bytes of ``batch.full_text`` for order answer records,
  None for what it leaves to Python;
- the whole lane, C core against Python core, over a deterministic in-process
  engine: identical status, headers and body bytes, and identical commands
  reaching the engine, for the same random query strings;
- ``RingEngineClient.submit_order_body`` over real rings and a shard loop: the
  command record ``encode_command`` writes, the answer record undecoded.

Where the C core is not built these tests skip (``test_fastpath.py`` runs on both cores).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from falcon.util.uri import parse_query_string

from deploy.config import build_config
from ingress import auth, batch, fastpath
from ingress import params as p
from ingress.app import create_app
from ingress.auth import sign, strip_form_signature
from ingress.dispatch import EngineTimeout
from ingress.engine_client import RingEngineClient
from ingress.errors import ApiError
from ingress.inputs import NO_BODY, Inputs, check_allowed, check_no_duplicates
from ingress.symbols import Catalog
from shards import wire
from shards.protocol import STATE_CHANGING, Fill, NewOrder, OrderResult, OrderStatus, OrderView, Rejected
from tests.ingress.conftest import SYMBOLS
from tests.ingress.local_engine import LocalEngineClient
from tests.ingress.test_engine_client import Rig, _config

pytestmark = pytest.mark.skipif("c" not in batch.CORES, reason="ingress._batchcore is not built: no C core to compare")

CONFIG = build_config({"symbols": SYMBOLS, "engine": {"shards": 2}}, {})
NOW = 1_700_000_000_000  # the server clock of these tests (ms)
USERS = [(3, "k" * 64, "s" * 64), (2**40, "Key_2-" + "q" * 20, "another secret")]
PREFIX = "xFIXED0000"  # the generated client order ids' prefix while a test runs (params.ClientOrderIds' shape)


@pytest.fixture(autouse=True)
def _fixed_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The server clock fixed, and the core and the client order id stream restored after the test."""
    monkeypatch.setattr(auth, "now_ms", lambda: NOW)
    saved = batch.core_name()
    yield
    batch.select_core(saved)
    p.CLIENT_ORDER_IDS.reseed()


def _restart_ids() -> None:
    """The generated client order ids from PREFIX + 1 again, in the shape ``ClientOrderIds.reseed`` gives them."""
    counter = itertools.count(1)
    p.CLIENT_ORDER_IDS.ids = map((PREFIX + "{:x}").format, counter)
    p.CLIENT_ORDER_IDS.ids_bytes = map((PREFIX + "%x").encode().__mod__, counter)


def _catalog() -> Catalog:
    return Catalog.from_config(CONFIG)


def _cmd(body: bytes) -> NewOrder:
    """The NewOrder of a wire body (``wire.new_order_body``)."""
    return wire.decode_command(bytes((wire.T_NEW_ORDER,)) + bytes(8) + body)[1]  # type: ignore[return-value]


# --- random single-order query strings -----------------------------------------------------------------------

PRICES = {"AAPL": ["9.98", "9.99", "10.00", "10.01", "10.02", "10", "010.010"], "MSFT": ["99.95", "100", "100.05"]}
PRICES["BTCUSD"] = ["24999.95", "25000", "25000.05", "25000.0500"]
QTYS = {"AAPL": ["1", "2", "5", "3.0"], "MSFT": ["1", "4"], "BTCUSD": ["0.002", "0.010", "0.5", "1"]}
ODD_VALUES = [
    "", "0", "0.00", "-1", "-0.01", "1e3", "10.001", "25000.02", "0.0001", "1000001", "99999999999999999999",
    "123456789012345678901", "1.000000000000000000001", "10.000000000000000000000", " 1", "1 ", ".5", "5.",
    "buy", "BUY", "SELL", "LIMIT", "MARKET", "LIMIT_MAKER", "limit", "GTC", "IOC", "FOK", "GTX", "ACK", "RESULT",
    "FULL", "BRIEF", "NONE", "EXPIRE_TAKER", "EXPIRE_BOTH", "EXPIRE_MAKER", "aapl", "ZZZZ", "AAPL", "BTCUSD",
    "MSFT", "mine-1", "a.b_c-d", "x" * 36, "x" * 37, "bad id!", "60000", "60001", "1", "5000", "abc", "17e11",
    "9223372036854775807", "9223372036854775808", "00000000000000000001", "É", "%41APL", "A%41PL", "BU%59",
    "10%2E00", "+1", "1+", "a=b", "%", "%zz",
]  # fmt: skip


def _pairs(rng: random.Random) -> list[list[str]]:
    symbol = rng.choice(list(PRICES))
    pairs = [
        ["symbol", symbol],
        ["side", rng.choice(("BUY", "SELL"))],
        ["type", "LIMIT"],
        ["timeInForce", rng.choice(("GTC", "GTC", "IOC", "FOK"))],
        ["quantity", rng.choice(QTYS[symbol])],
        ["price", rng.choice(PRICES[symbol])],
    ]
    if rng.random() < 0.3:
        pairs.append(["newClientOrderId", f"c-{rng.randint(1, 40)}.{rng.choice('ab_')}"])  # repeats: -2010
    if rng.random() < 0.3:
        pairs.append(["newOrderRespType", rng.choice(p.RESP_TYPES)])
    if rng.random() < 0.2:
        pairs.append(["selfTradePreventionMode", rng.choice(list(p.STP_MODES))])
    if rng.random() < 0.5:
        pairs.append(["recvWindow", rng.choice(("60000", "5000", "1", "10000"))])
    rng.shuffle(pairs)
    pairs.append(["timestamp", str(NOW - rng.randint(0, 4000))])
    return pairs


def _mutate(rng: random.Random, pairs: list[list[str]]) -> str:
    """One subtle change to a valid order's pairs (in place); its kind."""
    kind = rng.choice(
        ("missing", "twice", "empty", "odd value", "percent", "plus", "unknown name", "stale", "ahead", "window")
    )
    at = rng.randrange(len(pairs))
    if kind == "missing":
        del pairs[at]
    elif kind == "twice":
        pairs.insert(rng.randrange(len(pairs) + 1), [pairs[at][0], rng.choice((pairs[at][1], "1", ""))])
    elif kind == "empty":
        pairs[at][1] = ""
    elif kind == "odd value":
        pairs[at][1] = rng.choice(ODD_VALUES)
    elif kind == "percent":  # one byte of a name or a value percent-encoded: decoded, it is the same text
        which = rng.randrange(2)
        text = pairs[at][which]
        k = rng.randrange(len(text))
        pairs[at][which] = text[:k] + "".join(f"%{b:02X}" for b in text[k].encode()) + text[k + 1 :]
    elif kind == "plus":
        pairs[at][1] = pairs[at][1] + "+"
    elif kind == "unknown name":
        pairs.insert(at, [rng.choice(("foo", "quoteOrderQty", "Symbol", "signature2", "")), rng.choice(("1", ""))])
    elif kind == "stale":
        pairs.append(["timestamp", str(NOW - rng.choice((5001, 60001, 10**12)))])
        pairs[:] = [q for q in pairs[:-1] if q[0] != "timestamp"] + pairs[-1:]
    elif kind == "ahead":
        pairs[:] = [q for q in pairs if q[0] != "timestamp"] + [["timestamp", str(NOW + rng.choice((1000, 1001)))]]
    else:
        pairs[:] = [q for q in pairs if q[0] != "recvWindow"]
        pairs.insert(at, ["recvWindow", rng.choice(("0", "60001", "1", "60000", "-1", "x", "5000"))])
    return kind


def _query(rng: random.Random, secret: str) -> bytes:
    """A signed single-order query string: often plainly valid, often wrong in one or two small ways."""
    pairs = _pairs(rng)
    for _ in range(rng.choice((0, 0, 1, 1, 2))):
        _mutate(rng, pairs)
    fields = ["=".join(pair) if rng.random() > 0.02 else pair[0] for pair in pairs]  # now and then a bare name
    where = len(fields) if rng.random() < 0.9 else rng.randrange(len(fields) + 1)  # the signature's place
    fields.insert(where, "signature=SIG")
    text = "&".join(fields)
    roll = rng.random()
    if roll < 0.03:
        text += "&"
    elif roll < 0.05:
        text = "&" + text
    elif roll < 0.07:
        text = text.replace("&", "&&", 1)
    signature = sign(secret, strip_form_signature(text))
    roll = rng.random()
    if roll < 0.05:
        signature = "0" * 64
    elif roll < 0.08:
        signature = signature.upper()  # the check lower-cases it: still valid
    elif roll < 0.1:
        signature = signature[:-1]
    elif roll < 0.12:
        signature = f"%{ord(signature[0]):02X}{signature[1:]}"  # percent-encoded: decoded, still valid
    data = text.replace("SIG", signature).encode()
    if rng.random() < 0.01:
        data += b"\xff"  # not UTF-8: the lane leaves it to falcon in both paths
    return data


# --- the scanner alone ----------------------------------------------------------------------------------------

PLAIN = "symbol=AAPL&side=BUY&type=LIMIT&timeInForce=GTC&quantity=2&price=10.00&timestamp=1700000000000"


def _scan(query: str) -> Any:
    batch.select_core("c")
    return batch.scan_query(_catalog(), query.encode())


def test_the_scanner_reads_a_plain_limit_order() -> None:
    query = f"{PLAIN}&recvWindow=6000&signature=abcdef"

    body, shard, resp_type, payload, signature, timestamp, recv_window = _scan(query)

    assert body == wire.new_order_body(NewOrder(1, 0, "", 1, 1, 1, 1000, 2, 0, p.EXPIRE_MAKER, 0))
    assert (shard, p.RESP_TYPES[resp_type]) == (0, "FULL")
    assert payload == f"{PLAIN}&recvWindow=6000".encode()
    assert (signature, timestamp, recv_window) == ("abcdef", 1_700_000_000_000, 6000)


def test_the_scanner_reads_the_optional_fields_in_any_order() -> None:
    query = (
        "newOrderRespType=ACK&selfTradePreventionMode=NONE&price=25000.050&timeInForce=FOK&symbol=BTCUSD"
        "&newClientOrderId=My.id_1-x&quantity=0.0100&timestamp=0017&type=LIMIT&side=SELL&signature=Zz"
    )

    body, shard, resp_type, payload, signature, timestamp, recv_window = _scan(query)

    stp = p.STP_MODES["NONE"]
    assert body == wire.new_order_body(NewOrder(3, 0, "My.id_1-x", 2, 1, p.TIFS["FOK"], 500001, 10, 0, stp, 0))
    assert (shard, p.RESP_TYPES[resp_type], signature, timestamp, recv_window) == (1, "ACK", "Zz", 17, None)
    assert payload == query.rpartition("&signature=")[0].encode()


@pytest.mark.parametrize(
    ("case", "query"),
    [
        ("no signature", PLAIN),
        ("signature not last", "signature=ab&" + PLAIN),
        ("signature in the middle", PLAIN.replace("&price", "&signature=ab&price")),
        ("empty signature", PLAIN + "&signature="),
        ("no timestamp", PLAIN.replace("&timestamp=1700000000000", "") + "&signature=ab"),
        ("no price", PLAIN.replace("&price=10.00", "") + "&signature=ab"),
        ("no timeInForce", PLAIN.replace("&timeInForce=GTC", "") + "&signature=ab"),
        ("a name twice", PLAIN + "&side=BUY&signature=ab"),
        ("an empty value", PLAIN + "&newClientOrderId=&signature=ab"),
        ("a bare name", PLAIN + "&recvWindow&signature=ab"),
        ("a percent-encoded value", PLAIN.replace("AAPL", "%41APL") + "&signature=ab"),
        ("a percent-encoded name", PLAIN.replace("side", "sid%65") + "&signature=ab"),
        ("a plus", PLAIN.replace("quantity=2", "quantity=+2") + "&signature=ab"),
        ("a plus in the signature", PLAIN + "&signature=a+b"),
        ("a percent-encoded signature", PLAIN + "&signature=%61b"),
        ("an '=' in a value", PLAIN + "&signature=a=b"),
        ("an unknown name", PLAIN + "&foo=1&signature=ab"),
        ("quoteOrderQty", PLAIN + "&quoteOrderQty=10&signature=ab"),
        ("a trailing '&'", PLAIN + "&signature=ab&"),
        ("a doubled '&'", PLAIN.replace("&side", "&&side") + "&signature=ab"),
        ("a leading '&'", "&" + PLAIN + "&signature=ab"),
        ("a space", PLAIN.replace("GTC", "GTC ") + "&signature=ab"),
        ("a non-ASCII byte", PLAIN.replace("AAPL", "AAPLÉ") + "&signature=ab"),
        ("lower-case symbol", PLAIN.replace("AAPL", "aapl") + "&signature=ab"),
        ("unknown symbol", PLAIN.replace("AAPL", "ZZZZ") + "&signature=ab"),
        ("MARKET", PLAIN.replace("LIMIT", "MARKET") + "&signature=ab"),
        ("LIMIT_MAKER", PLAIN.replace("LIMIT", "LIMIT_MAKER") + "&signature=ab"),
        ("bad side", PLAIN.replace("BUY", "buy") + "&signature=ab"),
        ("bad timeInForce", PLAIN.replace("GTC", "GTX") + "&signature=ab"),
        ("bad newOrderRespType", PLAIN + "&newOrderRespType=full&signature=ab"),
        ("bad selfTradePreventionMode", PLAIN + "&selfTradePreventionMode=ALL&signature=ab"),
        ("off the tick grid", PLAIN.replace("10.00", "10.001") + "&signature=ab"),
        ("too many decimals", PLAIN.replace("10.00", "10." + "0" * 21) + "&signature=ab"),
        ("price above max", PLAIN.replace("10.00", "1000000.01") + "&signature=ab"),
        ("huge price", PLAIN.replace("10.00", "9" * 21) + "&signature=ab"),
        ("zero price", PLAIN.replace("10.00", "0.00") + "&signature=ab"),
        ("negative quantity", PLAIN.replace("quantity=2", "quantity=-2") + "&signature=ab"),
        ("zero quantity", PLAIN.replace("quantity=2", "quantity=0") + "&signature=ab"),
        ("fractional quantity", PLAIN.replace("quantity=2", "quantity=2.5") + "&signature=ab"),
        ("exponent", PLAIN.replace("quantity=2", "quantity=2e0") + "&signature=ab"),
        ("timestamp not a number", PLAIN.replace("1700000000000", "17e11") + "&signature=ab"),
        ("timestamp of 20 digits", PLAIN.replace("1700000000000", "0" * 19 + "1") + "&signature=ab"),
        ("timestamp above int64", PLAIN.replace("1700000000000", "9223372036854775808") + "&signature=ab"),
        ("recvWindow not a number", PLAIN + "&recvWindow=-1&signature=ab"),
        ("client order id too long", PLAIN + "&newClientOrderId=" + "x" * 37 + "&signature=ab"),
        ("client order id with '!'", PLAIN + "&newClientOrderId=a!&signature=ab"),
    ],
)
def test_the_scanner_declines_what_is_not_plainly_valid(case: str, query: str) -> None:
    assert _scan(query) is None, case


def test_the_scanner_declines_everything_without_the_stp_table_and_without_the_c_core() -> None:
    batch.select_core("c")
    catalog = _catalog()
    plain = {
        name: (r.symbol_id, r.shard, r.price_decimals, r.tick_units, r.min_price, r.max_price,
               r.qty_decimals, r.step_units, r.min_qty, r.max_qty)
        for name, r in catalog.by_name.items()
    }  # fmt: skip
    query = (PLAIN + "&signature=ab").encode()
    old_tables = batch._CORE_MODULE.tables(plain, p.SIDES, p.TIFS)  # as batch.py built them before the single order

    assert batch._CORE_MODULE.scan_query(query, old_tables, 2) is None
    assert batch.scan_query(catalog, query) is not None
    batch.select_core("python")
    assert batch.scan_query(catalog, query) is None


def test_the_scanner_takes_only_names_of_the_single_order() -> None:
    assert set(batch._CORE_MODULE.QUERY_NAMES) <= p.ORDER_PARAMS | p.SIGNED_PARAMS


def _python_reading(catalog: Catalog, query: bytes, user_id: int) -> tuple[Any, ...] | None:
    """What the Python path reads from ``query`` where it raises nothing before the HMAC: (body with the user id
    and no generated client order id, shard, response type, signed payload, signature, timestamp, recvWindow)."""
    try:
        text = query.decode()
        params: dict[str, Any] = parse_query_string(text, keep_blank=True, csv=False)
        check_no_duplicates(params, "query string")
        inputs = Inputs(params, text, NO_BODY, "query" if "signature" in params else "")
        signature = params.get("signature")
        timestamp = p.integer(params, "timestamp")
        recv_window = p.integer(params, "recvWindow")
        if not signature or timestamp is None:
            return None
        check_allowed(params, p.ORDER_PARAMS | p.SIGNED_PARAMS)
        ids = p.CLIENT_ORDER_IDS.ids
        p.CLIENT_ORDER_IDS.ids = iter([""])  # the id new_order would generate: left empty, as the scanner leaves it
        try:
            rules, cmd, resp_type = p.new_order(catalog, params, user_id)
        finally:
            p.CLIENT_ORDER_IDS.ids = ids
    except (ApiError, UnicodeDecodeError):
        return None
    payload = auth.signed_payload(inputs)
    return (wire.new_order_body(cmd), rules.shard, resp_type, payload, signature, timestamp, recv_window)


@pytest.mark.parametrize("seed", range(8))
def test_whatever_the_scanner_takes_the_python_checks_take_alike(seed: int) -> None:
    rng = random.Random(seed)
    catalog = _catalog()
    batch.select_core("c")
    taken = 0
    for _ in range(400):
        query = _query(rng, "secret")

        scanned = batch.scan_query(catalog, query)

        if scanned is not None:
            taken += 1
            body, shard, resp_type, payload, signature, timestamp, recv_window = scanned
            full_body = batch.order_body(body, 5) if body[12] else body[:4] + (5).to_bytes(8, "little") + body[12:]
            reading = (full_body, shard, p.RESP_TYPES[resp_type], payload, signature, timestamp, recv_window)
            assert reading == _python_reading(catalog, query, 5), query
    assert taken > 100  # the random queries are often plainly valid


def test_order_body_adds_the_user_and_draws_an_id_only_when_none_was_sent() -> None:
    batch.select_core("c")
    _restart_ids()
    generated = _scan(PLAIN + "&signature=ab")[0]
    given = _scan(PLAIN + "&newClientOrderId=mine&signature=ab")[0]

    first = _cmd(batch.order_body(generated, 2**40))
    mine = _cmd(batch.order_body(given, 7))
    second = _cmd(batch.order_body(generated, 7))

    assert (first.user_id, first.client_order_id) == (2**40, PREFIX + "1")
    assert (mine.user_id, mine.client_order_id) == (7, "mine")
    assert second.client_order_id == PREFIX + "2"
    assert p.CLIENT_ORDER_IDS.next() == PREFIX + "3"  # the same stream as the Python path's


# --- render_order -------------------------------------------------------------------------------------------


def _view(rng: random.Random, symbol_id: int) -> OrderView:
    return OrderView(
        symbol_id, rng.randint(1, 2**40), rng.choice(("x9AbC1", "mine.1_2-3", "", "a" * 36)), 3,
        rng.choice((1, 2)), rng.choice((1, 2, 3)), rng.choice((1, 2, 3)), rng.choice(list(p.STP_MODES.values())),
        rng.randint(1, 10**7), rng.randint(1, 10**6), rng.randint(0, 10**6), rng.randint(0, 10**13), 0,
        rng.randint(1, 7), NOW + rng.randint(0, 9), NOW + 10, rng.choice((NOW, NOW + 5)),
    )  # fmt: skip


@pytest.mark.parametrize("seed", range(4))
def test_render_order_writes_full_text_bytes(seed: int) -> None:
    rng = random.Random(seed)
    catalog = _catalog()
    batch.select_core("c")
    for _ in range(200):
        view = _view(rng, rng.choice((1, 2, 3)))
        fills = tuple(
            Fill(rng.randint(1, 10**9), rng.randint(1, 10**7), rng.randint(1, 10**6))
            for _ in range(rng.choice((0, 0, 1, 3)))
        )
        record = wire.encode_answer(rng.randint(1, 2**62), OrderResult(view, fills))

        assert batch.render_order(catalog, record) == batch.full_text(catalog, view, fills).encode()


def test_render_order_leaves_other_records_to_python() -> None:
    catalog = _catalog()
    batch.select_core("c")
    view = _view(random.Random(1), 1)
    record = wire.encode_answer(9, OrderResult(view, (Fill(1, 1000, 1),)))
    odd = {
        "a reject": wire.encode_answer(9, Rejected(-2010, "no")),
        "a short record": record[:100],
        "fills cut off": record[:-1],
        "unknown symbol": wire.encode_answer(9, OrderResult(view._replace(symbol_id=77), ())),
        "unknown status": wire.encode_answer(9, OrderResult(view._replace(status=99), ())),
        "negative price": wire.encode_answer(9, OrderResult(view._replace(price=-5), ())),
        "id JSON escapes": wire.encode_answer(9, OrderResult(view._replace(client_order_id='a"b'), ())),
        "non-ASCII id": wire.encode_answer(9, OrderResult(view._replace(client_order_id="é"), ())),
    }

    assert {case: batch.render_order(catalog, rec) for case, rec in odd.items()} == dict.fromkeys(odd)
    assert batch.render_order(catalog, record + b"more") == batch.full_text(catalog, view, (Fill(1, 1000, 1),)).encode()
    batch.select_core("python")
    assert batch.render_order(catalog, record) is None


# --- the whole lane, both cores -----------------------------------------------------------------------------


class ClockedEngine(LocalEngineClient):
    """The local engine with a clock that ticks per command (two runs answer the same bytes), ``submit``, and
    ``submit_order_body`` / ``decode`` as ``RingEngineClient`` has them (the answer record as a shard writes it)."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.clock = NOW
        self.raw = 0

    def _apply(self, shard: int, cmd: object) -> Any:
        if type(cmd) in STATE_CHANGING:
            self.clock += 1
            cmd = cmd._replace(ts=self.clock)  # type: ignore[attr-defined]
        self.sent.append((shard, cmd))
        engine = self.engines[shard]
        result = engine.apply(cmd)
        engine.take_events()
        return result

    def submit(self, shard: int, cmd: object) -> asyncio.Future[Any]:
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(self._apply(shard, cmd))
        return fut

    def submit_order_body(self, shard: int, body: bytes) -> asyncio.Future[bytes]:
        rid, cmd = wire.decode_command(bytes((wire.T_NEW_ORDER,)) + (41).to_bytes(8, "little") + body)
        self.raw += 1
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(wire.encode_answer(rid, self._apply(shard, cmd)))
        return fut

    def decode(self, record: bytes) -> Any:
        return wire.decode_answer(record)[1]


def _serve(
    core: str, requests: list[tuple[bytes, bytes | None]], users: list[tuple[int, str, str]] = USERS
) -> tuple[list[Any], list[Any], int]:
    """Every request through a fresh lane with ``core``: (answers, commands the engine got, orders sent raw)."""
    batch.select_core(core)
    _restart_ids()
    engine = ClockedEngine(CONFIG)
    app = create_app(CONFIG, engine)
    for user_id, key, secret in users:
        app.exchange.users.add(user_id, key, secret)
    lane = app.fast_order

    async def serve() -> list[Any]:
        return [await lane.answer(query, key) for query, key in requests]

    return asyncio.run(serve()), engine.sent, engine.raw


def _requests(rng: random.Random, count: int) -> list[tuple[bytes, bytes | None]]:
    out = []
    for _ in range(count):
        _, key, secret = rng.choice(USERS)
        header: bytes | None = key.encode()
        roll = rng.random()
        if roll < 0.02:
            header = None  # -2014
        elif roll < 0.03:
            header = b""
        elif roll < 0.04:
            header = b"bad key!"  # -2014 (format), before any lookup
        elif roll < 0.06:
            secret = "wrong"  # -1022
        out.append((_query(rng, secret), header))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_random_orders_answer_and_reach_the_engine_alike_with_both_cores(seed: int) -> None:
    requests = _requests(random.Random(seed), 300)

    c_answers, c_sent, c_raw = _serve("c", requests)
    py_answers, py_sent, py_raw = _serve("python", requests)

    for request, c_answer, py_answer in zip(requests, c_answers, py_answers, strict=True):
        assert c_answer == py_answer, request
    assert c_sent == py_sent
    assert py_raw == 0 and c_raw > 50  # the C path took many of them
    assert len(c_sent) > c_raw  # and the Python path the others that reached the engine


def test_an_answer_the_core_does_not_write_is_written_by_python_alike() -> None:
    _, key, secret = USERS[0]
    ask = f"symbol=AAPL&side=SELL&type=LIMIT&timeInForce=GTC&quantity=5&price=10.00&timestamp={NOW}"
    bids = [
        f"symbol=AAPL&side=BUY&type=LIMIT&timeInForce=IOC&quantity=2&price=10.00&timestamp={NOW}",  # FULL, a fill
        f"symbol=AAPL&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=10.00&timestamp={NOW}"
        "&newOrderRespType=RESULT",
        f"symbol=AAPL&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=9.00&timestamp={NOW}"
        "&newOrderRespType=ACK&newClientOrderId=a",
        f"symbol=AAPL&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=9.00&timestamp={NOW}"
        "&newClientOrderId=a",  # a duplicate id: the engine rejects it
    ]
    _, maker_key, maker_secret = USERS[1]  # another user: no self-trade prevention
    requests = [(f"{ask}&signature={sign(maker_secret, ask)}".encode(), maker_key.encode())]
    requests += [(f"{q}&signature={sign(secret, q)}".encode(), key.encode()) for q in bids]

    c_answers, c_sent, c_raw = _serve("c", requests)
    py_answers, py_sent, _ = _serve("python", requests)

    assert c_answers == py_answers and c_sent == py_sent and c_raw == 5
    assert [a[0] for a in c_answers] == [200, 200, 200, 200, 400]
    assert b'"fills":[{"price":"10.00","qty":"2"' in c_answers[1][2]


# --- RingEngineClient.submit_order_body over real rings --------------------------------------------------------


def _body(catalog: Catalog, query: str, user_id: int) -> tuple[bytes, int]:
    batch.select_core("c")
    scanned = batch.scan_query(catalog, f"{query}&timestamp=1&signature=x".encode())
    assert scanned is not None
    return batch.order_body(scanned[0], user_id), scanned[1]


def test_submit_order_body_writes_the_record_encode_command_writes() -> None:
    rig = Rig(_config(), 1 << 16)
    catalog = Catalog.from_config(rig.config)
    symbol = rig.config.symbols_of_shard(0)[0].symbol
    body, shard = _body(catalog, f"symbol={symbol}&side=BUY&type=LIMIT&timeInForce=GTC&quantity=3&price=99", 7)
    assert shard == 0

    async def main() -> tuple[int, list[bytes]]:
        client = RingEngineClient(rig.config, rig.ctx, 0)
        client.start()
        try:
            rid = client._next_rid
            client.submit_order_body(0, body)
            return rid, rig.rings[rig.topology.command_ring(0, 0)].read()
        finally:
            await client.close()

    try:
        rid, records = asyncio.run(main())
    finally:
        rig.close()

    cmd = _cmd(body)
    assert records == [wire.encode_command(rid, cmd)]


def test_submit_order_body_resolves_to_the_raw_answer_record() -> None:
    rig = Rig(_config(), 1 << 16)
    catalog = Catalog.from_config(rig.config)
    symbol = rig.config.symbols_of_shard(1)[0].symbol
    sell, _ = _body(catalog, f"symbol={symbol}&side=SELL&type=LIMIT&timeInForce=GTC&quantity=3&price=99", 7)
    buy, shard = _body(catalog, f"symbol={symbol}&side=BUY&type=LIMIT&timeInForce=IOC&quantity=5&price=99", 8)
    rig.start_shard(1)

    async def main() -> tuple[Any, ...]:
        client = RingEngineClient(rig.config, rig.ctx, 0)
        client.start()
        try:
            first = await client.submit_order_body(shard, sell)
            again = await client.submit_order_body(shard, sell)  # the same client order id: rejected
            taker = await client.submit_order_body(shard, buy)
            plain = await client.call(shard, _cmd(buy)._replace(client_order_id="p"))
            return first, again, taker, plain, client.pending_count, len(client._raw)
        finally:
            await client.close()

    try:
        first, again, taker, plain, pending, raw_left = asyncio.run(main())
    finally:
        rig.close()

    assert type(first) is bytes and type(again) is bytes and type(taker) is bytes
    assert type(wire.decode_answer(again)[1]) is Rejected
    result = wire.decode_answer(taker)[1]
    assert (
        type(result) is OrderResult and len(result.fills) == 1 and result.order.status == OrderStatus.EXPIRED
    )  # an IOC
    batch.select_core("c")
    assert batch.render_order(catalog, taker) == batch.full_text(catalog, result.order, result.fills).encode()
    assert type(plain) is OrderResult  # call and submit still decode
    assert (pending, raw_left) == (0, 0)


def test_a_raw_request_that_times_out_leaves_nothing_behind() -> None:
    rig = Rig(_config(answer_timeout_ms=100), 1 << 16)
    catalog = Catalog.from_config(rig.config)
    symbol = rig.config.symbols_of_shard(0)[0].symbol
    body, shard = _body(catalog, f"symbol={symbol}&side=BUY&type=LIMIT&timeInForce=GTC&quantity=3&price=99", 7)

    async def main() -> tuple[int, int]:
        client = RingEngineClient(rig.config, rig.ctx, 0)
        client.start()
        try:
            with pytest.raises(EngineTimeout, match="100 ms"):
                await client.submit_order_body(shard, body)  # a silent shard
            return client.pending_count, len(client._raw)
        finally:
            await client.close()

    try:
        assert asyncio.run(main()) == (0, 0)
    finally:
        rig.close()


def test_a_plain_order_skips_the_python_checks_with_the_c_core(monkeypatch: pytest.MonkeyPatch) -> None:
    _, key, secret = USERS[0]
    query = f"{PLAIN.replace('1700000000000', str(NOW))}&newOrderRespType=RESULT"
    request = (f"{query}&signature={sign(secret, query)}".encode(), key.encode())
    monkeypatch.setattr(fastpath, "parse_query_string", lambda *args, **kwargs: pytest.fail("parsed in Python"))
    monkeypatch.setattr(p, "new_order", lambda *args: pytest.fail("checked in Python"))

    answers, sent, raw = _serve("c", [request])

    assert answers[0][0] == 200 and b'"status":"NEW"' in answers[0][2]
    assert raw == 1 and sent[0][1].client_order_id == PREFIX + "1"


def test_a_fragmented_raw_answer_comes_whole() -> None:
    rig = Rig(_config(), 1 << 12)  # max_record ~2 KiB: an order answer with 100 fills (~2.5 KiB) is fragmented
    catalog = Catalog.from_config(rig.config)
    symbol = rig.config.symbols_of_shard(0)[0]
    asks = [(0, NewOrder(symbol.symbol_id, 1, f"a{i}", 2, 1, 1, 9900 + i, 1, 0, p.EXPIRE_MAKER, 0)) for i in range(100)]
    body, shard = _body(
        catalog, f"symbol={symbol.symbol}&side=BUY&type=LIMIT&timeInForce=IOC&quantity=100&price=200", 8
    )
    rig.start_shard(0)

    async def main() -> tuple[Any, int]:
        client = RingEngineClient(rig.config, rig.ctx, 0)
        client.start()
        try:
            for start in range(0, len(asks), 10):  # two batches in flight must fit the 4 KiB ring
                await client.call_batch(asks[start : start + 10])
            return await client.submit_order_body(shard, body), len(client._raw)
        finally:
            await client.close()

    try:
        record, raw_left = asyncio.run(main())
    finally:
        rig.close()

    result = wire.decode_answer(record)[1]
    assert type(record) is bytes and len(record) > 2048 and raw_left == 0
    assert type(result) is OrderResult and len(result.fills) == 100
    batch.select_core("c")
    assert batch.render_order(catalog, record) == batch.full_text(catalog, result.order, result.fills).encode()


def test_an_empty_key_is_a_missing_one_on_both_paths() -> None:
    query = PLAIN.replace("1700000000000", str(NOW))
    request = (f"{query}&signature={sign('x', query)}".encode(), b"")
    users = [*USERS, (9, "", "x")]  # not a key a user can have: the cache would still find it

    answers = {core: _serve(core, [request], users) for core in ("c", "python")}

    assert answers["c"] == answers["python"]
    assert answers["c"][0][0][0] == 401 and b"-2014" in answers["c"][0][0][2]


def test_ingress_batch_pure_python_turns_the_single_order_c_path_off() -> None:
    code = (
        "from ingress import batch\n"
        "from tests.ingress.test_fastcore import PLAIN, _catalog\n"
        "print(batch.core_name(), batch.scan_query(_catalog(), (PLAIN + '&signature=ab').encode()))\n"
    )
    env = {**os.environ, "INGRESS_BATCH_PURE_PYTHON": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    on = subprocess.run([sys.executable, "-c", code], env={**env, "INGRESS_BATCH_PURE_PYTHON": "0"},
                        capture_output=True, text=True, check=True)  # fmt: skip
    off = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)

    assert on.stdout.startswith("c (b'")
    assert off.stdout == "python None\n"
