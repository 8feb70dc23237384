"""One ingress worker's counters, and their exchange-wide view through Redis, for ``GET /metrics``.

The W ingress workers share one listening socket, so a scrape lands on any one of them. Each
worker's ``WorkerTelemetry`` therefore publishes its figures once a second (``PUBLISH_INTERVAL_S``)
to a Redis hash of its own, ``exchange:metrics:ingress:<index>``, with an expiry of a few intervals
(``EXPIRE_S``) so that the figures of a worker that died vanish; the worker answering a scrape
reads every worker's hash in one pipeline and puts its own live figures in place of its hash.

Hash fields (integers as decimal strings): the counters of ``EngineClient.stats()`` (``sent``,
``answered``, ``busy``, ``timeouts``, ``late_answers``, ``bad_answers``, ``pending``) and
``http:<status>`` for each HTTP status falcon's error handlers answered (``count_errors``).
Only errors are counted, in the error handlers: a successful answer, and every answer of the fast
lane of ``POST /api/v3/order`` (``ingress/fastpath.py``), cost nothing here.

The other processes publish hashes of their own the same way (``deploy/telemetry.py``: key, fields,
expiry): ``exchange:metrics:shard:<i>``, ``exchange:metrics:persist:<i>``, ``exchange:metrics:wsfeed:<i>``.
``read_all`` reads them in the same pipeline as the other workers' hashes, for the process counts
it is given (``Readings``).

Never: awaits Redis on a request path other than ``GET /metrics``, raises out of the publishing
task (a failed publish is logged once and retried at the next interval), or logs per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from deploy import telemetry
from ingress.errors import install_error_handlers

log = logging.getLogger("ingress.metrics")

KEY_PREFIX = telemetry.KEY_PREFIX + "ingress:"
PUBLISH_INTERVAL_S = telemetry.PUBLISH_INTERVAL_S
EXPIRE_S = telemetry.EXPIRE_S  # a few intervals: a worker missing that long is gone
READ_TIMEOUT_S = 1.0  # as the /health probes
ENGINE_FIELDS = ("sent", "answered", "busy", "timeouts", "late_answers", "bad_answers", "pending")
HTTP_PREFIX = "http:"

Handler = Callable[[Any, Any, BaseException, dict], Awaitable[None]]


def worker_key(index: int) -> str:
    """The Redis hash of ingress worker ``index``'s figures."""
    return telemetry.key("ingress", index)


decode_figures = telemetry.decode_figures


@dataclass
class Readings:
    """What one ``read_all`` found.

    ``workers``: ingress worker -> figures (this worker's live); ``others_known``: whether Redis answered,
    so that a worker missing from ``workers`` is known to be down. ``processes``: role (``shard``,
    ``persist``, ``wsfeed``) -> index -> figures, for every hash that was there; ``processes_known``:
    whether Redis answered for them (False: all unknown, none down).
    """

    workers: dict[int, dict[str, int]]
    others_known: bool
    processes: dict[str, dict[int, dict[str, int]]] = field(default_factory=dict)
    processes_known: bool = False


class _HandlerRecorder:
    """Stands in for the app while ``install_error_handlers`` registers its handlers."""

    def __init__(self) -> None:
        self.handlers: list[tuple[type[BaseException], Handler]] = []

    def add_error_handler(self, exception: type[BaseException], handler: Handler) -> None:
        self.handlers.append((exception, handler))


class WorkerTelemetry:
    """The figures of ingress worker ``index`` (of ``workers``), published to Redis while started.

    ``engine`` is the worker's EngineClient; its ``stats()`` is read when present (a test's
    in-process engine may have none).
    """

    def __init__(self, engine: Any, index: int, workers: int) -> None:
        self.engine = engine
        self.index = index
        self.workers = workers
        self.http_errors: dict[int, int] = {}
        self._redis: Any = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    # ------------------------------------------------------------ figures

    def figures(self) -> dict[str, int]:
        """This worker's figures now, as published (field -> value)."""
        stats = getattr(self.engine, "stats", None)
        out: dict[str, int] = dict(stats()) if stats is not None else {}
        for status, count in self.http_errors.items():
            out[f"{HTTP_PREFIX}{status}"] = count
        return out

    def count_errors(self, app: Any) -> None:
        """Register ``ingress.errors``' handlers on ``app`` again, each wrapped to count the status it answered."""
        recorder = _HandlerRecorder()
        install_error_handlers(recorder)  # type: ignore[arg-type]
        for exception, handler in recorder.handlers:
            app.add_error_handler(exception, self._counted(handler))

    def _counted(self, handler: Handler) -> Handler:
        counts = self.http_errors

        async def counted(req: Any, resp: Any, ex: BaseException, params: dict) -> None:
            await handler(req, resp, ex, params)
            status = resp.status_code
            counts[status] = counts.get(status, 0) + 1

        counted.__name__ = f"counted_{getattr(handler, '__name__', 'handler')}"
        return counted

    # --------------------------------------------------------- publishing

    def start(self, redis: Any) -> None:
        """Publish every ``PUBLISH_INTERVAL_S`` through ``redis`` (a redis.asyncio client) until ``stop``."""
        if self._task is not None:
            return
        self._redis = redis
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"metrics-publisher-w{self.index}")

    async def stop(self) -> None:
        """Stop publishing (idempotent); the hash expires on its own."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def publish(self) -> None:
        """Write this worker's figures and renew the hash's expiry, in one round trip."""
        key = worker_key(self.index)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(key, mapping=self.figures())
        pipe.expire(key, EXPIRE_S)
        await asyncio.wait_for(pipe.execute(), READ_TIMEOUT_S)

    async def _run(self) -> None:
        while True:
            try:
                await self.publish()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - retried next interval; logged once per outage
                if not self._failing:
                    self._failing = True
                    log.warning("event=metrics_publish_failed worker=%d error=%r", self.index, exc)
            else:
                if self._failing:
                    self._failing = False
                    log.warning("event=metrics_publish_recovered worker=%d", self.index)
            await asyncio.sleep(PUBLISH_INTERVAL_S)

    # ------------------------------------------------------------ reading

    async def read_all(self, redis: Any, processes: Mapping[str, int] | None = None) -> Readings:
        """Every worker's figures, this worker's live, and those of ``processes`` (role -> process count).

        One pipeline of HGETALLs for all of them. When Redis does not answer (or is None) only this
        worker's figures are there and everything else is unknown; otherwise a process whose hash has
        expired is absent.
        """
        workers: dict[int, dict[str, int]] = {}
        others = [i for i in range(self.workers) if i != self.index]
        wanted = [(role, i) for role, count in (processes or {}).items() for i in range(count)]
        found: dict[str, dict[int, dict[str, int]]] = {}
        known = False
        if redis is not None and (others or wanted):
            try:
                pipe = redis.pipeline(transaction=False)
                for i in others:
                    pipe.hgetall(worker_key(i))
                for role, i in wanted:
                    pipe.hgetall(telemetry.key(role, i))
                raws = await asyncio.wait_for(pipe.execute(), READ_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - a scrape never fails on Redis: the others are left out
                raws = None
            if raws is not None:
                known = True
                for i, raw in zip(others, raws[: len(others)], strict=True):
                    if raw:
                        workers[i] = decode_figures(raw)
                for (role, i), raw in zip(wanted, raws[len(others) :], strict=True):
                    if raw:
                        found.setdefault(role, {})[i] = decode_figures(raw)
        others_known = known or not others  # a single worker: there are none
        workers[self.index] = self.figures()
        return Readings(dict(sorted(workers.items())), others_known, found, known or not wanted)
