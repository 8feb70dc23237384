"""The numpy batch path of a ring: many fixed-size records in one copy.

Owns: ``write_array`` and ``read_array``, which frame records exactly as
``Ring.write`` and ``Ring.read`` do (u32 length, payload, pad to 8; see
``ringbuf.ring``), so the two paths mix freely on one ring.
Never: publishes before the copy is done, or returns a view into the ring.

How: for a payload size ``n`` (slot ``size``) and a starting offset ``phase``
(``pos % size``), the data area is seen once as a column of length words and
a column of payloads, both strided by ``size`` (``Views``, cached on the ring
and dropped by ``Ring.close``). A batch of ``k`` records at ``pos`` is then
two slice assignments (write) or one check and one copy (read), whatever
``k`` is; the per-call cost is what limits small batches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ringbuf.errors import RecordTooLarge, WrongRecordSize

if TYPE_CHECKING:
    from ringbuf.ring import Ring

WRAP = 0xFFFFFFFF
_VOID: dict[int, np.dtype] = {}


def void_dtype(n: int) -> np.dtype:
    """The dtype of an opaque ``n``-byte record (cached: building one costs microseconds)."""
    dt = _VOID.get(n)
    if dt is None:
        dt = _VOID[n] = np.dtype((np.void, n))
    return dt


class Views(NamedTuple):
    lengths: np.ndarray  # uint32, one per slot
    payloads: np.ndarray  # void n, one per slot


def views(ring: Ring, n: int, pos: int) -> tuple[Views, int]:
    """The cached column views for ``n``-byte records laid from ``pos``, and ``pos``'s index in them."""
    size = (n + 11) & -8
    phase = pos % size
    cache = ring._array_views()
    found = cache.get((n, phase))
    if found is None:
        data = cache["data"]
        count = (ring.capacity - phase) // size
        lengths = np.ndarray((count,), np.dtype("<u4"), data, phase, (size,))
        payloads = np.ndarray((count,), void_dtype(n), data, phase + 4, (size,))
        found = cache[(n, phase)] = Views(lengths, payloads)
    return found, pos // size


def write_array(ring: Ring, arr: np.ndarray) -> int:
    """Write the longest prefix of ``arr`` that fits (one record per element, or per row of a
    2-D array), publish once, return how many were written."""
    n = arr.dtype.itemsize * (arr.shape[1] if arr.ndim == 2 else 1)
    size = (n + 11) & -8
    if size > ring._max_slot:
        raise RecordTooLarge(f"array records of {n} bytes exceed max_record {ring.max_record} of ring {ring.name!r}")
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    src = arr.reshape(-1).view(void_dtype(n)) if arr.ndim == 2 else arr.view(void_dtype(n))
    first, skip, second = ring._plan_run(len(src), size)
    tail = ring._tail
    pos = tail & ring._mask
    if first:
        cols, i = views(ring, n, pos)
        cols.lengths[i : i + first] = n
        cols.payloads[i : i + first] = src if first == len(src) else src[:first]
    if second:
        cols, i = views(ring, n, 0)
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
    cursor = ring._cursor
    tail = ring._tail_word[0]
    if cursor != tail and ring._u32[(cursor & mask) >> 2] == WRAP:
        cursor = (cursor | mask) + 1
        ring._cursor = cursor
    if cursor == tail:
        return np.empty(0, dt)
    pos = cursor & mask
    first_len = ring._u32[pos >> 2]
    if first_len != n:
        raise WrongRecordSize(
            f"ring {ring.name!r}: the record at position {cursor} has {first_len} bytes, not {n} ({dt})"
        )
    count = min(max_records, (tail - cursor) // size, (ring.capacity - pos) // size)
    cols, i = views(ring, n, pos)
    lengths = cols.lengths[i : i + count]
    if count > 1 and lengths.min() != lengths.max():
        count = int(np.argmax(lengths != n))  # the first record of another size
    out = cols.payloads[i : i + count].copy().view(dt)
    ring._cursor = cursor + count * size
    return out
