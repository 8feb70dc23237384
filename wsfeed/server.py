"""The WebSocket side of one wsfeed process: paths, control messages, private connections.

Paths (API.md, "WebSocket feed"):

- ``/ws`` opens a raw connection with no stream; ``/ws/<stream>`` with one
  public stream; ``/ws/<listenKey>`` the private stream of the key's user;
- ``/stream?streams=<a>/<b>`` opens several public streams, every message
  wrapped as ``{"stream": <name>, "data": <payload>}``.

A path that is none of these, an unknown stream or an invalid listenKey is
refused during the handshake with HTTP 400 (404 for an unknown path) and a
text body naming the offending value. More than ``MAX_STREAMS`` streams: 400.

Control messages (text frames): ``SUBSCRIBE``/``UNSUBSCRIBE`` with ``params``
(a non-empty list of stream names) answer ``{"result": null, "id"}``;
``LIST_SUBSCRIPTIONS`` answers ``{"result": [names, sorted], "id"}``. Whatever
is wrong with a message (not JSON, not an object, unknown method or property,
bad params, bad id, unknown stream, more than ``MAX_STREAMS`` streams, a binary
frame) answers ``{"error": {"code": 2, "msg": <what, naming the value>}, "id":
<id or null>}`` and the connection stays open. Other answers:

- a frame over ``MAX_MESSAGE_BYTES``: websockets closes with 1009 (too big);
- a text frame that is not UTF-8: 1007; a frame breaking the protocol (say,
  unmasked): 1002; bytes that are not an HTTP handshake: HTTP 400, no connection;
- more than ``CONTROL_BURST`` messages at once, or a sustained rate above
  ``CONTROL_RATE`` per second: closed with 1008 ``too many messages``;
- pings are answered by websockets (a ping flood costs one pong each);
- the server pings every ``PING_INTERVAL_S`` and closes (1011) a connection
  whose pong has not come ``PING_TIMEOUT_S`` after its ping;
- a client too slow for its queue: 1008 ``slow consumer`` (``wsfeed.hub``);
- a listenKey deleted (``DELETE /api/v3/userDataStream``: at once, through
  Redis pub/sub) or expired (checked every ``LISTEN_KEY_CHECK_S``): the
  connection gets ``{"e": "listenKeyExpired", "E", "listenKey"}`` and is
  closed with 1000.

This module never blocks the loop on a client and never writes to Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from wsfeed import listenkeys
from wsfeed.hub import Client, Hub
from wsfeed.names import StreamNames

log = logging.getLogger("wsfeed.server")

MAX_STREAMS = 1024
MAX_MESSAGE_BYTES = 65536
CONTROL_RATE = 10.0  # control messages per second, sustained
CONTROL_BURST = 50  # at once
PING_INTERVAL_S = 20
PING_TIMEOUT_S = 60
MAX_QUEUE = 2048  # messages waiting for one client before it is a slow consumer
WRITE_LIMIT = 256 * 1024  # transport buffer above which a client's messages queue
LISTEN_KEY_CHECK_S = 1.0
_ALLOWED = frozenset(("method", "params", "id"))


def error(rid: Any, msg: str) -> bytes:
    return orjson.dumps({"error": {"code": 2, "msg": msg}, "id": rid})


class Plan:
    """What a handshake asked for: the wrapping, the public streams, the private user."""

    __slots__ = ("combined", "streams", "user_id", "listen_key")

    def __init__(self, combined: bool, streams: list[str], user_id: int | None = None, listen_key: str = "") -> None:
        self.combined = combined
        self.streams = streams
        self.user_id = user_id
        self.listen_key = listen_key


class Server:
    """Handshake check (``process_request``) and connection handler (``handler``) of one process."""

    def __init__(self, hub: Hub, names: StreamNames, redis: Any, *, max_queue: int = MAX_QUEUE) -> None:
        self.hub = hub
        self.names = names
        self.redis = redis
        self.max_queue = max_queue
        self._plans: weakref.WeakKeyDictionary[ServerConnection, Plan] = weakref.WeakKeyDictionary()

    # --- handshake -----------------------------------------------------------------

    async def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        path = parts.path
        if path in ("/ws", "/ws/"):
            plan = Plan(False, [])
        elif path.startswith("/ws/"):
            name = path[4:]
            stream = self.names.canonical(name)
            if stream is not None:
                plan = Plan(False, [stream])
            elif listenkeys.well_formed(name):
                try:
                    user_id = await listenkeys.owner(self.redis, name)
                except Exception as exc:  # Redis down: the client may retry
                    log.warning("listenKey lookup failed: %r", exc)
                    return connection.respond(503, "listenKey store unavailable, retry later\n")
                if user_id is None:
                    return connection.respond(400, f"listenKey {name[:8]}... does not exist or has expired\n")
                plan = Plan(False, [], user_id, name)
            else:
                return connection.respond(400, f"invalid stream name {name[:80]!r}\n")
        elif path == "/stream":
            query = parse_qs(parts.query, keep_blank_values=True)
            wanted = "/".join(query.get("streams", []))
            if not wanted:
                return connection.respond(400, "parameter 'streams' is missing or empty\n")
            streams: list[str] = []
            for name in wanted.split("/"):
                stream = self.names.canonical(name)
                if stream is None:
                    return connection.respond(400, f"invalid stream name {name[:80]!r}\n")
                if stream not in streams:
                    streams.append(stream)
            if len(streams) > MAX_STREAMS:
                return connection.respond(400, f"{len(streams)} streams requested, at most {MAX_STREAMS}\n")
            plan = Plan(True, streams)
        else:
            return connection.respond(404, f"no such path {path[:80]!r}: use /ws, /ws/<stream> or /stream?streams=\n")
        self._plans[connection] = plan
        return None

    # --- one connection ------------------------------------------------------------

    async def handler(self, ws: ServerConnection) -> None:
        plan = self._plans.pop(ws, None)
        if plan is None:  # pragma: no cover - process_request always sets it
            return
        hub = self.hub
        client = Client(hub, ws, combined=plan.combined, max_queue=self.max_queue)
        hub.add(client)
        for stream in plan.streams:
            hub.subscribe(client, stream)
        if plan.user_id is not None:
            hub.attach_user(client, plan.user_id, plan.listen_key)
        client.start()
        tokens = float(CONTROL_BURST)
        last = time.monotonic()
        try:
            async for message in ws:
                if client.closed:  # closing: keep reading (and dropping) so the close handshake can finish
                    continue
                now = time.monotonic()
                tokens = min(float(CONTROL_BURST), tokens + (now - last) * CONTROL_RATE)
                last = now
                if tokens < 1.0:
                    client.close_soon(1008, "too many messages")
                    continue
                tokens -= 1.0
                if isinstance(message, bytes):
                    client.send(error(None, "binary frames are not accepted: send JSON text frames"))
                else:
                    client.send(self.control(client, message))
        except ConnectionClosed:
            pass
        finally:
            client.stop()
            hub.forget(client)

    def control(self, client: Client, text: str) -> bytes:
        """The answer to one control message."""
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return error(None, f"invalid JSON: {exc}")
        if type(msg) is not dict:
            return error(None, f"a request must be a JSON object, got {type(msg).__name__}")
        rid = msg.get("id")
        if rid is not None and not (
            (type(rid) is int and 0 <= rid < 2**63) or (type(rid) is str and 0 < len(rid) <= 64)
        ):
            return error(None, f"invalid id {str(rid)[:80]!r}: an unsigned integer or a string of 1 to 64 characters")
        for key in msg:
            if key not in _ALLOWED:
                return error(rid, f"unknown property {key[:40]!r}")
        method = msg.get("method")
        params = msg.get("params")
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if type(params) is not list or not params:
                return error(rid, f"{method} needs 'params': a non-empty list of stream names")
            streams = []
            for name in params:
                stream = self.names.canonical(name)
                if stream is None:
                    return error(rid, f"invalid stream name {str(name)[:80]!r}")
                streams.append(stream)
            hub = self.hub
            if method == "SUBSCRIBE":
                total = len(client.streams | set(streams))
                if total > MAX_STREAMS:
                    return error(rid, f"{total} streams on this connection, at most {MAX_STREAMS}")
                for stream in streams:
                    hub.subscribe(client, stream)
            else:
                for stream in streams:
                    hub.unsubscribe(client, stream)
            return orjson.dumps({"result": None, "id": rid})
        if method == "LIST_SUBSCRIPTIONS":
            if params not in (None, []):
                return error(rid, "LIST_SUBSCRIPTIONS takes no params")
            return orjson.dumps({"result": sorted(client.streams), "id": rid})
        if method is None:
            return error(rid, "property 'method' is missing")
        return error(rid, f"unknown method {str(method)[:40]!r}: SUBSCRIBE, UNSUBSCRIBE or LIST_SUBSCRIPTIONS")

    # --- listenKey upkeep ----------------------------------------------------------

    def expire_key(self, listen_key: str, why: str) -> None:
        for client in self.hub.listen_keys().get(listen_key, []):
            now = time.time_ns() // 1_000_000
            client.send(orjson.dumps({"e": "listenKeyExpired", "E": now, "listenKey": listen_key}))
            client.close_soon(1000, f"listenKey {why}")

    async def check_listen_keys(self, stop: asyncio.Event) -> None:
        """Close the private connections whose listenKey expired (every ``LISTEN_KEY_CHECK_S``)."""
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), LISTEN_KEY_CHECK_S)
            keys = list(self.hub.listen_keys())
            if not keys:
                continue
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for key in keys:
                        pipe.exists(listenkeys.key_of(key))
                    found = await pipe.execute()
            except Exception as exc:  # Redis down: keep the connections, look again later
                log.warning("listenKey check failed: %r", exc)
                continue
            for key, exists in zip(keys, found, strict=True):
                if not exists:
                    self.expire_key(key, "expired")

    async def follow_closed_keys(self, stop: asyncio.Event) -> None:
        """Close private connections at once when their listenKey is deleted (Redis pub/sub)."""
        delay = 0.1
        while not stop.is_set():
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(listenkeys.CLOSED_CHANNEL)
                delay = 0.1
                while not stop.is_set():
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
                    if msg is not None and msg.get("type") == "message":
                        data = msg["data"]
                        self.expire_key(data.decode() if isinstance(data, bytes) else str(data), "closed")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("listenKey channel lost: %r; retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
