"""GET /metrics: the exchange's figures in the Prometheus text exposition format (version 0.0.4).

Public and unsigned, GET only; ``Content-Type: text/plain; version=0.0.4; charset=utf-8``.
Exchange-wide whichever ingress worker answers: every worker's counters come from Redis
(``ingress/metrics_publisher.py``), the answering worker's own live, each labelled
``worker="<index>"``; the shards, Redis and PostgreSQL are probed as ``GET /health`` probes them
(``ingress/probes.py``). Every source is bounded in time; one that fails gives ``exchange_up`` 0
(or leaves the workers it would have reported out) and its samples are left out: a scrape is
never a 500 because a source is down.

The renderer (``render``) writes the text format: per family one ``# HELP`` line (backslash and
line feed escaped), one ``# TYPE`` line, then one sample per line, ``name{label="value",...} value``
(label values with backslash, double quote and line feed escaped), every line ending in a line
feed. It checks metric and label names against the format's grammar and that counters end in
``_total``. Values are integers. Nothing here logs or writes to Redis.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import falcon.asgi

from ingress.metrics_publisher import HTTP_PREFIX, WorkerTelemetry
from ingress.probes import Probes, Survey
from ingress.resources.base import Context

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NONE: frozenset[str] = frozenset()

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
KINDS = ("counter", "gauge")

Labels = Sequence[tuple[str, str]]


@dataclass
class Family:
    """One metric: its name, kind (counter or gauge), help text and samples ``(labels, value)``."""

    name: str
    kind: str
    help: str
    samples: list[tuple[Labels, int]] = field(default_factory=list)

    def add(self, value: int, **labels: str) -> None:
        self.samples.append((tuple(labels.items()), value))


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _check(family: Family) -> None:
    if not METRIC_NAME.fullmatch(family.name):
        raise ValueError(f"metric name {family.name!r} is not valid in the Prometheus text format")
    if family.kind not in KINDS:
        raise ValueError(f"metric {family.name} has kind {family.kind!r}; expected one of {KINDS}")
    if family.kind == "counter" and not family.name.endswith("_total"):
        raise ValueError(f"counter {family.name} must end in _total")
    for labels, _ in family.samples:
        for name, _ in labels:
            if not LABEL_NAME.fullmatch(name) or name.startswith("__"):
                raise ValueError(f"label name {name!r} of metric {family.name} is not valid")


def render(families: Iterable[Family]) -> str:
    """The text exposition of ``families`` (those without samples are left out)."""
    lines: list[str] = []
    for family in families:
        _check(family)
        if not family.samples:
            continue
        lines.append(f"# HELP {family.name} {escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for labels, value in family.samples:
            if labels:
                text = ",".join(f'{name}="{escape_label_value(v)}"' for name, v in labels)
                lines.append(f"{family.name}{{{text}}} {int(value)}")
            else:
                lines.append(f"{family.name} {int(value)}")
    return "\n".join(lines) + "\n" if lines else ""


# --- the exchange's families ------------------------------------------------------------------

# EngineClient.stats() field -> (metric, kind, help)
ENGINE_METRICS: tuple[tuple[str, str, str, str], ...] = (
    ("sent", "exchange_ingress_engine_requests_sent_total", "counter",
     "Command records this ingress worker wrote to the shards' command rings (one record may carry many "
     "orders of a batch)."),
    ("answered", "exchange_ingress_engine_requests_answered_total", "counter",
     "Answer records this ingress worker took off its answer rings and handed to a waiting request."),
    ("busy", "exchange_ingress_engine_busy_total", "counter",
     "Commands (orders) refused because a shard's command ring was full: nothing sent, answered 503 / -1008."),
    ("timeouts", "exchange_ingress_engine_timeouts_total", "counter",
     "Requests a shard did not answer within rest.answer_timeout_ms (answered 500 / -1000, status unknown)."),
    ("late_answers", "exchange_ingress_engine_late_answers_total", "counter",
     "Answers that arrived after their request had timed out (dropped)."),
    ("bad_answers", "exchange_ingress_engine_bad_answers_total", "counter",
     "Answer records that could not be decoded (dropped)."),
    ("pending", "exchange_ingress_engine_pending", "gauge",
     "Requests sent to a shard and not yet answered, now."),
)  # fmt: skip

UP_HELP = "1 when the component answered its probe in this scrape (ingress worker: its figures are fresh), else 0."
JOURNALED_HELP = "Last event sequence number in the shard's Redis stream (its journal)."
PERSISTED_HELP = "Last event sequence number of the shard that persist committed to PostgreSQL."
LAG_HELP = "Events of the shard journaled in Redis and not yet persisted to PostgreSQL."
HTTP_ERRORS_HELP = (
    "HTTP error answers by status code, counted in falcon's error handlers only: errors answered by the fast "
    "lane of POST /api/v3/order and per-order errors inside a 200 batchOrders answer are not counted "
    "(exchange_ingress_engine_busy_total and _timeouts_total count the engine's 503s and 500s on every path)."
)


def families(
    survey: Survey, workers: Mapping[int, Mapping[str, int]], *, worker_count: int, others_known: bool, own: int
) -> list[Family]:
    """The exchange's metric families from one survey of probes and the workers' figures (``read_all``)."""
    up = Family("exchange_up", "gauge", UP_HELP)
    for i, ok in enumerate(survey.shards_up):
        up.add(int(ok), component="shard", shard=str(i))
    up.add(int(survey.redis_up), component="redis")
    up.add(int(survey.postgres_up), component="postgres")
    for i in range(worker_count):
        if i in workers:
            up.add(1, component="ingress", worker=str(i))
        elif others_known and i != own:
            up.add(0, component="ingress", worker=str(i))

    journaled = Family("exchange_journaled_seq", "gauge", JOURNALED_HELP)
    persisted = Family("exchange_persisted_seq", "gauge", PERSISTED_HELP)
    lag = Family("exchange_persist_lag_events", "gauge", LAG_HELP)
    for p in survey.progress:
        if p.journaled is not None:
            journaled.add(p.journaled, shard=str(p.shard))
        if p.persisted is not None:
            persisted.add(p.persisted, shard=str(p.shard))
        if p.lag is not None:
            lag.add(p.lag, shard=str(p.shard))

    out = [up, journaled, persisted, lag]
    for field_name, name, kind, help_text in ENGINE_METRICS:
        fam = Family(name, kind, help_text)
        for i, figures in workers.items():
            if field_name in figures:
                fam.add(figures[field_name], worker=str(i))
        out.append(fam)
    http = Family("exchange_ingress_http_error_answers_total", "counter", HTTP_ERRORS_HELP)
    for i, figures in workers.items():
        for key in sorted(k for k in figures if k.startswith(HTTP_PREFIX)):
            http.add(figures[key], worker=str(i), code=key[len(HTTP_PREFIX) :])
    out.append(http)
    return out


class Metrics:
    """``GET /metrics``."""

    def __init__(self, ctx: Context, telemetry: WorkerTelemetry) -> None:
        self.ctx = ctx
        self.telemetry = telemetry

    async def scrape(self) -> str:
        ctx = self.ctx
        telemetry = self.telemetry
        survey, (workers, others_known) = await asyncio.gather(
            Probes(ctx.engine, ctx.redis, ctx.pool).survey(ctx.engine.shard_count), telemetry.read_all(ctx.redis)
        )
        return render(
            families(survey, workers, worker_count=telemetry.workers, others_known=others_known, own=telemetry.index)
        )

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        await self.ctx.public(req, NONE)
        resp.content_type = CONTENT_TYPE
        resp.data = (await self.scrape()).encode()
