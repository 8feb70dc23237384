"""The private stream /ws/<listenKey>: executionReports of the key's user only; a deleted or expired key closes it."""

from __future__ import annotations

import asyncio

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from shards.protocol import ExpireReason, OrderAmended, OrderCanceled, OrderExpired
from tests.wsfeed.harness import recv_json, request, ws_connect
from wsfeed import listenkeys

REPORT_KEYS = set("e E s c S o f q p x X r i l z L n N T t w m O Z Y".split())


def make_key(feed, user_id: int, ttl_ms: int = 3_600_000) -> str:
    key = listenkeys.new_listen_key()
    feed.journal.client.set(listenkeys.key_of(key), str(user_id), px=ttl_ms)
    return key


def test_each_user_gets_only_its_own_execution_reports(feed):
    sid, shard = feed.symbol_id("S04"), feed.shard_of("S04")
    j = feed.journal
    key_a, key_b = make_key(feed, 11), make_key(feed, 12)

    async def scenario():
        async with ws_connect(f"{feed.url}/ws/{key_a}") as a, ws_connect(f"{feed.url}/ws/{key_b}") as b:
            await request(a, {"method": "LIST_SUBSCRIPTIONS", "id": 1})
            await request(b, {"method": "LIST_SUBSCRIPTIONS", "id": 1})
            buy = j.accepted(shard, sid, 11, 1, 100, 10, coid="a-buy")
            j.write(shard, [buy, j.depth(shard, sid, bids=[(100, 10)])])
            sell = j.accepted(shard, sid, 12, 2, 100, 4, coid="b-sell")
            trade = j.trade(
                shard, sid, 100, 4, maker_order_id=buy.order_id, taker_order_id=sell.order_id, maker_user_id=11,
                taker_user_id=12, taker_side=2,
            )  # fmt: skip
            j.write(shard, [sell, trade, j.depth(shard, sid, bids=[(100, 6)])])
            cancel = OrderCanceled(j.next_seq(shard), j.ts(), sid, buy.order_id, 11, 6)
            j.write(shard, [cancel, j.depth(shard, sid, bids=[(100, 0)])])
            got_a = [await recv_json(a) for _ in range(3)]
            got_b = [await recv_json(b) for _ in range(2)]
            with pytest.raises(TimeoutError):
                await recv_json(b, 0.5)  # nothing of user 11's reaches user 12
        return buy, sell, trade, got_a, got_b

    buy, sell, trade, got_a, got_b = asyncio.run(scenario())

    assert all(set(r) == REPORT_KEYS and r["e"] == "executionReport" for r in got_a + got_b)
    assert [(r["i"], r["x"], r["X"], r["z"], r["m"]) for r in got_a] == [
        (buy.order_id, "NEW", "NEW", "0", False),
        (buy.order_id, "TRADE", "PARTIALLY_FILLED", "4", True),
        (buy.order_id, "CANCELED", "CANCELED", "4", False),
    ]
    assert [(r["i"], r["x"], r["X"], r["z"], r["m"]) for r in got_b] == [
        (sell.order_id, "NEW", "NEW", "0", False),
        (sell.order_id, "TRADE", "FILLED", "4", False),
    ]
    fill = got_a[1]
    assert (fill["s"], fill["c"], fill["S"], fill["o"], fill["f"], fill["q"], fill["p"]) == (
        "S04", "a-buy", "BUY", "LIMIT", "GTC", "10", "1.00",
    )  # fmt: skip
    assert (fill["l"], fill["L"], fill["t"], fill["T"], fill["w"], fill["O"], fill["Z"], fill["Y"]) == (
        "4", "1.00", trade.trade_id, trade.ts, True, buy.ts, "4.00", "4.00",
    )  # fmt: skip
    assert (fill["n"], fill["N"], fill["r"]) == ("0", None, "NONE")


def test_deleted_listen_key_closes_the_stream(feed):
    key = make_key(feed, 21)

    async def scenario():
        async with ws_connect(f"{feed.url}/ws/{key}") as ws:
            await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1})
            feed.journal.client.delete(listenkeys.key_of(key))
            feed.journal.client.publish(listenkeys.CLOSED_CHANNEL, key)
            event = await recv_json(ws)
            try:
                await recv_json(ws)
                closed = None
            except ConnectionClosed as exc:
                closed = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else None
        return event, closed

    event, closed = asyncio.run(scenario())

    assert event["e"] == "listenKeyExpired" and event["listenKey"] == key
    assert closed == (1000, "listenKey closed")


def test_expired_listen_key_closes_the_stream(feed):
    key = make_key(feed, 22, ttl_ms=1500)

    async def scenario():
        async with ws_connect(f"{feed.url}/ws/{key}") as ws:
            event = await recv_json(ws, 10)
            try:
                await recv_json(ws, 10)
                closed = None
            except ConnectionClosed as exc:
                closed = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else None
        return event, closed

    event, closed = asyncio.run(scenario())

    assert event["e"] == "listenKeyExpired"
    assert closed == (1000, "listenKey expired")


def test_unknown_listen_key_is_refused(feed):
    key = listenkeys.new_listen_key()

    async def scenario():
        try:
            async with ws_connect(f"{feed.url}/ws/{key}"):
                return None
        except InvalidStatus as exc:
            return exc.response.status_code, exc.response.body.decode()

    status, body = asyncio.run(scenario())

    assert status == 400 and "does not exist" in body


def test_amend_expiry_self_trade_prevention_and_market_by_quote_reports(feed):
    sid, shard = feed.symbol_id("S06"), feed.shard_of("S06")
    j = feed.journal
    key = make_key(feed, 41)

    async def scenario():
        async with ws_connect(f"{feed.url}/ws/{key}") as ws:
            await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1})
            rest = j.accepted(shard, sid, 41, 2, 200, 10, coid="rest")  # sell 10 @ 2.00
            j.write(shard, [rest])
            j.write(shard, [OrderAmended(j.next_seq(shard), j.ts(), sid, rest.order_id, 41, 6)])
            # a MARKET buy by quote amount (qty 0) that takes 3 and stops for lack of budget: FILLED
            mkt = j.accepted(shard, sid, 42, 1, 0, 0, coid="mkt", order_type=2, quote_qty=600)
            fill = j.trade(
                shard, sid, 200, 3, maker_order_id=rest.order_id, taker_order_id=mkt.order_id, maker_user_id=41,
                taker_user_id=42, taker_side=1,
            )  # fmt: skip
            j.write(shard, [mkt, fill])
            # the owner's own IOC buy meets its resting sell: self-trade prevention expires the maker, then the IOC
            ioc = j.accepted(shard, sid, 41, 1, 200, 1, coid="ioc", tif=2)
            stp = OrderExpired(j.next_seq(shard), j.ts(), sid, rest.order_id, 41, 3, int(ExpireReason.STP_MAKER))
            end = OrderExpired(j.next_seq(shard), j.ts(), sid, ioc.order_id, 41, 1, int(ExpireReason.IOC))
            j.write(shard, [ioc, stp, end])
            return [await recv_json(ws) for _ in range(6)]

    got = asyncio.run(scenario())

    assert [(r["c"], r["x"], r["X"], r["q"], r["z"]) for r in got] == [
        ("rest", "NEW", "NEW", "10", "0"),
        ("rest", "REPLACED", "NEW", "6", "0"),
        ("rest", "TRADE", "PARTIALLY_FILLED", "6", "3"),
        ("ioc", "NEW", "NEW", "1", "0"),
        ("rest", "TRADE_PREVENTION", "EXPIRED_IN_MATCH", "6", "3"),
        ("ioc", "EXPIRED", "EXPIRED", "1", "0"),
    ]
    assert (got[3]["f"], got[2]["m"], got[2]["Z"]) == ("IOC", True, "6.00")


def test_market_by_quote_taker_is_filled_unless_an_expiry_follows(feed):
    sid, shard = feed.symbol_id("S07"), feed.shard_of("S07")
    j = feed.journal
    key = make_key(feed, 52)

    async def scenario():
        async with ws_connect(f"{feed.url}/ws/{key}") as ws:
            await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1})
            reports = []
            for expires in (False, True):
                maker = j.accepted(shard, sid, 51, 2, 100, 5)
                taker = j.accepted(shard, sid, 52, 1, 0, 0, coid=f"q{expires}", order_type=2, quote_qty=300)
                fill = j.trade(
                    shard, sid, 100, 3, maker_order_id=maker.order_id, taker_order_id=taker.order_id,
                    maker_user_id=51, taker_user_id=52, taker_side=1,
                )  # fmt: skip
                events = [maker, taker, fill]
                if expires:
                    events.append(
                        OrderExpired(j.next_seq(shard), j.ts(), sid, taker.order_id, 52, 0, int(ExpireReason.MARKET))
                    )
                j.write(shard, events)
                reports += [await recv_json(ws) for _ in range(3 if expires else 2)]
            return reports

    got = asyncio.run(scenario())

    assert [(r["c"], r["x"], r["X"], r["z"], r["Z"]) for r in got] == [
        ("qFalse", "NEW", "NEW", "0", "0.00"),
        ("qFalse", "TRADE", "FILLED", "3", "3.00"),
        ("qTrue", "NEW", "NEW", "0", "0.00"),
        ("qTrue", "TRADE", "PARTIALLY_FILLED", "3", "3.00"),
        ("qTrue", "EXPIRED", "EXPIRED", "3", "3.00"),
    ]
    assert got[0]["o"] == "MARKET" and got[0]["w"] is False
