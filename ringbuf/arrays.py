"""The numpy batch path of a ring: many fixed-size records in one copy.

Owns: ``write_array`` and ``read_array``, which frame records exactly as
``Ring.write`` and ``Ring.read`` do (u32 length, payload, pad to 8; see
``ringbuf.ring``), so the two paths mix freely on one ring. A batch is laid
over the data area as a structured array (length at +0, payload at +4, one
slot per element) and filled or copied out with two numpy assignments.
Never: publishes before the copy is done, or returns a view into the ring.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ringbuf.errors import RecordTooLarge, WrongRecordSize

if TYPE_CHECKING:
    from ringbuf.ring import Ring

WRAP = 0xFFFFFFFF
_FRAME_DTYPES: dict[int, np.dtype] = {}


def frame_dtype(n: int) -> np.dtype:
    """Structured dtype of one framed record of ``n`` payload bytes: ``n`` (u32) and ``data``."""
    fdt = _FRAME_DTYPES.get(n)
    if fdt is None:
        size = (n + 11) & -8
        fdt = np.dtype({"names": ["n", "data"], "formats": ["<u4", (np.void, n)], "offsets": [0, 4], "itemsize": size})
        _FRAME_DTYPES[n] = fdt
    return fdt


def write_array(ring: Ring, arr: np.ndarray) -> int:
    """Write the longest prefix of ``arr`` that fits (one record per element, or per row of a
    2-D array), publish once, return how many were written."""
    n = arr.dtype.itemsize * (arr.shape[1] if arr.ndim == 2 else 1)
    size = (n + 11) & -8
    if size > ring._max_slot:
        raise RecordTooLarge(f"array records of {n} bytes exceed max_record {ring.max_record} of ring {ring.name!r}")
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    src = arr.reshape(-1).view((np.void, n)) if arr.ndim == 2 else arr.view((np.void, n))
    total = len(src)
    cap = ring.capacity
    tail = ring._tail
    pos = tail & ring._mask
    free = ring._limit - tail
    if free < total * size:
        ring._limit = ring._head_word[0] + cap
        free = ring._limit - tail
    room = (cap - pos) // size  # records that fit before the end of the data area
    first = min(total, room, free // size)
    data = ring._data_array()
    fdt = frame_dtype(n)
    if first:
        frames = data[pos : pos + first * size].view(fdt)
        frames["n"] = n
        frames["data"] = src[:first]
    done = first
    if done < total and first == room:
        skip = cap - pos - first * size
        second = min(total - done, (free - first * size - skip) // size)
        if second > 0:
            frames = data[: second * size].view(fdt)
            frames["n"] = n
            frames["data"] = src[done : done + second]
            if skip:
                ring._u32[(pos + first * size) >> 2] = WRAP
            tail += skip
            done += second
    if done:
        ring._publish(tail + done * size)
    return done


def read_array(ring: Ring, dtype: Any, max_records: int = 1024) -> np.ndarray:
    """Copy out up to ``max_records`` records of exactly ``dtype.itemsize`` bytes as one array.

    Stops before the first record of another size and at the end of the data area (the next
    call goes on from slot 0). An empty array means nothing is pending; when the very next
    record has another size it raises WrongRecordSize (read that one with ``Ring.read``), so a
    caller never spins on an empty answer. Frees nothing: ``commit`` does.
    """
    dt = np.dtype(dtype)
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
    frames = ring._data_array()[pos : pos + count * size].view(frame_dtype(n))
    same = frames["n"] == n
    if not same.all():
        count = int(same.argmin())
        frames = frames[:count]
    out = frames["data"].copy().view(dt)
    ring._cursor = cursor + count * size
    return out
