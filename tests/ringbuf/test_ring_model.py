"""Property test of ringbuf.ring against a reference model: a list of accepted records, a read
cursor and a committed index. Random writes (single, batch, numpy), reads, commits, rewinds and
consumer restarts on a small ring, so that wrap-around and full rings happen all the time."""

from __future__ import annotations

import uuid

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ringbuf import RecordTooLarge, Ring, WrongRecordSize
from ringbuf.ring import CRing, PyRing, slot_size

CAPACITY = 512


class RingModel(RuleBasedStateMachine):
    """On the rings ``Ring.create``/``attach`` build (CRing where the C lane is built)."""

    kinds: tuple[type[Ring], ...] = (Ring,)  # what the consumer restarts as, in turn

    @initialize()
    def create(self) -> None:
        self.restarts = 0
        self.ring = self.kinds[0].create(f"test-model-{uuid.uuid4().hex[:12]}", CAPACITY)
        self.accepted: list[bytes] = []
        self.cursor = 0  # index into accepted of the next record to read
        self.committed = 0
        self.seq = 0

    def teardown(self) -> None:
        if hasattr(self, "ring"):
            self.ring.close()
            self.ring.unlink()

    def _record(self, n: int) -> bytes:
        self.seq += 1
        return bytes([self.seq % 251]) * n

    def _fits(self, tail: int, head: int, n: int) -> tuple[bool, int]:
        """Does a record of ``n`` bytes fit, and where does the tail go if it does."""
        size = slot_size(n)
        pos = tail % CAPACITY
        need = size + (CAPACITY - pos if pos + size > CAPACITY else 0)
        return tail + need - head <= CAPACITY, tail + need

    @rule(n=st.integers(0, 260))
    def write(self, n: int) -> None:
        record = self._record(n)
        tail, head = self.ring.positions()
        if n > self.ring.max_record:
            try:
                self.ring.write(record)
            except RecordTooLarge:
                assert self.ring.positions() == (tail, head)
                return
            raise AssertionError(f"a record of {n} bytes was accepted")
        fits, new_tail = self._fits(tail, head, n)

        ok = self.ring.write(record)

        assert ok == fits
        if ok:
            self.accepted.append(record)
            assert self.ring.positions()[0] == new_tail
        else:
            assert self.ring.positions() == (tail, head)

    @rule(sizes=st.lists(st.integers(0, 100), max_size=12))
    def write_batch(self, sizes: list[int]) -> None:
        records = [self._record(n) for n in sizes]
        tail, head = self.ring.positions()
        expected = 0
        for n in sizes:
            fits, new_tail = self._fits(tail, head, n)
            if not fits:
                break
            tail = new_tail
            expected += 1

        count = self.ring.write_batch(records)

        assert count == expected
        self.accepted.extend(records[:count])
        assert self.ring.positions()[0] == tail

    @rule(n=st.integers(0, 40), k=st.integers(0, 40))
    def write_same_size_batch(self, n: int, k: int) -> None:
        """Batches of equal records take the one-join path of ``write_batch``."""
        self.write_batch([n] * k)

    @rule(n=st.sampled_from([8, 20]), k=st.integers(0, 12))
    def write_array(self, n: int, k: int) -> None:
        records = [self._record(n) for _ in range(k)]
        arr = np.frombuffer(b"".join(records), dtype=(np.void, n)) if k else np.empty(0, (np.void, n))

        count = self.ring.write_array(arr)

        assert 0 <= count <= k
        self.accepted.extend(records[:count])
        tail, head = self.ring.positions()
        if count < k:  # refused only for want of room
            assert not self._fits(tail, head, n)[0]

    @rule(k=st.integers(1, 80))
    def read(self, k: int) -> None:
        got = self.ring.read(k)

        assert got == self.accepted[self.cursor : self.cursor + k]
        self.cursor += len(got)

    @rule(n=st.sampled_from([8, 20]), k=st.integers(1, 20))
    def read_array(self, n: int, k: int) -> None:
        pending = self.accepted[self.cursor :]
        try:
            got = self.ring.read_array((np.void, n), k)
        except WrongRecordSize:
            assert pending and len(pending[0]) != n
            return
        records = [bytes(item) for item in got]
        assert records == pending[: len(records)]
        assert all(len(record) == n for record in records)
        assert len(records) <= k
        if pending and len(pending[0]) == n:
            assert records  # never an empty answer while a record of that size is next
        self.cursor += len(records)

    @rule()
    def commit(self) -> None:
        self.ring.commit()
        self.committed = self.cursor

    @rule()
    def rewind(self) -> None:
        self.ring.rewind()
        self.cursor = self.committed

    @rule()
    def restart_consumer(self) -> None:
        name = self.ring.name
        self.ring.close()
        self.restarts += 1
        self.ring = self.kinds[self.restarts % len(self.kinds)].attach(name)
        self.ring._creator = True  # this test created the segment and unlinks it in teardown
        self.cursor = self.committed

    @invariant()
    def pending_matches_the_model(self) -> None:
        if hasattr(self, "ring"):
            assert self.ring.pending() == (self.cursor < len(self.accepted))


class PyRingModel(RingModel):
    """The pure-Python lane alone."""

    kinds = (PyRing,)


class MixedRingModel(RingModel):
    """Each restart switches between the C lane and pure Python on the same segment (byte-compatible)."""

    kinds = (PyRing, CRing) if CRing is not None else (PyRing,)


TestRingModel = RingModel.TestCase
TestRingModel.settings = settings(max_examples=100, stateful_step_count=60, deadline=None)
TestPyRingModel = PyRingModel.TestCase
TestPyRingModel.settings = settings(max_examples=60, stateful_step_count=60, deadline=None)
TestMixedRingModel = MixedRingModel.TestCase
TestMixedRingModel.settings = settings(max_examples=60, stateful_step_count=60, deadline=None)
