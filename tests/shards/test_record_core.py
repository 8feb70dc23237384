"""The C core's single-record call (a NewOrder or CancelOrder record in, its answer out) against the Python path.

``ShardLoop.step`` hands NewOrder and CancelOrder records to ``_matchcore.command``
when the C core is active. These tests drive three loops through ``step`` over
stand-in rings (each loop with its own engine: the C record call, the C core's
``apply`` with the record call switched off, the pure-Python core), with the
same records and the same clock, and compare after every turn: the answer
bytes, the journal bytes the loop hands its sink, the state and the counters.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shards import engine as engine_module
from shards import process, wire
from shards.engine import Engine
from shards.process import ShardLoop
from shards.protocol import AmendOrder, CancelAll, CancelOrder, NewOrder, QueryDepth, Rejected, SymbolSpec
from tests.shards.engine_harness import SPEC
from tests.shards.test_engine_properties import commands

pytestmark = pytest.mark.skipif(
    process._C_COMMAND is None, reason="the C core (with its record call) is not built in this install"
)

WIDE = SymbolSpec(symbol_id=1, symbol="WIDE", min_price=1, max_price=10_000_000, min_qty=1, max_qty=1_000_000)
PATHS = ("record", "c", "python")
NOW_MS = 1_700_000_000_123


class StubRing:
    """The consumer side of a command ring: hands out what was put in, once."""

    def __init__(self) -> None:
        self.pending: list[bytes] = []

    def read(self, max_records: int) -> list[bytes]:
        taken, self.pending = self.pending[:max_records], self.pending[max_records:]
        return taken

    def commit(self) -> None:
        """Nothing to free."""


class StubProducer:
    """The producer side of an answer ring: keeps what the loop sends."""

    class _Ring:
        max_record = 1 << 20
        name = "stub"

    ring = _Ring()

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, record: bytes) -> bool:
        self.sent.append(record)
        return True

    def send_batch(self, records: list[bytes]) -> int:
        self.sent.extend(records)
        return len(records)


class Sink:
    """Keeps the journal bytes of every turn."""

    def __init__(self) -> None:
        self.data: list[bytes] = []

    def append_encoded(self, data: bytes, last_seq: int) -> None:
        self.data.append(data)

    def close(self) -> None:
        """Nothing to flush."""


@contextmanager
def _path(name: str) -> Iterator[None]:
    before_core, before_command = engine_module.core, process._C_COMMAND
    engine_module.select_core("python" if name == "python" else "c")
    if name != "record":
        process._C_COMMAND = None
    try:
        yield
    finally:
        process._C_COMMAND = before_command
        engine_module.select_core(before_core)


@pytest.fixture(autouse=True)
def _fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process.time, "time_ns", lambda: NOW_MS * 1_000_000)


class Triplets:
    """Three shard loops in lockstep over stand-in rings, one per path."""

    def __init__(self, specs: list[SymbolSpec]) -> None:
        self.rings = {name: StubRing() for name in PATHS}
        self.producers = {name: StubProducer() for name in PATHS}
        self.sinks = {name: Sink() for name in PATHS}
        self.loops = {name: self._loop(name, specs) for name in PATHS}

    def _loop(self, name: str, specs: list[SymbolSpec]) -> ShardLoop:
        rings, producers = [self.rings[name]], [self.producers[name]]
        return ShardLoop(0, Engine(specs), rings, producers, None, 512, self.sinks[name])  # type: ignore[arg-type]

    def turn(self, records: list[bytes], *, compare_state: bool = True) -> list[bytes]:
        """One loop turn over ``records`` on every path; check they agree; return the answers."""
        for name, loop in self.loops.items():
            self.rings[name].pending = list(records)
            self.producers[name].sent = []
            with _path(name):
                assert loop.step() == len(records)
        sent = [self.producers[name].sent for name in PATHS]
        assert sent[0] == sent[1] == sent[2]
        journals = [self.sinks[name].data[-1] for name in PATHS]
        assert journals[0] == journals[1] == journals[2]
        loops = list(self.loops.values())
        assert len({loop.internal_errors for loop in loops}) == 1
        assert len({loop.engine.last_seq for loop in loops}) == 1
        if compare_state:
            assert len({loop.engine.snapshot() for loop in loops}) == 1
        return sent[0]

    def commands(self, cmds: list[object], *, compare_state: bool = True) -> list[object]:
        answers = self.turn(wire.encode_commands(1, cmds), compare_state=compare_state)
        return [wire.decode_answer(a)[1] for a in answers]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(commands, min_size=1, max_size=12), min_size=1, max_size=6))
def test_random_turns_give_the_same_answers_journal_and_state(turns: list) -> None:
    trio = Triplets([SPEC])
    for cmds in turns:
        trio.commands(cmds)


def test_declined_commands_and_rejections_between_taken_ones() -> None:
    trio = Triplets([SPEC])
    results = trio.commands(
        [
            NewOrder(1, 1, "a", 2, 1, 1, 100, 5, 0, 0, 0),  # rests (C)
            NewOrder(1, 1, "a", 2, 1, 1, 101, 5, 0, 0, 0),  # duplicate: declined, rejected in Python
            NewOrder(1, 2**63 + 5, "big", 1, 1, 1, 90, 1, 0, 0, 0),  # user past int64: Python apply raises
            NewOrder(1, 2, "fok", 1, 1, 3, 100, 9, 0, 0, 0),  # FOK it cannot fill
            NewOrder(1, 2, "q", 1, 2, 1, 0, 0, 250, 2, 0),  # MARKET by quote (C)
            CancelOrder(1, 1, 1, "", 0),  # cancel by id (C)
            CancelOrder(1, 1, 1, "", 0),  # already gone: declined, rejected in Python
            CancelOrder(1, 9, 0, "nope", 0),  # unknown coid
            NewOrder(1, 3, "x", 1, 1, 1, 80, 1, 0, 0, 0),
            CancelOrder(1, 3, 0, "x", 0),  # cancel by client order id (C)
            AmendOrder(1, 3, 0, "x", 1, 0),  # not a C record: the Python path
            CancelAll(1, 2, 0),
            QueryDepth(1, 10),
            NewOrder(7, 1, "s", 1, 1, 1, 80, 1, 0, 0, 0),  # unknown symbol
        ]
    )

    kinds = [type(r).__name__ for r in results]
    taken, rejected = "OrderResult", "Rejected"
    assert kinds[:8] == [taken, rejected, rejected, rejected, taken, taken, rejected, rejected]
    assert results[2].code == wire.INTERNAL_ERROR
    assert results[5].order.status == 4 and results[9].order.status == 4  # CANCELED


def test_records_that_do_not_decode_are_answered_as_before() -> None:
    trio = Triplets([SPEC])
    good = wire.encode_command(5, NewOrder(1, 1, "ab", 1, 1, 1, 100, 1, 0, 0, 0))
    cancel = wire.encode_command(6, CancelOrder(1, 1, 0, "ab", 0))
    records = [
        good[:-1],  # truncated NewOrder
        good.replace(b"\x02ab", b"\x02\xff\xfe"),  # coid not UTF-8
        cancel[:-1],  # truncated CancelOrder
        cancel.replace(b"\x02ab", b"\x02\xff\xfe"),
        good,
        cancel,
    ]

    answers = [wire.decode_answer(a)[1] for a in trio.turn(records)]

    assert [type(a) is Rejected and a.code == wire.INTERNAL_ERROR for a in answers] == [True] * 4 + [False] * 2
    assert all(loop.internal_errors == 4 for loop in trio.loops.values())


def test_a_cancel_whose_view_does_not_fit_the_wire_is_encoded_by_wire() -> None:
    trio = Triplets([SPEC])
    trio.commands([NewOrder(1, 1, "c" * 36, 1, 1, 1, 100, 1, 0, 0, 0)])
    for loop in trio.loops.values():  # a resting order the wire cannot show: its client order id grew past 36 bytes
        order = loop.engine.book(1).orders[1]
        order[8] = "é" * 30  # O_COID, 60 bytes; the user index keeps the old key, the cancel goes by id
    results = trio.commands([CancelOrder(1, 1, 1, "", 0)], compare_state=False)

    assert type(results[0]) is Rejected and results[0].code == wire.INTERNAL_ERROR


def test_a_long_realistic_flow_of_single_records_stays_identical() -> None:
    rng = random.Random(3)
    trio = Triplets([WIDE])
    resting: list[tuple[int, int]] = []
    for turn in range(200):
        cmds: list[object] = []
        for i in range(rng.randint(1, 30)):
            user, side, stp = rng.randint(1, 30), rng.choice([1, 2]), rng.randint(0, 3)
            r = rng.random()
            if r < 0.5:
                price = 1_000_000 + (-rng.randint(1, 300) if side == 1 else rng.randint(1, 300))
                cmds.append(NewOrder(1, user, f"c{turn}.{i}", side, 1, 1, price, rng.randint(1, 20), 0, stp, 0))
            elif r < 0.8 and resting:
                order_id, owner = resting.pop(rng.randrange(len(resting)))
                cmds.append(CancelOrder(1, owner, order_id, "", 0))
            elif r < 0.93:
                price = 1_000_000 + (rng.randint(0, 200) if side == 1 else -rng.randint(0, 200))
                tif = rng.choice([1, 2, 3])
                cmds.append(NewOrder(1, user, f"t{turn}.{i}", side, 1, tif, price, rng.randint(1, 60), 0, stp, 0))
            else:
                by_quote = rng.random() < 0.5
                qty, quote = (0, rng.randint(1, 60_000_000)) if by_quote else (rng.randint(1, 60), 0)
                cmds.append(NewOrder(1, user, f"m{turn}.{i}", side, 2, 1, 0, qty, quote, stp, 0))
        for result in trio.commands(cmds, compare_state=turn % 20 == 0):
            order = getattr(result, "order", None)
            if order is not None and order.status in (1, 2):
                resting.append((order.order_id, order.user_id))
    loops = list(trio.loops.values())
    assert len({loop.engine.snapshot() for loop in loops}) == 1
    assert len(loops[0].engine.book(1).orders) > 100
