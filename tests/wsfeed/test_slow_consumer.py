"""A client that stops reading is closed with 1008 "slow consumer"; a fast one on the same stream misses nothing."""

from __future__ import annotations

import asyncio
import socket

from websockets.exceptions import ConnectionClosed

from tests.wsfeed.harness import recv_json, request, ws_connect

ENTRIES = 60
TRADES_PER_ENTRY = 1000


def test_slow_reader_is_closed_with_1008_and_fast_reader_misses_nothing(feed):
    sid, shard = feed.symbol_id("S03"), feed.shard_of("S03")
    j = feed.journal
    url = f"{feed.url}/ws/s03@trade"

    async def scenario():
        # arrange: the slow client's socket has a small receive buffer and its library queue holds one message
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", feed.process.port))
        async with ws_connect(url) as fast, ws_connect(url, sock=raw, max_queue=1) as slow:
            await request(fast, {"method": "LIST_SUBSCRIPTIONS", "id": 1})
            await request(slow, {"method": "LIST_SUBSCRIPTIONS", "id": 1})
            received: list[int] = []

            async def read_fast():
                while len(received) < ENTRIES * TRADES_PER_ENTRY:
                    received.append((await recv_json(fast, 20))["t"])

            reader = asyncio.create_task(read_fast())
            # act: trades at the pace of the fast reader (it keeps up by definition), which the stalled one cannot take
            first_id = j.trade_id.get(sid, 0) + 1
            for n in range(1, ENTRIES + 1):
                j.write(shard, [j.trade(shard, sid, 100, 1) for _ in range(TRADES_PER_ENTRY)])
                while len(received) < n * TRADES_PER_ENTRY and not reader.done():
                    await asyncio.sleep(0.005)
            await reader
            slow_count = 0
            try:
                while True:
                    await recv_json(slow, 20)
                    slow_count += 1
            except ConnectionClosed as exc:
                closed = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else None
            still = await request(fast, {"method": "LIST_SUBSCRIPTIONS", "id": 2})
        return first_id, received, slow_count, closed, still

    first_id, received, slow_count, closed, still = asyncio.run(scenario())

    assert received == list(range(first_id, first_id + ENTRIES * TRADES_PER_ENTRY))
    assert closed == (1008, "slow consumer")
    assert slow_count < ENTRIES * TRADES_PER_ENTRY
    assert still == {"result": ["s03@trade"], "id": 2}
