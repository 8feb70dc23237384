"""The numpy batch path (ringbuf.arrays): same framing as the record path, so the two mix."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from ringbuf import RecordTooLarge, Ring, WrongRecordSize
from ringbuf.ring import WRAP

ORDER = np.dtype([("seq", "<u8"), ("price", "<i8"), ("qty", "<i4")])  # 20 bytes: 24-byte slots


@pytest.fixture
def ring() -> Iterator[Ring]:
    ring = Ring.create(f"test-arr-{uuid.uuid4().hex[:12]}", 512)
    yield ring
    ring.close()
    ring.unlink()


def orders(start: int, count: int) -> np.ndarray:
    arr = np.zeros(count, ORDER)
    arr["seq"] = np.arange(start, start + count)
    arr["price"] = 10_000 + arr["seq"]
    arr["qty"] = 7
    return arr


def test_write_array_then_read_array_round_trips(ring: Ring) -> None:
    sent = orders(0, 10)

    written = ring.write_array(sent)
    got = ring.read_array(ORDER)

    assert written == 10
    assert got.dtype == ORDER
    assert np.array_equal(got, sent)
    assert ring.read() == []


def test_array_records_read_as_bytes_and_bytes_read_as_an_array(ring: Ring) -> None:
    sent = orders(0, 3)
    ring.write_array(sent)
    ring.write_batch([rec.tobytes() for rec in orders(3, 2)])

    as_bytes = ring.read(3)
    as_array = ring.read_array(ORDER)

    assert as_bytes == [rec.tobytes() for rec in sent]
    assert np.array_equal(as_array, orders(3, 2))


def test_write_array_writes_the_prefix_that_fits_and_wraps_behind_a_marker(ring: Ring) -> None:
    ring.write_batch([b"x" * 100] * 3)  # 3 slots of 104 bytes: 312 used, tail at 312
    ring.read()
    ring.commit()

    written = ring.write_array(orders(0, 30))

    # 8 records up to 504, 8 bytes skipped, then 13 from slot 0 up to the committed head (312)
    assert written == 8 + 13
    assert ring.free_bytes() == 0
    assert ring._u32[504 >> 2] == WRAP
    first = ring.read_array(ORDER)  # stops at the end of the data area
    second = ring.read_array(ORDER)
    assert (len(first), len(second)) == (8, 13)
    assert np.array_equal(np.concatenate([first, second]), orders(0, 21))


def test_read_array_stops_before_a_record_of_another_size(ring: Ring) -> None:
    ring.write_array(orders(0, 4))
    ring.write(b"odd one")
    ring.write_array(orders(4, 2))

    first = ring.read_array(ORDER)
    with pytest.raises(WrongRecordSize, match="has 7 bytes, not 20"):
        ring.read_array(ORDER)
    odd = ring.read(1)
    rest = ring.read_array(ORDER)

    assert np.array_equal(first, orders(0, 4))
    assert odd == [b"odd one"]
    assert np.array_equal(rest, orders(4, 2))


def test_read_array_respects_max_records_and_returns_empty_when_nothing_is_pending(ring: Ring) -> None:
    ring.write_array(orders(0, 5))

    got = ring.read_array(ORDER, max_records=3)
    rest = ring.read_array(ORDER)
    nothing = ring.read_array(ORDER)

    assert len(got) == 3 and len(rest) == 2 and len(nothing) == 0


def test_rows_of_a_2d_uint8_array_are_records(ring: Ring) -> None:
    rows = np.arange(48, dtype=np.uint8).reshape(4, 12)

    ring.write_array(rows)

    assert ring.read() == [bytes(row) for row in rows]


def test_read_array_result_is_a_copy_that_survives_the_ring(ring: Ring) -> None:
    ring.write_array(orders(0, 2))
    got = ring.read_array(ORDER)
    ring.commit()

    ring.write_array(orders(100, 20))  # overwrites the slots the first two came from

    assert list(got["seq"]) == [0, 1]


def test_write_array_rejects_records_above_max_record(ring: Ring) -> None:
    big = np.zeros(2, np.dtype((np.void, ring.max_record + 1)))

    with pytest.raises(RecordTooLarge, match=str(ring.max_record + 1)):
        ring.write_array(big)
    assert ring.positions() == (0, 0)
