"""RingEngineClient against real rings and doorbells, with the shard loop in a thread.

The shard side is ``shards.process.ShardLoop`` driving a real ``Engine`` (the
same loop the shard process runs), so these tests also cover the loop's
batching, time stamping, pings and answer fragmentation. Tests that need a
silent shard start no loop: commands then sit in the ring unanswered.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
from collections.abc import Iterator

import pytest

from deploy.config import Config, load_config
from deploy.topology import ProcessContext, Topology
from ingress.dispatch import EngineBusy, EngineTimeout
from ingress.engine_client import RingEngineClient
from ringbuf.doorbell import Consumer, Doorbell, Producer
from ringbuf.ring import Ring
from shards import wire
from shards.engine import Engine
from shards.process import ShardLoop
from shards.protocol import (
    BookTickerView,
    CancelOrder,
    DepthView,
    NewOrder,
    OrderResult,
    OrderStatus,
    OrderType,
    QueryBookTicker,
    QueryDepth,
    Rejected,
    Side,
    StpMode,
    TimeInForce,
)


class Rig:
    """Rings, doorbells and optionally running shard loops for one ingress worker."""

    def __init__(self, config: Config, ring_bytes: int) -> None:
        self.config = config
        shards = config.engine.shards
        self.topology = Topology(
            instance=f"t{os.getpid()}x{id(self) % 100000}", ingress_workers=1, shards=shards, ring_bytes=ring_bytes
        )
        self.rings = {name: Ring.create(name, ring_bytes) for name in self.topology.ring_names()}
        self.doorbells = {role: Doorbell.create() for role in self.topology.doorbell_roles()}
        self.ctx = ProcessContext(
            topology=self.topology,
            config_path=None,
            doorbell_fds={role: bell.fd for role, bell in self.doorbells.items()},
        )
        self.loops: list[ShardLoop] = []
        self.threads: list[threading.Thread] = []
        self.attached: list[Ring] = []

    def start_shard(self, index: int) -> ShardLoop:
        t = self.topology
        cmd = Ring.attach(t.command_ring(0, index))
        ans = Ring.attach(t.answer_ring(index, 0))
        self.attached += [cmd, ans]
        engine = Engine([s.spec() for s in self.config.symbols_of_shard(index)])
        loop = ShardLoop(
            index,
            engine,
            [cmd],
            [Producer(ans, Doorbell(self.doorbells["ingress.0"].fd))],
            Consumer([cmd], Doorbell(self.doorbells[f"shard.{index}"].fd), "block"),
            batch_max=64,
        )
        thread = threading.Thread(target=loop.run, daemon=True)
        thread.start()
        self.loops.append(loop)
        self.threads.append(thread)
        return loop

    def close(self) -> None:
        for loop in self.loops:
            loop.stopping = True
        for thread in self.threads:
            thread.join(5)
        for ring in self.attached:
            ring.close()
        for ring in self.rings.values():
            ring.close()
            ring.unlink()
        for bell in self.doorbells.values():
            bell.close()


def _config(answer_timeout_ms: int = 5000) -> Config:
    config = load_config(None, env={})
    return dataclasses.replace(config, rest=dataclasses.replace(config.rest, answer_timeout_ms=answer_timeout_ms))


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig(_config(), 1 << 16)
    yield r
    r.close()


def _run(rig: Rig, body) -> object:
    async def main():
        client = RingEngineClient(rig.config, rig.ctx, 0)
        client.start()
        try:
            return await body(client)
        finally:
            await client.close()

    return asyncio.run(main())


def _sym(config: Config, shard: int) -> int:
    return config.symbols_of_shard(shard)[0].symbol_id


def _limit(symbol_id: int, user: int, coid: str, side: Side, price: int, qty: int) -> NewOrder:
    return NewOrder(symbol_id, user, coid, side, OrderType.LIMIT, TimeInForce.GTC, price, qty, 0, StpMode.NONE, 0)


def test_call_round_trip_places_an_order_and_stamps_its_time(rig):
    rig.start_shard(0)
    sym = _sym(rig.config, 0)

    async def body(client):
        return await client.call(0, _limit(sym, 7, "a1", Side.BUY, 10_000, 5)), client.stats()

    result, stats = _run(rig, body)

    assert isinstance(result, OrderResult)
    assert result.order.status == OrderStatus.NEW
    assert result.order.client_order_id == "a1"
    assert result.order.time > 1_600_000_000_000
    assert stats["pending"] == 0
    assert stats["answered"] == 1


def test_crossing_orders_fill_at_the_maker_price(rig):
    rig.start_shard(0)
    sym = _sym(rig.config, 0)

    async def body(client):
        await client.call(0, _limit(sym, 1, "m", Side.SELL, 10_000, 3))
        return await client.call(0, _limit(sym, 2, "t", Side.BUY, 10_500, 5))

    taker = _run(rig, body)

    assert taker.order.status == OrderStatus.PARTIALLY_FILLED
    assert [(f.price, f.qty) for f in taker.fills] == [(10_000, 3)]


def test_ping_answers_pong_from_a_live_shard_and_false_from_a_silent_one(rig):
    rig.start_shard(0)

    async def body(client):
        return await client.ping(0), await client.ping(1), client.pending_count

    alive, silent, pending = _run(rig, body)

    assert alive is True
    assert silent is False
    assert pending == 0


def test_call_raises_engine_busy_when_the_ring_is_full():
    rig = Rig(_config(), 1 << 10)
    try:
        sym = _sym(rig.config, 0)

        async def body(client):
            tasks = []
            for i in range(100):
                tasks.append(asyncio.ensure_future(client.call(0, _limit(sym, 1, f"c{i}", Side.BUY, 100, 1))))
            await asyncio.sleep(0)
            done = [t for t in tasks if t.done()]
            errors = [t.exception() for t in done]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return errors, client.pending_count

        errors, pending = _run(rig, body)

        assert errors and all(isinstance(e, EngineBusy) for e in errors)
        assert "shard 0" in str(errors[0])
        assert pending == 0
    finally:
        rig.close()


def test_silent_shard_times_out_then_its_late_answer_is_dropped_and_counted():
    rig = Rig(_config(answer_timeout_ms=300), 1 << 16)
    sym = _sym(rig.config, 0)

    async def body(client):
        with pytest.raises(EngineTimeout, match="300 ms"):
            await client.call(0, _limit(sym, 1, "late", Side.BUY, 100, 1))
        after_timeout = client.pending_count
        rig.start_shard(0)  # the shard comes up and answers the old command
        for _ in range(200):
            if client.late_answers:
                break
            await asyncio.sleep(0.01)
        return after_timeout, client.late_answers, client.timeouts

    try:
        after_timeout, late, timeouts = _run(rig, body)
    finally:
        rig.close()

    assert after_timeout == 0
    assert late == 1
    assert timeouts == 1


def test_cancelled_call_leaves_no_pending_entry(rig):
    sym = _sym(rig.config, 0)

    async def body(client):
        task = asyncio.ensure_future(client.call(0, _limit(sym, 1, "gone", Side.BUY, 100, 1)))
        await asyncio.sleep(0.01)
        before = client.pending_count
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return before, client.pending_count

    before, after = _run(rig, body)

    assert before == 1
    assert after == 0


def test_submit_returns_the_future_of_the_result_and_raises_busy_at_once():
    rig = Rig(_config(), 1 << 10)
    try:
        sym = _sym(rig.config, 0)

        async def body(client):
            first = client.submit(0, _limit(sym, 7, "s1", Side.BUY, 10_000, 5))
            with pytest.raises(EngineBusy, match="shard 0"):
                for i in range(100):  # a silent shard: the 1 KiB ring fills
                    client.submit(0, _limit(sym, 7, f"f{i}", Side.BUY, 10_000, 1))
            pending = client.pending_count
            rig.start_shard(0)
            result = await asyncio.wait_for(first, 5)
            return result, pending, client.busy

        result, pending, busy = _run(rig, body)

        assert isinstance(result, OrderResult)
        assert result.order.client_order_id == "s1"
        assert busy == 1  # the one that did not fit: nothing sent, no entry
        assert pending >= 2
    finally:
        rig.close()


def test_submit_on_a_broken_client_raises_timeout_at_once(rig):
    sym = _sym(rig.config, 0)

    async def body(client):
        await client.close()
        with pytest.raises(EngineTimeout, match="closed"):
            client.submit(0, _limit(sym, 1, "x", Side.BUY, 100, 1))
        return client.sent

    assert _run(rig, body) == 0


def test_answer_to_a_cancelled_submit_is_dropped_as_late(rig):
    sym = _sym(rig.config, 0)

    async def body(client):
        client.submit(0, _limit(sym, 1, "gone", Side.BUY, 100, 1)).cancel()
        rig.start_shard(0)
        for _ in range(200):
            if client.late_answers:
                break
            await asyncio.sleep(0.01)
        return client.late_answers, client.answered, client.pending_count

    late, answered, pending = _run(rig, body)

    assert (late, answered, pending) == (1, 0, 0)


def test_cancelled_batch_leaves_no_pending_entry(rig):
    sym0, sym1 = _sym(rig.config, 0), _sym(rig.config, 1)
    items = [(0, _limit(sym0, 1, f"a{i}", Side.BUY, 100, 1)) for i in range(5)]
    items += [(1, _limit(sym1, 1, f"b{i}", Side.BUY, 100, 1)) for i in range(5)]

    async def body(client):
        task = asyncio.ensure_future(client.call_batch(items))
        await asyncio.sleep(0.01)
        before = client.pending_count
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return before, client.pending_count

    before, after = _run(rig, body)

    assert before == 2  # one NewOrders request per shard
    assert after == 0


def test_batch_keeps_item_order_and_each_shards_order(rig):
    rig.start_shard(0)
    rig.start_shard(1)
    sym0, sym1 = _sym(rig.config, 0), _sym(rig.config, 1)
    items = []
    for i in range(20):
        shard, sym = (0, sym0) if i % 3 else (1, sym1)
        items.append((shard, _limit(sym, 1, f"o{i}", Side.BUY, 100 + i, 1)))

    async def body(client):
        return await client.call_batch(items)

    results = _run(rig, body)

    assert [r.order.client_order_id for r in results] == [f"o{i}" for i in range(20)]
    ids0 = [r.order.order_id for (s, _), r in zip(items, results, strict=True) if s == 0]
    ids1 = [r.order.order_id for (s, _), r in zip(items, results, strict=True) if s == 1]
    assert ids0 == sorted(ids0) and ids1 == sorted(ids1)


def test_batch_larger_than_the_ring_gives_busy_entries_for_what_did_not_fit():
    rig = Rig(_config(), 1 << 10)
    try:
        sym = _sym(rig.config, 0)
        items = [(0, _limit(sym, 1, f"x{i}", Side.BUY, 100, 1)) for i in range(30)]

        async def body(client):
            task = asyncio.ensure_future(client.call_batch(items))
            await asyncio.sleep(0.01)
            rig.start_shard(0)
            return await task

        results = _run(rig, body)

        kinds = [type(r) for r in results]
        fitted = kinds.count(OrderResult)
        assert 0 < fitted < 30
        assert kinds == [OrderResult] * fitted + [EngineBusy] * (30 - fitted)
    finally:
        rig.close()


def test_deep_book_answer_is_fragmented_and_reassembled():
    rig = Rig(_config(), 1 << 12)  # max_record ~2 KiB, a 2000-level answer ~32 KiB
    try:
        loop = rig.start_shard(0)
        sym = _sym(rig.config, 0)
        items = [(0, _limit(sym, 1, f"d{i}", Side.BUY, 1000 + i, 1)) for i in range(1000)]
        items += [(0, _limit(sym, 2, f"s{i}", Side.SELL, 5000 + i, 2)) for i in range(1000)]

        async def body(client):
            placed = 0
            for start in range(0, len(items), 10):  # a shard commits a batch just after answering it:
                batch = items[start : start + 10]  # two batches in flight must fit the 4 KiB ring
                placed += sum(isinstance(r, OrderResult) for r in await client.call_batch(batch))
            depth = await client.call(0, QueryDepth(sym, 5000))
            ticker = await client.call(0, QueryBookTicker(sym))
            return placed, depth, ticker

        placed, depth, ticker = _run(rig, body)

        assert placed == 2000
        assert isinstance(depth, DepthView)
        assert depth.bids[:2] == ((1999, 1), (1998, 1)) and len(depth.bids) == 1000
        assert depth.asks[0] == (5000, 2) and len(depth.asks) == 1000
        assert ticker == BookTickerView(sym, 1999, 1, 5000, 2)
        assert loop.dropped_answers == 0
    finally:
        rig.close()


def test_unknown_order_cancel_is_rejected_with_its_code(rig):
    rig.start_shard(0)
    sym = _sym(rig.config, 0)

    async def body(client):
        return await client.call(0, CancelOrder(sym, 1, 424242, "", 0))

    result = _run(rig, body)

    assert isinstance(result, Rejected)
    assert result.code == -2013


def test_dead_reader_fails_pending_calls_and_later_calls_at_once(rig):
    sym = _sym(rig.config, 0)

    async def body(client):
        def boom(records):
            raise RuntimeError("decoder exploded")

        waiting = asyncio.ensure_future(client.call(0, _limit(sym, 1, "w", Side.BUY, 100, 1)))
        await asyncio.sleep(0.01)
        client._deliver = boom
        rig.start_shard(0)  # its answer reaches the broken reader
        with pytest.raises(EngineTimeout, match="decoder exploded"):
            await asyncio.wait_for(waiting, 5)
        with pytest.raises(EngineTimeout, match="answer reader"):
            await client.call(0, _limit(sym, 1, "x", Side.BUY, 100, 1))
        return client.healthy, client.pending_count

    healthy, pending = _run(rig, body)

    assert healthy is False
    assert pending == 0


def test_malformed_command_is_answered_with_internal_error(rig):
    loop = rig.start_shard(0)
    ring = rig.rings[rig.topology.command_ring(0, 0)]
    answers = rig.rings[rig.topology.answer_ring(0, 0)]

    ring.write(b"\x63" + (77).to_bytes(8, "little"))
    Doorbell(rig.doorbells["shard.0"].fd).ring()
    records = []
    for _ in range(500):
        records = answers.read()
        if records:
            break
        threading.Event().wait(0.01)

    rid, result = wire.decode_answer(records[0])
    assert rid == 77
    assert isinstance(result, Rejected) and result.code == -1000
    assert loop.internal_errors == 1


def test_answers_left_for_a_previous_life_of_the_worker_are_dropped_not_mistaken(rig):
    sym = _sym(rig.config, 0)

    async def first_life(client):
        task = asyncio.ensure_future(client.call(0, _limit(sym, 1, "old", Side.BUY, 100, 1)))
        await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    _run(rig, first_life)
    loop = rig.start_shard(0)
    for _ in range(500):  # the shard answers the old command into the ring nobody reads yet
        if loop.commands:
            break
        threading.Event().wait(0.01)

    async def second_life(client):
        result = await client.call(0, _limit(sym, 1, "new", Side.BUY, 101, 1))
        return result, client.late_answers

    result, late = _run(rig, second_life)

    assert loop.commands == 2
    assert result.order.client_order_id == "new"
    assert late == 1


def test_a_silent_shard_times_out_every_request_of_a_batch():
    rig = Rig(_config(answer_timeout_ms=200), 1 << 17)
    sym = _sym(rig.config, 0)
    items = [(0, _limit(sym, 1, f"t{i}", Side.BUY, 100, 1)) for i in range(500)]

    async def body(client):
        return await client.call_batch(items), client.pending_count, client.timeouts

    try:
        results, pending, timeouts = _run(rig, body)
    finally:
        rig.close()

    assert len(results) == 500 and all(isinstance(r, EngineTimeout) for r in results)
    assert (pending, timeouts) == (0, 1)  # the 500 orders went as one NewOrders request


def test_batch_answers_each_order_with_its_own_result_or_reject(rig):
    rig.start_shard(0)
    sym = _sym(rig.config, 0)
    items = [
        (0, _limit(sym, 1, "m1", Side.SELL, 10_000, 2)),
        (0, _limit(sym, 1, "m1", Side.SELL, 10_001, 2)),  # duplicate open client order id: rejected alone
        (0, _limit(sym, 2, "t1", Side.BUY, 10_000, 3)),  # takes m1
    ]

    async def body(client):
        return await client.call_batch(items), client.stats()

    results, stats = _run(rig, body)

    assert type(results[0]) is OrderResult and results[0].order.client_order_id == "m1"
    assert type(results[1]) is Rejected and results[1].code == -2010
    assert type(results[2]) is OrderResult and [(f.price, f.qty) for f in results[2].fills] == [(10_000, 2)]
    assert (stats["sent"], stats["answered"], stats["pending"]) == (1, 1, 0)


def test_an_order_whose_apply_raises_is_answered_alone_with_internal_error(rig, monkeypatch):
    loop = rig.start_shard(0)
    sym = _sym(rig.config, 0)
    apply = Engine.apply

    def flaky(engine, cmd):
        if getattr(cmd, "client_order_id", "") == "boom":
            raise RuntimeError("engine bug")
        return apply(engine, cmd)

    monkeypatch.setattr(Engine, "apply", flaky)  # the class: an Engine has fixed slots, no per-instance methods
    items = [(0, _limit(sym, 1, c, Side.BUY, 100, 1)) for c in ("a", "boom", "b")]

    async def body(client):
        return await client.call_batch(items)

    results = _run(rig, body)

    assert [type(r) for r in results] == [OrderResult, Rejected, OrderResult]
    assert results[1].code == -1000 and "status unknown" in results[1].msg
    assert loop.internal_errors == 1
    assert loop.commands == 3


def _raw_answer(rig: Rig, record: bytes) -> tuple[int, object]:
    ring = rig.rings[rig.topology.command_ring(0, 0)]
    answers = rig.rings[rig.topology.answer_ring(0, 0)]
    ring.write(record)
    Doorbell(rig.doorbells["shard.0"].fd).ring()
    for _ in range(500):
        records = answers.read()
        if records:
            return wire.decode_answer(records[0])
        threading.Event().wait(0.01)
    raise AssertionError("no answer")


def test_truncated_new_orders_record_is_answered_with_internal_error(rig):
    loop = rig.start_shard(0)
    sym = _sym(rig.config, 0)
    record = wire.encode_new_orders(88, [_limit(sym, 1, "a", Side.BUY, 100, 1), _limit(sym, 1, "b", Side.BUY, 100, 1)])

    rid, result = _raw_answer(rig, record[:-10])

    assert rid == 88
    assert isinstance(result, Rejected) and result.code == -1000
    assert loop.internal_errors == 1


def test_empty_new_orders_record_is_answered_with_no_results(rig):
    rig.start_shard(0)

    rid, result = _raw_answer(rig, wire.encode_new_orders(89, []))

    assert (rid, result) == (89, wire.Results(()))


def _bodies(items: list[tuple[int, NewOrder]], shards: int = 2) -> list[list[bytes]]:
    bodies: list[list[bytes]] = [[] for _ in range(shards)]
    for shard, cmd in items:
        bodies[shard].append(wire.new_order_body(cmd))
    return bodies


def test_call_orders_answers_each_record_with_its_raw_results_record(rig):
    rig.start_shard(0)
    rig.start_shard(1)
    sym0, sym1 = _sym(rig.config, 0), _sym(rig.config, 1)
    items = [(0, _limit(sym0, 1, "m1", Side.SELL, 10_000, 2)), (1, _limit(sym1, 1, "n1", Side.BUY, 50, 1))]
    items += [(0, _limit(sym0, 1, "m1", Side.SELL, 10_001, 2)), (0, _limit(sym0, 2, "t1", Side.BUY, 10_000, 3))]

    async def body(client):
        return await client.call_orders(_bodies(items)), client.stats()

    answers, stats = _run(rig, body)

    assert [[(count, type(a)) for count, a in shard] for shard in answers] == [[(3, bytes)], [(1, bytes)]]
    _, results0 = wire.decode_answer(answers[0][0][1])
    assert [type(r) for r in results0.results] == [OrderResult, Rejected, OrderResult]
    assert [r.order.client_order_id for r in results0.results if type(r) is OrderResult] == ["m1", "t1"]
    assert [(f.price, f.qty) for f in results0.results[2].fills] == [(10_000, 2)]
    assert wire.results_items(answers[1][0][1])[1][0][3] == b"n1"
    assert (stats["sent"], stats["answered"], stats["pending"]) == (2, 2, 0)


def test_call_orders_larger_than_the_ring_gives_busy_records_for_what_did_not_fit():
    rig = Rig(_config(), 1 << 10)  # max_record ~500 bytes: 5 orders per record
    try:
        sym = _sym(rig.config, 0)
        items = [(0, _limit(sym, 1, f"x{i}", Side.BUY, 100, 1)) for i in range(30)]

        async def body(client):
            task = asyncio.ensure_future(client.call_orders(_bodies(items)))
            await asyncio.sleep(0.01)
            rig.start_shard(0)
            return await task, client.busy

        answers, busy = _run(rig, body)

        kinds = [type(a) for _, a in answers[0]]
        fitted = kinds.count(bytes)
        assert sum(count for count, _ in answers[0]) == 30 and answers[1] == []
        assert 0 < fitted < len(kinds) and kinds == [bytes] * fitted + [EngineBusy] * (len(kinds) - fitted)
        assert busy == sum(count for count, a in answers[0] if type(a) is EngineBusy)
        ids = [item[3] for _, a in answers[0][:fitted] for item in wire.results_items(a)[1]]
        assert ids == [f"x{i}".encode() for i in range(len(ids))]
    finally:
        rig.close()


def test_call_orders_on_a_silent_shard_times_out_and_leaves_nothing_pending():
    rig = Rig(_config(answer_timeout_ms=100), 1 << 16)
    try:
        sym = _sym(rig.config, 0)

        async def body(client):
            answers = await client.call_orders(_bodies([(0, _limit(sym, 1, "a", Side.BUY, 100, 1))]))
            return answers, client.pending_count

        answers, pending = _run(rig, body)

        assert [[(count, type(a)) for count, a in shard] for shard in answers] == [[(1, EngineTimeout)], []]
        assert pending == 0
    finally:
        rig.close()
