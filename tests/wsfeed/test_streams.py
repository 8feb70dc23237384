"""Public streams end to end: stream entries written to Redis as a shard writes them, read over a real socket.

Each test subscribes first, then writes entries, then checks every field of
the payloads (API.md, "WebSocket feed").
"""

from __future__ import annotations

import asyncio

from redis.connection import parse_url

from tests.wsfeed.harness import recv_json, request, until, ws_connect

TRADE_KEYS = {"e", "E", "s", "t", "p", "q", "T", "m"}
DEPTH_KEYS = {"e", "E", "s", "U", "u", "b", "a"}
BOOK_KEYS = {"u", "s", "b", "B", "a", "A"}
TICKER_KEYS = {"e", "E", "s", "p", "P", "c", "Q", "b", "B", "a", "A", "o", "h", "l", "v", "q", "O", "C", "F", "L", "n"}
KLINE_KEYS = {"t", "T", "s", "i", "o", "c", "h", "l", "v", "n", "x", "q"}


def test_trade_stream_payload(feed):
    sid, shard = feed.symbol_id("AAPL"), feed.shard_of("AAPL")

    async def scenario():
        async with ws_connect(f"{feed.url}/ws/aapl@trade") as ws:
            # arrange: make sure the subscription is in place before writing
            assert await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1}) == {"result": ["aapl@trade"], "id": 1}
            trade = feed.journal.trade(shard, sid, 10125, 7, taker_side=2)
            # act
            feed.journal.write(shard, [trade])
            msg = await recv_json(ws)
        return trade, msg

    trade, msg = asyncio.run(scenario())

    assert set(msg) == TRADE_KEYS
    assert msg["e"] == "trade" and msg["s"] == "AAPL"
    assert (msg["t"], msg["p"], msg["q"], msg["T"], msg["m"]) == (trade.trade_id, "101.25", "7", trade.ts, True)
    assert isinstance(msg["E"], int) and msg["E"] >= trade.ts


def test_depth_streams_chain_and_merge_and_book_ticker(feed):
    sid, shard = feed.symbol_id("MSFT"), feed.shard_of("MSFT")
    j = feed.journal
    streams = "msft@depth/msft@depth@100ms/msft@bookTicker"

    async def scenario():
        got: dict[str, list] = {"msft@depth": [], "msft@depth@100ms": [], "msft@bookTicker": []}
        async with ws_connect(f"{feed.url}/stream?streams={streams}") as ws:
            await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 7})
            first = [j.depth(shard, sid, bids=[(5000, 10)]), j.depth(shard, sid, asks=[(5010, 4)])]
            j.write(shard, first)
            j.write(shard, [j.depth(shard, sid, bids=[(5000, 0), (4990, 3)])])
            while len(got["msft@depth"]) < 2 or sum(m["u"] - m["U"] + 1 for m in got["msft@depth@100ms"]) < 3:
                msg = await recv_json(ws)
                got[msg["stream"]].append(msg["data"])
            await asyncio.sleep(0.3)  # nothing else may arrive for these streams
            while True:
                try:
                    msg = await recv_json(ws, 0.2)
                except TimeoutError:
                    break
                got[msg["stream"]].append(msg["data"])
        return first, got

    first, got = asyncio.run(scenario())

    d1, d2 = got["msft@depth"]
    assert set(d1) == DEPTH_KEYS and d1["e"] == "depthUpdate" and d1["s"] == "MSFT"
    assert (d1["U"], d1["u"]) == (first[0].depth_seq, first[1].depth_seq)  # one entry, merged
    assert d1["b"] == [["50.00", "10"]] and d1["a"] == [["50.10", "4"]]
    assert d2["U"] == d1["u"] + 1 and d2["u"] == d2["U"]
    assert d2["b"] == [["50.00", "0"], ["49.90", "3"]] and d2["a"] == []
    slow = got["msft@depth@100ms"]
    assert slow[0]["U"] == first[0].depth_seq and slow[-1]["u"] == d2["u"]
    assert all(b["U"] == a["u"] + 1 for a, b in zip(slow, slow[1:], strict=False))
    books = got["msft@bookTicker"]
    assert all(set(b) == BOOK_KEYS for b in books)
    assert [(b["b"], b["B"], b["a"], b["A"]) for b in books] == [
        ("50.00", "10", "0.00", "0"),
        ("50.00", "10", "50.10", "4"),
        ("49.90", "3", "50.10", "4"),
    ]
    assert [b["u"] for b in books] == [d1["U"], d1["u"], d2["u"]]


def test_kline_and_ticker_streams(feed):
    sid, shard = feed.symbol_id("S01"), feed.shard_of("S01")
    j = feed.journal

    async def scenario():
        async with ws_connect(f"{feed.url}/ws") as ws:
            reply = await request(
                ws, {"method": "SUBSCRIBE", "params": ["s01@kline_1m", "s01@kline_1M", "s01@ticker"], "id": "k"}
            )
            assert reply == {"result": None, "id": "k"}
            trades = [j.trade(shard, sid, 1000, 2), j.trade(shard, sid, 1200, 1), j.trade(shard, sid, 900, 3)]
            j.write(shard, trades)
            kline_1m = await until(ws, lambda m: m.get("e") == "kline" and m["k"]["i"] == "1m" and m["k"]["n"] == 3)
            kline_month = await until(ws, lambda m: m.get("e") == "kline" and m["k"]["i"] == "1M")
            ticker = await until(ws, lambda m: m.get("e") == "24hrTicker", timeout=5)
        return trades, kline_1m, kline_month, ticker

    trades, k1, km, ticker = asyncio.run(scenario())

    k = k1["k"]
    assert set(k1) == {"e", "E", "s", "k"} and set(k) == KLINE_KEYS and k1["s"] == "S01"
    assert k["t"] % 60000 == 0 and k["T"] == k["t"] + 59999 and k["s"] == "S01" and k["x"] is False
    assert (k["o"], k["h"], k["l"], k["c"]) == ("10.00", "12.00", "9.00", "9.00")
    assert (k["v"], k["n"], k["q"]) == ("6", 3, "59.00")
    assert km["k"]["t"] <= trades[0].ts <= km["k"]["T"]
    assert set(ticker) == TICKER_KEYS and ticker["s"] == "S01"
    assert (ticker["o"], ticker["h"], ticker["l"], ticker["c"], ticker["Q"]) == ("10.00", "12.00", "9.00", "9.00", "3")
    assert (ticker["p"], ticker["P"], ticker["v"], ticker["q"], ticker["n"]) == ("-1.00", "-10.000", "6", "59.00", 3)
    assert (ticker["F"], ticker["L"]) == (trades[0].trade_id, trades[-1].trade_id)
    assert ticker["C"] - ticker["O"] == 86_400_000


def test_nothing_is_sent_for_streams_not_subscribed(feed):
    sid, shard = feed.symbol_id("S02"), feed.shard_of("S02")

    async def scenario():
        async with ws_connect(f"{feed.url}/ws/s02@depth") as ws:
            await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1})
            feed.journal.write(shard, [feed.journal.trade(shard, sid, 100, 1)])
            feed.journal.write(shard, [feed.journal.depth(shard, sid, bids=[(99, 1)])])
            return await recv_json(ws)

    msg = asyncio.run(scenario())

    assert msg["e"] == "depthUpdate"  # the trade before it went to nobody on this connection


def test_redis_connection_loss_costs_nothing_but_delay(feed):
    sid, shard = feed.symbol_id("S05"), feed.shard_of("S05")
    j = feed.journal
    db = parse_url(feed.redis_url)["db"]

    async def scenario():
        async with ws_connect(f"{feed.url}/ws/s05@depth") as ws:
            await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1})
            j.write(shard, [j.depth(shard, sid, bids=[(100, 1)])])
            before = await recv_json(ws)
            # act: drop every connection the feed has to its Redis db, then write while it reconnects
            mine = j.client.client_id()
            killed = 0
            for c in j.client.client_list():
                if int(c["db"]) == db and int(c["id"]) != mine:
                    j.client.client_kill_filter(_id=int(c["id"]))
                    killed += 1
            j.write(shard, [j.depth(shard, sid, bids=[(101, 2)])])
            j.write(shard, [j.depth(shard, sid, asks=[(105, 3)])])
            after = [await recv_json(ws, 10), await recv_json(ws, 10)]
        return killed, before, after

    killed, before, after = asyncio.run(scenario())

    assert killed >= 1
    assert [e["U"] for e in after] == [before["u"] + 1, before["u"] + 2]
    assert (after[0]["b"], after[1]["a"]) == ([["1.01", "2"]], [["1.05", "3"]])
