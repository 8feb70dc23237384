"""The group-commit journal of a matching shard: one XADD per batch to its Redis stream.

Owns: the shard's writing connection to Redis (sync redis-py with hiredis),
appending one entry per batch in the format of ``shards/stream.py`` plus one
field of its own, ``r`` (the command rings' read positions after the batch,
see below), and the stream's trim floor. ``append`` returns only once Redis
has answered the XADD: the shard loop calls it after applying a batch and
before sending any answer or committing any ring (DESIGN.md, "Durability and
recovery"), so nothing is acknowledged that Redis does not hold.

Never: applies commands, decides what to trim (``shards/recovery.py`` does),
or logs per batch.

The XADD is packed by hand (one join of pieces built once: ``xadd_pieces``) and
sent on the socket of a redis-py connection that the journal keeps (redis-py
opens it: address, password, database, the handshake; a unix socket for a
``unix://`` URL, as the embedded Redis gives, else TCP), made blocking with
kernel timeouts (``SO_SNDTIMEO``/``SO_RCVTIMEO``, ``SOCKET_TIMEOUT_S``) so
that each round trip is two system calls (``sendall``, ``recv_into``), with
no ``poll`` before each. The reply, one bulk string ``$<n>\r\n<id>\r\n``,
is read into a buffer kept for the journal's life and parsed here (the same
bytes in RESP2 and in RESP3, which redis-py 8 negotiates); an error reply, a
closed or timed-out socket, or anything else is a failure (below).
Measured per XADD of a single order (callgrind, client side): about 24 000
instructions instead of about 60 000 with redis-py sending and hiredis parsing
(and its ``poll`` before each send and receive), and far fewer than through
``execute_command``. Entry (one round trip: trimming rides on the same XADD
as ``MINID``)::

    XADD exchange:shard:<i>:events [MINID <floor>] * f <first> l <last> e <events> r <positions>

    positions = per command ring, in worker order: created_ns:u64 read_position:u64 (little-endian)

The positions make recovery exact: records a dead shard had read, applied and
journaled but never committed are skipped on restart, the rest are applied.
``created_ns`` tells a ring of this launcher run from one of a previous run
(new rings start at position 0 again).

Redis down or a lost reply: ``append`` retries with back-off until Redis
answers (the loop, and every client, waits; clients see their timeout as a
5xx). Before re-sending after a failure it reads the stream's last entry: an
entry whose reply was lost is not written twice.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from deploy.log import log_event
from ringbuf.ring import Ring
from shards.events import encode_events
from shards.protocol import Event
from shards.stream import FIELD_EVENTS, FIELD_FIRST, FIELD_LAST, FIELD_POSITIONS, entry_fields, stream_key

_POS = struct.Struct("<QQ")
RETRY_MIN_S = 0.05
RETRY_MAX_S = 1.0
SOCKET_TIMEOUT_S = 5.0
REPLY_BUFFER = 256  # bytes: an XADD reply (a stream id) is about 20; an error reply may need more reads
_DOLLAR = 36  # b"$"


def encode_positions(rings: Sequence[Ring]) -> bytes:
    """The ``r`` field: (created_ns, read position) of each ring."""
    return b"".join(_POS.pack(r.created_ns, r.read_position()) for r in rings)


def positions_packer(rings: Sequence[Ring]) -> Callable[[], bytes]:
    """A call that returns ``encode_positions(rings)`` now: one ``Struct.pack`` for one or two rings."""
    pack = struct.Struct("<" + "QQ" * len(rings)).pack
    if len(rings) == 1:
        c0, r0 = rings[0].created_ns, rings[0].read_position
        return lambda: pack(c0, r0())
    if len(rings) == 2:
        c0, r0, c1, r1 = rings[0].created_ns, rings[0].read_position, rings[1].created_ns, rings[1].read_position
        return lambda: pack(c0, r0(), c1, r1())
    return lambda: encode_positions(rings)


def pack_command(args: Sequence[bytes]) -> bytes:
    """One command in RESP, packed by hand: a third of redis-py's client CPU for an XADD (measured)."""
    parts = [b"*%d\r\n" % len(args)]
    add = parts.append
    for arg in args:
        add(b"$%d\r\n" % len(arg))
        add(arg)
        add(b"\r\n")
    return b"".join(parts)


def xadd_pieces(key: bytes, names: Sequence[bytes]) -> list[bytes]:
    """``XADD key * name1 v1 name2 v2 ..`` in RESP, cut around the values: ``len(names) + 1`` constant pieces.

    Piece ``i`` ends where value ``i``'s ``$<length>\r\n`` starts; the last piece is the final ``\r\n``. Joining
    ``piece0, bulk_head(v1), v1, piece1, bulk_head(v2), v2, .., piece_n`` gives the bytes ``pack_command`` gives.
    """
    head = [b"*%d\r\n" % (3 + 2 * len(names))]
    for arg in (b"XADD", key, b"*"):
        head += (b"$%d\r\n" % len(arg), arg, b"\r\n")
    pieces: list[bytes] = []
    for i, name in enumerate(names):
        lead = b"".join(head) if i == 0 else b"\r\n"
        pieces.append(lead + b"$%d\r\n" % len(name) + name + b"\r\n")
    pieces.append(b"\r\n")
    return pieces


def bulk_head(n: int) -> bytes:
    """``$<n>\r\n``, the head of an n-byte argument in RESP (kept for small n)."""
    return _BULK_HEADS[n] if n < _BULK_HEADS_KEPT else b"$%d\r\n" % n


_BULK_HEADS_KEPT = 2048  # a single order's entry is a few hundred bytes: its head comes from this table
_BULK_HEADS = [b"$%d\r\n" % n for n in range(_BULK_HEADS_KEPT)]


def decode_positions(data: bytes) -> list[tuple[int, int]]:
    """(created_ns, read position) per command ring, from an ``r`` field."""
    if len(data) % _POS.size:
        raise ValueError(f"positions field of {len(data)} bytes is not a multiple of {_POS.size}")
    return [_POS.unpack_from(data, i) for i in range(0, len(data), _POS.size)]


class JournalError(Exception):
    code = -1000


class RedisJournal:
    """The event sink of the shard loop: ``append`` is durable in Redis when it returns."""

    def __init__(self, url: str, shard: int, rings: Sequence[Ring], last_seq: int = 0) -> None:
        self.shard = shard
        self.key = stream_key(shard)
        self.rings = list(rings)
        self.last_seq = last_seq  # last seq journaled (recovery sets it)
        self.last_id: bytes = b"0-0"  # stream id of the last entry written
        self.trim_floor: bytes | None = None  # MINID for the next XADD (recovery sets it)
        self.entries = 0
        self.retries = 0  # appends that failed and went through _retry (the metrics read it)
        self.client = redis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S
        )
        self._key = self.key.encode()
        names = [FIELD_FIRST, FIELD_LAST, FIELD_EVENTS] + ([FIELD_POSITIONS] if self.rings else [])
        pieces = xadd_pieces(self._key, names)
        # the XADD of a turn: to_first $f first to_last $l last to_events $e events to_end [positions] \r\n
        self._to_first, self._to_last, self._to_events = pieces[:3]
        self._to_end = pieces[3] + bulk_head(_POS.size * len(self.rings)) if self.rings else b""
        self._positions = positions_packer(self.rings)
        self._buf = bytearray(REPLY_BUFFER)
        self._conn = self.client.connection_pool.get_connection()  # held: one writer, one thread
        self._sock: socket.socket | None = None
        self._open()

    def append(self, events: list[Event]) -> None:
        """Journal a batch of protocol events (the ``NullEventSink`` signature)."""
        if events:
            self.append_encoded(encode_events(events), events[-1].seq)

    def append_encoded(self, data: bytes, last_seq: int) -> None:
        """Journal the encoded events ``last_seq + 1 ..`` of one batch; nothing when ``data`` is empty."""
        if not data:
            return
        first = b"%d" % (self.last_seq + 1)
        last = b"%d" % last_seq
        positions = self._positions()
        floor = self.trim_floor
        try:
            if floor is None:
                cmd = b"".join(
                    (
                        self._to_first, _BULK_HEADS[len(first)], first,
                        self._to_last, _BULK_HEADS[len(last)], last,
                        self._to_events, bulk_head(len(data)), data,
                        self._to_end, positions, b"\r\n",
                    )
                )  # fmt: skip
            else:
                self.trim_floor = None
                cmd = pack_command(self._args(floor, first, last, data, positions))
            sock = self._sock
            if sock is None:
                sock = self._open()
            sock.sendall(cmd)
            buf = self._buf
            n = sock.recv_into(buf)
            end = buf.find(b"\r\n", 0, n)
            if end > 1 and buf[0] == _DOLLAR:  # the one reply expected: $<n>\r\n<stream id>\r\n
                start = end + 2
                stop = start + int(buf[1:end])
                if stop + 2 == n and start <= stop:
                    self.last_id = bytes(buf[start:stop])
                else:
                    self.last_id = self._reply_rest(sock, n)
            else:
                self.last_id = self._reply_rest(sock, n)
        except (OSError, ValueError, redis.RedisError) as exc:
            self._drop()
            self.last_id = self._retry(self._args(floor, first, last, data, positions), last_seq, exc)
        self.last_seq = last_seq
        self.entries += 1

    def _args(self, floor: bytes | None, first: bytes, last: bytes, data: bytes, positions: bytes) -> list[bytes]:
        """The XADD's arguments (the retry and the ``MINID`` turn pack these; the template packs the same)."""
        args = [b"XADD", self._key]
        if floor is not None:
            args += [b"MINID", floor]
        args.append(b"*")
        for name, value in entry_fields(int(first), int(last), data, positions).items():
            args += (name, value)
        return args

    def _open(self) -> socket.socket:
        """The journal's socket: redis-py connects (and authenticates); then blocking, with kernel timeouts."""
        conn = self._conn
        conn.connect()  # nothing when connected
        sock: socket.socket | None = getattr(conn, "_sock", None)
        if sock is None:
            raise JournalError(f"redis-py connection {conn!r} has no socket after connect")
        sock.settimeout(None)  # blocking: no poll before each send and receive
        timeout = struct.pack("ll", int(SOCKET_TIMEOUT_S), int(SOCKET_TIMEOUT_S % 1 * 1_000_000))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeout)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeout)
        self._sock = sock
        return sock

    def _drop(self) -> None:
        self._sock = None
        self._conn.disconnect()

    def _reply_rest(self, sock: socket.socket, n: int) -> bytes:
        """The XADD's reply when the first read did not hold exactly one bulk string: read on, or raise."""
        data = bytes(self._buf[:n])
        while True:
            if not n:
                raise redis.ConnectionError(f"Redis closed the journal's connection of shard {self.shard}")
            end = data.find(b"\r\n")
            if end >= 0:
                kind = data[:1]
                if kind == b"-":
                    raise redis.ResponseError(data[1:end].decode(errors="replace"))
                if kind != b"$":
                    raise redis.InvalidResponse(f"unexpected XADD reply {data[:64]!r}")
                size = int(data[1:end])
                start = end + 2
                if size < 0:
                    raise redis.InvalidResponse(f"XADD answered {data[: end + 2]!r}, no stream id")
                if len(data) >= start + size + 2:
                    if len(data) != start + size + 2 or data[start + size :] != b"\r\n":
                        raise redis.InvalidResponse(f"XADD reply {data[:64]!r} is not one bulk string")
                    return data[start : start + size]
            more = sock.recv(REPLY_BUFFER)
            n = len(more)
            data += more

    def _retry(self, args: list[bytes], last_seq: int, exc: Exception) -> bytes:
        self.retries += 1
        delay = RETRY_MIN_S
        started = time.monotonic()
        while True:
            log_event("journal_retry", "warning", shard=self.shard, seq=last_seq, error=f"{type(exc).__name__}: {exc}")
            time.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
            try:
                tail: Any = self.client.xrevrange(self.key, count=1)
                if tail and int(tail[0][1][FIELD_LAST]) >= last_seq:
                    log_event("journal_recovered", shard=self.shard, seq=last_seq, written_before=True)
                    return tail[0][0]
                entry_id = self.client.execute_command(*args)
                log_event(
                    "journal_recovered", shard=self.shard, seq=last_seq, after_s=round(time.monotonic() - started, 3)
                )
                return entry_id
            except redis.RedisError as again:
                exc = again

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._drop()
        self.client.close()
