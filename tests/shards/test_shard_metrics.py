"""The shard's metrics publisher (``shards.process.ShardTelemetry``) against the session Redis, and its idle hook."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import redis

from deploy import telemetry
from shards.journal import RedisJournal
from shards.process import FAILED_BACKOFF_S, ShardTelemetry, idle_hook
from tests.shards.engine_harness import BUY, SELL, Driver, order


def _loop(driver: Driver, sink: Any) -> Any:
    """What ShardTelemetry reads of a ShardLoop: its counters, its engine and its journal."""
    return SimpleNamespace(
        index=1, engine=driver.engine, sink=sink, commands=40, batches=7, internal_errors=2
    )  # fmt: skip


def _traded() -> Driver:
    driver = Driver()
    driver.apply(order(SELL, 5, 100, user=1))
    driver.apply(order(SELL, 5, 101, user=1))
    driver.apply(order(BUY, 7, 101, user=2))  # two trades, against both resting orders
    return driver


class _BrokenClient:
    def __init__(self) -> None:
        self.calls = 0

    def pipeline(self, transaction: bool = True) -> Any:
        self.calls += 1
        raise redis.ConnectionError("redis is down")

    def close(self) -> None:
        return None


def test_publish_writes_every_field_with_an_expiry(services) -> None:
    client = redis.Redis.from_url(services.redis_db_url())
    sink = SimpleNamespace(entries=7, retries=1, last_seq=12)
    metrics = ShardTelemetry(_loop(_traded(), sink), client, SimpleNamespace(written=3))
    try:
        metrics.publish(100.0)

        raw = client.hgetall(telemetry.key("shard", 1))
        ttl = client.ttl(telemetry.key("shard", 1))
    finally:
        client.close()

    assert telemetry.decode_figures(raw) == {
        "commands": 40, "batches": 7, "internal_errors": 2, "orders_accepted": 3, "trades": 2,
        "journal_appends": 7, "journal_retries": 1, "journal_last_seq": 12, "snapshots": 3,
    }  # fmt: skip
    assert set(telemetry.decode_figures(raw)) == set(telemetry.SHARD_FIELDS)
    assert 0 < ttl <= telemetry.EXPIRE_S
    assert metrics.next_at == 100.0 + telemetry.PUBLISH_INTERVAL_S and metrics.published == 1


def test_a_failing_publish_is_logged_once_backs_off_and_recovers(services, capsys) -> None:
    broken = _BrokenClient()
    metrics = ShardTelemetry(_loop(Driver(), SimpleNamespace(entries=0, retries=0, last_seq=0)), broken)

    metrics.publish(10.0)
    metrics.publish(20.0)
    failed_at = metrics.next_at
    metrics.client = redis.Redis.from_url(services.redis_db_url())
    try:
        metrics.publish(30.0)
    finally:
        metrics.client.close()
    err = capsys.readouterr().err

    assert broken.calls == 2
    assert failed_at == 20.0 + FAILED_BACKOFF_S
    assert err.count("event=metrics_publish_failed") == 1 and "role=shard" in err
    assert err.count("event=metrics_publish_recovered") == 1
    assert metrics.published == 1


def test_idle_hook_publishes_and_snapshots_only_when_each_is_due() -> None:
    published: list[float] = []
    metrics = SimpleNamespace(next_at=0.0)  # due now
    snapshots = SimpleNamespace(next_at=float("inf"), written=0)  # never due

    def publish(now: float) -> None:
        published.append(now)
        metrics.next_at = now + 3600

    def write() -> None:
        snapshots.written += 1
        snapshots.next_at = float("inf")

    metrics.publish, snapshots.write = publish, write

    hook = idle_hook(metrics, snapshots)  # type: ignore[arg-type]
    hook()
    hook()
    snapshots.next_at = 0.0  # a snapshot due, the metrics not
    hook = idle_hook(metrics, snapshots)  # type: ignore[arg-type]
    hook()
    hook()

    assert len(published) == 1
    assert snapshots.written == 1
    assert idle_hook(None, None) is None


def test_the_journal_counts_an_append_it_had_to_retry(services) -> None:
    url = services.redis_db_url()
    journal = RedisJournal(url, 0, [])
    reader = redis.Redis.from_url(url)
    try:
        journal.append_encoded(b"e1", 1)
        journal._sock.close()  # type: ignore[union-attr]  # noqa: SLF001 - the connection breaks under the journal
        journal.append_encoded(b"e2", 2)
        entries = reader.xlen(journal.key)
    finally:
        journal.close()
        reader.close()

    assert (journal.entries, journal.retries, journal.last_seq) == (2, 1, 2)
    assert entries == 2
