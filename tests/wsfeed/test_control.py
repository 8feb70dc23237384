"""Control messages, handshake refusals, limits and abuse: each has a defined answer and none stops the process."""

from __future__ import annotations

import asyncio
import socket

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.wsfeed.conftest import SYMBOLS
from tests.wsfeed.harness import recv_json, request, ws_connect
from wsfeed.names import KINDS

BAD_MESSAGES = [
    ("not json", None, "invalid JSON"),
    ("[1, 2]", None, "must be a JSON object"),
    ('{"method": "SUBSCRIBE", "params": ["aapl@trade"], "id": -1}', None, "invalid id"),
    ('{"method": "SUBSCRIBE", "params": ["aapl@trade"], "id": 5, "x": 1}', 5, "unknown property 'x'"),
    ('{"method": "FROB", "id": 6}', 6, "unknown method 'FROB'"),
    ('{"params": [], "id": 7}', 7, "'method' is missing"),
    ('{"method": "SUBSCRIBE", "params": "aapl@trade", "id": 8}', 8, "non-empty list"),
    ('{"method": "SUBSCRIBE", "params": [], "id": 9}', 9, "non-empty list"),
    ('{"method": "SUBSCRIBE", "params": ["aapl@trades"], "id": 10}', 10, "invalid stream name 'aapl@trades'"),
    ('{"method": "SUBSCRIBE", "params": ["zzzz@trade"], "id": 11}', 11, "invalid stream name 'zzzz@trade'"),
    ('{"method": "SUBSCRIBE", "params": [3], "id": 12}', 12, "invalid stream name '3'"),
    ('{"method": "LIST_SUBSCRIPTIONS", "params": ["x"], "id": 13}', 13, "takes no params"),
]


def test_subscribe_unsubscribe_list(feed):
    async def scenario():
        async with ws_connect(f"{feed.url}/ws") as ws:
            answers = [await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1})]
            answers.append(await request(ws, {"method": "SUBSCRIBE", "params": ["AAPL@trade", "msft@depth"], "id": 2}))
            answers.append(await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 3}))
            answers.append(await request(ws, {"method": "UNSUBSCRIBE", "params": ["aapl@trade"], "id": 4}))
            answers.append(await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": "five"}))
            return answers

    answers = asyncio.run(scenario())

    assert answers == [
        {"result": [], "id": 1},
        {"result": None, "id": 2},
        {"result": ["aapl@trade", "msft@depth"], "id": 3},
        {"result": None, "id": 4},
        {"result": ["msft@depth"], "id": "five"},
    ]


@pytest.mark.parametrize(("text", "rid", "fragment"), BAD_MESSAGES)
def test_bad_control_message_answers_code_2_and_connection_stays_open(feed, text, rid, fragment):
    async def scenario():
        async with ws_connect(f"{feed.url}/ws/aapl@depth") as ws:
            answer = await request(ws, text)
            after = await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 99})
            return answer, after

    answer, after = asyncio.run(scenario())

    assert answer["id"] == rid and answer["error"]["code"] == 2
    assert fragment in answer["error"]["msg"]
    assert after == {"result": ["aapl@depth"], "id": 99}


def test_binary_frame_answers_an_error_and_connection_stays_open(feed):
    async def scenario():
        async with ws_connect(f"{feed.url}/ws") as ws:
            answer = await request(ws, b'{"method": "LIST_SUBSCRIPTIONS", "id": 1}')
            after = await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 2})
            return answer, after

    answer, after = asyncio.run(scenario())

    assert answer == {"error": {"code": 2, "msg": "binary frames are not accepted: send JSON text frames"}, "id": None}
    assert after == {"result": [], "id": 2}


def test_at_most_1024_streams_per_connection(feed):
    names = [f"{s.lower()}@{kind}" for s in SYMBOLS for kind in KINDS]
    assert len(names) > 1024

    async def scenario():
        async with ws_connect(f"{feed.url}/ws") as ws:
            ok = await request(ws, {"method": "SUBSCRIBE", "params": names[:1024], "id": 1})
            too_many = await request(ws, {"method": "SUBSCRIBE", "params": names[1024:1025], "id": 2})
            listed = await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 3})
            return ok, too_many, listed

    ok, too_many, listed = asyncio.run(scenario())

    assert ok == {"result": None, "id": 1}
    assert too_many["error"]["code"] == 2 and "1025 streams" in too_many["error"]["msg"]
    assert len(listed["result"]) == 1024


@pytest.mark.parametrize(
    ("path", "status"),
    [("/nowhere", 404), ("/ws/aapl@nothing", 400), ("/stream?streams=", 400), ("/stream?streams=aapl@trade/x", 400)],
)
def test_handshake_refusals(feed, path, status):
    async def scenario():
        try:
            async with ws_connect(feed.url + path):
                return None
        except InvalidStatus as exc:
            return exc.response.status_code

    assert asyncio.run(scenario()) == status


def test_huge_frame_closes_with_1009_and_the_process_serves_on(feed):
    async def scenario():
        async with ws_connect(f"{feed.url}/ws", max_size=None) as ws:
            await ws.send("x" * 200_000)
            try:
                await recv_json(ws)
                code = None
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
        async with ws_connect(f"{feed.url}/ws") as ws2:
            after = await request(ws2, {"method": "LIST_SUBSCRIPTIONS", "id": 1})
        return code, after

    code, after = asyncio.run(scenario())

    assert code == 1009
    assert after == {"result": [], "id": 1}


def test_message_flood_closes_with_1008_others_unaffected(feed):
    async def scenario():
        async with ws_connect(f"{feed.url}/ws") as other, ws_connect(f"{feed.url}/ws") as ws:
            for i in range(300):
                await ws.send(f'{{"method": "LIST_SUBSCRIPTIONS", "id": {i}}}')
            answers = 0
            try:
                while True:
                    await recv_json(ws)
                    answers += 1
            except ConnectionClosed as exc:
                closed = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else None
            after = await request(other, {"method": "LIST_SUBSCRIPTIONS", "id": 1})
        return answers, closed, after

    answers, closed, after = asyncio.run(scenario())

    assert closed == (1008, "too many messages")
    assert 0 < answers < 300
    assert after == {"result": [], "id": 1}


def test_ping_flood_is_answered_and_connection_stays(feed):
    async def scenario():
        async with ws_connect(f"{feed.url}/ws") as ws:
            waiters = [await ws.ping(str(i)) for i in range(500)]
            await asyncio.wait_for(asyncio.gather(*waiters), 10)
            return await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1})

    assert asyncio.run(scenario()) == {"result": [], "id": 1}


def test_garbage_bytes_instead_of_a_handshake_do_not_stop_the_process(feed):
    with socket.create_connection(("127.0.0.1", feed.process.port), timeout=5) as raw:
        raw.sendall(b"\x00\xff garbage that is not HTTP\r\n\r\n")
        raw.recv(1024)

    async def scenario():
        async with ws_connect(f"{feed.url}/ws") as ws:
            return await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1})

    assert asyncio.run(scenario()) == {"result": [], "id": 1}
    assert feed.process.proc.poll() is None


def test_invalid_utf8_text_frame_closes_with_1007(feed):
    async def scenario():
        async with ws_connect(f"{feed.url}/ws") as ws:
            await ws.send(b"\xff\xfe not utf-8", text=True)
            try:
                await recv_json(ws)
                return None
            except ConnectionClosed as exc:
                return exc.rcvd.code if exc.rcvd else None

    assert asyncio.run(scenario()) == 1007
    assert feed.process.proc.poll() is None


def test_malformed_frame_closes_with_1002_and_the_process_serves_on(feed):
    async def scenario():
        async with ws_connect(f"{feed.url}/ws") as ws:
            ws.transport.write(b"\x81\x05hello")  # a client frame without a mask: a protocol error
            try:
                await recv_json(ws)
                code = None
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
        async with ws_connect(f"{feed.url}/ws") as ws2:
            after = await request(ws2, {"method": "LIST_SUBSCRIPTIONS", "id": 1})
        return code, after

    code, after = asyncio.run(scenario())

    assert code == 1002
    assert after == {"result": [], "id": 1}
