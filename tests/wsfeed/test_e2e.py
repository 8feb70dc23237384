"""wsfeed inside a running exchange (``exchange up``): the launcher's role, depth sync, private order updates."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
from decimal import Decimal
from typing import Any

from websockets.exceptions import ConnectionClosed

from tests.e2e.api import Api, User
from tests.wsfeed.harness import recv_json, request, ws_connect

ORDERS = 400
MID = 10000  # ticks of 0.01


def test_exchange_up_runs_the_wsfeed_processes_on_one_socket(exchange_factory):
    ex = exchange_factory(wsfeed={"processes": 2}, rest={"workers": 1})

    async def scenario():
        answers = []
        for i in range(6):  # the kernel spreads connections over both processes; each must answer
            async with ws_connect(f"{ex.ws_url}/ws/aapl@trade") as ws:
                answers.append(await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": i}))
        return answers

    answers = asyncio.run(scenario())

    assert ex.ws_url.startswith("ws://127.0.0.1:")
    assert sorted(ex.pids("wsfeed")) == [0, 1]
    assert answers == [{"result": ["aapl@trade"], "id": i} for i in range(6)]
    assert "WebSocket" in ex.log_text()


def _order_flow(api: Api, users: list[User], count: int, seed: int) -> None:
    """Limit orders around the mid (some crossing), IOCs, and cancels, from several users."""
    rng = random.Random(seed)
    open_orders: list[tuple[User, int]] = []
    for _ in range(count):
        user = rng.choice(users)
        roll = rng.random()
        if roll < 0.2 and open_orders:
            owner, order_id = open_orders.pop(rng.randrange(len(open_orders)))
            api.signed("DELETE", "/api/v3/order", owner, symbol="AAPL", orderId=order_id)
            continue
        side = rng.choice(["BUY", "SELL"])
        offset = rng.randint(-5, 20)  # negative offsets cross
        ticks = MID - offset if side == "BUY" else MID + offset
        tif = "IOC" if roll > 0.9 else "GTC"
        reply = api.signed(
            "POST", "/api/v3/order", user, symbol="AAPL", side=side, type="LIMIT", timeInForce=tif,
            price=str(Decimal(ticks) / 100), quantity=str(rng.randint(1, 30)), newOrderRespType="RESULT",
        )  # fmt: skip
        assert reply.status == 200, reply
        if reply.body["status"] in ("NEW", "PARTIALLY_FILLED"):
            open_orders.append((user, reply.body["orderId"]))


async def follow_depth(ws_url: str, api: Api, users: list[User], orders: int, seed: int) -> tuple:
    """Binance's procedure while ``orders`` flow: buffer, snapshot, drop, apply; returns the book and REST's."""
    async with ws_connect(f"{ws_url}/ws/aapl@depth") as ws:
        await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1})
        buffered: list[dict] = []
        flow = threading.Thread(target=_order_flow, args=(api, users, orders, seed))
        flow.start()
        # 1. buffer events; 2. fetch the snapshot while orders keep flowing
        while len(buffered) < 20:
            buffered.append(await recv_json(ws, 10))
        snapshot = (await asyncio.to_thread(api.get, "/api/v3/depth", symbol="AAPL", limit=5000)).body
        book = {"b": {p: q for p, q in snapshot["bids"]}, "a": {p: q for p, q in snapshot["asks"]}}
        last = snapshot["lastUpdateId"]
        # 3. drop what the snapshot holds; the first kept event must straddle it
        kept = [e for e in buffered if e["u"] > last]
        while not kept:
            event = await recv_json(ws, 10)
            if event["u"] > last:
                kept.append(event)
        assert kept[0]["U"] <= last + 1 <= kept[0]["u"], (kept[0], last)
        # 4. apply, checking the chain, until the flow is over and the book has caught up
        prev = None
        applied = 0
        while True:
            applied += len(kept)
            for event in kept:
                assert prev is None or event["U"] == prev + 1, (event, prev)
                prev = event["u"]
                for side in ("b", "a"):
                    for price, qty in event[side]:
                        if Decimal(qty) == 0:
                            book[side].pop(price, None)
                        else:
                            book[side][price] = qty
            kept = []
            if not flow.is_alive():
                final = (await asyncio.to_thread(api.get, "/api/v3/depth", symbol="AAPL", limit=5000)).body
                if final["lastUpdateId"] == prev:
                    return book, final, prev, applied, last
            try:
                kept.append(await recv_json(ws, 1.0))
            except TimeoutError:
                pass


def assert_same_book(book: dict, final: dict) -> None:
    assert final["bids"] and final["asks"]
    assert sorted(book["b"].items(), key=lambda x: -Decimal(x[0])) == [tuple(x) for x in final["bids"]]
    assert sorted(book["a"].items(), key=lambda x: Decimal(x[0])) == [tuple(x) for x in final["asks"]]


def test_depth_sync_following_binance_procedure_holds_the_engine_book(exchange_factory):
    ex = exchange_factory(rest={"workers": 1})
    api = Api(ex.rest_url, ex.admin_token)
    users = [api.new_user() for _ in range(3)]
    _order_flow(api, users, 50, seed=1)  # a book exists before the client connects

    book, final, last_seen, applied, snapshot_id = asyncio.run(follow_depth(ex.ws_url, api, users, ORDERS, 2))

    assert final["lastUpdateId"] == last_seen
    assert last_seen - snapshot_id >= 100  # many updates arrived after the snapshot (merged per entry: fewer events)
    assert 1 <= applied <= last_seen - snapshot_id
    assert_same_book(book, final)


def test_after_a_wsfeed_restart_clients_resync(exchange_factory):
    ex = exchange_factory(rest={"workers": 1})
    api = Api(ex.rest_url, ex.admin_token)
    users = [api.new_user() for _ in range(2)]
    _order_flow(api, users, 100, seed=3)
    old_pid = ex.pids("wsfeed")[0]

    async def cut() -> int | None:
        async with ws_connect(f"{ex.ws_url}/ws/aapl@depth") as ws:
            await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1})
            os.kill(old_pid, signal.SIGKILL)
            try:
                await recv_json(ws, 10)
            except ConnectionClosed as exc:
                return exc.rcvd.code if exc.rcvd else None
        return 0

    closed = asyncio.run(cut())
    deadline = time.monotonic() + 30
    while ex.pids("wsfeed").get(0) in (None, old_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    book, final, last_seen, _, _ = asyncio.run(follow_depth(ex.ws_url, api, users, 150, 4))

    assert closed is None  # the connection dropped without a close frame: the client knows to resync
    assert ex.pids("wsfeed")[0] != old_pid
    assert final["lastUpdateId"] == last_seen
    assert_same_book(book, final)


def test_private_streams_carry_each_users_orders_only(exchange_factory):
    ex = exchange_factory(rest={"workers": 1})
    api = Api(ex.rest_url, ex.admin_token)
    alice, bob = api.new_user(), api.new_user()

    def listen_key(user: User) -> str:
        reply = api.request("POST", "/api/v3/userDataStream", headers={"X-MBX-APIKEY": user.api_key})
        assert reply.status == 200, reply
        return reply.body["listenKey"]

    key_a, key_b = listen_key(alice), listen_key(bob)

    def place(user: User, side: str, qty: str) -> Any:
        return api.signed(
            "POST", "/api/v3/order", user, symbol="MSFT", side=side, type="LIMIT", timeInForce="GTC",
            price="50.00", quantity=qty,
        ).body  # fmt: skip

    async def scenario():
        async with ws_connect(f"{ex.ws_url}/ws/{key_a}") as a, ws_connect(f"{ex.ws_url}/ws/{key_b}") as b:
            await request(a, {"method": "LIST_SUBSCRIPTIONS", "id": 1})
            await request(b, {"method": "LIST_SUBSCRIPTIONS", "id": 1})
            maker = await asyncio.to_thread(place, alice, "BUY", "10")
            taker = await asyncio.to_thread(place, bob, "SELL", "4")
            got_a = [await recv_json(a) for _ in range(2)]
            got_b = [await recv_json(b) for _ in range(2)]
            quiet = []
            for ws in (a, b):
                try:
                    quiet.append(await recv_json(ws, 0.5))
                except TimeoutError:
                    pass
            return maker, taker, got_a, got_b, quiet

    maker, taker, got_a, got_b, quiet = asyncio.run(scenario())

    assert quiet == []  # nothing else, in particular nothing of the other user

    assert [(r["i"], r["x"], r["X"], r["z"]) for r in got_a] == [
        (maker["orderId"], "NEW", "NEW", "0"),
        (maker["orderId"], "TRADE", "PARTIALLY_FILLED", "4"),
    ]
    assert [(r["i"], r["x"], r["X"], r["z"]) for r in got_b] == [
        (taker["orderId"], "NEW", "NEW", "0"),
        (taker["orderId"], "TRADE", "FILLED", "4"),
    ]
