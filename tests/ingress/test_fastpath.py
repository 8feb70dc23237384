"""The fast lane of POST /api/v3/order answers exactly what the falcon route answers.

Each case is sent to two apps over the same database and equal fresh engines:
one with the fast lane (the default), one with every request through falcon.
Status, contract body and headers must match (times, which differ by the
millisecond, are left out); requests the lane does not take (a body, a query
string that is not UTF-8) reach falcon in both. Every test runs with each core
this install has (``ingress.batch.CORES``): with the C core the lane takes a
plainly valid order through ``_batchcore.scan_query`` (``test_fastcore.py``
compares the two paths byte for byte).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from ingress import batch
from ingress.auth import sign
from ingress.dispatch import EngineBusy, EngineTimeout
from ingress.fastpath import FastOrderPost
from tests.ingress.harness import ApiClient, TestUser, now_ms
from tests.ingress.local_engine import FailingEngineClient, LocalEngineClient, SubmittingEngineClient

ORDER = "/api/v3/order"
TIMES = ("transactTime", "workingTime")


@pytest.fixture(autouse=True, params=batch.CORES)
def core(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test with each core: the C core's single-order path, and the Python path."""
    saved = batch.core_name()
    batch.select_core(request.param)
    yield request.param
    batch.select_core(saved)


def _pair(make_api: Callable[..., ApiClient], make_config: Callable[..., Any], engine: Any = None):
    config = make_config()
    fast = make_api(config, engine(config) if engine else LocalEngineClient(config))
    slow = make_api(config, engine(config) if engine else LocalEngineClient(config))
    slow.app.fast_order = None
    assert isinstance(fast.app.fast_order, FastOrderPost)
    return fast, slow


def _same(fast: ApiClient, slow: ApiClient, **request: Any) -> Any:
    a = fast.request("POST", ORDER, **request)
    b = slow.request("POST", ORDER, **request)
    body_a = {k: _no_clock(v) for k, v in a.json.items() if k not in TIMES}
    body_b = {k: _no_clock(v) for k, v in b.json.items() if k not in TIMES}
    assert (a.status_code, body_a) == (b.status_code, body_b)
    headers_a = {k.lower(): v for k, v in a.headers.items() if k.lower() not in ("content-length",)}
    headers_b = {k.lower(): v for k, v in b.headers.items() if k.lower() not in ("content-length",)}
    assert headers_a == headers_b
    return a


def _no_clock(value: Any) -> Any:
    """A message with the server time (ms, 13 digits) taken out: the two apps answer a few ms apart."""
    return re.sub(r"\b1[0-9]{12}\b", "<ms>", value) if isinstance(value, str) else value


def _query(user: TestUser, params: dict[str, Any], signature: str | None = None) -> str:
    qs = urlencode(params | {"timestamp": params.get("timestamp", now_ms())})
    return f"{qs}&signature={signature or sign(user.secret, qs)}"


LIMIT = {"symbol": "AAPL", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "price": "10.00", "quantity": "2"}


@pytest.mark.parametrize(
    ("case", "params", "code"),
    [
        ("accepted", LIMIT | {"newClientOrderId": "fast-1"}, None),
        ("ack", LIMIT | {"newClientOrderId": "fast-2", "newOrderRespType": "ACK"}, None),
        ("unknown symbol", LIMIT | {"symbol": "ZZZZ"}, -1121),
        ("off the tick grid", LIMIT | {"price": "10.001"}, -1013),
        ("unexpected parameter", LIMIT | {"foo": "1"}, -1104),
        ("bad side", LIMIT | {"side": "UP"}, -1117),
        ("missing quantity", {k: v for k, v in LIMIT.items() if k != "quantity"}, -1102),
        ("stale timestamp", LIMIT | {"timestamp": 1_000}, -1021),
        ("bad recvWindow", LIMIT | {"recvWindow": "0"}, -1100),
    ],
)
def test_fast_lane_answers_like_falcon(make_api, make_config, case, params, code) -> None:
    fast, slow = _pair(make_api, make_config)
    user = fast.new_user()

    res = _same(fast, slow, query_string=_query(user, params), headers={"X-MBX-APIKEY": user.api_key})

    assert res.json.get("code") == code, case


def test_auth_failures_answer_like_falcon(make_api, make_config) -> None:
    fast, slow = _pair(make_api, make_config)
    user = fast.new_user()
    qs = _query(user, LIMIT)

    assert _same(fast, slow, query_string=qs).json["code"] == -2014
    assert _same(fast, slow, query_string=qs, headers={"X-MBX-APIKEY": "nosuchkey"}).json["code"] == -2015
    bad = _query(user, LIMIT, signature="0" * 64)
    assert _same(fast, slow, query_string=bad, headers={"X-MBX-APIKEY": user.api_key}).json["code"] == -1022
    twice = f"symbol=AAPL&{qs}"
    assert _same(fast, slow, query_string=twice, headers={"X-MBX-APIKEY": user.api_key}).json["code"] == -1100


def test_engine_reject_answers_like_falcon(make_api, make_config) -> None:
    fast, slow = _pair(make_api, make_config)
    user = fast.new_user()
    key = {"X-MBX-APIKEY": user.api_key}
    ask = LIMIT | {"side": "SELL", "price": "10.00", "newClientOrderId": "maker"}
    _same(fast, slow, query_string=_query(user, ask), headers=key)

    crossing = LIMIT | {"type": "LIMIT_MAKER", "price": "10.00", "newClientOrderId": "pm"}
    crossing.pop("timeInForce")
    res = _same(fast, slow, query_string=_query(user, crossing), headers=key)

    assert res.status_code == 400 and res.json["code"] == -2010


@pytest.mark.parametrize(("error", "status", "code"), [(EngineBusy, 503, -1008), (EngineTimeout, 500, -1000)])
def test_engine_failures_answer_like_falcon(make_api, make_config, error, status, code) -> None:
    fast, slow = _pair(make_api, make_config, engine=lambda config: FailingEngineClient(2, error))
    user = fast.new_user()

    res = _same(fast, slow, query_string=_query(user, LIMIT), headers={"X-MBX-APIKEY": user.api_key})

    assert (res.status_code, res.json["code"]) == (status, code)
    assert (res.headers.get("Retry-After") == "1") == (error is EngineBusy)


class FailingSubmitClient(FailingEngineClient):
    """``submit`` raising as ``RingEngineClient.submit`` does (a full ring, a broken client)."""

    def submit(self, shard: int, cmd: object) -> Any:
        raise self.error_type(f"shard {shard} fails")


def test_the_lane_awaits_the_engines_submit_where_it_has_one_and_answers_alike(make_api, make_config) -> None:
    fast, slow = _pair(make_api, make_config, engine=SubmittingEngineClient)
    user = fast.new_user()
    key = {"X-MBX-APIKEY": user.api_key}

    accepted = _same(fast, slow, query_string=_query(user, LIMIT | {"newClientOrderId": "sub-1"}), headers=key)
    rejected = _same(fast, slow, query_string=_query(user, LIMIT | {"newClientOrderId": "sub-1"}), headers=key)

    assert accepted.status_code == 200 and accepted.json["clientOrderId"] == "sub-1"
    assert rejected.json["code"] == -2010  # a duplicate client order id, rejected by the engine
    assert fast.engine.submitted == 2  # both went through submit, none through call
    assert slow.engine.submitted == 0  # falcon's route calls


@pytest.mark.parametrize(("error", "status", "code"), [(EngineBusy, 503, -1008), (EngineTimeout, 500, -1000)])
def test_a_submit_that_raises_answers_like_falcon(make_api, make_config, error, status, code) -> None:
    fast, slow = _pair(make_api, make_config, engine=lambda config: FailingSubmitClient(2, error))
    user = fast.new_user()

    res = _same(fast, slow, query_string=_query(user, LIMIT), headers={"X-MBX-APIKEY": user.api_key})

    assert (res.status_code, res.json["code"]) == (status, code)


def test_requests_with_a_body_go_through_falcon(make_api, make_config) -> None:
    fast, _ = _pair(make_api, make_config)
    user = fast.new_user()

    res = fast.signed("POST", ORDER, user, LIMIT | {"newClientOrderId": "form-1"}, where="form")

    assert res.status_code == 200, res.text
    assert res.json["clientOrderId"] == "form-1"
