"""GET /metrics: the exchange's figures in the Prometheus text exposition format (version 0.0.4).

Public and unsigned, GET only; ``Content-Type: text/plain; version=0.0.4; charset=utf-8``.
Exchange-wide whichever ingress worker answers: every worker's counters come from Redis
(``ingress/metrics_publisher.py``), the answering worker's own live, each labelled
``worker="<index>"``; the shards, Redis and PostgreSQL are probed as ``GET /health`` probes them
(``ingress/probes.py``). The shards', persist's and wsfeed's own counters come from their Redis hashes
(``deploy/telemetry.py``), read in the same pipeline as the workers', labelled ``shard="<i>"`` or
``process="<i>"``; a persist or wsfeed process whose hash is missing reads ``exchange_up`` 0 (shards
keep the up of their ping probe). Every source is bounded in time; one that fails gives ``exchange_up`` 0
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

from ingress.metrics_publisher import HTTP_PREFIX, Readings, WorkerTelemetry
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

# shard process: telemetry.SHARD_FIELDS -> (metric, kind, help); labelled shard="<i>"
SHARD_METRICS: tuple[tuple[str, str, str, str], ...] = (
    ("commands", "exchange_shard_commands_total", "counter",
     "Commands the shard applied since its process started (every order of a batchOrders record counts; "
     "the pings of /health and /metrics probes too)."),
    ("batches", "exchange_shard_batches_total", "counter",
     "Loop turns of the shard that applied at least one command (each one journal append), since it started."),
    ("internal_errors", "exchange_shard_internal_errors_total", "counter",
     "Commands the shard answered -1000 (status unknown) because decoding or applying them raised."),
    ("orders_accepted", "exchange_shard_orders_accepted_total", "counter",
     "Orders the shard's books accepted (order ids handed out) since the books began; restarts carry it over."),
    ("trades", "exchange_shard_trades_total", "counter",
     "Trades the shard's books made (trade ids handed out) since the books began; restarts carry it over."),
    ("journal_appends", "exchange_shard_journal_appends_total", "counter",
     "Entries (XADDs) the shard wrote to its Redis stream since its process started."),
    ("journal_retries", "exchange_shard_journal_retries_total", "counter",
     "Journal appends that failed (Redis down, reply lost) and were retried until Redis had them."),
    ("journal_last_seq", "exchange_shard_journal_last_seq", "gauge",
     "Last event sequence number the shard journaled, as the shard itself knows it (published once a second)."),
    ("snapshots", "exchange_shard_snapshots_total", "counter",
     "Snapshots of the shard's books written since its process started."),
)  # fmt: skip
# persist process: telemetry.PERSIST_FIELDS -> (metric, kind, help); labelled process="<i>"
PERSIST_METRICS: tuple[tuple[str, str, str, str], ...] = (
    ("commits", "exchange_persist_commits_total", "counter",
     "Transactions persist committed to PostgreSQL since it started (one per write of what one read brought)."),
    ("events", "exchange_persist_events_total", "counter", "Journal events persist wrote to PostgreSQL."),
    ("retries", "exchange_persist_retries_total", "counter",
     "Redis reads and PostgreSQL writes that failed and were retried after a back-off."),
    ("last_commit_us", "exchange_persist_last_commit_microseconds", "gauge",
     "How long persist's last write to PostgreSQL took, its commit included, in microseconds."),
)  # fmt: skip
PERSIST_ROWS = (("rows_orders", "orders"), ("rows_trades", "trades"), ("rows_history", "order_history"))
PERSIST_ROWS_HELP = "Rows persist wrote, by table: orders inserted or updated, trades and order_history inserted."
# wsfeed process: telemetry.WSFEED_FIELDS -> (metric, kind, help); labelled process="<i>"
WSFEED_METRICS: tuple[tuple[str, str, str, str], ...] = (
    ("connections", "exchange_wsfeed_connections", "gauge", "WebSocket connections open on the process now."),
    ("subscriptions", "exchange_wsfeed_subscriptions", "gauge",
     "Public stream subscriptions on the process now (one per connection and stream)."),
    ("messages_sent", "exchange_wsfeed_messages_sent_total", "counter",
     "Feed messages handed to clients (one per client and message; control answers not counted)."),
    ("slow_closed", "exchange_wsfeed_slow_clients_closed_total", "counter",
     "Clients closed with 1008 slow consumer: they read slower than the feed and their queue overflowed."),
    ("entries", "exchange_wsfeed_entries_applied_total", "counter",
     "Journal stream entries (shard batches) the process applied to its market state, catch-up included."),
    ("events", "exchange_wsfeed_events_applied_total", "counter",
     "Journal events the process applied to its market state, catch-up included."),
)  # fmt: skip

UP_HELP = (
    "1 when the component answered its probe in this scrape (ingress worker, persist, wsfeed: its published "
    "figures are fresh), else 0."
)
JOURNALED_HELP = "Last event sequence number in the shard's Redis stream (its journal)."
PERSISTED_HELP = "Last event sequence number of the shard that persist committed to PostgreSQL."
LAG_HELP = "Events of the shard journaled in Redis and not yet persisted to PostgreSQL."
HTTP_ERRORS_HELP = (
    "HTTP error answers by status code, counted in falcon's error handlers only: errors answered by the fast "
    "lane of POST /api/v3/order and per-order errors inside a 200 batchOrders answer are not counted "
    "(exchange_ingress_engine_busy_total and _timeouts_total count the engine's 503s and 500s on every path)."
)


def _process_families(
    table: Sequence[tuple[str, str, str, str]], figures: Mapping[int, Mapping[str, int]], label: str
) -> list[Family]:
    out = []
    for field_name, name, kind, help_text in table:
        fam = Family(name, kind, help_text)
        for i in sorted(figures):
            if field_name in figures[i]:
                fam.add(figures[i][field_name], **{label: str(i)})
        out.append(fam)
    return out


def families(
    survey: Survey,
    workers: Mapping[int, Mapping[str, int]],
    *,
    worker_count: int,
    others_known: bool,
    own: int,
    processes: Mapping[str, Mapping[int, Mapping[str, int]]] | None = None,
    process_counts: Mapping[str, int] | None = None,
    processes_known: bool = False,
) -> list[Family]:
    """The exchange's metric families from one survey of probes, the workers' figures and the other processes'
    (``read_all``: ``processes`` role -> index -> figures, of the ``process_counts`` asked for)."""
    processes = processes or {}
    counts = process_counts or {}
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
    for role in ("persist", "wsfeed"):
        present = processes.get(role, {})
        for i in range(counts.get(role, 0)):
            if i in present:
                up.add(1, component=role, process=str(i))
            elif processes_known:
                up.add(0, component=role, process=str(i))

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

    out += _process_families(SHARD_METRICS, processes.get("shard", {}), "shard")
    persist = processes.get("persist", {})
    out += _process_families(PERSIST_METRICS, persist, "process")
    rows = Family("exchange_persist_rows_total", "counter", PERSIST_ROWS_HELP)
    for i in sorted(persist):
        for field_name, table in PERSIST_ROWS:
            if field_name in persist[i]:
                rows.add(persist[i][field_name], process=str(i), table=table)
    out.append(rows)
    out += _process_families(WSFEED_METRICS, processes.get("wsfeed", {}), "process")
    return out


def process_counts(config: object, shard_count: int) -> dict[str, int]:
    """Role -> how many processes publish figures: the shards, one persist, ``wsfeed.processes``."""
    wsfeed = getattr(config, "wsfeed", None)
    return {"shard": shard_count, "persist": 1, "wsfeed": int(getattr(wsfeed, "processes", 1))}


def scrape_families(
    survey: Survey, readings: Readings, telemetry: WorkerTelemetry, counts: Mapping[str, int]
) -> list[Family]:
    """``families`` of one survey and one ``read_all``."""
    return families(
        survey,
        readings.workers,
        worker_count=telemetry.workers,
        others_known=readings.others_known,
        own=telemetry.index,
        processes=readings.processes,
        process_counts=counts,
        processes_known=readings.processes_known,
    )


class Metrics:
    """``GET /metrics``."""

    def __init__(self, ctx: Context, telemetry: WorkerTelemetry) -> None:
        self.ctx = ctx
        self.telemetry = telemetry

    async def scrape(self) -> str:
        ctx = self.ctx
        telemetry = self.telemetry
        counts = process_counts(ctx.config, ctx.engine.shard_count)
        survey, readings = await asyncio.gather(
            Probes(ctx.engine, ctx.redis, ctx.pool).survey(ctx.engine.shard_count),
            telemetry.read_all(ctx.redis, counts),
        )
        return render(scrape_families(survey, readings, telemetry, counts))

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        await self.ctx.public(req, NONE)
        resp.content_type = CONTENT_TYPE
        resp.data = (await self.scrape()).encode()
