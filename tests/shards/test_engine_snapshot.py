"""Determinism: snapshot/restore, journal replay, and the event codec."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shards.engine import Engine, ReplayError
from shards.events import EventCodecError, command_for_replay, decode_events, encode_events
from shards.protocol import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    DepthUpdate,
    NewOrder,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderRejected,
    SymbolSpec,
    TradeEvent,
)
from shards.snapshot import SnapshotError
from tests.shards.engine_harness import SPEC

pytestmark = pytest.mark.usefixtures("engine_core")  # each test runs on every engine core

SPECS = [SPEC, SymbolSpec(2, "OTHER", 1, 1_000_000, 1, 1_000_000)]


def random_commands(seed: int, n: int) -> list[object]:
    """A mixed stream over two symbols: every command kind, a few of each rejection."""
    rng = random.Random(seed)
    out: list[object] = []
    for ts in range(1, n + 1):
        symbol = rng.choice([1, 1, 2])
        user = rng.randint(1, 4)
        r = rng.random()
        if r < 0.55:
            side = rng.choice([1, 2])
            kind = rng.random()
            if kind < 0.7:
                cmd: object = NewOrder(symbol, user, f"c{ts}", side, 1, rng.choice([1, 1, 1, 2, 3]),
                                       rng.randint(95, 105), rng.randint(1, 9), 0, rng.randint(0, 3), ts)  # fmt: skip
            elif kind < 0.8:
                cmd = NewOrder(symbol, user, f"c{ts}", side, 3, 1, rng.randint(95, 105), rng.randint(1, 9), 0, 0, ts)
            elif kind < 0.9:
                cmd = NewOrder(symbol, user, f"c{ts}", side, 2, 1, 0, rng.randint(1, 9), 0, rng.randint(0, 3), ts)
            else:
                cmd = NewOrder(symbol, user, f"c{ts}", side, 2, 1, 0, 0, rng.randint(50, 900), 0, ts)
        elif r < 0.8:
            cmd = CancelOrder(symbol, user, rng.randint(1, ts // 2 + 1), "", ts)
        elif r < 0.9:
            cmd = AmendOrder(symbol, user, rng.randint(1, ts // 2 + 1), "", rng.randint(1, 8), ts)
        else:
            cmd = CancelAll(symbol, user, ts)
        out.append(cmd)
    return out


def run(engine: Engine, cmds: list[object]) -> tuple[list[object], bytes]:
    results = [engine.apply(cmd) for cmd in cmds]
    return results, engine.take_encoded()


def test_same_commands_give_the_same_bytes() -> None:
    cmds = random_commands(1, 2000)
    assert run(Engine(SPECS), cmds) == run(Engine(SPECS), cmds)


@pytest.mark.parametrize("cut", [0, 1, 500, 1337, 2000])
def test_restored_engine_continues_like_the_uninterrupted_one(cut: int) -> None:
    # arrange
    cmds = random_commands(2, 2000)
    whole = Engine(SPECS)
    _, first_part = run(whole, cmds[:cut])
    snapshot = whole.snapshot()
    expected_results, expected_bytes = run(whole, cmds[cut:])

    # act
    restored = Engine.restore(snapshot, SPECS)
    results, encoded = run(restored, cmds[cut:])

    # assert
    assert results == expected_results
    assert encoded == expected_bytes
    assert restored.snapshot() == whole.snapshot()
    assert restored.last_seq == whole.last_seq


def test_snapshot_of_a_restored_engine_is_identical() -> None:
    engine = Engine(SPECS)
    run(engine, random_commands(3, 1500))
    snapshot = engine.snapshot()
    assert Engine.restore(snapshot, SPECS).snapshot() == snapshot


def test_restore_refuses_bad_snapshots() -> None:
    engine = Engine(SPECS)
    run(engine, random_commands(4, 300))
    snapshot = engine.snapshot()
    with pytest.raises(SnapshotError, match="symbol id 2"):
        Engine.restore(snapshot, [SPEC])
    with pytest.raises(SnapshotError, match="truncated|past the end|left over"):
        Engine.restore(snapshot[:-3], SPECS)
    with pytest.raises(SnapshotError, match="header"):
        Engine.restore(b"XXXX" + snapshot[4:], SPECS)


@pytest.mark.parametrize("cut", [0, 700])
def test_replaying_the_journal_rebuilds_the_same_state(cut: int) -> None:
    # arrange
    cmds = random_commands(5, 1800)
    original = Engine(SPECS)
    run(original, cmds[:cut])
    snapshot = original.snapshot()
    _, journal = run(original, cmds[cut:])

    # act
    rebuilt = Engine.restore(snapshot, SPECS)
    rebuilt.replay(decode_events(journal))

    # assert
    assert rebuilt.snapshot() == original.snapshot()
    assert rebuilt.last_seq == original.last_seq
    assert run(rebuilt, cmds[:50]) == run(original, cmds[:50])


def test_replay_detects_a_journal_that_does_not_match() -> None:
    # arrange
    original = Engine(SPECS)
    _, journal = run(original, random_commands(6, 300))
    events = decode_events(journal)
    i = next(i for i, e in enumerate(events) if isinstance(e, TradeEvent))
    events[i] = events[i]._replace(qty=events[i].qty + 1)

    # act / assert
    with pytest.raises(ReplayError, match="different events"):
        Engine(SPECS).replay(events)


def test_command_for_replay() -> None:
    accepted = OrderAccepted(9, 77, 1, 5, 3, "x", 2, 1, 2, 1, 100, 4, 0)
    assert command_for_replay(accepted) == NewOrder(1, 3, "x", 2, 1, 2, 100, 4, 0, 1, 77)
    assert command_for_replay(OrderCanceled(9, 77, 1, 5, 3, 4)) == CancelOrder(1, 3, 5, "", 77)
    assert command_for_replay(OrderAmended(9, 77, 1, 5, 3, 2)) == AmendOrder(1, 3, 5, "", 2, 77)
    assert command_for_replay(TradeEvent(9, 77, 1, 1, 100, 1, 2, 3, 4, 5, 1)) is None


def test_take_encoded_equals_encoding_the_event_objects() -> None:
    cmds = random_commands(7, 1000)
    a, b = Engine(SPECS), Engine(SPECS)
    for cmd in cmds:
        a.apply(cmd)
        b.apply(cmd)
    assert a.take_encoded() == encode_events(b.take_events())


def test_events_round_trip_through_the_codec() -> None:
    engine = Engine(SPECS)
    for cmd in random_commands(8, 1000):
        engine.apply(cmd)
    engine.apply(NewOrder(1, 9, "amended", 1, 1, 1, 1, 5, 0, 0, 2000))
    engine.apply(AmendOrder(1, 9, 0, "amended", 3, 2001))
    events = engine.take_events()
    assert {type(e) for e in events} == {
        OrderAccepted, TradeEvent, OrderCanceled, OrderAmended, OrderExpired, OrderRejected, DepthUpdate,
    }  # fmt: skip
    assert decode_events(encode_events(events)) == events
    half = len(events) // 2
    assert decode_events(encode_events(events[:half]) + encode_events(events[half:])) == events


I64 = st.integers(-(2**63), 2**63 - 1)
SEQ = st.integers(0, 2**63 - 1)
U32 = st.integers(0, 2**32 - 1)
U8 = st.integers(0, 255)
TEXT = st.text(max_size=40)
LEVELS = st.lists(st.tuples(I64, I64), max_size=5).map(tuple)
EVENTS = st.one_of(
    st.builds(OrderAccepted, SEQ, I64, U32, I64, I64, TEXT, U8, U8, U8, U8, I64, I64, I64),
    st.builds(TradeEvent, SEQ, I64, U32, I64, I64, I64, I64, I64, I64, I64, U8),
    st.builds(OrderCanceled, SEQ, I64, U32, I64, I64, I64),
    st.builds(OrderAmended, SEQ, I64, U32, I64, I64, I64),
    st.builds(OrderExpired, SEQ, I64, U32, I64, I64, I64, U8),
    st.builds(OrderRejected, SEQ, I64, U32, I64, TEXT, st.integers(-(2**31), 2**31 - 1), st.text(max_size=200)),
    st.builds(DepthUpdate, SEQ, I64, U32, I64, LEVELS, LEVELS),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(EVENTS, max_size=20))
def test_codec_round_trips_any_field_values(events: list) -> None:
    assert decode_events(encode_events(events)) == events


def test_decoding_garbage_raises_a_codec_error() -> None:
    encoded = encode_events([OrderAccepted(1, 2, 3, 4, 5, "abc", 1, 1, 1, 0, 100, 5, 0)])
    with pytest.raises(EventCodecError):
        decode_events(encoded[:-2])
    with pytest.raises(EventCodecError, match="unknown event type 99"):
        decode_events(b"\x63" + encoded[1:])
    with pytest.raises(EventCodecError):
        encode_events([NewOrder(1, 1, "x", 1, 1, 1, 1, 1, 0, 0, 0)])  # type: ignore[list-item]
