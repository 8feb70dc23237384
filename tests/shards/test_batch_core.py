"""The C core's NewOrders-in, Results-out call against the Python path of the shard loop.

``ShardLoop._apply_orders`` answers a NewOrders record in one C call when the
C core is active (``_matchcore.new_orders``). These tests run the same records
through three loops, each over its own engine: the C batch call, the C core's
per-order ``apply`` (batch call switched off) and the pure-Python core, and
compare after every record: the answer bytes, the journal bytes, the last
sequence number, the internal-error count and (where cheap enough) the whole
snapshot. Records hold what the C core declines (every rejection, values it
does not take) between orders it takes, MARKET by quote, every STP mode, and
records that do not decode.
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
from shards.protocol import CancelOrder, NewOrder, Rejected, SymbolSpec
from tests.shards.engine_harness import SPEC
from tests.shards.test_engine_properties import new_orders

pytestmark = pytest.mark.skipif(
    process._C_NEW_ORDERS is None, reason="the C core (with its NewOrders call) is not built in this install"
)

WIDE = SymbolSpec(symbol_id=1, symbol="WIDE", min_price=1, max_price=10_000_000, min_qty=1, max_qty=1_000_000)
OTHER = SymbolSpec(symbol_id=2, symbol="OTHER", min_price=1, max_price=1_000, min_qty=1, max_qty=100)
PATHS = ("batch", "c", "python")


@contextmanager
def _path(name: str) -> Iterator[None]:
    """Run the loop with one path: the C batch call, the C per-order apply, or the Python core."""
    before_core, before_batch = engine_module.core, process._C_NEW_ORDERS
    engine_module.select_core("python" if name == "python" else "c")
    if name != "batch":
        process._C_NEW_ORDERS = None
    try:
        yield
    finally:
        process._C_NEW_ORDERS = before_batch
        engine_module.select_core(before_core)


class Triplets:
    """Three shard loops in lockstep, one per path, each over its own engine."""

    def __init__(self, specs: list[SymbolSpec]) -> None:
        self.loops = {name: ShardLoop(0, Engine(specs), [], [], None, 512) for name in PATHS}  # type: ignore[arg-type]

    def record(self, record: bytes, now: int, *, compare_state: bool = True) -> bytes:
        """Answer ``record`` on every path; check they agree; return the answer."""
        answers, counts, journals = {}, {}, {}
        for name, loop in self.loops.items():
            out: list[bytes] = []
            with _path(name):
                counts[name] = loop._apply_orders(record, now, out)
            answers[name] = out
            journals[name] = loop.engine.take_encoded()
        assert answers["batch"] == answers["python"] == answers["c"]
        assert len(answers["batch"]) == 1
        assert counts["batch"] == counts["python"] == counts["c"]
        assert journals["batch"] == journals["python"] == journals["c"]
        engines = [loop.engine for loop in self.loops.values()]
        assert len({e.last_seq for e in engines}) == 1
        assert len({loop.internal_errors for loop in self.loops.values()}) == 1
        if compare_state:
            assert len({e.snapshot() for e in engines}) == 1
        return answers["batch"][0]

    def orders(self, rid: int, orders: list[NewOrder], now: int, *, compare_state: bool = True) -> object:
        """Send ``orders`` as one NewOrders record; the decoded Results."""
        answer = self.record(wire.encode_new_orders(rid, orders), now, compare_state=compare_state)
        got_rid, results = wire.decode_answer(answer)
        assert got_rid == rid
        return results.results

    def cancel(self, cmd: CancelOrder) -> None:
        """A cancel outside any batch, through each path's own core."""
        results, journals = [], []
        for name, loop in self.loops.items():
            with _path(name):
                results.append(loop.engine.apply(cmd))
            journals.append(loop.engine.take_encoded())
        assert results[0] == results[1] == results[2]
        assert journals[0] == journals[1] == journals[2]


def _stamped_orders(orders: list[NewOrder]) -> list[NewOrder]:
    return [o._replace(ts=0) for o in orders]


# --- random batches ---------------------------------------------------------------------------------------------

extra_orders = st.one_of(
    st.builds(lambda u: NewOrder(9, u, "nosym", 1, 1, 1, 100, 1, 0, 0, 0), st.integers(1, 3)),  # unknown symbol
    st.builds(lambda u: NewOrder(1, u, "big", 1, 1, 1, 100, 1, 0, 0, 0), st.integers(2**63, 2**64 - 1)),  # raises
    st.builds(lambda c: NewOrder(1, 2, c, 2, 1, 1, 100, 1, 0, 0, 0), st.sampled_from(["é", "x" * 36, "", "日本"])),
    st.builds(lambda t: NewOrder(1, 1, "odd", 1, 1, t, 100, 1, 0, 0, 0), st.integers(0, 255)),  # any tif byte
    st.builds(lambda t: NewOrder(1, 1, "m", 2, 2, t, 0, 2, 0, 1, 0), st.integers(0, 255)),  # MARKET, any tif byte
)
batches = st.lists(st.one_of(new_orders(), new_orders(), new_orders(), extra_orders), min_size=0, max_size=25)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(batches, st.integers(0, 2**64 - 1)), min_size=1, max_size=8))
def test_random_batches_give_the_same_answer_journal_and_state(records: list) -> None:
    trio = Triplets([SPEC])
    for now, (orders, rid) in enumerate(records, start=1):
        trio.orders(rid, _stamped_orders(orders), now)


# --- declined and failing orders mid-batch ------------------------------------------------------------------------


def test_declined_and_raising_orders_mid_batch_keep_their_place() -> None:
    trio = Triplets([SPEC])
    trio.orders(1, [NewOrder(1, 3, "maker", 2, 1, 1, 100, 5, 0, 0, 0)], 1)
    batch = [
        NewOrder(1, 1, "a", 1, 1, 1, 99, 1, 0, 0, 0),  # rests (C)
        NewOrder(1, 1, "a", 1, 1, 1, 98, 1, 0, 0, 0),  # duplicate client order id: rejected (Python)
        NewOrder(1, 2**63, "u", 1, 1, 1, 97, 1, 0, 0, 0),  # user past int64: Python apply raises
        NewOrder(1, 1, "lm", 1, 3, 1, 100, 1, 0, 0, 0),  # LIMIT_MAKER that crosses: rejected
        NewOrder(1, 1, "fok", 1, 1, 3, 100, 9, 0, 0, 0),  # FOK it cannot fill: rejected
        NewOrder(1, 1, "fok2", 1, 1, 3, 100, 2, 0, 0, 0),  # FOK it fills (C, fok_fillable)
        NewOrder(7, 1, "x", 1, 1, 1, 100, 1, 0, 0, 0),  # unknown symbol
        NewOrder(1, 1, "q", 1, 2, 1, 0, 0, 250, 0, 0),  # MARKET by quote (C)
        NewOrder(1, 1, "b", 1, 1, 1, 99, 1, 0, 0, 0),  # rests (C)
    ]

    results = trio.orders(42, batch, 2)

    kinds = [type(r).__name__ for r in results]
    assert (
        kinds
        == ["OrderResult", "Rejected", "Rejected", "Rejected", "Rejected", "OrderResult", "Rejected"]
        + ["OrderResult"] * 2
    )
    assert results[2].code == wire.INTERNAL_ERROR and "status unknown" in results[2].msg
    assert [f.qty for f in results[5].fills] == [2] and [f.qty for f in results[7].fills] == [2]
    assert all(loop.internal_errors == 1 for loop in trio.loops.values())


@pytest.mark.parametrize("stp", [0, 1, 2, 3])
def test_every_stp_mode_in_a_batch(stp: int) -> None:
    trio = Triplets([SPEC])
    trio.orders(1, [NewOrder(1, 1 + i % 2, f"m{i}", 2, 1, 1, 100 + i % 3, 2, 0, 0, 0) for i in range(8)], 1)
    batch = [
        NewOrder(1, 1, "t1", 1, 1, 1, 101, 5, 0, stp, 0),
        NewOrder(1, 2, "t2", 1, 2, 1, 0, 0, 400, stp, 0),  # MARKET by quote
        NewOrder(1, 1, "t3", 1, 2, 1, 0, 4, 0, stp, 0),  # MARKET by quantity
        NewOrder(1, 2, "t4", 1, 1, 2, 102, 9, 0, stp, 0),  # IOC
    ]

    results = trio.orders(5, batch, 2)

    assert len(results) == 4


def test_fills_past_the_stack_buffer_and_many_orders_in_one_record() -> None:
    trio = Triplets([WIDE])
    makers = [NewOrder(1, 1 + i % 5, f"m{i}", 2, 1, 1, 1000 + i % 7, 1, 0, 0, 0) for i in range(300)]
    trio.orders(1, makers, 1)

    results = trio.orders(2, [NewOrder(1, 9, "sweep", 1, 1, 1, 1006, 290, 0, 0, 0)] * 2, 2)

    assert [len(r.fills) for r in results] == [290, 10]  # the first filled, so its id is free again


# --- records that do not decode -----------------------------------------------------------------------------------


def _good_record() -> bytes:
    return wire.encode_new_orders(77, [NewOrder(1, 1, "ab", 1, 1, 1, 100, 1, 0, 0, 0)] * 2)


@pytest.mark.parametrize(
    "record",
    [
        _good_record()[:-10],  # truncated
        _good_record()[:10],  # shorter than its head
        _good_record()[:11] + b"\x00" * 3,  # announces 2 orders, holds none
        _good_record().replace(b"\x02ab", b"\x02\xff\xfe"),  # a client order id that is not UTF-8
    ],
)
def test_a_record_that_does_not_decode_is_answered_as_a_whole(record: bytes) -> None:
    trio = Triplets([SPEC])

    answer = trio.record(record, 1)

    rid, result = wire.decode_answer(answer)
    assert isinstance(result, Rejected) and result.code == wire.INTERNAL_ERROR
    assert all(loop.engine.last_seq == 0 for loop in trio.loops.values())  # nothing applied


def test_an_empty_record_and_trailing_bytes() -> None:
    trio = Triplets([SPEC])
    assert trio.orders(3, [], 1) == ()
    results = wire.decode_answer(trio.record(_good_record() + b"junk", 2))[1].results
    assert [type(r).__name__ for r in results] == ["OrderResult", "Rejected"]


def test_an_unencodable_part_answers_the_whole_record_after_applying_every_order() -> None:
    class Broken(ShardLoop):
        def _order_part(self, rid: int, result: object) -> bytes:
            if self._part_error is None:
                self._part_error = ValueError("cannot encode")
            return b""

    engine = Engine([SPEC])
    loop = Broken(0, engine, [], [], None, 64)  # type: ignore[arg-type]
    record = wire.encode_new_orders(9, [NewOrder(1, 1, "a", 1, 1, 1, 100, 1, 0, 0, 0)] * 3)
    out: list[bytes] = []

    with _path("batch"):
        count = loop._apply_orders(record, 1, out)

    rid, result = wire.decode_answer(out[0])
    assert (count, rid, type(result), result.code) == (3, 9, Rejected, wire.INTERNAL_ERROR)
    assert engine.last_seq == 4  # the first order rested (2 events), the duplicates were rejected (1 each)
    assert loop.internal_errors == 1


# --- a deep book ---------------------------------------------------------------------------------------------------


def test_a_long_realistic_flow_in_batches_stays_identical() -> None:
    """Thousands of orders in batches over a deep book, cancels between them: every path gives the same bytes."""
    rng = random.Random(5)
    trio = Triplets([WIDE, OTHER])
    resting: list[tuple[int, int]] = []
    now = 0
    for rid in range(1, 301):
        now += 1
        batch: list[NewOrder] = []
        for _ in range(rng.randint(1, 24)):
            r, user, side, stp = rng.random(), rng.randint(1, 30), rng.choice([1, 2]), rng.randint(0, 3)
            n = f"{rid}.{len(batch)}"
            if r < 0.6:
                price = 1_000_000 + (-rng.randint(1, 300) if side == 1 else rng.randint(1, 300))
                batch.append(NewOrder(1, user, f"c{n}", side, 1, 1, price, rng.randint(1, 20), 0, stp, 0))
            elif r < 0.85:
                price = 1_000_000 + (rng.randint(0, 200) if side == 1 else -rng.randint(0, 200))
                tif = rng.choice([1, 2, 3])
                batch.append(NewOrder(1, user, f"t{n}", side, 1, tif, price, rng.randint(1, 60), 0, stp, 0))
            elif r < 0.95:
                by_quote = rng.random() < 0.5
                qty, quote = (0, rng.randint(1, 60_000_000)) if by_quote else (rng.randint(1, 60), 0)
                batch.append(NewOrder(1, user, f"m{n}", side, 2, 1, 0, qty, quote, stp, 0))
            else:
                batch.append(NewOrder(2, user, f"o{n}", side, 1, 1, rng.randint(1, 2000), rng.randint(1, 200), 0, 0, 0))
        results = trio.orders(rid, batch, now, compare_state=rid % 25 == 0)
        for result in results:
            order = getattr(result, "order", None)
            if order is not None and order.status in (1, 2):
                resting.append((order.order_id, order.user_id))
        for _ in range(rng.randint(0, 8)):
            if resting:
                order_id, owner = resting.pop(rng.randrange(len(resting)))
                trio.cancel(CancelOrder(1, owner, order_id, "", now))
    engines = [loop.engine for loop in trio.loops.values()]
    assert len({e.snapshot() for e in engines}) == 1
    assert len(engines[0].book(1).orders) > 100  # the flow kept a real book
