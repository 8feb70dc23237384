"""The C engine core against the pure-Python engine: same results, same journal bytes, same state, always.

Each test drives two engines with the same commands, one through each core's
``apply``, and compares after every command: the result, the journal bytes
and (where cheap enough) the whole snapshot. Also: what the C core declines
(rejections, values out of the journal's ranges) changes nothing before the
Python path takes it, and ``select_core`` switches every engine.
"""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shards import engine as engine_module
from shards.engine import Engine
from shards.protocol import CancelOrder, NewOrder, OrderType, Side, StpMode, SymbolSpec, TimeInForce
from tests.shards.engine_harness import SPEC
from tests.shards.test_engine_properties import commands

pytestmark = pytest.mark.skipif("c" not in engine_module.CORES, reason="the C core is not built in this install")

WIDE = SymbolSpec(symbol_id=1, symbol="WIDE", min_price=1, max_price=10_000_000, min_qty=1, max_qty=1_000_000)


class Twins:
    """Two engines in lockstep: ``c`` applies through the C core, ``py`` through the Python one."""

    def __init__(self, specs: list[SymbolSpec]) -> None:
        self.c, self.py = Engine(specs), Engine(specs)
        self.apply_c, self.apply_py = engine_module.apply_of("c"), engine_module.apply_of("python")

    def apply(self, cmd: object, *, compare_state: bool = True) -> object:
        result_c = self.apply_c(self.c, cmd)
        result_py = self.apply_py(self.py, cmd)
        assert result_c == result_py, cmd
        assert type(result_c) is type(result_py)
        assert self.c.take_encoded() == self.py.take_encoded(), cmd
        assert self.c.last_seq == self.py.last_seq
        if compare_state:
            assert self.c.snapshot() == self.py.snapshot(), cmd
        return result_c


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(commands, min_size=1, max_size=60))
def test_random_streams_give_the_same_results_bytes_and_state(cmds: list) -> None:
    twins = Twins([SPEC])
    for ts, cmd in enumerate(cmds, start=1):
        twins.apply(cmd._replace(ts=ts))


def test_a_long_realistic_flow_stays_identical() -> None:
    """Thousands of commands over a deep book: level churn, heap rebuilds, queue compaction, sweeps, every STP mode."""
    rng = random.Random(11)
    twins = Twins([WIDE])
    resting: list[tuple[int, int]] = []  # (order id, user)
    for ts in range(1, 6001):
        r = rng.random()
        user = rng.randint(1, 40)
        side = rng.choice([1, 2])
        stp = rng.randint(0, 3)
        if r < 0.55:
            price = 1_000_000 + (-rng.randint(1, 300) if side == 1 else rng.randint(1, 300))
            cmd: object = NewOrder(1, user, f"c{ts}", side, 1, 1, price, rng.randint(1, 20), 0, stp, ts)
        elif r < 0.85 and resting:
            order_id, owner = resting.pop(rng.randrange(len(resting)))
            by_coid = rng.random() < 0.2
            cmd = CancelOrder(1, owner, 0 if by_coid else order_id, f"c{order_id}" if by_coid else "", ts)
        elif r < 0.95:
            price = 1_000_000 + (rng.randint(0, 200) if side == 1 else -rng.randint(0, 200))
            tif = rng.choice([1, 2, 3])
            cmd = NewOrder(1, user, f"t{ts}", side, 1, tif, price, rng.randint(1, 60), 0, stp, ts)
        else:
            by_quote = rng.random() < 0.5
            qty, quote = (0, rng.randint(1, 60_000_000)) if by_quote else (rng.randint(1, 60), 0)
            cmd = NewOrder(1, user, f"m{ts}", side, 2, 1, 0, qty, quote, stp, ts)
        result = twins.apply(cmd, compare_state=ts % 250 == 0)
        order = getattr(result, "order", None)
        if isinstance(cmd, NewOrder) and order is not None and order.status in (1, 2):
            resting.append((order.order_id, order.user_id))
    assert twins.c.snapshot() == twins.py.snapshot()
    assert len(twins.c.book(1).orders) > 100  # the flow kept a real book


def test_compacting_a_queue_with_many_cancels_gives_the_same_queue() -> None:
    twins = Twins([SPEC])
    ids = [twins.apply(NewOrder(1, 1 + i % 3, f"q{i}", 1, 1, 1, 100, 2, 0, 0, i)).order.order_id for i in range(100)]
    for n, order_id in enumerate(ids[:70]):
        twins.apply(CancelOrder(1, 1 + n % 3, order_id, "", 1000 + n))
    assert [o[0] for o in twins.c.book(1).level_orders(1, 100)] == ids[70:]
    twins.apply(NewOrder(1, 9, "sweep", 2, 1, 2, 100, 50, 0, 0, 2000))


def test_enum_values_in_commands_work_as_their_ints() -> None:
    twins = Twins([SPEC])
    twins.apply(NewOrder(1, 1, "a", Side.SELL, OrderType.LIMIT, TimeInForce.GTC, 100, 5, 0, StpMode.NONE, 1))
    twins.apply(NewOrder(1, 2, "b", Side.BUY, OrderType.LIMIT, TimeInForce.IOC, 100, 3, 0, StpMode.EXPIRE_MAKER, 2))
    twins.apply(CancelOrder(1, 1, 0, "a", 3))


@pytest.mark.parametrize(
    "cmd",
    [
        NewOrder(1, 1, "big", 2, 2, 1, 0, 0, 2**70, 0, 5),  # quote amount past int64: the journal cannot hold it
        NewOrder(1, 2**64, "u", 1, 1, 1, 100, 1, 0, 0, 5),  # user id past int64
        NewOrder(1, 1, "ts", 1, 1, 1, 100, 1, 0, 0, -(2**64)),  # time past int64
    ],
)
def test_values_past_the_journal_ranges_fail_alike_in_both_cores(cmd: NewOrder) -> None:
    twins = Twins([SPEC])
    twins.apply(NewOrder(1, 3, "maker", 1, 1, 1, 100, 5, 0, 0, 1))
    with pytest.raises(struct.error):
        twins.apply_c(twins.c, cmd)
    with pytest.raises(struct.error):
        twins.apply_py(twins.py, cmd)
    assert twins.c.snapshot() == twins.py.snapshot()
    assert twins.c.take_encoded() == twins.py.take_encoded()


def test_select_core_switches_every_engine_and_refuses_unknown_cores() -> None:
    before = engine_module.core
    try:
        engine_module.select_core("python")
        assert Engine.apply is engine_module.apply_of("python")
        engine_module.select_core("c")
        assert Engine.apply is engine_module.apply_of("c")
        assert engine_module.core == "c"
        with pytest.raises(ValueError, match="'rust'"):
            engine_module.select_core("rust")
    finally:
        engine_module.select_core(before)


def test_the_shard_loop_binds_the_record_calls_to_the_wire_layouts_it_reads() -> None:
    # The C record-in, answer-out calls check shards.wire's formats at import and switch themselves off on a
    # mismatch (tests/shards/test_batch_core.py and test_record_core.py then skip): a wire change must fail here.
    from shards import process

    new_orders, command = process._bind_c_calls()

    assert new_orders is not None
    assert command is not None
