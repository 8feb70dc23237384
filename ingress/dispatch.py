"""The seam between the REST layer and the engine: how a request reaches a shard.

``EngineClient`` is what the falcon resources call; the ring-backed
implementation (``ingress/engine_client.py``) writes fixed binary records to the
shard's command ring and awaits the answer from this worker's answer ring.
When accounts exist, a risk-shard hop slots in behind the same interface.

Commands are those of ``shards/protocol.py``; ingress sends them with ``ts=0``
and the shard stamps the time it applies them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from shards.protocol import Result


class EngineBusy(Exception):
    """The command ring is full: nothing was sent. Answer 503 / -1008 with Retry-After."""


class EngineTimeout(Exception):
    """The shard did not answer in time: the command's fate is unknown. Answer 500 / -1000."""


class EngineClient(Protocol):
    shard_count: int
    worker_index: int  # the ingress worker this client serves (its metrics are labelled with it)

    async def call(self, shard: int, cmd: object) -> Result:
        """Send one command to ``shard`` and return its result.

        Raises EngineBusy (nothing sent) or EngineTimeout (fate unknown).
        """
        ...

    async def call_batch(self, items: Sequence[tuple[int, object]]) -> list[Result | Exception]:
        """Send several commands; each shard receives its commands in the given order.

        Returns one entry per item, in item order: a Result, or an EngineBusy /
        EngineTimeout instance for the items that failed.
        """
        ...

    async def call_orders(self, bodies: Sequence[Sequence[bytes]]) -> list[list[tuple[int, object]]]:
        """Send the new orders of one request: ``bodies[shard]`` holds that shard's orders in order,
        each packed by ``shards.wire.pack_new_order`` / ``new_order_body`` (empty: none for it).

        Returns, per shard, one ``(order count, answer)`` per NewOrders record the orders
        travelled in, in order: the shard's raw Results record (bytes, read it with
        ``shards.wire.results_items``), or an EngineBusy / EngineTimeout instance for all
        the orders of that record.
        """
        ...

    async def ping(self, shard: int) -> bool:
        """True when ``shard`` answers a ping within a short time."""
        ...
