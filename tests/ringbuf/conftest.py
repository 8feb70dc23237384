"""Fixtures shared by the ring tests: fresh rings that are unlinked afterwards, and no child process left behind."""

from __future__ import annotations

import multiprocessing as mp
import uuid
from collections.abc import Callable, Iterator

import pytest

from ringbuf import Ring


@pytest.fixture(autouse=True)
def reap_children() -> Iterator[None]:
    """A failed test must not leave a child behind (it would keep the session from exiting)."""
    yield
    for child in mp.active_children():
        child.kill()
        child.join(timeout=10)


@pytest.fixture
def make_ring() -> Iterator[Callable[..., Ring]]:
    """``make_ring(capacity=16 KiB)``: a new ring under a unique name, closed and unlinked after the test."""
    made: list[Ring] = []

    def make(capacity: int = 1 << 14) -> Ring:
        ring = Ring.create(f"test-ring-{uuid.uuid4().hex[:12]}", capacity)
        made.append(ring)
        return ring

    yield make
    for ring in made:
        ring.close()
        ring.unlink()
