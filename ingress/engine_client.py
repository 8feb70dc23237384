"""The ring-backed EngineClient of one ingress worker (see ``ingress.dispatch``).

Owns: this worker's producer side of every shard's command ring, the consumer
side of its answer rings, the request-id counter, the table of pending
requests (request id -> future), the answer reader and the timeout
sweeper. Never: blocks the event loop (ring writes and reads never wait;
answers wake the loop through the doorbell's ``add_reader``), parses HTTP, or
logs per request.

A call::

    rid = next id; record = wire.encode_command(rid, cmd)
    command ring full  -> EngineBusy (nothing sent, no entry made)
    pending[rid] = future; await it
    reader: answer ring -> wire.decode_answer -> pending.pop(rid).set_result
    sweeper: a request older than answer_timeout_ms -> EngineTimeout (entry removed)
    caller cancelled (client gone) -> entry removed at once

The reader is a callback, not a task: ``AsyncConsumer.listen`` runs it from the
doorbell's reader on the loop, so an answer reaches its caller's future with no
waiter future and no task step in between (at a paced load each cost a pass of
the loop per order). The doorbell of a shard is rung once per loop iteration
(``_ring_bells``), not once per write: ringing at once saved that callback's
pass at the lightest loads, but under a paced load of a few thousand orders/s
it split the shard's batches (more shard wake-ups and Redis round trips per
order). ``submit`` is ``call`` without its coroutine, for the fast lane;
``submit_order_body`` sends a NewOrder from its packed wire body (the C core
writes it) and leaves the answer record undecoded: the reader hands it over as
it came (its request id is in ``_raw``), and the lane writes a FULL answer
straight from its bytes or ``decode``s it.

A batch (``call_orders``, the REST ``batchOrders``; ``call_batch`` for a list of
commands) sends each shard's new orders as ``NewOrders`` records, as many orders
per record as the ring's max_record allows (100 orders are one record of ~8.5 kB):
one ring write, one doorbell, one pending entry and one ``Results`` answer per
shard and request, instead of one of each per order. The reader hands a
``Results`` record to its caller undecoded: ``call_orders`` returns it as it
came (the REST batch renders it straight from the bytes), ``call_batch``
decodes it.

Request ids are unique per process life (``first_request_id``), so answers left in
the ring for a previous life of this worker are dropped as late, never mistaken.

Timeouts without a timer per request: request ids grow in the order requests
are made, so ``pending`` (a dict, insertion-ordered) is oldest first. Every
``SWEEP_S`` the sweeper notes the next request id it would hand out; a marker
older than the timeout says every id below it has expired, and the sweeper
fails those from the front of ``pending``. A request so times out between
``answer_timeout_ms`` and ``answer_timeout_ms + SWEEP_S`` after it was sent.

An answer that arrives after its request timed out or was cancelled is
dropped and counted (``late_answers``). If the reader fails, it logs,
fails every pending request with EngineTimeout (their fate is unknown) and
every later call fails at once the same way: callers never hang.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from deploy.config import Config
from deploy.topology import ProcessContext
from ingress.dispatch import EngineBusy, EngineTimeout
from ringbuf.doorbell import AsyncConsumer, Doorbell, Producer
from ringbuf.ring import Ring
from shards.protocol import NewOrder, Result
from shards.wire import (
    ANSWER_HEAD_SIZE,
    K_RESULTS,
    T_NEW_ORDER,
    AnswerAssembler,
    Ping,
    Pong,
    Results,
    WireError,
    decode_answer,
    encode_command,
    encode_commands,
    encode_new_orders,
    new_orders_per_record,
    new_orders_record,
)

log = logging.getLogger("ingress.engine_client")

SWEEP_S = 0.05  # timeout sweeper period
PING_TIMEOUT_S = 0.5
READ_MAX = 1024  # answer records taken from one ring per pass
_NEW_ORDER_TYPE = bytes((T_NEW_ORDER,))  # a NewOrder command record: this byte, the request id, the order's body


def first_request_id() -> int:
    """Where this process's request ids start: its start time in ms, shifted left 20 bits.

    A restarted worker must not reuse the ids of its previous life: the answer ring may
    still hold answers to them, which would resolve the new requests with old results.
    Starting each life at its start time leaves room for 2**20 requests per millisecond
    of the previous life's uptime before ids could meet, and stays below 2**62.
    """
    return (time.time_ns() // 1_000_000) << 20


class RingEngineClient:
    """EngineClient over shared-memory rings for ingress worker ``worker_index``."""

    def __init__(self, config: Config, ctx: ProcessContext, worker_index: int) -> None:
        topology = ctx.topology
        self.worker_index = worker_index
        self.shard_count = topology.shards
        self.timeout_s = config.rest.answer_timeout_ms / 1000.0
        self._command_rings = [Ring.attach(topology.command_ring(worker_index, s)) for s in range(self.shard_count)]
        self._answer_rings = [Ring.attach(topology.answer_ring(s, worker_index)) for s in range(self.shard_count)]
        self._producers = [
            Producer(ring, Doorbell.from_fd(ctx.doorbell_fds[f"shard.{s}"]))
            for s, ring in enumerate(self._command_rings)
        ]
        self._consumer = AsyncConsumer(
            self._answer_rings, Doorbell.from_fd(ctx.doorbell_fds[f"ingress.{worker_index}"])
        )
        self._orders_per_record = [max(1, new_orders_per_record(ring.max_record)) for ring in self._command_rings]
        self._assembler = AnswerAssembler()
        self._pending: dict[int, asyncio.Future[Result]] = {}
        self._raw: set[int] = set()  # pending requests answered with the raw record (submit_order_body)
        self._next_rid = first_request_id()
        self._marks: deque[tuple[float, int]] = deque()
        self._written = [False] * self.shard_count  # shards with records not yet announced by their doorbell
        self._bell_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._broken: str | None = None
        self._closed = False
        # counters for /health and /metrics
        self.sent = 0
        self.answered = 0
        self.busy = 0
        self.timeouts = 0
        self.late_answers = 0
        self.bad_answers = 0

    # ------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the answer reader (a doorbell callback) and the timeout sweeper on the running loop."""
        if self._tasks:
            return
        self._loop = asyncio.get_running_loop()
        self._tasks = [self._loop.create_task(self._sweep(), name=f"sweeper-w{self.worker_index}")]
        self._consumer.listen(self._read_answers)

    async def close(self) -> None:
        """Stop the tasks, fail what is pending, close the rings (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._broken = self._broken or "the engine client is closed"
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except BaseException:  # noqa: BLE001 - its failure was logged where it happened
                pass
        self._fail_all(self._broken)
        self._consumer.close()
        for ring in self._command_rings + self._answer_rings:
            ring.close()

    # -------------------------------------------------------------- counters

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def healthy(self) -> bool:
        """False once the answer reader has failed or the client was closed."""
        return self._broken is None

    def stats(self) -> dict[str, int]:
        """Counters for /metrics: requests sent, answered, busy, timed out, late and bad answers, pending."""
        return {
            "sent": self.sent,
            "answered": self.answered,
            "busy": self.busy,
            "timeouts": self.timeouts,
            "late_answers": self.late_answers,
            "bad_answers": self.bad_answers,
            "pending": len(self._pending),
        }

    # ------------------------------------------------------------------ calls

    def submit(self, shard: int, cmd: object) -> asyncio.Future[Result]:
        """Send ``cmd`` to ``shard`` now; the future of its Result (``call`` without a coroutine of its own).

        Raises EngineBusy (nothing sent) or EngineTimeout (the client is broken or closed) at once;
        the future fails with EngineTimeout when no answer comes in time. For the fast lane, whose
        own coroutine awaits the future: one frame fewer to create and resume per order. A future
        its caller cancels stays in ``pending`` until its answer (dropped as late) or the sweeper
        removes it; ``call`` removes it at once. A command answered by a ``Results`` record
        (``NewOrders``) resolves to that record's bytes: ``call`` decodes it.
        """
        rid = self._next_rid
        return self._send(shard, rid, encode_command(rid, cmd))

    def submit_order_body(self, shard: int, body: bytes) -> asyncio.Future[bytes]:
        """``submit`` of the NewOrder whose wire body is ``body`` (``wire.new_order_body``; the command record is
        the one ``encode_command`` writes): the future of the answer record itself, undecoded, whatever its kind
        (``decode`` gives its Result). For the single-order fast lane, which writes a FULL answer from its bytes.
        """
        rid = self._next_rid
        fut = self._send(shard, rid, _NEW_ORDER_TYPE + rid.to_bytes(8, "little") + body)
        self._raw.add(rid)
        return fut

    def _send(self, shard: int, rid: int, record: bytes) -> asyncio.Future[Any]:
        """Write request ``rid``'s command ``record`` to ``shard``'s ring (EngineBusy when full: nothing sent),
        have its doorbell rung at the end of this loop pass, and return the future its answer resolves
        (EngineTimeout at once when the client is broken or closed)."""
        if self._broken is not None:
            raise EngineTimeout(self._broken)
        self._next_rid = rid + 1
        if not self._command_rings[shard].write(record):
            self.busy += 1
            raise EngineBusy(f"command ring of shard {shard} is full")
        self._written[shard] = True
        if not self._bell_scheduled:
            self._bell_scheduled = True
            self._loop.call_soon(self._ring_bells)  # type: ignore[union-attr]
        self.sent += 1
        fut = self._loop.create_future()  # type: ignore[union-attr]
        self._pending[rid] = fut
        return fut

    async def call(self, shard: int, cmd: object) -> Result:
        """Send ``cmd`` to ``shard``; its Result, or EngineBusy (nothing sent) / EngineTimeout (fate unknown)."""
        rid = self._next_rid
        fut = self.submit(shard, cmd)
        try:
            res = await fut
        except asyncio.CancelledError:
            self._pending.pop(rid, None)
            raise
        if type(res) is bytes:  # a Results record (the answer to a NewOrders command)
            res = self.decode(res)
            if isinstance(res, Exception):
                raise res
        return res

    def decode(self, record: bytes) -> Result | Exception:
        """The Result of a raw answer record (a ``Results`` record, or any answer to ``submit_order_body``), or
        EngineTimeout (logged, counted in ``bad_answers``) when it is malformed."""
        try:
            return decode_answer(record)[1]
        except WireError as exc:
            self.bad_answers += 1
            log.error("event=bad_answer worker=%d size=%d error=%r", self.worker_index, len(record), exc)
            return EngineTimeout(f"malformed answer from the shard ({exc}); status unknown")

    async def call_orders(self, bodies: Sequence[Sequence[bytes]]) -> list[list[tuple[int, object]]]:
        """Send packed new orders per shard; per shard, ``(order count, raw Results record or exception)``
        for each NewOrders record (``ingress.dispatch.EngineClient.call_orders``).

        As in ``call_batch``: a record that does not fit the ring leaves its orders and every later
        one of that shard as EngineBusy (nothing of them sent); the last record of a shard is awaited first.
        """
        if self._broken is not None:
            return [[(len(orders), EngineTimeout(self._broken))] if orders else [] for orders in bodies]
        out: list[list[tuple[int, object]]] = []
        pending = self._pending
        create_future = self._loop.create_future  # type: ignore[union-attr]
        rid = self._next_rid
        waiting: list[tuple[list[tuple[int, object]], int, int]] = []  # (shard answers, index, request id)
        for shard, orders in enumerate(bodies):
            answers: list[tuple[int, object]] = []
            out.append(answers)
            if not orders:
                continue
            per = self._orders_per_record[shard]
            chunks = [orders[k : k + per] for k in range(0, len(orders), per)] if len(orders) > per else [orders]
            records = [new_orders_record(rid + j, chunk) for j, chunk in enumerate(chunks)]
            sent = self._command_rings[shard].write_batch(records)
            for k in range(sent):
                fut = create_future()
                pending[rid + k] = fut
                waiting.append((answers, k, rid + k))
                answers.append((len(chunks[k]), fut))
            if sent:
                rid += sent
                self.sent += sent
                self._written[shard] = True
            for chunk in chunks[sent:]:
                self.busy += len(chunk)
                answers.append((len(chunk), EngineBusy(f"command ring of shard {shard} is full")))
        self._next_rid = rid
        if waiting and not self._bell_scheduled:
            self._bell_scheduled = True
            self._loop.call_soon(self._ring_bells)  # type: ignore[union-attr]
        try:
            for answers, k, _ in reversed(waiting):  # the last first: usually the others are done then
                count, fut = answers[k]
                if not fut.done():  # type: ignore[union-attr]
                    try:
                        await fut  # type: ignore[misc]
                    except EngineTimeout:
                        pass
                exc = fut.exception()  # type: ignore[union-attr]
                answers[k] = (count, exc if exc is not None else fut.result())  # type: ignore[union-attr]
        except asyncio.CancelledError:
            for _, _, request_id in waiting:
                pending.pop(request_id, None)
            raise
        return out

    async def call_batch(self, items: Sequence[tuple[int, object]]) -> list[Result | Exception]:
        """Send several commands, each shard's in item order with one ring publish; one entry per item.

        New orders travel as ``NewOrders`` records (as many orders per record as the ring's
        ``max_record`` allows): one record, one future and one answer per shard for a
        whole batch. Other commands go one record each. A shard answers its ring in order,
        and the sweeper expires requests oldest first, so once the last request of a
        shard's group is done, all of that group are: the call awaits the last first.
        A record that does not fit the ring leaves its items and every later item of that
        shard as EngineBusy (nothing of them sent).
        """
        if self._broken is not None:
            return [EngineTimeout(self._broken) for _ in items]
        out: list[Result | Exception | None] = [None] * len(items)
        by_shard: dict[int, list[int]] = {}
        for i, item in enumerate(items):
            by_shard.setdefault(item[0], []).append(i)
        pending = self._pending
        create_future = self._loop.create_future  # type: ignore[union-attr]
        rings = self._command_rings
        rid = self._next_rid
        # (positions answered by this request, request id, future, True when its answer is a Results record)
        groups: list[list[tuple[list[int], int, asyncio.Future[Result], bool]]] = []
        for shard, positions in by_shard.items():
            cmds = [items[i][1] for i in positions]
            ring = rings[shard]
            if len(cmds) > 1 and type(cmds[0]) is NewOrder and len(set(map(type, cmds))) == 1:
                per = self._orders_per_record[shard]
                parts = [positions[k : k + per] for k in range(0, len(positions), per)]
                records = [
                    encode_new_orders(rid + j, cmds[k : k + per]) for j, k in enumerate(range(0, len(cmds), per))
                ]
                batched = True
            else:
                parts = [[i] for i in positions]
                records = encode_commands(rid, cmds)
                batched = False
            sent = ring.write_batch(records)
            if sent:
                group = []
                for k in range(sent):
                    fut = create_future()
                    pending[rid + k] = fut
                    group.append((parts[k], rid + k, fut, batched))
                groups.append(group)
                rid += sent
                self.sent += sent
                self._written[shard] = True
            for part in parts[sent:]:
                for i in part:
                    self.busy += 1
                    out[i] = EngineBusy(f"command ring of shard {shard} is full")
        self._next_rid = rid
        if groups and not self._bell_scheduled:
            self._bell_scheduled = True
            self._loop.call_soon(self._ring_bells)  # type: ignore[union-attr]
        try:
            for group in groups:
                for part, _, fut, batched in reversed(group):  # the last first: usually the others are done then
                    if not fut.done():
                        try:
                            await fut
                        except EngineTimeout:
                            pass
                    exc = fut.exception()
                    res: object = exc if exc is not None else fut.result()
                    if type(res) is bytes:
                        res = self.decode(res)
                    if batched and type(res) is Results:
                        answers = res[0]  # type: ignore[index]
                        if len(answers) == len(part):
                            for i, answer in zip(part, answers, strict=True):
                                out[i] = answer
                            continue
                        res = EngineTimeout(f"shard answered {len(answers)} results to {len(part)} orders")
                    for i in part:
                        out[i] = res  # type: ignore[assignment]
        except asyncio.CancelledError:
            for group in groups:
                for _, request_id, _, _ in group:
                    pending.pop(request_id, None)
            raise
        return out  # type: ignore[return-value]

    def _ring_bells(self) -> None:
        """Wake the shards written to in this loop iteration (those asleep), one doorbell each.

        The calls write their records at once but leave the doorbell to this callback,
        which runs once per event-loop iteration: the requests of one iteration cost one wake-up
        (an eventfd write, and the context switches it causes) per shard instead of one each.
        ``Producer.wake`` rings the doorbell only if the shard sleeps.
        """
        self._bell_scheduled = False
        written = self._written
        for shard, producer in enumerate(self._producers):
            if written[shard]:
                written[shard] = False
                producer.wake()

    async def ping(self, shard: int) -> bool:
        """True when ``shard`` answers a Ping within PING_TIMEOUT_S."""
        try:
            result = await asyncio.wait_for(self.call(shard, Ping()), PING_TIMEOUT_S)
        except (TimeoutError, EngineBusy, EngineTimeout):
            return False
        return isinstance(result, Pong)

    # ------------------------------------------------------------ background

    def _read_answers(self) -> None:
        """The answer reader: ``AsyncConsumer.listen`` calls it when an answer ring has records.

        It takes every record there (at most READ_MAX per read) and resolves their futures; the
        callers run in later passes of the loop. If it fails, the client is broken for good.
        """
        try:
            for ring in self._answer_rings:
                records = ring.read(READ_MAX)
                while records:
                    self._deliver(records)
                    ring.commit()
                    if len(records) < READ_MAX:
                        break  # what came in since: seen by the consumer's look before it sleeps (another pass)
                    records = ring.read(READ_MAX)
        except BaseException as exc:
            self._broken = f"answer reader of ingress worker {self.worker_index} died: {exc!r}"
            log.critical("event=answer_reader_died worker=%d error=%r", self.worker_index, exc, exc_info=True)
            self._consumer.close()
            self._fail_all(self._broken)

    def _deliver(self, records: list[bytes]) -> None:
        pending = self._pending
        raw = self._raw
        for record in records:
            try:
                if record[0] & 0xC0:  # a fragment of a long answer (wire.MORE | wire.LAST)
                    record = self._assembler.feed(record)  # type: ignore[assignment]
                    if record is None:
                        continue
                if record[0] == K_RESULTS and len(record) >= ANSWER_HEAD_SIZE:  # its caller reads it
                    rid = int.from_bytes(record[1:ANSWER_HEAD_SIZE], "little")
                    result = record if type(record) is bytes else bytes(record)
                elif (
                    raw
                    and len(record) >= ANSWER_HEAD_SIZE
                    and (rid := int.from_bytes(record[1:ANSWER_HEAD_SIZE], "little")) in raw
                ):  # its caller reads it (submit_order_body)
                    raw.remove(rid)
                    result = record if type(record) is bytes else bytes(record)
                else:
                    rid, result = decode_answer(record)
            except Exception as exc:  # noqa: BLE001 - one bad record must not stop the reader
                self.bad_answers += 1
                log.error("event=bad_answer worker=%d size=%d error=%r", self.worker_index, len(record), exc)
                continue
            fut = pending.pop(rid, None)
            if fut is None or fut.done():
                self.late_answers += 1
                continue
            self.answered += 1
            fut.set_result(result)

    async def _sweep(self) -> None:
        loop = self._loop
        marks = self._marks
        pending = self._pending
        timeout = self.timeout_s
        while True:
            await asyncio.sleep(SWEEP_S)
            now = loop.time()  # type: ignore[union-attr]
            marks.append((now, self._next_rid))
            expired_below = 0
            while marks and marks[0][0] <= now - timeout:
                expired_below = marks.popleft()[1]
            if not expired_below:
                continue
            expired = []
            for rid in pending:  # oldest first; one pass, then pop (never re-scan from the front)
                if rid >= expired_below:
                    break
                expired.append(rid)
            for rid in expired:
                self._raw.discard(rid)
                fut = pending.pop(rid)
                if not fut.done():
                    self.timeouts += 1
                    fut.set_exception(
                        EngineTimeout(f"no answer to request {rid} within {int(timeout * 1000)} ms; status unknown")
                    )

    def _fail_all(self, reason: str) -> None:
        futures = list(self._pending.values())
        self._pending.clear()
        self._raw.clear()
        for fut in futures:
            if not fut.done():
                fut.set_exception(EngineTimeout(reason))
