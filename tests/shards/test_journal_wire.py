"""The journal's hand-packed XADD and hand-read reply: the bytes it sends, what Redis stores, and every odd reply.

``RedisJournal`` packs its XADD from pieces built once and reads the reply
itself on a blocking socket. These tests check that the packed bytes are
``pack_command``'s, that entries read back from the session Redis hold what
was journaled (with and without ring positions, small and large batches, the
``MINID`` turn), and, against a scripted stand-in server on a real socket,
that a reply cut across reads is assembled, and that an error reply, an
unexpected reply or a connection closed mid-reply each end in the retry
(logged, the stream's tail read first, the XADD sent again), as before.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from ringbuf.ring import PyRing, Ring
from shards.journal import (
    SOCKET_TIMEOUT_S,
    RedisJournal,
    bulk_head,
    encode_positions,
    pack_command,
    positions_packer,
    xadd_pieces,
)
from shards.stream import FIELD_EVENTS, FIELD_FIRST, FIELD_LAST, FIELD_POSITIONS, stream_key

NAMES_WITH_POSITIONS = [FIELD_FIRST, FIELD_LAST, FIELD_EVENTS, FIELD_POSITIONS]
NAMES = [FIELD_FIRST, FIELD_LAST, FIELD_EVENTS]


@pytest.fixture
def rings() -> Iterator[list[Ring]]:
    made: list[Ring] = [Ring.create(f"test-jw-{uuid.uuid4().hex[:10]}", 1 << 12) for _ in range(2)]
    made.append(PyRing.create(f"test-jw-{uuid.uuid4().hex[:10]}", 1 << 12))
    yield made
    for r in made:
        r.close()
        r.unlink()


@pytest.mark.parametrize("names", [NAMES_WITH_POSITIONS, NAMES])
@pytest.mark.parametrize("size", [1, 2047, 2048, 70_000])
def test_pieces_joined_are_the_bytes_pack_command_gives(names: list[bytes], size: int) -> None:
    # arrange
    key = b"exchange:shard:%d:events"  # a % in the key must not matter
    values = [b"7", b"1234567890123", bytes(range(256)) * (size // 256) + b"x" * (size % 256), b"p" * 48][: len(names)]
    # act
    pieces = xadd_pieces(key, names)
    packed = (
        b"".join(piece + bulk_head(len(value)) + value for piece, value in zip(pieces, values, strict=False))
        + pieces[-1]
    )
    # assert
    args = [b"XADD", key, b"*"] + [part for pair in zip(names, values, strict=True) for part in pair]
    assert len(pieces) == len(names) + 1
    assert packed == pack_command(args)


@pytest.mark.parametrize("count", [0, 1, 2, 3])
def test_positions_packer_gives_encode_positions(rings: list[Ring], count: int) -> None:
    # arrange: the rings read to different positions
    chosen = rings[:count]
    for i, ring in enumerate(chosen):
        ring.write_batch([b"r" * (i + 1)] * (i + 2))
        ring.read(i + 1)
    packer = positions_packer(chosen)
    first = packer()
    # act: one more record read on each ring
    for ring in chosen:
        ring.read(1)
    # assert: the packer reads the positions when called, not when built
    assert first != packer() or not count
    assert packer() == encode_positions(chosen)


def test_entries_read_back_as_journaled(rings: list[Ring], services: Any) -> None:
    # arrange
    url = services.redis_db_url()
    admin = redis.Redis.from_url(url)
    journal = RedisJournal(url, 11, rings[:2])
    rings[0].write(b"command")
    rings[0].read(1)
    batches = [(b"a" * 10, 3), (bytes(range(256)) * 400, 9), (b"b", 10)]  # the middle one ~100 KiB
    ids = []
    # act
    for data, last_seq in batches:
        journal.append_encoded(data, last_seq)
        ids.append(journal.last_id)
    journal.append_encoded(b"", 99)  # nothing to journal: no entry
    # assert
    entries = admin.xrange(stream_key(11))
    assert [e[0] for e in entries] == ids
    firsts = [b"1", b"4", b"10"]
    for (_entry_id, fields), (data, last_seq), first in zip(entries, batches, firsts, strict=True):
        assert fields[FIELD_FIRST] == first and fields[FIELD_LAST] == b"%d" % last_seq
        assert fields[FIELD_EVENTS] == data
        assert fields[FIELD_POSITIONS] == encode_positions(rings[:2])
    assert (journal.last_seq, journal.entries) == (10, 3)
    journal.close()


@pytest.mark.parametrize("tcp", [False, True], ids=["unix", "tcp"])
def test_the_journal_socket_is_blocking_with_kernel_timeouts_on_either_transport(services: Any, tcp: bool) -> None:
    # arrange
    url = services.redis_db_url(tcp=tcp)
    admin = redis.Redis.from_url(url)
    journal = RedisJournal(url, 14, [])
    # act
    journal.append_encoded(b"over the socket", 1)
    sock = journal._sock
    # assert
    assert sock is not None and sock.family == (socket.AF_INET if tcp else socket.AF_UNIX)
    assert sock.gettimeout() is None  # blocking: the kernel timeouts below bound each call
    want = struct.pack("ll", int(SOCKET_TIMEOUT_S), int(SOCKET_TIMEOUT_S % 1 * 1_000_000))
    for option in (socket.SO_SNDTIMEO, socket.SO_RCVTIMEO):
        assert sock.getsockopt(socket.SOL_SOCKET, option, len(want)) == want
    assert admin.xrange(stream_key(14))[0][1][FIELD_EVENTS] == b"over the socket"
    journal.close()
    admin.close()


def test_the_minid_turn_trims_and_later_turns_do_not(services: Any) -> None:
    # arrange: a journal without rings (no positions field), three entries
    url = services.redis_db_url()
    admin = redis.Redis.from_url(url)
    journal = RedisJournal(url, 12, [])
    for seq in (1, 2, 3):
        journal.append_encoded(b"e%d" % seq, seq)
    third = journal.last_id
    # act
    journal.trim_floor = third
    journal.append_encoded(b"e4", 4)
    journal.append_encoded(b"e5", 5)
    # assert
    entries = admin.xrange(stream_key(12))
    assert entries[0][0] == third
    assert [e[1] for e in entries] == [
        {FIELD_FIRST: b"%d" % s, FIELD_LAST: b"%d" % s, FIELD_EVENTS: b"e%d" % s} for s in (3, 4, 5)
    ]
    assert journal.trim_floor is None
    journal.close()


def test_an_error_reply_is_retried_until_redis_takes_the_entry(services: Any, capfd: Any) -> None:
    # arrange: the stream's key holds a string, so XADD (and the retry's XREVRANGE) answer WRONGTYPE
    url = services.redis_db_url()
    admin = redis.Redis.from_url(url)
    journal = RedisJournal(url, 13, [])
    admin.set(stream_key(13), "not a stream")
    fixer = threading.Timer(0.3, admin.delete, (stream_key(13),))
    fixer.start()
    # act
    journal.append_encoded(b"events", 1)
    fixer.join()
    # assert
    entries = admin.xrange(stream_key(13))
    assert [(e[0], e[1][FIELD_EVENTS]) for e in entries] == [(journal.last_id, b"events")]
    err = capfd.readouterr().err
    assert "event=journal_retry" in err and "WRONGTYPE" in err
    journal.append_encoded(b"more", 2)  # and the journal's own connection is open again
    assert admin.xlen(stream_key(13)) == 2
    journal.close()


class ScriptedRedis:
    """A stand-in Redis on a real socket: OK to the handshake, scripted answers to XADD, an empty XREVRANGE.

    ``replies`` holds, per XADD received, the chunks to send (a pause between chunks); a chunk None closes the
    connection there, a float is a silence of that many seconds. Past the script every XADD gets ``9-9``.
    It listens on 127.0.0.1, or on the unix socket ``unix_path``; ``url`` says where.
    """

    def __init__(self, replies: list[list[bytes | None | float]], unix_path: Path | None = None) -> None:
        self.replies = list(replies)
        self.xadds: list[list[bytes]] = []
        if unix_path is None:
            self.listener = socket.create_server(("127.0.0.1", 0))
            self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"
        else:
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.listener.bind(str(unix_path))
            self.listener.listen()
            self.url = f"unix://{unix_path}?db=0"
        self.accepting = threading.Thread(target=self._accept, daemon=True)
        self.accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        with conn:
            while True:
                args = self._read_command(reader)
                if args is None:
                    return
                name = args[0].upper()
                if name == b"HELLO":
                    conn.sendall(b"%1\r\n$5\r\nproto\r\n:3\r\n")
                elif name == b"XREVRANGE":
                    conn.sendall(b"*0\r\n")
                elif name == b"XADD":
                    self.xadds.append(args)
                    chunks = self.replies.pop(0) if self.replies else [b"$3\r\n9-9\r\n"]
                    for i, chunk in enumerate(chunks):
                        if chunk is None:
                            return
                        if isinstance(chunk, float):
                            time.sleep(chunk)
                            continue
                        if i:
                            time.sleep(0.05)
                        try:
                            conn.sendall(chunk)
                        except OSError:  # the journal gave up on this connection
                            return
                else:
                    conn.sendall(b"+OK\r\n")

    @staticmethod
    def _read_command(reader: Any) -> list[bytes] | None:
        line = reader.readline()
        if not line:
            return None
        args = []
        for _ in range(int(line[1:])):
            size = int(reader.readline()[1:])
            args.append(reader.read(size + 2)[:-2])
        return args

    def close(self) -> None:
        self.listener.close()


ID = b"$12\r\n1700000000-0\r\n"


@pytest.mark.parametrize(
    ("replies", "retried"),
    [
        ([[ID]], False),
        ([[b"$12\r\n17000", b"00000-0", b"\r", b"\n"]], False),  # one reply cut across four reads
        ([[b"-ERR out of memory\r\n"], [ID]], True),
        ([[b"-ERR a long error", b" cut in two\r\n"], [ID]], True),
        ([[b"+OK\r\n"], [ID]], True),  # not a stream id
        ([[b"$-1\r\n"], [ID]], True),  # no id
        ([[ID + b"+extra\r\n"], [ID]], True),  # more than the one reply
        ([[None], [ID]], True),  # connection closed before the reply
        ([[b"$12\r\n17000", None], [ID]], True),  # ... and in the middle of it
    ],
)
@pytest.mark.parametrize("unix", [False, True], ids=["tcp", "unix"])
def test_odd_replies_are_read_or_retried(
    replies: list[list[bytes | None]], retried: bool, unix: bool, capfd: Any, tmp_path: Path
) -> None:
    # arrange
    server = ScriptedRedis(replies, tmp_path / "redis.sock" if unix else None)
    journal = RedisJournal(server.url, 14, [])
    try:
        # act
        journal.append_encoded(b"events", 5)
        # assert
        err = capfd.readouterr().err
        assert ("event=journal_retry" in err) is retried
        assert journal.last_id == b"1700000000-0"
        assert journal.last_seq == 5
        expected = [
            b"XADD",
            stream_key(14).encode(),
            b"*",
            FIELD_FIRST,
            b"1",
            FIELD_LAST,
            b"5",
            FIELD_EVENTS,
            b"events",
        ]
        assert server.xadds[0] == expected and server.xadds[-1] == expected
        assert len(server.xadds) == (2 if retried else 1)
        # the next turn goes out on a connection of its own again
        journal.append_encoded(b"next", 6)
        assert journal.last_id == b"9-9"
    finally:
        journal.close()
        server.close()


@pytest.mark.parametrize("unix", [False, True], ids=["tcp", "unix"])
def test_a_reply_that_does_not_come_times_out_in_the_kernel_and_is_retried(
    unix: bool, capfd: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    # arrange: SO_RCVTIMEO of 0.2 s; the first XADD is answered after 1 s, on a connection the journal gave up
    monkeypatch.setattr("shards.journal.SOCKET_TIMEOUT_S", 0.2)
    server = ScriptedRedis([[1.0, ID]], tmp_path / "redis.sock" if unix else None)
    journal = RedisJournal(server.url, 14, [])
    try:
        # act
        journal.append_encoded(b"events", 5)
        # assert: the retry read the (empty) tail and sent the XADD again on a new connection
        err = capfd.readouterr().err
        assert "event=journal_retry" in err and "Resource temporarily unavailable" in err
        assert len(server.xadds) == 2 and journal.last_id == b"9-9"
    finally:
        journal.close()
        server.close()
