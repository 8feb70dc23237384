"""POST/PUT/DELETE /api/v3/userDataStream (ingress app) with the real wsfeed process on the same Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from deploy.config import build_config
from deploy.migrate import apply_migrations
from tests.ingress.harness import ADMIN_TOKEN, ApiClient
from tests.ingress.local_engine import LocalEngineClient
from tests.wsfeed.harness import recv_json, request, ws_connect
from wsfeed import listenkeys

PATH = "/api/v3/userDataStream"


@pytest.fixture
def api(feed: Any, services: Any, tmp_path: Any) -> Iterator[ApiClient]:
    dsn = services.create_database("userstream")
    asyncio.run(apply_migrations(dsn))
    env = {"DATABASE_URL": dsn, "REDIS_URL": feed.redis_url, "EXCHANGE_ADMIN_TOKEN": ADMIN_TOKEN,
           "EXCHANGE_DATA_DIR": str(tmp_path)}  # fmt: skip
    config = build_config({"engine": {"shards": 2}}, env)
    client = ApiClient(config, LocalEngineClient(config))
    try:
        yield client
    finally:
        client.close()


def test_post_returns_the_same_key_until_deleted_and_ttl_is_one_hour(api, feed):
    user = api.new_user()
    headers = {"X-MBX-APIKEY": user.api_key}

    first = api.request("POST", PATH, headers=headers)
    second = api.request("POST", PATH, headers=headers)

    assert first.status_code == 200 and set(first.json) == {"listenKey"}
    key = first.json["listenKey"]
    assert listenkeys.well_formed(key) and second.json == {"listenKey": key}
    assert feed.journal.client.get(listenkeys.key_of(key)) == str(user.user_id).encode()
    assert 3590 <= feed.journal.client.ttl(listenkeys.key_of(key)) <= 3600


def test_put_renews_and_delete_closes_the_private_stream(api, feed):
    user = api.new_user()
    headers = {"X-MBX-APIKEY": user.api_key}
    key = api.request("POST", PATH, headers=headers).json["listenKey"]
    feed.journal.client.expire(listenkeys.key_of(key), 100)

    renewed = api.request("PUT", PATH, headers=headers, params={"listenKey": key})
    ttl = feed.journal.client.ttl(listenkeys.key_of(key))

    async def scenario():
        async with ws_connect(f"{feed.url}/ws/{key}") as ws:
            await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1})
            deleted = await asyncio.to_thread(api.request, "DELETE", PATH, headers=headers, params={"listenKey": key})
            event = await recv_json(ws)
            try:
                await recv_json(ws)
                closed = None
            except ConnectionClosed as exc:
                closed = exc.rcvd.code if exc.rcvd else None
        return deleted, event, closed

    deleted, event, closed = asyncio.run(scenario())

    assert renewed.status_code == 200 and renewed.json == {} and ttl > 3000
    assert deleted.status_code == 200 and deleted.json == {}
    assert event["e"] == "listenKeyExpired" and closed == 1000
    assert feed.journal.client.exists(listenkeys.key_of(key)) == 0


def test_errors(api):
    user, other = api.new_user(), api.new_user()
    key = api.request("POST", PATH, headers={"X-MBX-APIKEY": user.api_key}).json["listenKey"]

    no_header = api.request("POST", PATH)
    bad_header = api.request("POST", PATH, headers={"X-MBX-APIKEY": "x" * 64})
    missing = api.request("PUT", PATH, headers={"X-MBX-APIKEY": user.api_key})
    malformed = api.request("PUT", PATH, headers={"X-MBX-APIKEY": user.api_key}, params={"listenKey": "abc"})
    not_yours = api.request("DELETE", PATH, headers={"X-MBX-APIKEY": other.api_key}, params={"listenKey": key})
    extra = api.request("POST", PATH, headers={"X-MBX-APIKEY": user.api_key}, params={"foo": "1"})

    assert (no_header.status_code, no_header.json["code"]) == (401, -2014)
    assert (bad_header.status_code, bad_header.json["code"]) == (401, -2015)
    assert (missing.status_code, missing.json["code"]) == (400, -1102)
    assert (malformed.status_code, malformed.json["code"]) == (400, -1100)
    assert (not_yours.status_code, not_yours.json["code"]) == (400, -1125)
    assert (extra.status_code, extra.json["code"]) == (400, -1104)
