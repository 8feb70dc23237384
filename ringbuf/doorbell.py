"""Doorbells: how a producer wakes a consumer process that sleeps on its rings.

Owns: the ``eventfd`` doorbell (one per consumer process, shared by all its
input rings), ``Producer`` (write, then ring only if the consumer sleeps),
``Consumer`` with its wait strategies and ``AsyncConsumer`` for an asyncio
loop. Never: locks, rings the bell for a consumer that is awake, or sleeps
without a bound (see "lost wake-ups" below).

Wait strategies (configuration, per consumer process):
    spin    poll the tails in a loop: lowest latency, burns a whole core.
    yield   poll, calling ``sched_yield`` between polls: a core's worth of
            CPU when idle, gives way to other runnable processes.
    block   poll once (optionally spin ``spin_s`` first), then sleep on the
            doorbell: no CPU while idle, pays a wake-up (tens of us) per sleep.
    hybrid  spin up to ``spin_us`` microseconds (``HYBRID_SPIN_US`` by
            default, a clock read every ``_HYBRID_POLLS`` polls), then sleep
            exactly as ``block`` does: spin latency while records keep coming,
            no CPU once they stop. For processes on dedicated cores.
            ``AsyncConsumer(spin_us=...)`` is its event-loop form: it polls
            once per loop pass (``sleep(0)``), never holding the loop.
    Only ``block``, ``hybrid`` (once its spin is over) and ``AsyncConsumer``
    ever set the ``sleeping`` word, so producers of a spinning or yielding
    consumer never make a system call. Spinning never sets it, so the
    handshake below is the same for ``block`` and ``hybrid``: no wake-up can
    be lost between the two phases.

The low-latency lane, one record at a time: ``Producer.send`` (``Ring.write``
inlined, then the doorbell check) and ``Consumer.recv`` (for one ring with
``spin`` or ``hybrid``, ``Ring.read_one`` polls the tail and copies the
record in one frame), then ``Consumer.commit``. Batches go through ``wait``
and ``Ring.read`` / ``read_array``; both lanes mix on one ring. On a
``CRing`` (``ringbuf.ring``: the C lane) each of these is one C call, chosen
when the Producer or Consumer is built: ``send`` is a ``_ringcore.Sender``
(the steps p1-p3 below: the tail store-release, the fence F, then the
``eventfd`` write only if ``sleeping`` is set), a one-ring ``commit`` is the
ring's, and a one-ring ``recv`` with ``spin`` is ``RingCore._recv_spin`` (its
poll loop, clock and signal checks in C). ``hybrid`` and ``block`` keep their sleep in Python.

Handshake, on the ``sleeping`` word in each ring header (offset 384, written
by the consumer only; see ``ringbuf.ring`` for the layout)::

    consumer (block)                                 producer (send)
    c1  any ring has data? -> return                 p1  write record(s); store tail
    c2  sleeping := 1 on every input ring            F   full fence (_ringcore.full_fence)
    c3  full fence; then, if a ring is marked        p2  load sleeping
        ``unfenced``, membarrier (below)             p3  if sleeping: eventfd_write(+1)
    c4  any ring has data? -> sleeping := 0, return
    c5  poll(doorbell, at most IDLE_SLICE, or BLOCK_SLICE when not exact)
    c6  drain the eventfd; sleeping := 0; go to c1

A wake-up is lost only if c4 misses the tail stored in p1 *and* p2 misses the
flag stored in c2. In program order one of them must see the other, but x86
lets a load pass an earlier store to another address (the store waits in the
store buffer): p2 can run before p1's store is visible and c4 before c2's.
That is Dekker's problem; a full fence on each side between its store and its
load solves it: if p2 missed c2, p2 ran before c3 completed (c3 makes c2
visible), so F had completed (p1 visible) before c4 ran: c4 sees p1.

Who fences. Where ``ringbuf._ringcore`` is built (and ``RINGBUF_PURE_PYTHON``
is not set) every ``Producer`` does: ``Sender`` in C, every Python path
(``send`` of a ``PyRing``, ``send_batch``, ``send_array``, ``wake``) through
``_ringcore.full_fence()`` (a locked add). A producer without the core cannot,
so when it is built it marks the ring instead: it registers its process for
membarrier (``ringbuf.fence``) and sets the ring's ``unfenced`` word (1; 2 if
it could not register). A consumer's c3 is the C fence, then a look at its
rings' ``unfenced`` words: all 0, done (exact). A ring marked, it adds
``membarrier(GLOBAL_EXPEDITED)``, a full barrier on every CPU running a
registered process (one not running has passed a context switch, itself a
barrier): the F of the producers that mark. A consumer without the core uses
membarrier. A mark 2 or no membarrier (``fence.AVAILABLE`` False): no exact
handshake; the window stays open for as long as a store sits in a store
buffer (well under a microsecond) and c5 sleeps at most ``BLOCK_SLICE`` (2 ms),
so a record is at worst 2 ms late. Exact: c5 sleeps until the bell, the
caller's timeout or ``IDLE_SLICE`` (1 s, a bound for robustness only).

A mark cannot race a consumer that chose the C fence alone before it: the
marking producer stores the mark, runs membarrier (a full fence for itself
too), then loads ``sleeping`` and rings if it is set (without membarrier it
rings anyway). Dekker again: either that consumer's c3 saw the mark, or the
producer sees it asleep and wakes it, and then all its later p2 see the c2
of that sleep or a later store (the consumer's next c3 sees the mark). A
mark is never cleared: the ring stays on membarrier for its life.

A spurious wake-up (a bell rung just before c6 cleared the flag) only costs
one extra pass. ``AsyncConsumer`` runs the same steps; its c5 awaits a future
that the event loop's reader on the doorbell fd (``loop.add_reader``)
resolves, or a ``BLOCK_SLICE`` timer when not exact (when exact, one
``IDLE_SLICE`` watchdog at a time: no timer per sleep), so the loop serves
other tasks meanwhile.

``AsyncConsumer.listen(on_ready)`` is its callback form, for a reader that
does not need a task: the same steps run inside the loop's callbacks, with
no future and no task step between the bell and the records. A pass (the
doorbell's reader, a slice timer or the watchdog) is c6 (drain,
``sleeping := 0``), then c1 (if a ring has data: ``on_ready()``, which takes
what it finds), then c2-c4; a ring found non-empty at c4 (records came in
meanwhile) schedules the next pass with ``call_soon`` instead of looping, so
the loop's other callbacks run in between, and the consumer stays awake
until it (producers need not ring); otherwise it sleeps (c5) until the
bell, its slice timer (not exact) or the watchdog. With ``linger`` a pass
that called ``on_ready`` also schedules the next one awake instead of
going to sleep at once. A pass scheduled awake (and the first one, which
``listen`` schedules) skips c6: its flags are 0 already.
"""

from __future__ import annotations

import asyncio
import os
import select
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import ringbuf.ring as _ring_module
from ringbuf import fence
from ringbuf.errors import BadRingConfig
from ringbuf.ring import _PAYLOAD, CRing, Record, Ring, _ringcore

if TYPE_CHECKING:
    import numpy as np

STRATEGIES = ("spin", "yield", "block", "hybrid")
BLOCK_SLICE = 0.002  # seconds: the longest sleep before looking at the tails again, without an exact handshake
IDLE_SLICE = 1.0  # seconds: the longest sleep with an exact handshake (a bound for robustness only)
UNFENCED = 1  # ``unfenced`` word: a producer that does not fence attached, registered for membarrier
UNFENCED_UNREGISTERED = 2  # ``unfenced`` word: one that could not register either (no exact handshake)
HYBRID_SPIN_US = 50  # hybrid's default spin before it sleeps, in microseconds
_CLOCK_EVERY = 256  # spin iterations between clock reads when a timeout is set
_HYBRID_POLLS = 32  # polls between clock reads in a bounded spin (a few us between reads)
_SPIN_CALL = 4096  # recv without a timeout: polls per Ring.read_one call (its frame set up once per so many)


class Doorbell:
    """An ``eventfd`` counter: producers add to it, its consumer waits on it."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def create(cls) -> Doorbell:
        """A new non-blocking eventfd, inheritable so the launcher can pass it with ``pass_fds``."""
        fd = os.eventfd(0, os.EFD_NONBLOCK)
        os.set_inheritable(fd, True)
        return cls(fd)

    @classmethod
    def from_fd(cls, fd: int) -> Doorbell:
        """Adopt an inherited doorbell fd."""
        os.set_blocking(fd, False)
        return cls(fd)

    def ring(self) -> None:
        os.eventfd_write(self.fd, 1)

    def drain(self) -> int:
        """Reset the counter; return how many rings it had collected."""
        try:
            return os.eventfd_read(self.fd)
        except BlockingIOError:
            return 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __repr__(self) -> str:
        return f"Doorbell(fd={self.fd})"


class Producer:
    """One ring plus its consumer's doorbell: write, then ring only if the consumer sleeps.

    For a ``CRing`` the constructor builds a ``_CoreProducer``, whose ``send`` is one C call.
    """

    __slots__ = (
        "ring",
        "doorbell",
        "_write_batch",
        "_write_array",
        "_sleeping",
        "_fence",
        "_u32",
        "_mm",
        "_tail_word",
        "_mask",
        "_capacity",
        "_max_slot",
    )

    def __new__(cls, ring: Ring, doorbell: Doorbell) -> Producer:
        """A ``CRing``'s producer is a ``_CoreProducer`` (its ``send`` is one C call)."""
        if cls is Producer and CRing is not None and isinstance(ring, CRing):
            cls = _CoreProducer
        return super().__new__(cls)

    def __init__(self, ring: Ring, doorbell: Doorbell) -> None:
        self.ring = ring
        self.doorbell = doorbell
        self._write_batch = ring.write_batch
        self._write_array = ring.write_array
        self._sleeping = ring._sleeping_word
        core = _ring_module._ringcore  # read now: the switch tests (and RINGBUF_PURE_PYTHON) set
        self._fence: Callable[[], None] | None = None if core is None else core.full_fence
        if core is None:
            _mark_unfenced(ring, doorbell)
        # send's fast lane writes through the ring's own views; the positions stay in the ring,
        # so send and the Ring.write* calls mix freely on one ring
        self._u32 = ring._u32
        self._mm = ring._mm
        self._tail_word = ring._tail_word
        self._mask = ring._mask
        self._capacity = ring.capacity
        self._max_slot = ring._max_slot

    def send(self, record: Record) -> bool:
        """``Ring.write`` then the doorbell if needed; False when the ring is full.

        The producer's low-latency lane: ``Ring.write``'s fast path inlined (one frame from the
        call to the tail store), its wrap / full / too-large cases left to ``Ring.write``.
        """
        ring = self.ring
        n = len(record)
        size = (n + 11) & -8
        tail = ring._tail
        pos = tail & self._mask
        end = tail + size
        if pos + size > self._capacity or end > ring._limit or size > self._max_slot:
            ok = ring._write_slow(record)
        else:
            self._u32[pos >> 2] = n
            pos += _PAYLOAD
            self._mm[pos : pos + n] = record
            ring._tail = end
            self._tail_word[0] = end  # publish: one 8-byte store
            ok = True
        fence_ = self._fence
        if fence_ is not None:
            fence_()
        if self._sleeping[0]:
            os.eventfd_write(self.doorbell.fd, 1)
        return ok

    def send_batch(self, records: Sequence[Record]) -> int:
        """``Ring.write_batch`` then the doorbell if needed; returns how many were written."""
        count = self._write_batch(records)
        fence_ = self._fence
        if fence_ is not None:
            fence_()
        if self._sleeping[0]:
            os.eventfd_write(self.doorbell.fd, 1)
        return count

    def wake(self) -> None:
        """Ring the doorbell if the consumer sleeps: for a producer that wrote with ``Ring.write``
        and deferred the doorbell (one check for many records; same as ``send_batch([])``)."""
        fence_ = self._fence
        if fence_ is not None:
            fence_()
        if self._sleeping[0]:
            os.eventfd_write(self.doorbell.fd, 1)

    def send_array(self, arr: np.ndarray) -> int:
        """``Ring.write_array`` then the doorbell if needed; returns how many were written."""
        count = self._write_array(arr)
        fence_ = self._fence
        if fence_ is not None:
            fence_()
        if self._sleeping[0]:
            os.eventfd_write(self.doorbell.fd, 1)
        return count


def _mark_unfenced(ring: Ring, doorbell: Doorbell) -> None:
    """A producer without the C fence: mark ``ring`` so that its consumer uses membarrier (see above)."""
    registered = fence.register_producer()
    mark = UNFENCED if registered else UNFENCED_UNREGISTERED
    word = ring._unfenced_word
    if word[0] & mark:
        return  # marked already, and made visible by the producer that marked it
    word[0] |= mark
    if not (registered and fence.barrier()):
        doorbell.ring()  # no fence orders the mark before a load of sleeping: wake it, its next c3 sees the mark
    elif ring._sleeping_word[0]:
        doorbell.ring()  # it may have chosen the cheap fence before the mark was visible


class _CoreProducer(Producer):
    """The Producer of a ``CRing``: ``send`` is a ``_ringcore.Sender``, set per instance.

    The slot named ``send`` hides ``Producer.send`` (a slot is a data descriptor), so
    ``producer.send(record)`` is one C call from the caller to the tail store and the doorbell
    check: ``Ring.write``'s whole path in C (wrap and full ring included; a record too large goes
    to ``Ring._write_slow``, which raises), then the same F, p2 and p3 steps as the Python ``send``.
    """

    __slots__ = ("send",)

    def __init__(self, ring: Ring, doorbell: Doorbell) -> None:
        super().__init__(ring, doorbell)
        self.send = _ringcore.Sender(ring, doorbell)  # type: ignore[method-assign]


class _Waiting:
    """What Consumer and AsyncConsumer share: the rings' tails and sleeping words."""

    def __init__(self, rings: list[Ring], doorbell: Doorbell) -> None:
        if not rings:
            raise BadRingConfig("a consumer needs at least one ring, got none")
        self.rings = list(rings)
        self.doorbell = doorbell
        self._sleeping_words = [ring._sleeping_word for ring in self.rings]
        self._unfenced_words = [ring._unfenced_word for ring in self.rings]
        self._pending = [ring.pending for ring in self.rings]
        core = _ring_module._ringcore  # read now, as Producer does
        self._fence: Callable[[], None] | None = None if core is None else core.full_fence

    def ready(self) -> bool:
        """True when some ring has unread records."""
        for pending in self._pending:
            if pending():
                return True
        return False

    def _go_to_sleep(self) -> bool | None:
        """Steps c2-c4: announce the sleep; None if data came in meanwhile (flags cleared), else
        whether the handshake is exact (c5 sleeps until the bell rings) or not (``BLOCK_SLICE``)."""
        for word in self._sleeping_words:
            word[0] = 1
        exact = self._barrier()
        if self.ready():
            self._wake_up()
            return None
        return exact

    def _barrier(self) -> bool:
        """Step c3: a full fence, plus membarrier where a producer does not fence; True when exact."""
        fence_ = self._fence
        if fence_ is not None:
            fence_()
            if not self._marks():
                return True
        if not fence.barrier():
            return False
        return not self._marks() & UNFENCED_UNREGISTERED

    def _marks(self) -> int:
        """The ``unfenced`` marks of every input ring, or-ed (0: every producer fences)."""
        marks = 0
        for word in self._unfenced_words:
            marks |= word[0]
        return marks

    def _wake_up(self) -> None:
        for word in self._sleeping_words:
            word[0] = 0


class Consumer(_Waiting):
    """All input rings of one consumer process and its doorbell.

    ``wait`` then ``Ring.read`` (batches) or ``recv`` (one record, the low-latency lane); either
    way ``commit`` (the consumer's, or each ring's) frees what was read.
    """

    def __init__(
        self,
        rings: list[Ring],
        doorbell: Doorbell,
        strategy: str = "block",
        spin_s: float = 0.0,
        spin_us: int = HYBRID_SPIN_US,
    ) -> None:
        if strategy not in STRATEGIES:
            raise BadRingConfig(f"wait strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
        if spin_us < 0:
            raise BadRingConfig(f"spin_us {spin_us} must be 0 or more microseconds")
        super().__init__(rings, doorbell)
        self.strategy = strategy
        self.spin_s = spin_s  # block: spin this long before sleeping
        self.spin_us = spin_us  # hybrid: spin this long before sleeping
        self._sleeps = strategy in ("block", "hybrid")
        self._spin_first = spin_us / 1_000_000 if strategy == "hybrid" else spin_s
        self._poll = select.poll()
        self._poll.register(doorbell.fd, select.POLLIN)
        self._read_ones = [ring.read_one for ring in self.rings]
        self._commits = [ring.commit for ring in self.rings]
        self._turn = 0  # recv: the ring it looks at first (rotates, so no ring starves the others)
        # recv's spinning lane: one ring, polled in the frame that copies the record out
        spins = strategy == "spin" or (strategy == "hybrid" and spin_us > 0)
        self._lane = self._read_ones[0] if spins and len(self.rings) == 1 else None
        # Instance attributes that hide the methods below, chosen here once: with one ring, commit
        # is that ring's own (on a CRing one C call, no frame of ours), and for one CRing with the
        # spin strategy recv is RingCore._recv_spin (recv's spin loop below, in C).
        if len(self.rings) == 1:
            self.commit = self._commits[0]  # type: ignore[method-assign]
            if strategy == "spin" and CRing is not None and isinstance(self.rings[0], CRing):
                self.recv = self.rings[0]._recv_spin  # type: ignore[method-assign]

    def wait(self, timeout: float | None = None) -> bool:
        """Return True when some ring has data, False when ``timeout`` seconds pass first."""
        if self.ready():
            return True
        return self._wait(None if timeout is None else time.monotonic() + timeout, self._spin_first)

    def _wait(self, deadline: float | None, spin_s: float) -> bool:
        """``wait`` past its first look: the strategy's loop (``spin_s``: block's or hybrid's spin)."""
        if self._sleeps:
            return self._block(deadline, spin_s)
        return self._poll_loop(deadline, self.strategy == "yield")

    def recv(self, timeout: float | None = None) -> bytes | None:
        """The next record of these rings (a copy), waiting by the strategy; None when ``timeout``
        seconds pass first. Frees nothing: ``commit`` does.

        One ring with ``spin`` (or ``hybrid``'s spin phase): ``Ring.read_one`` polls the tail and
        copies the record out in one frame, the lowest latency this module offers. One ``CRing``
        with ``spin``: this method is replaced (per instance) by ``RingCore._recv_spin``, the same
        loop in C.
        """
        lane = self._lane
        if lane is not None:
            record = lane(0)
            if record is not None:
                return record
            if timeout is None and self.strategy == "spin":  # no clock to read: spin right here
                while True:
                    record = lane(_SPIN_CALL)
                    if record is not None:
                        return record
            return self._recv_spinning(lane, timeout)
        return self._recv_waiting(None if timeout is None else time.monotonic() + timeout, self._spin_first)

    def _recv_spinning(self, lane: Callable[[int], bytes | None], timeout: float | None) -> bytes | None:
        now = time.monotonic()
        deadline = None if timeout is None else now + timeout
        if self.strategy == "spin":
            while True:
                record = lane(_CLOCK_EVERY)
                if record is not None:
                    return record
                if deadline is not None and time.monotonic() >= deadline:
                    return None
        spin_until = now + self.spin_us / 1_000_000  # hybrid: spin, then sleep as block does
        if deadline is not None and deadline < spin_until:
            spin_until = deadline
        while time.monotonic() < spin_until:
            record = lane(_HYBRID_POLLS)
            if record is not None:
                return record
        return self._recv_waiting(deadline, 0.0)  # spun already: straight to sleep

    def _recv_waiting(self, deadline: float | None, spin_s: float) -> bytes | None:
        """``recv`` through the strategy's wait: the rings in turn, each asked for one record."""
        read_ones = self._read_ones
        count = len(read_ones)
        while True:
            turn = self._turn
            for k in range(count):
                i = (turn + k) % count
                record = read_ones[i]()
                if record is not None:
                    self._turn = (i + 1) % count
                    return record
            if not self._wait(deadline, spin_s) and deadline is not None:
                return None
            spin_s = self._spin_first

    def commit(self) -> None:
        """``Ring.commit`` on every ring: frees all that ``recv`` (or ``Ring.read``) returned."""
        for commit in self._commits:
            commit()

    def _poll_loop(self, deadline: float | None, yield_cpu: bool, polls: int = _CLOCK_EVERY) -> bool:
        if len(self.rings) == 1 and not yield_cpu:  # the latency-critical case: keep the loop tight
            ring = self.rings[0]
            tail_word = ring._tail_word
            while True:
                for _ in range(polls):
                    if tail_word[0] != ring._cursor:
                        return True
                if deadline is not None and time.monotonic() >= deadline:
                    return False
        ready = self.ready
        sched_yield = os.sched_yield
        while True:
            for _ in range(polls):
                if ready():
                    return True
                if yield_cpu:
                    sched_yield()
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def _block(self, deadline: float | None, spin_s: float) -> bool:
        if spin_s > 0:
            spin_deadline = time.monotonic() + spin_s
            if deadline is not None and deadline < spin_deadline:
                spin_deadline = deadline
            if self._poll_loop(spin_deadline, False, _HYBRID_POLLS):
                return True
        doorbell = self.doorbell
        while True:
            exact = self._go_to_sleep()
            if exact is None:
                return True
            slice_s = IDLE_SLICE if exact else BLOCK_SLICE
            if deadline is not None:
                slice_s = min(slice_s, deadline - time.monotonic())
            if slice_s > 0:
                self._poll.poll(slice_s * 1000.0)
            doorbell.drain()
            self._wake_up()
            if self.ready():
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False


class AsyncConsumer(_Waiting):
    """The same handshake for an asyncio loop: the doorbell fd is registered with
    ``loop.add_reader``, so waiting costs the loop nothing. One waiting task at a time
    (``wait``), or one callback (``listen``), never both."""

    def __init__(self, rings: list[Ring], doorbell: Doorbell, spin_us: int = 0) -> None:
        if spin_us < 0:
            raise BadRingConfig(f"spin_us {spin_us} must be 0 or more microseconds")
        super().__init__(rings, doorbell)
        self.spin_us = spin_us  # hybrid: poll this long (yielding to the loop) before sleeping
        self._loop: asyncio.AbstractEventLoop | None = None
        self._create_future: Callable[[], asyncio.Future[None]] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._watchdog: asyncio.TimerHandle | None = None  # IDLE_SLICE bound, one at a time
        self._on_ready: Callable[[], None] | None = None  # listen's callback (None: wait's mode)
        self._slice: asyncio.TimerHandle | None = None  # listen: the BLOCK_SLICE timer of an inexact sleep
        self._pass_scheduled = False  # listen: a pass is already on the loop's ready queue
        self._linger = True  # listen: one more pass, awake, after a pass that called on_ready
        self._tails = [(ring._tail_word, ring) for ring in self.rings]  # listen's inlined ``pending``

    async def wait(self) -> None:
        """Return when some ring has data.

        With ``spin_us`` (``hybrid``, for a worker on a dedicated core) it first polls the rings
        once per pass of the event loop (``sleep(0)``: the loop's other tasks run meanwhile) for
        up to ``spin_us`` microseconds, and only then goes to sleep on the doorbell.
        """
        if self._on_ready is not None:
            raise BadRingConfig("wait() on an AsyncConsumer that listens: its callback takes the records")
        if self.ready():
            return
        if self.spin_us:
            until = time.monotonic() + self.spin_us / 1_000_000
            while time.monotonic() < until:
                await asyncio.sleep(0)
                if self.ready():
                    return
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._bind(loop, self._on_doorbell)
        create_future = self._create_future
        assert create_future is not None  # set by _bind
        while True:
            exact = self._go_to_sleep()
            if exact is None:
                return
            waiter = create_future()
            self._waiter = waiter
            timer = None
            if not exact:
                timer = loop.call_later(BLOCK_SLICE, _set_done, waiter)
            elif self._watchdog is None:
                self._watchdog = loop.call_later(IDLE_SLICE, self._on_watchdog)
            try:
                await waiter
            finally:
                if timer is not None:
                    timer.cancel()
                self._waiter = None
                self._wake_up()
            if self.ready():
                return

    def listen(self, on_ready: Callable[[], None], linger: bool = True) -> None:
        """Call ``on_ready()`` from the running loop's callbacks whenever some ring has data, until ``close``.

        ``on_ready`` reads (and commits) what the rings hold; records it leaves, or that come
        in while it runs, bring another call in a later pass of the loop. It runs inside the
        doorbell's reader, so it must not block; if it raises, the consumer stops listening
        (as ``close``) and the exception goes on to the loop's exception handler. The first
        pass is scheduled at once: records already there are not left waiting for a bell.

        ``linger``: after a pass that called ``on_ready`` the consumer stays awake for one more
        pass of the loop (the callbacks that ``on_ready`` resolved run first) and only sleeps
        if that pass finds nothing: under a steady stream of records producers then seldom
        ring, for one cheap pass (no system call) per burst when records come one at a time.
        """
        if self._on_ready is not None or self._waiter is not None:
            raise BadRingConfig("listen() on an AsyncConsumer that already listens or waits")
        self._bind(asyncio.get_running_loop(), self._listen_pass)  # the pass itself: no frame in between
        self._on_ready = on_ready
        self._linger = linger
        self._schedule_pass()

    @property
    def listening(self) -> bool:
        """True between ``listen`` and ``close``."""
        return self._on_ready is not None

    def _schedule_pass(self) -> None:
        """A pass on the loop's ready queue, for a consumer that is awake (``sleeping`` words 0)."""
        if not self._pass_scheduled:
            self._pass_scheduled = True
            self._loop.call_soon(self._listen_pass, False)  # type: ignore[union-attr]

    def _listen_pass(self, rung: bool = True) -> None:
        """One pass of ``listen``: c6, then c1 (``on_ready``), then c2-c4 (see the module docstring).

        ``rung``: the doorbell's reader or a timer called it (the consumer slept); False for a
        pass it scheduled itself while awake, which skips c6 (a bell rung meanwhile leaves the
        eventfd readable, and its reader makes another pass). The hot path of a listening
        reader, so ``Doorbell.drain``, ``ready``, ``_wake_up`` and ``_go_to_sleep`` are inlined
        here: same steps, same order.
        """
        self._pass_scheduled = False
        on_ready = self._on_ready
        if on_ready is None:
            return  # closed meanwhile
        words = self._sleeping_words
        if rung:
            if self._slice is not None:
                self._slice.cancel()
                self._slice = None
            try:  # c6: drain the eventfd, then sleeping := 0
                os.eventfd_read(self.doorbell.fd)
            except BlockingIOError:
                pass
            for word in words:
                word[0] = 0
        for tail_word, ring in self._tails:  # c1
            if tail_word[0] != ring._cursor:
                try:
                    on_ready()
                except BaseException:
                    self.close()
                    raise
                if self._on_ready is None:
                    return  # on_ready closed the consumer
                if self._linger:
                    self._schedule_pass()  # stay awake: look again after the callbacks just resolved
                    return
                break
        for word in words:  # c2
            word[0] = 1
        fence_ = self._fence  # c3: the C fence, and membarrier only where a ring is marked (``_barrier``)
        if fence_ is None:
            exact = self._barrier()
        else:
            fence_()
            marks = 0
            for word in self._unfenced_words:
                marks |= word[0]
            exact = True if not marks else self._barrier()
        for tail_word, ring in self._tails:  # c4
            if tail_word[0] != ring._cursor:  # records came in meanwhile: another pass, after the loop's others
                for word in words:
                    word[0] = 0
                self._schedule_pass()
                return
        if not exact:
            if self._slice is not None:  # a pass that ran while asleep (queued before the bell's) armed one
                self._slice.cancel()
            self._slice = self._loop.call_later(BLOCK_SLICE, self._listen_pass)  # type: ignore[union-attr]
        elif self._watchdog is None:
            self._watchdog = self._loop.call_later(IDLE_SLICE, self._on_watchdog)  # type: ignore[union-attr]

    def _bind(self, loop: asyncio.AbstractEventLoop, reader: Callable[[], None]) -> None:
        """Move the doorbell's reader (``reader``, and the cached loop methods) to ``loop``."""
        self._unbind()
        loop.add_reader(self.doorbell.fd, reader)
        self._loop = loop
        self._create_future = loop.create_future

    def _unbind(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._slice is not None:
            self._slice.cancel()
            self._slice = None
        if self._loop is not None:
            if not self._loop.is_closed():
                self._loop.remove_reader(self.doorbell.fd)
            self._loop = None
            self._create_future = None

    def _on_doorbell(self) -> None:
        self.doorbell.drain()
        _set_done(self._waiter)

    def _on_watchdog(self) -> None:
        self._watchdog = None  # the next sleep arms the next one: an idle loop wakes once per IDLE_SLICE
        if self._on_ready is not None:
            self._listen_pass()
            return
        _set_done(self._waiter)

    def close(self) -> None:
        """Unregister the doorbell from the loop and stop listening (idempotent); the doorbell stays open."""
        if self._on_ready is not None:
            self._on_ready = None
            self._wake_up()  # nobody will answer the bell now: producers need not ring it
        self._unbind()
        _set_done(self._waiter)


def _set_done(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
