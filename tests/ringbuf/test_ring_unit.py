"""Unit tests of ringbuf.ring in one process: framing edge cases, back-pressure, commit, rewind."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from ringbuf import BadPosition, BadRingConfig, NotCreator, RecordTooLarge, Ring, RingCorrupt
from ringbuf.ring import HEADER_BYTES, WRAP, slot_size

pytestmark = pytest.mark.usefixtures("lane")  # each test on the C lane and in pure Python


def move_to(ring: Ring, position: int) -> None:
    """Advance an empty ring's positions to ``position`` with zero-length records."""
    while ring.positions()[0] < position:
        assert ring.write(b"")
        ring.read()
        ring.commit()
    assert ring.positions() == (position, position)


@pytest.mark.parametrize("capacity", [0, 32, 48, 100, 1000, 3 << 10, 1 << 33])
def test_create_rejects_capacity_that_is_not_a_power_of_two_in_range(capacity: int) -> None:
    with pytest.raises(BadRingConfig, match=str(capacity)) as excinfo:
        Ring.create(f"test-unit-{uuid.uuid4().hex[:12]}", capacity)
    assert isinstance(excinfo.value, ValueError)
    assert excinfo.value.code == "RING_BAD_CONFIG"


def test_create_fails_when_the_name_exists(make_ring: Callable[[int], Ring]) -> None:
    ring = make_ring(256)
    with pytest.raises(FileExistsError):
        Ring.create(ring.name, 256)


def test_attach_reads_what_the_creator_wrote(make_ring: Callable[[int], Ring]) -> None:
    ring = make_ring(1024)
    ring.write(b"alpha")
    ring.write_batch([b"beta", b"gamma"])

    with Ring.attach(ring.name) as attached:
        records = attached.read()

    assert records == [b"alpha", b"beta", b"gamma"]
    assert (attached.capacity, attached.max_record) == (1024, 508)


def test_attach_of_a_missing_ring_raises_file_not_found() -> None:
    with pytest.raises(FileNotFoundError):
        Ring.attach(f"test-unit-missing-{uuid.uuid4().hex[:8]}")


def test_zero_length_records_take_one_slot_and_round_trip(make_ring: Callable[[int], Ring]) -> None:
    ring = make_ring(64)

    written = sum(ring.write(b"") for _ in range(10))

    assert written == 8  # 64 bytes / 8-byte slots
    assert ring.positions() == (64, 0)
    assert ring.read() == [b""] * 8


def test_record_exactly_filling_to_the_end_needs_no_wrap_marker(make_ring: Callable[[int], Ring]) -> None:
    ring = make_ring(256)
    move_to(ring, 128)
    exact = b"e" * (128 - 4)  # slot of 128 bytes ends exactly at the end of the data area

    assert ring.write(exact)
    assert ring.positions()[0] == 256
    assert ring.write(b"next")  # goes to slot 0 directly

    assert ring.positions()[0] == 256 + slot_size(4)
    assert ring.read() == [exact, b"next"]
    assert ring._u32[0] == 4  # the record itself, not a wrap marker, sits at slot 0


def test_record_that_does_not_fit_before_the_end_wraps_behind_a_marker(make_ring: Callable[[int], Ring]) -> None:
    ring = make_ring(256)
    move_to(ring, 240)  # 16 bytes left before the end
    record = b"w" * 20  # slot of 24 bytes

    assert ring.write(record)

    assert ring._u32[240 >> 2] == WRAP
    assert ring.positions()[0] == 240 + 16 + 24
    assert ring.read() == [record]
    ring.commit()
    assert ring.free_bytes() == 256


def test_max_record_is_accepted_and_one_byte_more_is_rejected(make_ring: Callable[[int], Ring]) -> None:
    ring = make_ring(256)
    assert ring.max_record == 124

    with pytest.raises(RecordTooLarge, match="125") as excinfo:
        ring.write(b"x" * 125)
    assert isinstance(excinfo.value, ValueError)
    assert ring.positions() == (0, 0)
    assert ring.write(b"x" * 124)
    assert ring.read() == [b"x" * 124]


@pytest.mark.parametrize("position", range(0, 256, 8))
def test_max_record_fits_into_an_empty_ring_wherever_the_positions_stand(
    make_ring: Callable[[int], Ring], position: int
) -> None:
    ring = make_ring(256)
    move_to(ring, position)

    ok = ring.write(b"m" * ring.max_record)

    assert ok
    assert ring.read() == [b"m" * ring.max_record]


def test_full_ring_refuses_a_write_and_writes_nothing(make_ring: Callable[[int], Ring]) -> None:
    ring = make_ring(256)
    records = [bytes([i]) * 20 for i in range(20)]  # 24-byte slots: 10 fit

    accepted = [record for record in records if ring.write(record)]
    before = ring.positions()
    refused = ring.write(b"r" * 20)  # 16 bytes are left

    assert len(accepted) == 10
    assert accepted == records[:10]
    assert refused is False
    assert ring.positions() == before
    assert ring.read() == records[:10]


def test_read_does_not_free_space_until_commit(make_ring: Callable[[int], Ring]) -> None:
    ring = make_ring(64)
    while ring.write(b"12345678"):
        pass
    ring.read()

    refused_before_commit = ring.write(b"12345678")
    ring.commit()
    accepted_after_commit = ring.write(b"12345678")

    assert refused_before_commit is False
    assert accepted_after_commit is True


def test_write_batch_writes_the_longest_prefix_that_fits(make_ring: Callable[[int], Ring]) -> None:
    ring = make_ring(256)
    batch = [bytes([i]) * 40 for i in range(10)]  # 48-byte slots: 5 fit

    count = ring.write_batch(batch)

    assert count == 5
    assert ring.read() == batch[:5]
    assert ring.write_batch(batch[5:]) == 0  # nothing committed yet
    ring.commit()
    assert ring.write_batch(batch[5:]) == 5
    assert ring.read() == batch[5:]


def test_write_batch_wraps_inside_a_batch(make_ring: Callable[[int], Ring]) -> None:
    ring = make_ring(256)
    move_to(ring, 200)
    batch = [bytes([i]) * 30 for i in range(7)]  # 40-byte slots

    count = ring.write_batch(batch)

    assert count == 6  # one record to 240, skip 16, five more from slot 0: 256 bytes used
    assert ring._u32[240 >> 2] == WRAP
    assert ring.read() == batch[:6]


def test_write_batch_publishes_the_prefix_before_a_record_that_is_too_large(make_ring: Callable[[int], Ring]) -> None:
    ring = make_ring(256)

    with pytest.raises(RecordTooLarge, match="record 2 of 200 bytes"):
        ring.write_batch([b"a", b"b", b"c" * 200, b"d"])

    assert ring.read() == [b"a", b"b"]


def test_read_returns_at_most_max_records(make_ring: Callable[[int], Ring]) -> None:
    ring = make_ring(1024)
    ring.write_batch([str(i).encode() for i in range(20)])

    first = ring.read(7)
    second = ring.read(100)

    assert first == [str(i).encode() for i in range(7)]
    assert second == [str(i).encode() for i in range(7, 20)]
    assert ring.read() == []


def test_rewind_reads_the_uncommitted_records_again(make_ring: Callable[[int], Ring]) -> None:
    ring = make_ring(1024)
    ring.write_batch([b"a", b"b", b"c", b"d"])
    ring.read(2)
    ring.commit()
    ring.read()

    ring.rewind()

    assert ring.read() == [b"c", b"d"]


def test_a_new_attacher_starts_at_the_committed_position(make_ring: Callable[[int], Ring]) -> None:
    ring = make_ring(1024)
    ring.write_batch([b"a", b"b", b"c", b"d", b"e"])
    first = Ring.attach(ring.name)
    first.read(3)
    first.commit()
    first.read()  # d, e read but not committed
    first.close()

    with Ring.attach(ring.name) as second:
        assert second.read() == [b"d", b"e"]


def test_pending_tells_whether_unread_records_exist(make_ring: Callable[[int], Ring]) -> None:
    ring = make_ring(256)
    assert not ring.pending()
    ring.write(b"x")
    assert ring.pending()
    ring.read()
    assert not ring.pending()


def test_read_rejects_a_length_word_above_max_record(make_ring: Callable[[int], Ring]) -> None:
    ring = make_ring(256)
    ring.write(b"abc")
    ring._u32[0] = 500  # a torn or garbage length

    with pytest.raises(RingCorrupt, match="0x1f4"):
        ring.read()
    assert ring.pending()  # the cursor did not move


def test_read_rejects_a_record_that_runs_past_the_tail(make_ring: Callable[[int], Ring]) -> None:
    ring = make_ring(256)
    ring.write(b"abc")
    ring._u32[0] = 100  # claims more bytes than were published

    with pytest.raises(RingCorrupt, match="past tail 8"):
        ring.read()


def test_only_the_creator_unlinks(make_ring: Callable[[int], Ring]) -> None:
    ring = make_ring(256)
    with Ring.attach(ring.name) as attached:
        with pytest.raises(NotCreator, match=ring.name):
            attached.unlink()


def test_close_is_idempotent_and_unlink_works_after_close() -> None:
    ring = Ring.create(f"test-unit-{uuid.uuid4().hex[:12]}", 256)
    ring.close()
    ring.close()
    ring.unlink()
    with pytest.raises(FileNotFoundError):
        Ring.attach(ring.name)


def test_header_layout_is_as_specified(make_ring: Callable[[int], Ring]) -> None:
    ring = make_ring(4096)
    ring.write(b"hello")
    ring.read()
    ring.commit()

    header = bytes(ring._shm.buf[:HEADER_BYTES])

    assert header[0:8] == b"RINGBUF1"
    assert int.from_bytes(header[8:16], "little") == 1
    assert int.from_bytes(header[16:24], "little") == 4096
    assert int.from_bytes(header[128:136], "little") == 16  # tail
    assert int.from_bytes(header[256:264], "little") == 16  # head
    assert int.from_bytes(header[384:392], "little") == 0  # sleeping
    assert bytes(ring._shm.buf[HEADER_BYTES : HEADER_BYTES + 9]) == b"\x05\x00\x00\x00hello"


def test_created_ns_tells_two_incarnations_of_a_name_apart() -> None:
    name = f"test-unit-{uuid.uuid4().hex[:12]}"
    first = Ring.create(name, 256)
    seen_by_attacher = Ring.attach(name).created_ns
    first.close()
    first.unlink()
    second = Ring.create(name, 256)

    assert seen_by_attacher == first.created_ns > 0
    assert second.created_ns != first.created_ns
    second.close()
    second.unlink()


def test_seek_moves_the_read_cursor_to_a_remembered_position(make_ring: Callable[[int], Ring]) -> None:
    ring = make_ring(1024)
    ring.write_batch([b"a", b"b", b"c", b"d"])
    ring.read(2)
    remembered = ring.read_position()
    ring.read()

    ring.seek(remembered)

    assert ring.read() == [b"c", b"d"]


@pytest.mark.parametrize("offset", [-8, 8])
def test_seek_outside_head_and_tail_is_refused(make_ring: Callable[[int], Ring], offset: int) -> None:
    ring = make_ring(1024)
    ring.write_batch([b"a", b"b"])
    ring.read(1)
    ring.commit()
    tail, head = ring.positions()
    target = head + offset if offset < 0 else tail + offset

    with pytest.raises(BadPosition, match=str(target)) as excinfo:
        ring.seek(target)
    assert isinstance(excinfo.value, ValueError)
