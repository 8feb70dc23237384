"""Signed requests and the user directory: API keys, signatures, timestamps, caching."""

from __future__ import annotations

import asyncio
import hmac
import time
from urllib.parse import urlencode

import asyncpg
import orjson
import pytest

from ingress.auth import sign
from ingress.users import MacKey
from tests.ingress.harness import TestUser, limit_order, now_ms

ORDER = "/api/v3/order"
QUERY = {"symbol": "AAPL", "orderId": 1}  # answers -2013 once authenticated: nothing else to set up


def _code(res) -> int:
    return res.json["code"]


def test_missing_api_key_is_2014(api) -> None:
    res = api.get(ORDER, query_string=f"symbol=AAPL&orderId=1&timestamp={now_ms()}&signature=00")
    assert res.status_code == 401
    assert _code(res) == -2014
    assert "X-MBX-APIKEY" in res.json["msg"]


def test_malformed_api_key_is_2014(api) -> None:
    res = api.signed("GET", ORDER, TestUser(0, "bad key!", "x"), QUERY)
    assert res.status_code == 401
    assert _code(res) == -2014


def test_unknown_api_key_is_2015(api) -> None:
    res = api.signed("GET", ORDER, TestUser(0, "A" * 64, "x"), QUERY)
    assert res.status_code == 401
    assert _code(res) == -2015
    assert "AAAAAAAA" in res.json["msg"]


def test_wrong_secret_is_1022(api) -> None:
    alice = api.new_user()
    res = api.signed("GET", ORDER, TestUser(alice.user_id, alice.api_key, "not-the-secret"), QUERY)
    assert res.status_code == 401
    assert _code(res) == -1022


def test_tampered_parameters_fail_the_signature(api) -> None:
    alice = api.new_user()
    qs = urlencode(limit_order("AAPL", "BUY", "10", "1") | {"timestamp": now_ms()})
    sig = sign(alice.secret, qs)
    res = api.request(
        "POST", ORDER, query_string=qs.replace("quantity=1", "quantity=9") + f"&signature={sig}",
        headers={"X-MBX-APIKEY": alice.api_key},
    )  # fmt: skip
    assert _code(res) == -1022
    assert api.engine.sent == []


def test_missing_signature_or_timestamp_is_1102(api) -> None:
    alice = api.new_user()
    headers = {"X-MBX-APIKEY": alice.api_key}
    no_sig = api.get(ORDER, query_string=f"symbol=AAPL&orderId=1&timestamp={now_ms()}", headers=headers)
    assert _code(no_sig) == -1102
    assert "'signature'" in no_sig.json["msg"]
    qs = "symbol=AAPL&orderId=1"
    no_ts = api.get(ORDER, query_string=f"{qs}&signature={sign(alice.secret, qs)}", headers=headers)
    assert _code(no_ts) == -1102
    assert "'timestamp'" in no_ts.json["msg"]


def test_stale_timestamp_is_1021(api) -> None:
    alice = api.new_user()
    res = api.signed("GET", ORDER, alice, QUERY, timestamp=now_ms() - 6000)
    assert res.status_code == 400
    assert _code(res) == -1021
    assert "recvWindow 5000" in res.json["msg"]


def test_timestamp_from_the_future_is_1021(api) -> None:
    alice = api.new_user()
    res = api.signed("GET", ORDER, alice, QUERY, timestamp=now_ms() + 60_000)
    assert _code(res) == -1021
    assert "ahead" in res.json["msg"]


def test_a_wider_recv_window_accepts_an_older_timestamp(api) -> None:
    alice = api.new_user()
    res = api.signed("GET", ORDER, alice, QUERY | {"recvWindow": 30_000}, timestamp=now_ms() - 6000)
    assert _code(res) == -2013


def test_recv_window_above_the_maximum_is_1100(api) -> None:
    alice = api.new_user()
    res = api.signed("GET", ORDER, alice, QUERY | {"recvWindow": 60_001})
    assert _code(res) == -1100
    assert "60001" in res.json["msg"]


def test_signature_first_in_the_query_string(api) -> None:
    alice = api.new_user()
    qs = urlencode(QUERY | {"timestamp": now_ms()})
    res = api.get(
        ORDER, query_string=f"signature={sign(alice.secret, qs)}&{qs}", headers={"X-MBX-APIKEY": alice.api_key}
    )
    assert _code(res) == -2013


def test_signature_in_the_middle_of_a_form_body(api) -> None:
    alice = api.new_user()
    head = urlencode({"symbol": "AAPL", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"})
    tail = urlencode({"price": "10", "quantity": "2", "timestamp": now_ms()})
    sig = sign(alice.secret, f"{head}&{tail}")
    res = api.request(
        "POST", ORDER, body=f"{head}&signature={sig}&{tail}",
        headers={"X-MBX-APIKEY": alice.api_key, "Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    assert res.status_code == 200, res.text
    assert res.json["origQty"] == "2"


def test_query_string_and_form_body_are_signed_together(api) -> None:
    alice = api.new_user()
    qs = urlencode({"symbol": "AAPL", "side": "BUY", "type": "LIMIT"})
    body = urlencode({"timeInForce": "GTC", "price": "10", "quantity": "3", "timestamp": now_ms()})
    sig = sign(alice.secret, qs + body)
    res = api.request(
        "POST", ORDER, query_string=qs, body=f"{body}&signature={sig}",
        headers={"X-MBX-APIKEY": alice.api_key, "Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    assert res.status_code == 200, res.text


def test_signature_inside_a_json_body(api) -> None:
    alice = api.new_user()
    params = limit_order("AAPL", "SELL", "10", "4") | {"timestamp": now_ms()}
    signed_text = orjson.dumps(params)
    body = signed_text[:-1] + b',"signature":"' + sign(alice.secret, signed_text).encode() + b'"}'
    res = api.request(
        "POST", ORDER, body=body, headers={"X-MBX-APIKEY": alice.api_key, "Content-Type": "application/json"}
    )
    assert res.status_code == 200, res.text
    assert res.json["side"] == "SELL"


def test_known_users_cost_no_database_query(api) -> None:
    alice = api.new_user()
    for _ in range(5):
        assert api.signed("POST", ORDER, alice, limit_order("AAPL", "BUY", "10", "1")).status_code == 200
    assert api.ctx.users.queries == 0


def test_user_created_by_another_worker_arrives_by_notify(make_api) -> None:
    api = make_api()
    other_worker = make_api()
    bob = other_worker.new_user()

    deadline = time.monotonic() + 10
    while api.ctx.users.get(bob.api_key) is None and time.monotonic() < deadline:
        api.run(asyncio.sleep(0.02))

    res = api.signed("GET", ORDER, bob, QUERY)
    assert _code(res) == -2013
    assert api.ctx.users.get(bob.api_key).user_id == bob.user_id


def test_unknown_key_is_looked_up_at_most_once_per_interval(api, database_url) -> None:
    users = api.ctx.users
    users._miss_interval_s = 3600.0  # no second look within this test
    key, secret = "K" * 64, "S" * 64
    carol = TestUser(0, key, secret)

    assert _code(api.signed("GET", ORDER, carol, QUERY)) == -2015
    assert _code(api.signed("GET", ORDER, carol, QUERY)) == -2015
    assert users.queries == 1

    async def insert_without_notify() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("INSERT INTO users (api_key, secret_key) VALUES ($1, $2)", key, secret)
        finally:
            await conn.close()

    asyncio.run(insert_without_notify())
    assert _code(api.signed("GET", ORDER, carol, QUERY)) == -2015  # still inside the interval: no query
    assert users.queries == 1

    users._miss_interval_s = 0.0
    assert _code(api.signed("GET", ORDER, carol, QUERY)) == -2013  # found by one SELECT
    assert _code(api.signed("GET", ORDER, carol, QUERY)) == -2013  # cached
    assert users.queries == 2


def test_users_listener_reconnects_and_reloads_after_losing_its_connection(api, database_url) -> None:
    users = api.ctx.users
    old_listener = users._listener
    key, secret = "R" * 64, "T" * 64

    async def kill_listener_then_add_user() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("SELECT pg_terminate_backend($1)", old_listener.get_server_pid())
            await conn.execute("INSERT INTO users (api_key, secret_key) VALUES ($1, $2)", key, secret)
        finally:
            await conn.close()

    asyncio.run(kill_listener_then_add_user())  # no NOTIFY: only the reload after reconnecting can find it
    deadline = time.monotonic() + 10
    while users.get(key) is None and time.monotonic() < deadline:
        api.run(asyncio.sleep(0.02))

    assert users.get(key) is not None
    assert users._listener is not old_listener
    assert users.queries == 0


def test_concurrent_lookups_of_a_new_key_share_one_query(make_api) -> None:
    api = make_api()
    dave = make_api().new_user()  # created through another app: unknown to this one unless NOTIFY landed
    users = api.ctx.users
    users._users.pop(dave.api_key, None)

    async def three_at_once():
        return await asyncio.gather(*(users.resolve(dave.api_key) for _ in range(3)))

    found = api.run(three_at_once())

    assert [u.user_id for u in found] == [dave.user_id] * 3
    assert users.queries == 1


@pytest.mark.parametrize("key_len", [0, 1, 32, 63, 64, 65, 200])
@pytest.mark.parametrize("payload", [b"", b"symbol=AAPL&side=BUY&timestamp=1", bytes(range(256)) * 3])
def test_the_precomputed_mac_key_signs_as_hmac_sha256(key_len: int, payload: bytes) -> None:
    secret = bytes((7 * i + 3) % 256 for i in range(key_len))

    got = MacKey(secret).hexdigest(payload)

    assert got == hmac.new(secret, payload, "sha256").hexdigest()
