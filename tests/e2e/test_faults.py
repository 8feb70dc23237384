"""Faults through a running exchange: a killed shard, a stopped shard with full rings, vanished clients.

Shards are found by process title (``exchange: shard N``) and stopped with
SIGSTOP/SIGCONT or killed with SIGKILL; the launcher restarts a dead shard.
Every request must come back within the answer timeout plus slack, with a
clear answer: its result, 503/-1008 (nothing accepted) or 500/-1000 (fate
unknown).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import time
from urllib.parse import urlsplit

import aiohttp

from shards.routing import shard_for
from tests.e2e.api import Api, async_signed, signed_parts

SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN", "TSLA", "NVDA", "META")
SLACK_S = 3.0


def _symbol_on(shard: int, shards: int) -> str:
    return next(s for s in SYMBOLS if shard_for(s, shards) == shard)


def _order(symbol: str, price: str, **extra: str) -> dict[str, str]:
    return {"symbol": symbol, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "1", "price": price,
            **extra}  # fmt: skip


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_killed_shard_is_restarted_and_the_api_answers_clearly_meanwhile(exchange_factory):
    timeout_s = 1.0
    ex = exchange_factory(engine={"shards": 2}, rest={"workers": 2, "answer_timeout_ms": int(timeout_s * 1000)})
    api = Api(ex.rest_url, ex.admin_token)
    user = api.new_user()
    doomed, alive = _symbol_on(1, 2), _symbol_on(0, 2)
    assert api.signed("POST", "/api/v3/order", user, **_order(doomed, "10")).status == 200
    old_pid = ex.pids("shard")[1]

    os.kill(old_pid, signal.SIGKILL)
    replies = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        started = time.monotonic()
        reply = api.signed("POST", "/api/v3/order", user, **_order(doomed, "11"))
        replies.append((reply.status, reply.code, time.monotonic() - started))
        other = api.signed("POST", "/api/v3/order", user, **_order(alive, "12"))
        assert other.status == 200, other.body
        if reply.status == 200 and ex.pids("shard").get(1, old_pid) != old_pid:
            break
    new_pid = ex.pids("shard")[1]
    after = api.signed("POST", "/api/v3/order", user, **_order(doomed, "13"))
    depth = api.get("/api/v3/depth", symbol=doomed)
    health = _wait_for(lambda: api.get("/health").status == 200, 10, "/health to say ok")

    assert new_pid != old_pid
    assert all((status, code) in {(200, None), (500, -1000), (503, -1008)} for status, code, _ in replies), replies
    assert max(elapsed for _, _, elapsed in replies) < timeout_s + SLACK_S, replies
    assert after.status == 200 and after.body["status"] == "NEW", after.body
    assert depth.status == 200
    assert health
    assert re.search(r"event=child_exit role=shard index=1 ", ex.log_text())


def test_full_ring_answers_503_with_retry_after_and_loses_no_acknowledged_order(exchange_factory):
    ex = exchange_factory(engine={"shards": 1, "ring_bytes": 4096}, rest={"workers": 2, "answer_timeout_ms": 20000})
    api = Api(ex.rest_url, ex.admin_token)
    user = api.new_user()
    shard_pid = ex.pids("shard")[0]
    flood = 150  # a 4 KiB command ring holds about 39 orders, one ring per worker

    async def place(session, i):
        params = _order("AAPL", f"{10 + i / 100:.2f}", newClientOrderId=f"flood-{i}")
        return await async_signed(session, ex.rest_url, "POST", "/api/v3/order", user, **params)

    async def scenario():
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=flood)) as session:
            os.kill(shard_pid, signal.SIGSTOP)
            try:
                tasks = [asyncio.ensure_future(place(session, i)) for i in range(flood)]
                done, _ = await asyncio.wait(tasks, timeout=3)
                early = [t.result() for t in done]
            finally:
                os.kill(shard_pid, signal.SIGCONT)
            return early, await asyncio.wait_for(asyncio.gather(*tasks), 30)

    early, replies = asyncio.run(scenario())
    acked = {r.body["clientOrderId"] for r in replies if r.status == 200}
    busy = [r for r in replies if r.status != 200]
    open_ids = {o["clientOrderId"] for o in api.signed("GET", "/api/v3/openOrders", user, symbol="AAPL").body}

    assert early, "no request was answered while the shard was stopped"
    assert all((r.status, r.code) == (503, -1008) for r in early), [(r.status, r.body) for r in early][:3]
    assert busy and all((r.status, r.code) == (503, -1008) for r in busy), [(r.status, r.body) for r in busy][:3]
    assert all(r.headers.get("retry-after") for r in busy)
    assert acked and open_ids == acked  # every acknowledged order rests; nothing answered 503 was accepted


def _raw_request_then_hang_up(rest_url: str, query: str, headers: dict[str, str]) -> None:
    url = urlsplit(rest_url)
    lines = [f"POST /api/v3/order?{query} HTTP/1.1", f"Host: {url.netloc}", "Content-Length: 0"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        time.sleep(0.2)  # the request is in the engine client's table now; the client goes away


def test_clients_that_hang_up_mid_request_leave_no_pending_entry(exchange_factory):
    ex = exchange_factory(engine={"shards": 1}, rest={"workers": 1, "answer_timeout_ms": 500})
    api = Api(ex.rest_url, ex.admin_token)
    user = api.new_user()
    shard_pid = ex.pids("shard")[0]

    os.kill(shard_pid, signal.SIGSTOP)
    try:
        for i in range(3):
            query, _, headers = signed_parts(user, _order("AAPL", "5", newClientOrderId=f"gone-{i}"))
            _raw_request_then_hang_up(ex.rest_url, query, headers)
        time.sleep(1.0)  # past the answer timeout: their entries expired
    finally:
        os.kill(shard_pid, signal.SIGCONT)
    query, _, headers = signed_parts(user, _order("AAPL", "6", newClientOrderId="stays"))
    _raw_request_then_hang_up(ex.rest_url, query, headers)  # answered in time, though nobody listens
    alive = _wait_for(lambda: api.signed("POST", "/api/v3/order", user, **_order("AAPL", "7")).status == 200, 10,
                      "an order to be accepted after SIGCONT")  # fmt: skip
    status = ex.stop()
    stop_line = next(line for line in ex.log_text().splitlines() if "event=ingress_stop" in line)
    stats = dict(part.split("=", 1) for part in stop_line.split() if "=" in part)

    assert alive and status == 0
    assert stats["pending"] == "0"
    assert int(stats["timeouts"]) >= 3  # the three sent to the stopped shard (the fourth, if the box is slow)
    assert stats["late_answers"] == stats["timeouts"]  # each timed-out request's answer came, and was dropped
