"""One ``ShardLoop`` turn over real rings: the order of its durable steps, and a full answer ring.

A turn answers only after its sink (the journal) has returned, and commits its
command rings only after every answer is out (DESIGN.md, "Durability and
recovery"). Each test runs on both ring lanes: ``CRing`` (the C lane, where a
single answer goes out through ``Producer.send``, one C call) and ``PyRing``
(pure Python), so the fallback keeps the same order.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ringbuf import Doorbell, Producer
from ringbuf.ring import CRing, PyRing, Ring
from shards.engine import Engine
from shards.process import ShardLoop
from shards.protocol import CancelOrder, NewOrder, OrderResult, Rejected, SymbolSpec
from shards.wire import Ping, Pong, decode_answer, encode_command

SPEC = SymbolSpec(1, "AAA", 1, 1_000_000, 1, 1_000_000)
LANES = [pytest.param(CRing, id="c-lane"), pytest.param(PyRing, id="python-lane")]


def _order(coid: str, side: int = 1, price: int = 100) -> NewOrder:
    return NewOrder(1, 7, coid, side, 1, 1, price, 1, 0, 0, 0)


class Rig:
    """Two command rings and two answer rings of one lane, with the loop's producers."""

    def __init__(self, cls: type[Ring], answer_bytes: int = 1 << 16) -> None:
        tag = uuid.uuid4().hex[:8]
        self.commands = [cls.create(f"test-turn-c{i}-{tag}", 1 << 16) for i in range(2)]
        self.answers = [cls.create(f"test-turn-a{i}-{tag}", answer_bytes) for i in range(2)]
        self.bells = [Doorbell.create() for _ in range(2)]
        self.producers = [Producer(ring, bell) for ring, bell in zip(self.answers, self.bells, strict=True)]

    def close(self) -> None:
        for ring in self.commands + self.answers:
            ring.close()
            ring.unlink()
        for bell in self.bells:
            bell.close()


@pytest.fixture(params=LANES)
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    if request.param is None:
        pytest.skip("the C ring lane is not built in this install")
    made = Rig(request.param)
    yield made
    made.close()


class WatchingSink:
    """A journal stand-in that notes, when a turn is journaled, what was answered and committed by then."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.turns: list[dict[str, Any]] = []
        self.called = threading.Event()

    def append_encoded(self, data: bytes, last_seq: int) -> None:
        self.turns.append(
            {
                "last_seq": last_seq,
                "bytes": len(data),
                "answer_tails": [r.positions()[0] for r in self.rig.answers],
                "command_heads": [r.positions()[1] for r in self.rig.commands],
            }
        )
        self.called.set()

    def close(self) -> None:
        """Nothing to flush."""


class WatchingProducer:
    """A Producer that notes the command rings' committed heads whenever the loop sends through it."""

    def __init__(self, inner: Producer, rig: Rig, sends: list[tuple[str, list[int]]]) -> None:
        self.inner, self.rig, self.sends, self.ring = inner, rig, sends, inner.ring

    def send(self, record: bytes) -> bool:
        self.sends.append(("send", [r.positions()[1] for r in self.rig.commands]))
        return self.inner.send(record)

    def send_batch(self, records: list[bytes]) -> int:
        self.sends.append(("send_batch", [r.positions()[1] for r in self.rig.commands]))
        return self.inner.send_batch(records)


def test_answers_follow_the_journal_and_commits_follow_the_answers(rig: Rig) -> None:
    # arrange: ring 0 holds one order (one answer: the single-record send), ring 1 three commands (a batch send)
    sink = WatchingSink(rig)
    sends: list[tuple[str, list[int]]] = []
    producers = [WatchingProducer(p, rig, sends) for p in rig.producers]
    engine = Engine([SPEC])
    loop = ShardLoop(0, engine, rig.commands, producers, None, 64, sink)  # type: ignore[arg-type]
    rig.commands[0].write(encode_command(11, _order("a")))
    rig.commands[1].write_batch(
        [
            encode_command(21, _order("b", 2, 100)),
            encode_command(22, Ping()),
            encode_command(23, CancelOrder(1, 7, 999, "", 0)),
        ]
    )
    tails = [r.positions()[0] for r in rig.commands]
    # act
    applied = loop.step()
    # assert: journaled once, before any answer or commit
    assert applied == 4
    assert sink.turns == [
        {"last_seq": engine.last_seq, "bytes": sink.turns[0]["bytes"], "answer_tails": [0, 0], "command_heads": [0, 0]}
    ]
    assert sink.turns[0]["bytes"] > 0
    # ... every answer sent before the first commit, the single answer through send
    assert sends == [("send", [0, 0]), ("send_batch", [0, 0])]
    assert [r.positions()[1] for r in rig.commands] == tails
    # ... and the answers are the commands' own
    first = [decode_answer(a) for a in rig.answers[0].read(10)]
    second = [decode_answer(a) for a in rig.answers[1].read(10)]
    assert [(rid, type(res)) for rid, res in first] == [(11, OrderResult)]
    assert [(rid, type(res)) for rid, res in second] == [(21, OrderResult), (22, Pong), (23, Rejected)]
    assert loop.step() == 0 and len(sink.turns) == 1  # nothing left: no empty turn is journaled


@pytest.mark.parametrize("cls", LANES)
def test_a_full_answer_ring_holds_the_turn_until_it_is_read(cls: type[Ring] | None) -> None:
    if cls is None:
        pytest.skip("the C ring lane is not built in this install")
    # arrange: answer ring 0 full of records nobody read yet
    small = Rig(cls, answer_bytes=1 << 12)
    try:
        filler = [b"x" * 500] * 16
        while small.answers[0].write_batch(filler):
            pass
        sink = WatchingSink(small)
        loop = ShardLoop(0, Engine([SPEC]), small.commands, small.producers, None, 64, sink)  # type: ignore[arg-type]
        small.commands[0].write(encode_command(5, _order("late")))
        turn = threading.Thread(target=loop.step)
        # act
        turn.start()
        assert sink.called.wait(10)
        turn.join(0.05)
        stuck = turn.is_alive()
        head_while_stuck = small.commands[0].positions()[1]
        drained = small.answers[0].read(1000)
        small.answers[0].commit()
        turn.join(10)
        # assert: the turn waited for room, committed nothing meanwhile, then sent its answer
        assert stuck and head_while_stuck == 0
        assert not turn.is_alive()
        assert all(record == b"x" * 500 for record in drained)
        rid, result = decode_answer(small.answers[0].read(10)[0])
        assert (rid, type(result)) == (5, OrderResult)
        assert small.commands[0].positions()[1] == small.commands[0].positions()[0]
        assert (loop.commands, loop.dropped_answers) == (1, 0)
    finally:
        small.close()
