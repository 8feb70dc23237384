"""A matching shard process: the loop around the engine, between its rings.

Owns: attaching this shard's command rings (one per ingress worker, consumer
side) and answer rings (producer side, each with its worker's doorbell), the
batch loop, time stamping, the event seam, and this process's signal handling
(house rule 1: ``run`` is the entry module's only signal-aware function).
Never: matches anything itself (``shards.engine`` does), creates or unlinks a
ring (the launcher does), or logs per command.

One loop turn (a batch)::

    wait (config.engine.wait_strategy, spin_us for hybrid) until some command ring has records
    read up to batch_max records from every command ring
    decode each; stamp ts (ms, one clock read per batch) on state-changing commands
    engine.apply(cmd) -> result   (Ping -> Pong without the engine)
      a NewOrders record (a REST batch): apply its orders in order, one Results answer
      with the C core, NewOrders, NewOrder and CancelOrder records go in and their answers come out of
      one C call (``_matchcore.new_orders`` / ``command``): no command or result objects; what the C
      core declines (rejections, rare values) takes the Python path, and the bytes are the same
    while commands keep arriving: read more (up to batch_max, at most flush_us longer)
    journal.append_encoded(engine.take_encoded())  <- group commit: one XADD, back when Redis has it
    send every answer (a ring's one answer: Producer.send; a full answer ring is retried, never dropped)
    commit the command rings (a restarted shard re-reads only what it never answered)
    every snapshot_interval_s (between batches): a snapshot (``shards/recovery.py``)

Start: ``shards.recovery.recover`` restores the latest snapshot, replays the
stream after it and places the command rings' cursors after what the journal
holds, so each ring record is applied exactly once; a clean stop writes a
final snapshot.

A command that cannot be decoded, or whose ``apply`` raises, is answered with
``Rejected(-1000, ...)`` (status unknown) and logged, so no request waits for
its timeout because of a bug here.

Memory: the process owns a large, long-lived heap (the books). After start-up
it runs ``gc.freeze()`` and ``gc.disable()``: the cyclic collector would scan
the growing books again and again for cycles the engine never creates
(measured: it costs about half the matching time, see LIMITS.md). Reference
counting still frees everything acyclic.

Metrics: once a second at most, between turns (the idle hook, one clock read per turn shared with the
snapshot check), ``ShardTelemetry`` writes the loop's, the journal's and the books' counters to the hash
``exchange:metrics:shard:<i>`` (``deploy/telemetry.py``) in one round trip on a connection of its own with a
short timeout; nothing per command. A publish that fails is logged once per outage and tried again
``FAILED_BACKOFF_S`` later: matching goes on.

Stop: SIGTERM or SIGINT sets a flag; the loop then takes what is already in
the rings, answers it, commits and returns (exit 0). An answer ring nobody
drains any more (its ingress worker already stopped) is given up after
``STOP_SEND_DEADLINE_S`` once stopping, with a log line counting what was lost.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from deploy import telemetry
from deploy.config import Config
from deploy.log import log_event, set_process_name
from deploy.topology import ProcessContext
from ringbuf.doorbell import Consumer, Doorbell, Producer
from ringbuf.ring import Ring
from shards import wire as _wire
from shards.engine import Engine, bind_wire_calls, c_core_active, select_core
from shards.journal import RedisJournal
from shards.protocol import STATE_CHANGING, Event, Rejected
from shards.recovery import Snapshotter, recover
from shards.wire import (
    INTERNAL_ERROR,
    T_CANCEL_ORDER,
    T_NEW_ORDER,
    T_NEW_ORDERS,
    Ping,
    Pong,
    WireError,
    command_request_id,
    decode_command,
    decode_new_orders,
    encode_answer,
    encode_results,
    fragment_answer,
)

WAIT_SLICE_S = 0.05  # longest wait before the loop looks at its stop flag again
SEND_RETRY_S = 0.0002  # sleep between tries of a full answer ring
STUCK_LOG_EVERY_S = 1.0  # how often a send stuck on a full answer ring is logged
STOP_SEND_DEADLINE_S = 2.0  # once stopping, how long a full answer ring is retried
METRICS_TIMEOUT_S = 0.25  # a metrics publish's connect and round trip, at most (the loop waits for it)
FAILED_BACKOFF_S = 5.0  # after a failed metrics publish, the next try (a dead Redis costs the loop little)

_STAMPED = frozenset(STATE_CHANGING)
_new = tuple.__new__
_RESULTS_HEAD_SIZE = len(encode_results(0, ()))  # a Results item starts after this many bytes


def _bind_c_calls() -> tuple[Callable[..., bytes | None] | None, Callable[..., bytes | None] | None]:
    """The C core's record-in, answer-out calls over ``shards.wire``'s layouts; (None, None) when they differ."""
    layouts = {
        "new_orders_head": _wire._NEW_ORDERS_HEAD.format,
        "new_order_body": _wire._NEW_ORDER_BODY.format,
        "results_head": _wire._RESULTS_HEAD.format,
        "order_body": _wire._ORDER_BODY.format,
        "fill": _wire._FILL.format,
        "new_order": _wire._NEW_ORDER.format,
        "cancel_order": _wire._CANCEL_ORDER.format,
        "order_head": _wire._ORDER_HEAD.format,
        "T_NEW_ORDERS": _wire.T_NEW_ORDERS,
        "T_NEW_ORDER": _wire.T_NEW_ORDER,
        "T_CANCEL_ORDER": _wire.T_CANCEL_ORDER,
        "K_ORDER": _wire.K_ORDER,
        "K_RESULTS": _wire.K_RESULTS,
        "MAX_CLIENT_ORDER_ID": _wire.MAX_CLIENT_ORDER_ID,
    }
    try:
        calls = bind_wire_calls(layouts)
    except (AttributeError, TypeError, ValueError) as exc:
        log_event("shard_c_records_off", "warning", error=str(exc))
        return None, None
    return calls if calls is not None else (None, None)


# With the C core: a NewOrders record in, its Results answer out (C_NEW_ORDERS), and the same for one NewOrder or
# CancelOrder record (C_COMMAND); what they decline takes the Python path below. EXCHANGE_SHARD_RECORDS=python keeps
# the record path in Python with either core (A/B measurements, diagnosis).
_C_NEW_ORDERS, _C_COMMAND = _bind_c_calls() if os.environ.get("EXCHANGE_SHARD_RECORDS") != "python" else (None, None)


def _orders_in(record: bytes) -> int:
    """How many orders a NewOrders record announces (at least 1: an empty record still counts as a command)."""
    return max(record[9] | record[10] << 8, 1) if len(record) >= 11 else 1


def _stamped(cmd: Any, now: int) -> Any:
    """``cmd._replace(ts=now)`` without its overhead: ``ts`` is the last field of every state-changing command."""
    return _new(type(cmd), (*cmd[:-1], now))


class NullEventSink:
    """The sink of a shard loop without Redis (tests of the loop alone): it drops events.

    ``run`` uses it only when ``config.redis.url`` is empty, which the launcher
    never allows (it always resolves an embedded or external Redis), and logs
    ``shard_not_durable`` when it does. Its methods mirror ``RedisJournal``'s.
    """

    def append(self, events: list[Event]) -> None:
        """Drop ``events`` (no durability yet; see the class docstring)."""

    def append_encoded(self, data: bytes, last_seq: int) -> None:
        """Drop the encoded events of a batch."""

    def close(self) -> None:
        """Nothing to flush."""


class ShardLoop:
    """The batch loop of one shard, independent of signals and of process start-up."""

    def __init__(
        self,
        index: int,
        engine: Engine,
        command_rings: Sequence[Ring],
        answers: Sequence[Producer],
        consumer: Consumer,
        batch_max: int,
        sink: NullEventSink | RedisJournal | None = None,
        flush_us: int = 0,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        if len(command_rings) != len(answers):
            raise ValueError(f"{len(command_rings)} command rings but {len(answers)} answer rings")
        self.index = index
        self.engine = engine
        self.command_rings = list(command_rings)
        self.answers = list(answers)
        self.consumer = consumer
        self.batch_max = batch_max
        self.sink = sink if sink is not None else NullEventSink()
        self.flush_s = flush_us / 1e6  # longest extra gathering of a batch while commands keep arriving
        self.on_idle = on_idle  # called every loop turn (snapshots, metrics: ``IdleHook.tick``)
        self.stopping = False
        self.commands = 0  # applied since start
        self.batches = 0  # loop turns that applied at least one command
        self.internal_errors = 0
        self.dropped_answers = 0  # only ever non-zero after a stop with no reader left
        self._pong = Pong(index)
        self._part_error: Exception | None = None  # set by _order_part while a C NewOrders call runs
        # per command ring: (ring, its answers of this turn, its answer producer)
        self._lanes: list[tuple[Ring, list[bytes], Producer]] = [
            (ring, [], producer) for ring, producer in zip(self.command_rings, self.answers, strict=True)
        ]

    def run(self) -> None:
        """Loop until ``stopping``; then drain what is in the rings and return."""
        wait = self.consumer.wait
        step = self.step
        on_idle = self.on_idle
        while not self.stopping:
            if wait(WAIT_SLICE_S):
                step()
            if on_idle is not None:
                on_idle()
        while step():
            pass

    def step(self) -> int:
        """One batch over every command ring; returns how many commands it applied.

        Kept flat: per turn one clock read, one read per ring (two while gathering), no allocation
        beyond the records and answers themselves (each ring's answer list is kept and cleared).
        """
        now = time.time_ns() // 1_000_000
        engine = self.engine
        command = _C_COMMAND if _C_COMMAND is not None and c_core_active() else None
        lanes = self._lanes
        batch_max = self.batch_max
        total = 0
        deadline = 0.0
        while True:  # group commit: gather more while commands keep arriving, up to batch_max and flush_us
            got = 0
            for ring, answers, _producer in lanes:
                records = ring.read(batch_max)
                if not records:
                    continue
                got += len(records)
                for record in records:
                    kind = record[0]
                    if kind == T_NEW_ORDERS:  # a batch of new orders: one record in, one answer out
                        got += self._apply_orders(record, now, answers) - 1
                        continue
                    if command is not None and (kind == T_NEW_ORDER or kind == T_CANCEL_ORDER):
                        try:
                            answer = command(engine, record, now, encode_answer)  # the C core: record in, answer out
                        except Exception as exc:  # noqa: BLE001 - a bug must answer, not hang its caller
                            answer = self._internal_error(record, exc)
                        if answer is not None:  # None: it declined, nothing changed; the Python path takes it
                            answers.append(answer)
                            continue
                    answers.append(self._apply_one(record, now))
            total += got
            if not got or total >= batch_max or not self.flush_s:
                break
            if not deadline:
                deadline = time.perf_counter() + self.flush_s
            elif time.perf_counter() >= deadline:
                break
        if not total:
            return 0
        self.commands += total
        self.batches += 1
        self.sink.append_encoded(engine.take_encoded(), engine.last_seq)
        for _ring, answers, producer in lanes:  # each record read has its answer here
            if answers:
                self._send(producer, answers)
        for ring, answers, _producer in lanes:  # commits after every answer is out
            if answers:
                ring.commit()
                answers.clear()
        return total

    def _apply_one(self, record: bytes, now: int) -> bytes:
        """The Python path of one record other than NewOrders: decode, stamp, apply, encode the answer."""
        try:
            rid, cmd = decode_command(record)
            cls = type(cmd)
            result: object
            if cls in _STAMPED:
                result = self.engine.apply(_stamped(cmd, now))
            elif cls is Ping:
                result = self._pong
            else:
                result = self.engine.apply(cmd)
            return encode_answer(rid, result)
        except Exception as exc:  # noqa: BLE001 - a bug must answer, not hang its caller
            return self._internal_error(record, exc)

    def _apply_orders(self, record: bytes, now: int, answers: list[bytes]) -> int:
        """Apply a NewOrders record's orders in order and answer them with one Results record.

        Returns how many orders it held (at least 1). An order whose ``apply`` raises gets its own
        ``Rejected(-1000)`` and the others go on; a record that cannot be decoded is
        answered as a whole like any malformed record. With the C core the record goes in and
        the answer comes out in one call (``_matchcore.new_orders``); the orders it declines run
        ``Engine._new_order`` in Python and their results are encoded by ``_order_part``.
        """
        if _C_NEW_ORDERS is not None and c_core_active():
            self._part_error = None
            try:
                answer = _C_NEW_ORDERS(self.engine, record, now, self._order_part)
            except Exception as exc:  # noqa: BLE001 - applied but not answerable: "status unknown"
                answers.append(self._internal_error(record, exc))
                return _orders_in(record)
            if answer is not None:  # None: it does not decode; the Python path below answers it
                if self._part_error is not None:
                    answers.append(self._internal_error(record, self._part_error))
                    self._part_error = None
                else:
                    answers.append(answer)
                return _orders_in(record)
        try:
            rid, orders = decode_new_orders(record, now)
        except Exception as exc:  # noqa: BLE001 - a bug must answer, not hang its caller
            answers.append(self._internal_error(record, exc))
            return 1
        apply = self.engine.apply
        results: list[object] = []
        append = results.append
        for cmd in orders:
            try:
                append(apply(cmd))
            except Exception as exc:  # noqa: BLE001 - one order's bug must not lose the others' answers
                append(self._internal_rejected(rid, exc))
        try:
            answers.append(encode_results(rid, results))
        except Exception as exc:  # noqa: BLE001 - applied but not encodable: the caller learns "status unknown"
            answers.append(self._internal_error(record, exc))
        return max(len(orders), 1)  # an empty record still counts, so the turn answers and commits it

    def _order_part(self, rid: int, result: object) -> bytes:
        """The Results item of one order the C core did not encode: a result, or the exception its apply raised.

        An item that cannot be encoded leaves ``_part_error`` set (the first one) and the whole record is then
        answered as status unknown, as ``encode_results`` raising does on the Python path.
        """
        if isinstance(result, BaseException):
            result = self._internal_rejected(rid, result)  # type: ignore[arg-type]
        try:
            return encode_results(rid, (result,))[_RESULTS_HEAD_SIZE:]
        except Exception as exc:  # noqa: BLE001 - reported as the whole record's error by _apply_orders
            if self._part_error is None:
                self._part_error = exc
            return b""

    def _internal_rejected(self, rid: int, exc: Exception) -> Rejected:
        """Log a command that could not be decoded or applied; its answer says the status is unknown."""
        self.internal_errors += 1
        kind = "malformed record" if isinstance(exc, WireError) else f"{type(exc).__name__} applying command"
        log_event("shard_internal_error", "error", shard=self.index, request_id=rid, error=f"{kind}: {exc}")
        msg = f"internal error in shard {self.index} on request {rid}: {kind}; order status unknown"
        return Rejected(INTERNAL_ERROR, msg)

    def _internal_error(self, record: bytes, exc: Exception) -> bytes:
        rid = command_request_id(record) if len(record) >= 9 else 0
        return encode_answer(rid, self._internal_rejected(rid, exc))

    def _send(self, producer: Producer, answers: list[bytes]) -> None:
        """Send ``answers`` (cut where longer than a ring record), retrying a full ring; never drops one."""
        ring = producer.ring
        if max(map(len, answers)) > ring.max_record:
            answers = [part for a in answers for part in fragment_answer(a, ring.max_record)]
        elif len(answers) == 1 and producer.send(answers[0]):  # one answer: one C call on a CRing
            return
        sent = producer.send_batch(answers)
        if sent == len(answers):
            return
        started = last_log = time.monotonic()
        while True:
            answers = answers[sent:]
            time.sleep(SEND_RETRY_S)
            sent = producer.send_batch(answers)
            if sent == len(answers):
                return
            now = time.monotonic()
            if now - last_log >= STUCK_LOG_EVERY_S:
                last_log = now
                log_event("answer_ring_full", "warning", shard=self.index, ring=ring.name, waiting=len(answers) - sent)
            if self.stopping and now - started >= STOP_SEND_DEADLINE_S:
                self.dropped_answers += len(answers) - sent
                log_event("answers_dropped", "error", shard=self.index, ring=ring.name, count=len(answers) - sent)
                return


class ShardTelemetry:
    """Publishes shard ``loop.index``'s counters (``telemetry.SHARD_FIELDS``) to its Redis hash, once a period.

    ``client`` is a redis-py client of its own (not the journal's held connection); ``publish`` sends one
    pipeline (HSET, EXPIRE): one round trip. ``next_at`` (monotonic seconds) says when the next publish is due;
    the loop's idle hook compares its clock with it, and ``publish`` moves it on, by ``FAILED_BACKOFF_S`` after
    a failure. Never raises out of ``publish``.
    """

    def __init__(self, loop: ShardLoop, client: Any, snapshots: Snapshotter | None = None) -> None:
        self.loop = loop
        self.client = client
        self.snapshots = snapshots
        self.key = telemetry.key("shard", loop.index)
        self.failures = telemetry.FailureLog("shard", loop.index)
        self.next_at = 0.0
        self.published = 0

    def figures(self) -> dict[str, int]:
        """The shard's counters now (``telemetry.SHARD_FIELDS``): read, never computed per command."""
        loop = self.loop
        sink = loop.sink
        books = loop.engine._books.values()  # noqa: SLF001 - the books' id counters: no per-order work
        return {
            "commands": loop.commands,
            "batches": loop.batches,
            "internal_errors": loop.internal_errors,
            "orders_accepted": sum(b.next_order_id - 1 for b in books),
            "trades": sum(b.next_trade_id - 1 for b in books),
            "journal_appends": getattr(sink, "entries", 0),
            "journal_retries": getattr(sink, "retries", 0),
            "journal_last_seq": getattr(sink, "last_seq", loop.engine.last_seq),
            "snapshots": self.snapshots.written if self.snapshots is not None else 0,
        }

    def publish(self, now: float) -> None:
        """Write the figures (one round trip); on failure log once and wait ``FAILED_BACKOFF_S`` before the next."""
        try:
            pipe = self.client.pipeline(transaction=False)
            for command in telemetry.publish_commands(self.key, self.figures()):
                pipe.execute_command(*command)
            pipe.execute()
        except Exception as exc:  # noqa: BLE001 - metrics must never stop matching
            self.failures.failed(exc)
            self.next_at = now + FAILED_BACKOFF_S
            return
        self.failures.succeeded()
        self.published += 1
        self.next_at = now + telemetry.PUBLISH_INTERVAL_S

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()


class IdleHook:
    """The loop's call between turns (``tick``): one clock read and one comparison while nothing is due.

    ``next_at`` is the earlier of the metrics' and the snapshotter's due times; when it has come, each
    that is due runs (``ShardTelemetry.publish``, ``Snapshotter.write``), and ``next_at`` moves on.
    """

    __slots__ = ("metrics", "snapshots", "next_at")

    def __init__(self, metrics: ShardTelemetry | None, snapshots: Snapshotter | None) -> None:
        self.metrics = metrics
        self.snapshots = snapshots
        self.next_at = self._next()

    def _next(self) -> float:
        due = [x.next_at for x in (self.metrics, self.snapshots) if x is not None]
        return min(due) if due else float("inf")

    def tick(self) -> None:
        if _clock() >= self.next_at:
            self._due()

    def _due(self) -> None:
        now = _clock()
        metrics, snapshots = self.metrics, self.snapshots
        if metrics is not None and now >= metrics.next_at:
            metrics.publish(now)
        if snapshots is not None and now >= snapshots.next_at:
            snapshots.write()
        self.next_at = self._next()


_clock = time.monotonic


def idle_hook(metrics: ShardTelemetry | None, snapshots: Snapshotter | None) -> Callable[[], None] | None:
    """The loop's call between turns: a metrics publish and a snapshot, each when it is due (None: neither)."""
    if metrics is None and snapshots is None:
        return None
    return IdleHook(metrics, snapshots).tick


def _durability(
    config: Config, index: int, specs: list, command_rings: list[Ring]
) -> tuple[Engine, NullEventSink | RedisJournal, Snapshotter | None]:
    """Recover the engine (snapshot + stream, ring cursors placed) and build the journal and snapshotter.

    Without a Redis URL (tests of the loop alone) the engine starts empty and events are dropped.
    """
    if not config.redis.url:
        log_event("shard_not_durable", "warning", shard=index, reason="redis.url is empty: events are dropped")
        return Engine(specs), NullEventSink(), None
    client = redis.Redis.from_url(config.redis.url, socket_timeout=30)
    try:
        started = time.monotonic()
        rec = recover(client, config.data_dir, index, specs, command_rings)
    finally:
        client.close()
    journal = RedisJournal(config.redis.url, index, command_rings, last_seq=rec.engine.last_seq)
    journal.last_id = rec.stream_id
    snapshots = Snapshotter(
        config.data_dir, index, rec.engine, journal, command_rings, config.engine.snapshot_interval_s
    )
    log_event(
        "shard_recovered",
        shard=index,
        seq=rec.engine.last_seq,
        entries=rec.entries,
        events=rec.events,
        skipped_bytes=",".join(map(str, rec.skipped_records)) or "-",
        us=int((time.monotonic() - started) * 1e6),
    )
    return rec.engine, journal, snapshots


def run(config: Config, ctx: ProcessContext, index: int) -> None:
    """The shard process: attach rings, build the engine, loop until SIGTERM/SIGINT, exit cleanly."""
    set_process_name(f"shard.{index}")
    topology = ctx.topology
    symbols = config.symbols_of_shard(index)
    names = ",".join(s.symbol for s in symbols)
    specs = [s.spec() for s in symbols]
    workers = range(topology.ingress_workers)
    command_rings = [Ring.attach(topology.command_ring(w, index)) for w in workers]
    answer_rings = [Ring.attach(topology.answer_ring(index, w)) for w in workers]
    answers = [Producer(answer_rings[w], Doorbell.from_fd(ctx.doorbell_fds[f"ingress.{w}"])) for w in workers]
    consumer = Consumer(
        command_rings,
        Doorbell.from_fd(ctx.doorbell_fds[f"shard.{index}"]),
        config.engine.wait_strategy,
        spin_us=config.engine.spin_us,
    )
    select_core(config.engine.core)
    engine, sink, snapshots = _durability(config, index, specs, command_rings)
    loop = ShardLoop(
        index, engine, command_rings, answers, consumer, config.engine.batch_max, sink, config.engine.flush_us
    )
    metrics = None
    if config.redis.url:
        client = redis.Redis.from_url(
            config.redis.url, socket_timeout=METRICS_TIMEOUT_S, socket_connect_timeout=METRICS_TIMEOUT_S
        )
        metrics = ShardTelemetry(loop, client, snapshots)
    loop.on_idle = idle_hook(metrics, snapshots)

    def on_signal(signum: int, frame: object) -> None:
        loop.stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    gc.collect()
    gc.freeze()
    gc.disable()
    log_event(
        "shard_start",
        shard=index,
        pid=os.getpid(),
        symbols=names or "-",
        workers=topology.ingress_workers,
        wait=config.engine.wait_strategy,
        core=config.engine.core,
    )
    try:
        loop.run()
        if snapshots is not None:
            snapshots.write()  # clean stop: the next start replays nothing
    finally:
        loop.sink.close()
        if metrics is not None:
            metrics.close()
        for ring in command_rings + answer_rings:
            ring.close()
        log_event(
            "shard_stop",
            shard=index,
            symbols=names or "-",
            commands=loop.commands,
            batches=loop.batches,
            internal_errors=loop.internal_errors,
            dropped_answers=loop.dropped_answers,
        )
