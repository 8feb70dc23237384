"""The Redis hashes through which the exchange's processes publish their counters for ``GET /metrics``.

Owns: the contract every side imports (house rule 2): the key of each process's hash,
``exchange:metrics:<role>:<index>`` (roles ``ingress``, ``shard``, ``persist``, ``wsfeed``), the field names
each role writes (``SHARD_FIELDS``, ``PERSIST_FIELDS``, ``WSFEED_FIELDS``; ingress's are
``ingress.metrics_publisher``'s), the publishing period (``PUBLISH_INTERVAL_S``) and the hash's expiry
(``EXPIRE_S``: a few periods, so a process that died or hangs leaves no figures behind), the commands of one
publish (``publish_commands``: HSET and EXPIRE, sent together in one round trip) and the decoding of a hash as
read back (``decode_figures``). ``publish_every`` is the asyncio publishing loop of persist and wsfeed; the
shard publishes from its own loop (``shards/process.py``). ``FailureLog`` logs a failing publish once per
outage, and its recovery.

Every field is an integer, written as decimal ASCII. A reader drops fields that are not integers and ignores
fields it does not know, so a publisher may add fields before its reader renders them.

Never: publishes per order or per message (once a period at most), raises out of ``publish_every`` (a failure
is logged once and the next period tries again), or lets a publish wait longer than ``SEND_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from deploy.log import log_event

KEY_PREFIX = "exchange:metrics:"
ROLES = ("ingress", "shard", "persist", "wsfeed")
PUBLISH_INTERVAL_S = 1.0
EXPIRE_S = 5  # a few intervals: a process missing that long is gone
SEND_TIMEOUT_S = 0.5  # one publish's round trip, at most

# shard <i>: ShardLoop's and its journal's counters, and what the engine's books already count
SHARD_FIELDS = (
    "commands",  # commands applied (each order of a batch counts), since the process started
    "batches",  # loop turns that applied at least one command (one journal entry each)
    "internal_errors",  # commands answered -1000 because decoding or applying raised
    "orders_accepted",  # orders the books have accepted (order ids handed out), since the books began
    "trades",  # trades the books have made (trade ids handed out), since the books began
    "journal_appends",  # XADDs to the shard's stream, since the process started
    "journal_retries",  # appends that failed and were retried until Redis had them
    "journal_last_seq",  # last event sequence number journaled
    "snapshots",  # snapshots written since the process started
)
# persist <i>: its Writer's counters
PERSIST_FIELDS = (
    "commits",  # transactions committed (one per write of one read)
    "events",  # events written
    "rows_orders",  # order rows inserted or updated
    "rows_trades",  # trade rows inserted
    "rows_history",  # order history rows inserted
    "retries",  # failed Redis reads or PostgreSQL writes, each retried after a back-off
    "last_commit_us",  # how long the last write took, its commit included (microseconds)
)
# wsfeed <i>: its hub's, tailer's and market's counters
WSFEED_FIELDS = (
    "connections",  # WebSocket connections open now
    "subscriptions",  # (connection, public stream) pairs now
    "messages_sent",  # messages handed to clients (one per client and message)
    "slow_closed",  # clients closed for reading slower than the feed (1008 slow consumer)
    "entries",  # stream entries (shard batches) applied
    "events",  # events applied
)


def key(role: str, index: int) -> str:
    """The Redis hash of process ``index`` of ``role``: ``exchange:metrics:<role>:<index>``."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {ROLES}")
    return f"{KEY_PREFIX}{role}:{index}"


def publish_commands(hash_key: str, figures: Mapping[str, int]) -> list[list[bytes]]:
    """The commands of one publish: ``HSET key field value ..`` then ``EXPIRE key EXPIRE_S``."""
    name = hash_key.encode()
    hset = [b"HSET", name]
    for field, value in figures.items():
        hset += (field.encode(), b"%d" % value)
    return [hset, [b"EXPIRE", name, b"%d" % EXPIRE_S]]


def decode_figures(raw: Mapping[Any, Any]) -> dict[str, int]:
    """A hash as read from Redis (bytes or str) -> field -> int; fields that are not integers are dropped."""
    out: dict[str, int] = {}
    for name, value in raw.items():
        field = name.decode() if isinstance(name, bytes) else str(name)
        try:
            out[field] = int(value)
        except (TypeError, ValueError):
            continue
    return out


class FailureLog:
    """Logs the first failure of an outage (``metrics_publish_failed``) and the recovery after it, nothing between."""

    __slots__ = ("role", "index", "failing")

    def __init__(self, role: str, index: int) -> None:
        self.role = role
        self.index = index
        self.failing = False

    def failed(self, exc: BaseException) -> None:
        if not self.failing:
            self.failing = True
            log_event(
                "metrics_publish_failed",
                "warning",
                role=self.role,
                index=self.index,
                error=f"{type(exc).__name__}: {exc}",
            )

    def succeeded(self) -> None:
        if self.failing:
            self.failing = False
            log_event("metrics_publish_recovered", role=self.role, index=self.index)


async def publish_every(
    send: Callable[[list[list[bytes]]], Awaitable[object]],
    figures: Callable[[], Mapping[str, int]],
    role: str,
    index: int,
    stop: asyncio.Event,
    interval_s: float = PUBLISH_INTERVAL_S,
) -> None:
    """Until ``stop`` is set: every ``interval_s``, ``send`` (one round trip) the commands publishing ``figures()``.

    A failure (any exception, or no answer within ``SEND_TIMEOUT_S``) is logged once per outage and tried again
    at the next interval; it never ends the loop.
    """
    hash_key = key(role, index)
    failures = FailureLog(role, index)
    while not stop.is_set():
        try:
            await asyncio.wait_for(send(publish_commands(hash_key, figures())), SEND_TIMEOUT_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - retried next interval; logged once per outage
            failures.failed(exc)
        else:
            failures.succeeded()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
