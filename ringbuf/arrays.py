"""The numpy batch path of a ring: many fixed-size records in one copy.

Owns: ``write_array`` and ``read_array``, which frame records exactly as
``Ring.write`` and ``Ring.read`` do (u32 length, payload, pad to 8; see
``ringbuf.ring``), so the two paths mix freely on one ring.
Never: publishes before the copy is done, or returns a view into the ring.

How: for a record size ``n`` (slot ``size``) and a starting offset ``phase``
(``pos % size``), the data area is seen once as a column of length words and
a column of opaque ``n``-byte payloads, both strided by ``size`` (``Columns``,
cached on the ring and dropped by ``Ring.close``). A batch of
``k`` records at ``pos`` is then two slice assignments (write), or one length
check and one copy (read), whatever ``k`` is: the per-call cost, a dozen
numpy calls, is what limits small batches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ringbuf.errors import RecordTooLarge, WrongRecordSize

if TYPE_CHECKING:
    from ringbuf.ring import Ring

WRAP = 0xFFFFFFFF
_PATTERN_RECORDS = 4096  # length checks up to this many records compare u32 views, above it numpy
_VOID: dict[int, np.dtype] = {}
_PATTERNS: dict[int, memoryview] = {}
_U32 = np.dtype("<u4")


def void_dtype(n: int) -> np.dtype:
    """The dtype of an opaque ``n``-byte record (cached: building one costs microseconds)."""
    dt = _VOID.get(n)
    if dt is None:
        dt = _VOID[n] = np.dtype((np.void, n))
    return dt


class Columns(NamedTuple):
    lengths: np.ndarray  # uint32 length word of each slot
    payloads: np.ndarray  # the payload of each slot, as opaque n-byte records


def columns(ring: Ring, n: int, pos: int) -> Columns:
    """The columns for ``n``-byte records laid from ``pos`` (slot ``pos // size`` in them), cached
    on the ring under ``(n, pos % size)``."""
    size = (n + 11) & -8
    phase = pos % size
    cache = ring._array_views()
    found = cache.get((n, phase))
    if found is None:
        data = cache["data"]
        count = (ring.capacity - phase) // size
        lengths = np.ndarray((count,), _U32, data, phase, (size,))
        payloads = np.ndarray((count,), void_dtype(n), data, phase + 4, (size,))
        found = cache[(n, phase)] = Columns(lengths, payloads)
    return found


def write_array(ring: Ring, arr: np.ndarray) -> int:
    """Write the longest prefix of ``arr`` that fits (one record per element, or per row of a
    2-D array), publish once, return how many were written."""
    if arr.ndim == 1:  # copies between void arrays are plain memcpys; structured ones go field by field
        n = arr.dtype.itemsize
        try:
            src = np.frombuffer(arr, _VOID.get(n) or void_dtype(n))  # half the cost of arr.view
        except (ValueError, BufferError):  # not contiguous (or empty): view it instead
            src = arr.view(void_dtype(n))
    else:  # rows as opaque records
        if not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr)
        n = arr.dtype.itemsize * arr.shape[1]
        src = arr.reshape(-1).view(void_dtype(n))
    size = (n + 11) & -8
    if size > ring._max_slot:
        raise RecordTooLarge(f"array records of {n} bytes exceed max_record {ring.max_record} of ring {ring.name!r}")
    total = len(src)
    tail = ring._tail
    pos = tail & ring._mask
    need = total * size
    if tail + need <= ring._limit and pos + need <= ring.capacity:
        first, skip, second = total, 0, 0  # the common case: room, and no wrap (``Ring._plan_run`` inlined)
    else:
        first, skip, second = ring._plan_run(total, size)
    if first:
        cols = (ring._np_data or ring._array_views()).get((n, pos % size)) or columns(ring, n, pos)
        i = pos // size
        cols.lengths[i : i + first] = n
        cols.payloads[i : i + first] = src if first == total else src[:first]
    if second:
        cols = columns(ring, n, 0)
        cols.lengths[:second] = n
        cols.payloads[:second] = src[first : first + second]
        if skip:
            ring._u32[(pos + first * size) >> 2] = WRAP
    done = first + second
    if done:
        ring._publish(tail + skip + done * size)
    return done


def read_array(ring: Ring, dtype: Any, max_records: int = 1024) -> np.ndarray:
    """Copy out up to ``max_records`` records of exactly ``dtype.itemsize`` bytes as one array.

    Stops before the first record of another size and at the end of the data area (the next
    call goes on from slot 0). An empty array means nothing is pending; when the very next
    record has another size it raises WrongRecordSize (read that one with ``Ring.read``), so a
    caller never spins on an empty answer. Frees nothing: ``commit`` does.
    """
    dt = dtype if isinstance(dtype, np.dtype) else np.dtype(dtype)
    n = dt.itemsize
    size = (n + 11) & -8
    mask = ring._mask
    u32 = ring._u32
    cursor = ring._cursor
    tail = ring._tail_word[0]
    if cursor == tail:
        return np.empty(0, dt)
    pos = cursor & mask
    first_len = u32[pos >> 2]
    if first_len == WRAP:
        cursor = ring._cursor = (cursor | mask) + 1
        pos = 0
        first_len = u32[0]
    if first_len != n:
        raise WrongRecordSize(
            f"ring {ring.name!r}: the record at position {cursor} has {first_len} bytes, not {n} ({dt})"
        )
    count = (tail - cursor) // size
    room = (ring.capacity - pos) // size
    if room < count:
        count = room
    if max_records < count:
        count = max_records
    cols = (ring._np_data or ring._array_views()).get((n, pos % size)) or columns(ring, n, pos)
    i = pos // size
    # All count length words n? One strided compare of the ring's u32 view with a cached run of n
    # costs a quarter of a numpy reduction; only when it fails does numpy find the first other.
    word = pos >> 2
    if count > _PATTERN_RECORDS or u32[word : word + count * (size >> 2) : size >> 2] != _pattern(n)[:count]:
        same = cols.lengths[i : i + count] == n
        if not same.all():
            count = int(np.argmax(~same))  # stop before the first record of another size (or a wrap marker)
    out = cols.payloads[i : i + count].copy()
    ring._cursor = cursor + count * size
    return out if dt is out.dtype else np.frombuffer(out, dt)


def _pattern(n: int) -> memoryview:
    """The length word ``n`` repeated for ``_PATTERN_RECORDS`` records, as a u32 view (cached)."""
    pattern = _PATTERNS.get(n)
    if pattern is None:
        pattern = _PATTERNS[n] = memoryview(n.to_bytes(4, "little") * _PATTERN_RECORDS).cast("I")
    return pattern
