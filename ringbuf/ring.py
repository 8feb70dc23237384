"""Single-producer/single-consumer byte ring over POSIX shared memory.

This docstring is the specification of the ring: memory layout, who writes
which field, the order of the writes and why that order is enough.

Owns: one shared-memory segment per ring, its header and its record framing;
``Ring`` (all the Python code) and its two kinds, ``CRing`` (the single-record
lane in C, ``ringbuf._ringcore``) and ``PyRing`` (pure Python; see "The C
lane" below). Never: takes a lock, makes a system call on the write or read
path, or writes a field that belongs to the other side. Waking a sleeping
consumer belongs to ``ringbuf.doorbell``; this module only holds the
``sleeping`` word it reads.

Memory layout (little-endian; positions are 64-bit byte counts that only grow,
the slot of position ``p`` is ``p & (capacity - 1)``)::

    offset  size      field     written by           read by
    ------  --------  --------  -------------------  ------------------
         0         8  magic     creator, once        attachers
         8         8  version   creator, once        attachers
        16         8  capacity  creator, once        attachers
        24         8  created   creator, once        attachers (``created_ns``: tells
                                                     this incarnation of a name from others)
       128         8  tail      producer             consumer
       256         8  head      consumer (commit)    producer
       384         8  sleeping  consumer             producer (doorbell)
       392         8  unfenced  a producer without   consumer (doorbell: C fence
                                the C fence, once    or membarrier before a sleep)
       512  capacity  data      producer             consumer

    The three live words sit 128 bytes apart (two cache lines, the unit the
    adjacent-line prefetcher moves), so a store to one never invalidates the
    line that holds another. ``unfenced`` shares the line of ``sleeping``:
    it is written once per producer at most, and read beside ``sleeping``.

Record framing in the data area (every record starts 8-aligned)::

    +0     u32 n: payload length (0 <= n <= max_record), or 0xFFFFFFFF = wrap marker
    +4     n payload bytes
    +4+n   0..7 pad bytes, never written, never read
           slot size = (4 + n + 7) & ~7

    A record never straddles the end of the data area. When it does not fit
    before the end, the producer writes a wrap marker where it would have
    started (at least 8 bytes are always left there) and puts the record at
    slot 0; the skipped bytes count as used until the consumer passes them.
    ``max_record = capacity // 2 - 4`` so that any legal record fits into an
    empty ring wherever the positions stand.

Positions::

    tail   end of the last published record                      (producer)
    head   the consumer's committed position: all before it is free (consumer)
    used = tail - head, 0 <= used <= capacity;  free = capacity - used

    The consumer reads ahead of ``head`` with a private cursor (``read``,
    ``read_one``, ``read_array``) and stores the cursor as ``head`` only in
    ``commit``, after it has durably handled the batch. A consumer that
    attaches starts at ``head``, so what a dead consumer had read but not
    committed is read again.

Publish order::

    producer: 1. copy length and payload into free space (plain stores; a
                 batch copies all its records first)
              2. store tail: ONE aligned 8-byte store (once per batch)
    consumer: 1. load tail            2. copy out the records before it
              3. (commit) store head: ONE aligned 8-byte store
    producer: load head before storing into the space it frees

    The low-latency lane keeps this order: ``read_one(spin)`` polls step 1
    (one 8-byte load of tail per poll) and does step 2 for the one record at
    the cursor, checking that it ends at or before the tail it loaded;
    ``doorbell.Producer.send`` is ``write``'s fast path inlined (length,
    payload, then the one tail store). The C lane does the same steps in the
    same order with C11 atomics: step 2 of the producer and step 3 of the
    consumer are ``__atomic_store_n(..., __ATOMIC_RELEASE)``, each load of the
    other side's position is ``__atomic_load_n(..., __ATOMIC_ACQUIRE)``.

    Never publish a position with ``struct.pack_into``: it zero-fills its
    target before writing the value, so a polling reader can see 0 mid-update.
    A store through ``memoryview.cast('Q')`` is one 8-byte ``memcpy``, which
    compiles to one ``mov``; an aligned 8-byte ``mov`` is atomic on x86-64, so
    a reader sees the old or the new position, never a mix.

Why this is safe on x86-64 (TSO):
    - stores become visible in program order: a consumer that sees the new
      tail sees the payload stored before it;
    - loads are not reordered with older loads: the consumer's payload loads
      (after its tail load) see at least what that tail covered;
    - stores are not reordered with older loads: the consumer has copied a
      record out before its head store frees the space, and the producer has
      loaded head before it stores into the space that head freed;
    - the C compiler cannot move these accesses across each other: in Python
      each is a separate trip through the interpreter's opaque calls, in the
      C lane the release stores and acquire loads forbid it (and compile to
      the same plain ``mov`` on x86-64);
    - the one reordering x86 does, a store followed by a load of another
      address, only matters to the sleep/wake handshake on ``sleeping``; see
      ``ringbuf.doorbell`` for how it is closed.

On a weaker memory model (ARM, POWER) plain stores are not enough: the tail
and head stores must be store-release (``stlr``, or ``dmb ish`` before) and
the loads of the other side's position load-acquire (``ldar``, or ``dmb``
after). The C lane's atomics are exactly that; the Python paths (``PyRing``,
and the batch, numpy and slow paths of both kinds) use plain stores, so on
such a machine every position store and load would have to go through C.

The C lane (``ringbuf._ringcore``, optional; this module stays the reference):
    ``Ring.create``/``attach`` build a ``CRing`` where the extension is built
    and a ``PyRing`` where it is not, or where ``RINGBUF_PURE_PYTHON=1`` was
    set when this module was imported (the choice is made once per ring, when
    it is built, from this module's ``_ringcore``). ``CRing``'s base
    ``_ringcore.RingCore`` holds the producer's and consumer's private
    positions (``_tail``, ``_limit``, ``_cursor``: the Python code reads and
    writes them as attributes, as on a ``PyRing``) and the segment's buffer
    (taken once per ring with the buffer protocol, released by ``close``
    before the mapping goes), and replaces ``write``, ``read_one`` and
    ``commit`` with C: one call each, wrap markers and a full ring included.
    Records too large and framing that cannot be right go back to
    ``_write_slow`` / ``_read_one_slow``, which raise the ring's errors. The
    two kinds write and read the same bytes (layout, framing, wrap markers,
    positions), so a ``CRing`` and a ``PyRing`` mix on one segment in either
    direction, even inside one process. ``ringbuf.doorbell`` builds on it:
    ``Producer.send`` of a ``CRing`` is one C call (write, then the doorbell
    check), and so are a one-ring ``Consumer``'s ``commit`` and its ``recv``
    with the spin strategy.

Shared-memory hygiene (``ringbuf.segment``): the creator (the launcher)
makes and unlinks each segment; attachers never register it with
``multiprocessing.resource_tracker``, so a dying attacher neither unlinks it
nor warns.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Sequence
from multiprocessing import shared_memory
from typing import TYPE_CHECKING, Any, TypeAlias

from ringbuf import segment
from ringbuf.errors import BadPosition, BadRingConfig, NotCreator, RecordTooLarge, RingCorrupt

if TYPE_CHECKING:
    import numpy as np


def _load_core() -> Any:
    """``ringbuf._ringcore`` (the C lane), or None where it is not built or ``RINGBUF_PURE_PYTHON=1``."""
    if os.environ.get("RINGBUF_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        return importlib.import_module("ringbuf._ringcore")
    except ImportError:
        return None


# Chosen once, at import. Ring.create/attach read it each time they build a ring: set to None
# (tests do), the rings built after that are PyRings, here and in processes forked after that.
_ringcore: Any = _load_core()

Record: TypeAlias = bytes | bytearray  # what write accepts; read returns bytes

MAGIC = int.from_bytes(b"RINGBUF1", "little")
VERSION = 1
HEADER_BYTES = 512
TAIL_OFFSET = 128
HEAD_OFFSET = 256
SLEEPING_OFFSET = 384
UNFENCED_OFFSET = 392  # set by a producer that does not fence its doorbell check (see ringbuf.doorbell)
WRAP = 0xFFFFFFFF
_PAYLOAD = HEADER_BYTES + 4  # mmap offset of the payload of the record at data offset 0
_RUN_MIN = 4  # same-size records worth one join (write_batch) or one strided length check (read)
_RUN_PROBE = 64  # length words checked per strided slice in read
_RUN_BYTES = 256  # read looks for runs only when at least this much is pending
MIN_CAPACITY = 64
MAX_CAPACITY = 1 << 32


def slot_size(n: int) -> int:
    """Bytes a record of ``n`` payload bytes takes in the data area."""
    return (n + 11) & -8


def _check_capacity(capacity: int) -> None:
    if not (MIN_CAPACITY <= capacity <= MAX_CAPACITY) or capacity & (capacity - 1):
        raise BadRingConfig(
            f"capacity {capacity} must be a power of two between {MIN_CAPACITY} and {MAX_CAPACITY} bytes"
        )


# The fields of every concrete Ring (PyRing and CRing); PyRing adds the positions CRing keeps in C.
_FIELDS = (
    "name",
    "capacity",
    "max_record",
    "_shm",
    "_mm",
    "_creator",
    "_mask",
    "_max_slot",
    "_u32",
    "_header",
    "_tail_word",
    "_head_word",
    "_sleeping_word",
    "_unfenced_word",
    "_np_data",
    "_closed",
    "created_ns",
)


class Ring:
    """One SPSC ring: the producer side (``write*``) and the consumer side
    (``read*``, ``commit``) live in the same object, each used by one process.

    ``Ring.create`` and ``Ring.attach`` build a ``CRing`` where the C lane is built and a
    ``PyRing`` where not; both are Rings and mix on one segment. This class holds all the
    Python code: the reference, and ``PyRing``'s lane (``write``, ``read_one``, ``commit``),
    which ``CRing`` takes from ``_ringcore.RingCore`` instead.
    """

    if TYPE_CHECKING:  # what every concrete Ring has: PyRing's slots, CRing's slots and members
        __slots__ = (*_FIELDS, "_tail", "_limit", "_cursor")
    else:
        __slots__ = ()  # the fields live in PyRing / CRing (``_FIELDS``), the positions too

    name: str
    capacity: int
    max_record: int
    created_ns: int
    _tail: int  # the producer's: end of its last published record (equals the tail word)
    _limit: int  # the producer's: head + capacity as last read (it may write up to here)
    _cursor: int  # the consumer's read cursor

    def __init__(self, shm: shared_memory.SharedMemory, creator: bool) -> None:
        """Use ``Ring.create`` or ``Ring.attach``."""
        self._shm = shm
        self._creator = creator
        self.name = shm.name
        buf = shm.buf
        assert buf is not None  # an open SharedMemory always has its buffer
        header = buf[:HEADER_BYTES].cast("Q")
        if header[0] != MAGIC or header[1] != VERSION:
            header.release()
            raise RingCorrupt(f"segment {self.name!r} is not a version {VERSION} ring (magic {header[0]:#x})")
        capacity = header[2]
        self.created_ns = header[3]  # 0 for a ring made before this word existed
        if shm.size < HEADER_BYTES + capacity:
            header.release()
            raise RingCorrupt(f"segment {self.name!r} has {shm.size} bytes, capacity {capacity} needs more")
        self._header = header
        self.capacity = capacity
        self.max_record = capacity // 2 - 4
        self._max_slot = capacity // 2
        self._mask = capacity - 1
        # SharedMemory keeps its mmap private; mmap slices copy without making a memoryview first.
        self._mm = shm._mmap  # type: ignore[attr-defined]
        self._u32 = buf[HEADER_BYTES : HEADER_BYTES + capacity].cast("I")
        self._tail_word = buf[TAIL_OFFSET : TAIL_OFFSET + 8].cast("Q")
        self._head_word = buf[HEAD_OFFSET : HEAD_OFFSET + 8].cast("Q")
        self._sleeping_word = buf[SLEEPING_OFFSET : SLEEPING_OFFSET + 8].cast("Q")
        self._unfenced_word = buf[UNFENCED_OFFSET : UNFENCED_OFFSET + 8].cast("Q")
        self._np_data: Any = None
        self._closed = False
        self._tail = self._tail_word[0]
        self._cursor = self._head_word[0]
        self._limit = self._cursor + capacity  # producer's cache: it may write up to this position
        self._open_lane(buf)

    # ----------------------------------------------------------- lifecycle

    @classmethod
    def create(cls, name: str, capacity: int) -> Ring:
        """Create the segment ``name`` (fails with FileExistsError if it exists)."""
        _check_capacity(capacity)
        shm = segment.create(name, HEADER_BYTES + capacity)
        assert shm.buf is not None
        header = shm.buf[:HEADER_BYTES].cast("Q")
        header[2] = capacity
        header[3] = time.time_ns()
        header[1] = VERSION
        header[0] = MAGIC  # last: an attacher that sees the magic sees the rest
        header.release()
        return _concrete(cls)(shm, creator=True)

    @classmethod
    def attach(cls, name: str) -> Ring:
        """Open the existing segment ``name`` without taking ownership of it."""
        shm = segment.open_untracked(name)
        try:
            return _concrete(cls)(shm, creator=False)
        except BaseException:
            shm.close()
            raise

    @staticmethod
    def unlink_name(name: str) -> bool:
        """Remove a segment left behind by a dead creator; False if there was none."""
        return segment.unlink_name(name)

    def close(self) -> None:
        """Unmap the segment (idempotent). The segment itself stays until unlinked."""
        if self._closed:
            return
        self._closed = True
        self._np_data = None
        self._close_lane()  # CRing: its hold on the buffer goes first, or the mapping cannot close
        views = (self._u32, self._tail_word, self._head_word, self._sleeping_word, self._unfenced_word, self._header)
        for view in views:
            view.release()
        self._mm = None
        self._shm.close()

    def unlink(self) -> None:
        """Remove the segment name (creator only); mappings stay valid until closed."""
        if not self._creator:
            raise NotCreator(f"ring {self.name!r} was attached, not created here: only its creator unlinks it")
        self._shm.unlink()  # works after close too: it needs only the name

    def __del__(self) -> None:
        # Release our views before SharedMemory's own finalizer tries to close the mapping.
        try:
            self.close()
        except Exception:  # noqa: S110 - a finalizer must not raise (and may run at interpreter exit)
            pass

    def __enter__(self) -> Ring:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, capacity={self.capacity})"

    def _open_lane(self, buf: memoryview) -> None:
        """CRing: hold the segment's buffer for the C lane (once, from ``__init__``); PyRing: nothing."""

    def _close_lane(self) -> None:
        """CRing: release what ``_open_lane`` held (idempotent); PyRing: nothing."""

    # ------------------------------------------------------- producer side

    def write(self, record: Record) -> bool:
        """Append one record and publish it; False (nothing written) when there is no room."""
        n = len(record)
        size = (n + 11) & -8
        tail = self._tail
        pos = tail & self._mask
        end = tail + size
        if pos + size > self.capacity or end > self._limit or size > self._max_slot:
            return self._write_slow(record)
        self._u32[pos >> 2] = n
        pos += _PAYLOAD
        self._mm[pos : pos + n] = record
        self._tail = end
        self._tail_word[0] = end
        return True

    def _write_slow(self, record: Record) -> bool:
        """``write`` when the record is too large, must wrap, or the cached head says full."""
        n = len(record)
        size = (n + 11) & -8
        if size > self._max_slot:
            raise RecordTooLarge(f"record of {n} bytes exceeds max_record {self.max_record} of ring {self.name!r}")
        tail = self._tail
        pos = tail & self._mask
        skip = self.capacity - pos if pos + size > self.capacity else 0
        end = tail + skip + size
        if end > self._limit:
            self._limit = self._head_word[0] + self.capacity
            if end > self._limit:
                return False
        if skip:
            self._u32[pos >> 2] = WRAP
            pos = 0
        self._u32[pos >> 2] = n
        pos += _PAYLOAD
        self._mm[pos : pos + n] = record
        self._tail = end
        self._tail_word[0] = end
        return True

    def write_batch(self, records: Sequence[Record]) -> int:
        """Write the longest prefix of ``records`` that fits, publish once, return how many."""
        count = len(records)
        if count >= _RUN_MIN:
            n = len(records[0])
            if list(map(len, records)).count(n) == count and (n + 11) & -8 <= self._max_slot:
                return self._write_run(records, n)
        return self._write_each(records)

    def _write_run(self, records: Sequence[Record], n: int) -> int:
        """``write_batch`` of records that all have ``n`` bytes: one join and one copy per stretch."""
        size = (n + 11) & -8
        first, skip, second = self._plan_run(len(records), size)
        tail = self._tail
        pos = tail & self._mask
        sep = _SEPARATORS.get(n) or _separator(n)
        if first:
            blob = sep.join(records if first == len(records) else records[:first])
            self._u32[pos >> 2] = n
            start = pos + _PAYLOAD
            self._mm[start : start + len(blob)] = blob
        if second:
            blob = sep.join(records[first : first + second])
            self._u32[0] = n
            self._mm[_PAYLOAD : _PAYLOAD + len(blob)] = blob
            if skip:
                self._u32[(pos + first * size) >> 2] = WRAP
        done = first + second
        if done:
            self._publish(tail + skip + done * size)
        return done

    def _plan_run(self, total: int, size: int) -> tuple[int, int, int]:
        """Where ``total`` slots of ``size`` bytes go: ``first`` at the tail, then, if the end of the
        data area cut the run short, ``skip`` bytes jumped and ``second`` more from slot 0."""
        tail = self._tail
        need = total * size
        if tail + need <= self._limit and (tail & self._mask) + need <= self.capacity:
            return total, 0, 0  # the common case: room, and no wrap
        cap = self.capacity
        free = self._limit - tail
        if free < total * size:
            self._limit = self._head_word[0] + cap
            free = self._limit - tail
        pos = tail & self._mask
        room = (cap - pos) // size
        first = min(total, room, free // size)
        if first == total or first < room:
            return first, 0, 0
        skip = cap - pos - first * size
        second = min(total - first, (free - first * size - skip) // size)
        if second <= 0:
            return first, 0, 0
        return first, skip, second

    def _write_each(self, records: Sequence[Record]) -> int:
        """``write_batch`` record by record (mixed sizes)."""
        cap = self.capacity
        mask = self._mask
        max_slot = self._max_slot
        u32 = self._u32
        mm = self._mm
        limit = self._limit
        tail = self._tail
        count = 0
        for record in records:
            n = len(record)
            size = (n + 11) & -8
            pos = tail & mask
            end = tail + size
            if pos + size > cap or end > limit or size > max_slot:
                if size > max_slot:
                    self._publish(tail)
                    raise RecordTooLarge(
                        f"record {count} of {n} bytes exceeds max_record {self.max_record} of ring {self.name!r}"
                        f" (the {count} records before it were written)"
                    )
                skip = cap - pos if pos + size > cap else 0
                end += skip
                if end > limit:
                    limit = self._limit = self._head_word[0] + cap
                    if end > limit:
                        break
                if skip:
                    u32[pos >> 2] = WRAP
                    pos = 0
            u32[pos >> 2] = n
            pos += _PAYLOAD
            mm[pos : pos + n] = record
            tail = end
            count += 1
        if count:
            self._publish(tail)
        return count

    def _publish(self, tail: int) -> None:
        self._tail = tail
        self._tail_word[0] = tail

    def free_bytes(self) -> int:
        """Free space as the producer sees it now (rereads head)."""
        self._limit = self._head_word[0] + self.capacity
        return self._limit - self._tail

    # ------------------------------------------------------- consumer side

    def read(self, max_records: int = 1024) -> list[bytes]:
        """Copies of the records after the read cursor (at most ``max_records``); frees nothing."""
        cursor = self._cursor
        tail = self._tail_word[0]
        if cursor == tail:
            return []
        pos = cursor & self._mask
        n = self._u32[pos >> 2]
        if cursor + ((n + 11) & -8) == tail and n <= self.max_record and max_records > 0:
            # exactly one record pending: the low-latency case, kept short
            self._cursor = tail
            pos += _PAYLOAD
            return [self._mm[pos : pos + n]]
        return self._read_many(cursor, tail, max_records)

    def read_one(self, spin: int = 0) -> bytes | None:
        """The record after the read cursor (a copy), or None when none is pending; frees nothing.

        The consumer's low-latency lane: no list, and with ``spin`` > 0 it first polls the
        published tail up to ``spin`` times (one 8-byte load each) while the ring is empty, so
        the poll loop and the copy run in one frame. ``ringbuf.doorbell.Consumer.recv`` drives it.
        """
        cursor = self._cursor
        tail = self._tail_word[0]
        if tail == cursor:
            if spin <= 0:
                return None
            tail_word = self._tail_word
            for _ in range(spin):
                tail = tail_word[0]
                if tail != cursor:
                    break
            else:
                return None
        pos = cursor & self._mask
        n = self._u32[pos >> 2]
        end = cursor + ((n + 11) & -8)
        if end > tail or n > self.max_record:
            return self._read_one_slow(cursor, tail)
        self._cursor = end
        pos += _PAYLOAD
        return self._mm[pos : pos + n]

    def _read_one_slow(self, cursor: int, tail: int) -> bytes:
        """``read_one`` at a wrap marker (or at framing that cannot be right: RingCorrupt)."""
        records = self._read_many(cursor, tail, 1)
        if not records:
            raise self._corrupt(cursor, f"no record before tail {tail}")
        return records[0]

    def _read_many(self, cursor: int, tail: int, max_records: int) -> list[bytes]:
        """``read`` when more than one record (or a wrap marker) is pending."""
        u32 = self._u32
        mm = self._mm
        mask = self._mask
        max_record = self.max_record
        out: list[bytes] = []
        left = max_records
        # Runs of same-size records: length words checked through one strided slice, payloads
        # copied by one comprehension. A short run (mixed sizes) hands over to the loop below.
        while left >= _RUN_MIN and tail - cursor >= _RUN_BYTES:
            pos = cursor & mask
            n = u32[pos >> 2]
            if n > max_record:
                if n != WRAP:
                    raise self._corrupt(cursor, f"length word {n:#x} above max_record {max_record}")
                cursor = (cursor | mask) + 1
                if cursor >= tail:
                    raise self._corrupt(cursor, f"wrap marker with no record after it, tail {tail}")
                continue
            size = (n + 11) & -8
            k = min(left, _RUN_PROBE, min(tail - cursor, self.capacity - pos) // size)
            if k < _RUN_MIN:
                break
            step = size >> 2
            lens = u32[pos >> 2 : (pos >> 2) + k * step : step].tolist()
            if lens.count(n) != k:
                k = _run_length(lens, n)
            start = pos + _PAYLOAD
            out += [mm[p : p + n] for p in range(start, start + k * size, size)]
            cursor += k * size
            left -= k
            if k < _RUN_MIN:
                break
        append = out.append
        for _ in range(left):
            if cursor >= tail:
                break
            pos = cursor & mask
            n = u32[pos >> 2]
            if n > max_record:
                if n != WRAP:
                    raise self._corrupt(cursor, f"length word {n:#x} above max_record {max_record}")
                cursor = (cursor | mask) + 1
                pos = 0
                n = u32[0]
                if n > max_record or cursor >= tail:
                    raise self._corrupt(cursor, f"length word {n:#x} after a wrap marker, tail {tail}")
            cursor += (n + 11) & -8
            pos += _PAYLOAD
            append(mm[pos : pos + n])
        if cursor > tail:
            raise self._corrupt(self._cursor, f"records run to {cursor}, past tail {tail}")
        self._cursor = cursor
        return out

    def _corrupt(self, cursor: int, detail: str) -> RingCorrupt:
        return RingCorrupt(
            f"ring {self.name!r}: bad framing at position {cursor}: {detail}"
            " (a torn or early read, or a broken producer)"
        )

    def commit(self) -> None:
        """Free everything returned by ``read`` so far; a restarted consumer starts here."""
        self._head_word[0] = self._cursor

    def rewind(self) -> None:
        """Move the read cursor back to the last commit (read the uncommitted records again)."""
        self._cursor = self._head_word[0]

    def read_position(self) -> int:
        """The read cursor: the position just after the last record ``read`` returned.

        Together with ``created_ns`` it names a point in this ring's records that a
        restarted consumer can ``seek`` back to (the shard journals it per batch).
        """
        return self._cursor

    def seek(self, position: int) -> None:
        """Move the read cursor to ``position``, a record boundary between head and tail
        that an earlier ``read_position`` of this same ring (same ``created_ns``) gave."""
        head = self._head_word[0]
        tail = self._tail_word[0]
        if not head <= position <= tail:
            raise BadPosition(f"ring {self.name!r}: position {position} is outside [head {head}, tail {tail}]")
        self._cursor = position

    def pending(self) -> bool:
        """True when records exist after the read cursor."""
        return self._tail_word[0] != self._cursor

    def uncommitted(self) -> int:
        """Bytes read but not yet committed."""
        return self._cursor - self._head_word[0]

    # ------------------------------------------------- metrics and diagnostics

    def positions(self) -> tuple[int, int]:
        """The shared ``(tail, head)`` positions as stored now (bytes since creation)."""
        return self._tail_word[0], self._head_word[0]

    def consumer_sleeping(self) -> bool:
        """True while the consumer has announced that it sleeps on its doorbell."""
        return self._sleeping_word[0] != 0

    # ----------------------------------------------------- numpy batch path

    # ringbuf.arrays (and numpy, which a process that never uses the numpy path does not pay for)
    # is imported on first use. The class is never patched: a method bound before that first use
    # (``write = ring.write_array``) stays as cheap as one bound after it.

    def write_array(self, arr: np.ndarray) -> int:
        """Write the longest prefix of ``arr`` that fits, one record per element (or per row of a
        2-D array), publish once, return how many. See ``ringbuf.arrays``."""
        return (_arrays or _load_arrays()).write_array(self, arr)

    def read_array(self, dtype: Any, max_records: int = 1024) -> np.ndarray:
        """Copy out up to ``max_records`` records of exactly ``dtype.itemsize`` bytes as one array.
        See ``ringbuf.arrays``."""
        return (_arrays or _load_arrays()).read_array(self, dtype, max_records)

    def _array_views(self) -> dict[Any, Any]:
        """numpy views of the data area for ``ringbuf.arrays`` (made on first use, dropped by ``close``)."""
        if self._np_data is None:
            import numpy as np

            self._np_data = {"data": np.frombuffer(self._mm, np.uint8, self.capacity, HEADER_BYTES)}
        return self._np_data


_SEPARATORS: dict[int, bytes] = {}


def _separator(n: int) -> bytes:
    """What goes between two ``n``-byte payloads in a run: the pad of one, the length of the next."""
    sep = bytes(((n + 11) & -8) - 4 - n) + n.to_bytes(4, "little")
    _SEPARATORS[n] = sep
    return sep


def _run_length(lens: list[int], n: int) -> int:
    """How many leading entries of ``lens`` equal ``n``."""
    for i, length in enumerate(lens):
        if length != n:
            return i
    return len(lens)


# ------------------------------------------------------ the concrete rings


class PyRing(Ring):
    """A Ring in pure Python: the reference lane, and every ring where the C lane is not built."""

    __slots__ = (*_FIELDS, "_tail", "_limit", "_cursor")


CRing: Any = None
if _ringcore is not None:

    class CRing(_ringcore.RingCore, Ring):  # type: ignore[no-redef]
        """A Ring whose lane (``write``, ``read_one``, ``commit``) and positions (``_tail``,
        ``_limit``, ``_cursor``) are ``_ringcore.RingCore``'s; everything else is Ring's Python."""

        __slots__ = _FIELDS


def _concrete(cls: type[Ring]) -> type[Ring]:
    """What ``Ring.create``/``attach`` build: CRing while the C lane is on, else PyRing; a
    concrete class asked for by name (``PyRing.create``) is built as asked."""
    if cls is not Ring:
        return cls
    return CRing if _ringcore is not None and CRing is not None else PyRing


_arrays: Any = None  # ringbuf.arrays, once a numpy method has been called


def _load_arrays() -> Any:
    global _arrays
    from ringbuf import arrays

    _arrays = arrays
    return arrays
