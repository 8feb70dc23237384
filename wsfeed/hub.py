"""Fan-out: who is subscribed to what, and how a message reaches each client without waiting on any.

``Hub.publish(stream, data)`` hands ``data`` (a JSON text, bytes) to every
client subscribed to ``stream``; ``publish_user(user_id, data)`` to every
private connection of that user. Neither ever awaits: each ``Client.send``
is synchronous.

A client's path (``Client.send``):

- while its socket keeps up, the frame is written straight to its transport
  (as ``websockets.broadcast`` does: no task switch per message). The frame
  bytes are built once per message for all its clients (``text_frame``)
  rather than once per client by the protocol object: server frames are not
  masked, so every client gets the same bytes. Frames are whole and the loop
  is single-threaded, so they never interleave with the library's own
  control frames (pong, close), which it writes whole as well; nothing is
  written once the connection has left the OPEN state;
- once the transport's buffer passes the connection's high-water mark
  (``write_limit``; websockets then marks the connection ``paused``), further
  messages go to the client's bounded queue and its writer task waits for the
  socket to drain, then writes the queue out in one go;
- a queue that grows past ``max_queue`` messages means the client reads slower
  than the feed: it is closed with 1008 ``slow consumer`` and its queue
  dropped. Nobody else waits for it.

``watch`` (set by ``wsfeed.market``) is told the name of a stream that got
its first subscriber or lost its last, so that the market can cache which of
a symbol's streams anyone listens to. Removing a client from the subscription tables is deferred to the next loop
turn (``call_soon``), so a publish loop never sees its table change under it.
Nothing here touches Redis or parses client messages (``wsfeed.server`` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections import deque
from collections.abc import Callable

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

log = logging.getLogger("wsfeed.hub")

SLOW_CODE = 1008
SLOW_REASON = "slow consumer"
_OPEN = State.OPEN


def text_frame(data: bytes) -> bytes:
    """A whole unmasked, unfragmented server text frame (RFC 6455 section 5.2) holding ``data`` (UTF-8)."""
    n = len(data)
    if n < 126:
        return _HEAD_SMALL[n] + data
    if n < 65536:
        return b"\x81\x7e" + _U16.pack(n) + data
    return b"\x81\x7f" + _U64.pack(n) + data


_HEAD_SMALL = [bytes((0x81, n)) for n in range(126)]
_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")


class Client:
    """One WebSocket connection's outgoing side: direct writes, then a bounded queue and a writer task."""

    __slots__ = (
        "ws", "protocol", "combined", "streams", "user_id", "listen_key", "queue", "max_queue", "blocked",
        "closed", "wake", "writer", "hub", "slow",
    )  # fmt: skip

    def __init__(self, hub: Hub, ws: ServerConnection, *, combined: bool, max_queue: int) -> None:
        self.hub = hub
        self.ws = ws
        self.protocol = ws.protocol
        self.combined = combined  # /stream?streams=: messages wrapped as {"stream","data"}
        self.streams: set[str] = set()
        self.user_id: int | None = None
        self.listen_key: str | None = None
        self.queue: deque[bytes] = deque()
        self.max_queue = max_queue
        self.blocked = False
        self.closed = False
        self.slow = False
        self.wake = asyncio.Event()
        self.writer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.writer = asyncio.get_running_loop().create_task(self._write_loop())

    def send(self, data: bytes) -> None:
        """Queue or write one text message (JSON bytes); never blocks, never raises."""
        self.send_frame(text_frame(data))

    def send_frame(self, frame: bytes) -> None:
        """Queue or write one complete frame (``text_frame``); never blocks, never raises."""
        if self.closed:
            return
        if self.blocked:
            queue = self.queue
            queue.append(frame)
            if len(queue) > self.max_queue:
                self.fail_slow()
            return
        ws = self.ws
        try:
            if self.protocol.state is not _OPEN:
                return
            ws.transport.write(frame)
        except Exception as exc:  # a broken transport: the handler sees the close
            log.debug("write failed: %r", exc)
            self.closed = True
            return
        if ws.paused:
            self.blocked = True
            self.wake.set()

    def fail_slow(self) -> None:
        """Close with 1008 ``slow consumer``; drop what was queued."""
        if self.closed:
            return
        self.closed = True
        self.slow = True
        self.hub.slow_closed += 1
        log.warning(
            "slow consumer closed (1008): %d messages queued, streams %s",
            len(self.queue),
            ",".join(sorted(self.streams))[:200] or "private",
        )
        self.queue.clear()
        self.hub.forget_soon(self)
        asyncio.get_running_loop().create_task(self._close(SLOW_CODE, SLOW_REASON))

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close(code, reason)

    def close_soon(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.queue.clear()
            self.hub.forget_soon(self)
            asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _write_loop(self) -> None:
        ws = self.ws
        protocol = self.protocol
        queue = self.queue
        while not self.closed:
            await self.wake.wait()
            self.wake.clear()
            while self.blocked and not self.closed:
                await ws.drain()
                if self.closed or protocol.state is not _OPEN:
                    return
                try:
                    frames = b"".join(queue)
                    queue.clear()
                    ws.transport.write(frames)
                except Exception as exc:
                    log.debug("write failed: %r", exc)
                    self.closed = True
                    return
                if not ws.paused:
                    self.blocked = False

    def stop(self) -> None:
        """The connection ended: stop the writer."""
        self.closed = True
        self.queue.clear()
        if self.writer is not None:
            self.writer.cancel()


class Hub:
    """Subscriptions of every client of this process, by stream name and by user."""

    def __init__(self) -> None:
        self.subs: dict[str, dict[Client, None]] = {}
        self.users: dict[int, dict[Client, None]] = {}
        self.clients: dict[Client, None] = {}
        self.delivered = 0
        self.slow_closed = 0
        self.watch: Callable[[str], None] | None = None  # told of a stream that got its first or lost its last client

    def has(self, stream: str) -> bool:
        return stream in self.subs

    def add(self, client: Client) -> None:
        self.clients[client] = None

    def subscribe(self, client: Client, stream: str) -> None:
        client.streams.add(stream)
        table = self.subs.get(stream)
        if table is None:
            table = self.subs[stream] = {}
            table[client] = None
            if self.watch is not None:
                self.watch(stream)
        else:
            table[client] = None

    def unsubscribe(self, client: Client, stream: str) -> None:
        client.streams.discard(stream)
        table = self.subs.get(stream)
        if table is not None:
            table.pop(client, None)
            if not table:
                del self.subs[stream]
                if self.watch is not None:
                    self.watch(stream)

    def attach_user(self, client: Client, user_id: int, listen_key: str) -> None:
        client.user_id = user_id
        client.listen_key = listen_key
        self.users.setdefault(user_id, {})[client] = None

    def forget(self, client: Client) -> None:
        for stream in list(client.streams):
            self.unsubscribe(client, stream)
        if client.user_id is not None:
            table = self.users.get(client.user_id)
            if table is not None:
                table.pop(client, None)
                if not table:
                    del self.users[client.user_id]
        self.clients.pop(client, None)

    def forget_soon(self, client: Client) -> None:
        asyncio.get_running_loop().call_soon(self.forget, client)

    def publish(self, stream: str, data: bytes) -> None:
        clients = self.subs.get(stream)
        if not clients:
            return
        frame = wrapped = None
        for client in clients:
            if client.combined:
                if wrapped is None:
                    wrapped = text_frame(b'{"stream":"%s","data":%s}' % (stream.encode(), data))
                client.send_frame(wrapped)
            else:
                if frame is None:
                    frame = text_frame(data)
                client.send_frame(frame)
        self.delivered += len(clients)

    def publish_user(self, user_id: int, data: bytes) -> None:
        clients = self.users.get(user_id)
        if not clients:
            return
        for client in clients:
            if client.combined:
                client.send(b'{"stream":"%s","data":%s}' % (str(client.listen_key).encode(), data))
            else:
                client.send(data)
        self.delivered += len(clients)

    def listen_keys(self) -> dict[str, list[Client]]:
        """listenKey -> the private clients using it."""
        out: dict[str, list[Client]] = {}
        for table in self.users.values():
            for client in table:
                if client.listen_key is not None:
                    out.setdefault(client.listen_key, []).append(client)
        return out
