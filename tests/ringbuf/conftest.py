"""Fixtures shared by the ring tests: fresh rings that are unlinked afterwards, no child process left behind,
and ``lane``, which runs a test once on the C lane and once in pure Python."""

from __future__ import annotations

import multiprocessing as mp
import uuid
from collections.abc import Callable, Iterator

import pytest

import ringbuf.doorbell as doorbell_module
import ringbuf.ring as ring_module
from ringbuf import Doorbell, Ring

LANES = ("c", "python")


@pytest.fixture(params=LANES)
def lane(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``c``: the rings the test builds are CRings (skipped where ``ringbuf._ringcore`` is not built);
    ``python``: PyRings, here, in forked children (they inherit the switch) and in spawned
    interpreters (``RINGBUF_PURE_PYTHON``). Modules use it with ``pytestmark = usefixtures("lane")``."""
    if request.param == "c":
        if ring_module.CRing is None:
            pytest.skip("ringbuf._ringcore is not built: no C lane to test")
    else:
        monkeypatch.setattr(ring_module, "_ringcore", None)
        monkeypatch.setenv("RINGBUF_PURE_PYTHON", "1")
    return str(request.param)


@pytest.fixture(autouse=True)
def reap_children() -> Iterator[None]:
    """A failed test must not leave a child behind (it would keep the session from exiting)."""
    yield
    for child in mp.active_children():
        child.kill()
        child.join(timeout=10)


@pytest.fixture
def make_ring() -> Iterator[Callable[..., Ring]]:
    """``make_ring(capacity=16 KiB, kind=Ring)``: a new ring under a unique name (``kind`` picks CRing or PyRing;
    Ring builds the selected lane), closed and unlinked after the test."""
    made: list[Ring] = []

    def make(capacity: int = 1 << 14, kind: type[Ring] = Ring) -> Ring:
        ring = kind.create(f"test-ring-{uuid.uuid4().hex[:12]}", capacity)
        made.append(ring)
        return ring

    yield make
    for ring in made:
        ring.close()
        ring.unlink()


@pytest.fixture
def bell() -> Iterator[Doorbell]:
    """A doorbell, closed after the test."""
    made = Doorbell.create()
    yield made
    made.close()


@pytest.fixture
def bells() -> Iterator[Callable[[], Doorbell]]:
    """Makes doorbells, each closed after the test."""
    made: list[Doorbell] = []

    def make() -> Doorbell:
        bell = Doorbell.create()
        made.append(bell)
        return bell

    yield make
    for bell in made:
        bell.close()


@pytest.fixture
def long_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the doorbell can wake a sleeping consumer in time (forked children inherit this)."""
    monkeypatch.setattr(doorbell_module, "BLOCK_SLICE", 30.0)
    monkeypatch.setattr(doorbell_module, "IDLE_SLICE", 30.0)
