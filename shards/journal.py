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

The XADD is packed by hand (``pack_command``) and sent on a connection of
redis-py's pool that the journal keeps (hiredis parses the reply): measured
here, about 25 µs of client CPU per XADD instead of about 90 µs through
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

import struct
import time
from collections.abc import Sequence
from typing import Any

import redis

from deploy.log import log_event
from ringbuf.ring import Ring
from shards.events import encode_events
from shards.protocol import Event
from shards.stream import FIELD_LAST, entry_fields, stream_key

_POS = struct.Struct("<QQ")
RETRY_MIN_S = 0.05
RETRY_MAX_S = 1.0
SOCKET_TIMEOUT_S = 5.0


def encode_positions(rings: Sequence[Ring]) -> bytes:
    """The ``r`` field: (created_ns, read position) of each ring."""
    return b"".join(_POS.pack(r.created_ns, r.read_position()) for r in rings)


def pack_command(args: Sequence[bytes]) -> bytes:
    """One command in RESP, packed by hand: a third of redis-py's client CPU for an XADD (measured)."""
    parts = [b"*%d\r\n" % len(args)]
    add = parts.append
    for arg in args:
        add(b"$%d\r\n" % len(arg))
        add(arg)
        add(b"\r\n")
    return b"".join(parts)


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
        self.client = redis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S
        )
        self._key = self.key.encode()
        self._conn = self.client.connection_pool.get_connection()  # held: one writer, one thread

    def append(self, events: list[Event]) -> None:
        """Journal a batch of protocol events (the ``NullEventSink`` signature)."""
        if events:
            self.append_encoded(encode_events(events), events[-1].seq)

    def append_encoded(self, data: bytes, last_seq: int) -> None:
        """Journal the encoded events ``last_seq + 1 ..`` of one batch; nothing when ``data`` is empty."""
        if not data:
            return
        args = [b"XADD", self._key]
        floor = self.trim_floor
        if floor is not None:
            args += [b"MINID", floor]
            self.trim_floor = None
        args.append(b"*")
        for name, value in entry_fields(self.last_seq + 1, last_seq, data, encode_positions(self.rings)).items():
            args += (name, value)
        conn = self._conn
        try:
            conn.send_packed_command([pack_command(args)], check_health=False)
            self.last_id = conn.read_response()
        except redis.RedisError as exc:
            conn.disconnect()
            self.last_id = self._retry(args, last_seq, exc)
        self.last_seq = last_seq
        self.entries += 1

    def _retry(self, args: list[bytes], last_seq: int, exc: Exception) -> bytes:
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
        self._conn.disconnect()
        self.client.close()
