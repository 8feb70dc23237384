"""In-process EngineClients for the REST tests: a real ``shards.engine.Engine`` per shard, and failing ones.

``LocalEngineClient`` routes each command to the engine of the shard it was
sent to (the app routes by ``config.shard_of``; a command for a symbol the
shard does not own is a test failure), stamps state-changing commands with the
time, as a shard process does, and records every command sent so tests can
check that a rejected request sent nothing. ``SubmittingEngineClient`` adds
``submit`` (the future of a result, as ``RingEngineClient.submit``), which the
fast lane prefers. ``FailingEngineClient`` raises ``EngineBusy`` or
``EngineTimeout`` on every call, as a full ring or a silent shard would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from ingress.dispatch import EngineBusy, EngineTimeout
from shards import wire
from shards.engine import Engine
from shards.protocol import STATE_CHANGING, Result


class LocalEngineClient:
    def __init__(self, config) -> None:  # type: ignore[no-untyped-def]
        self.shard_count = config.engine.shards
        self.worker_index = 0
        self.engines = [Engine([s.spec() for s in config.symbols_of_shard(i)]) for i in range(self.shard_count)]
        self.owned = [{s.symbol_id for s in config.symbols_of_shard(i)} for i in range(self.shard_count)]
        self.sent: list[tuple[int, object]] = []
        self.up = [True] * self.shard_count

    def _apply(self, shard: int, cmd: object) -> Result:
        symbol_id = getattr(cmd, "symbol_id", 0)
        assert symbol_id == 0 or symbol_id in self.owned[shard], f"{cmd!r} sent to shard {shard}, not its owner"
        if type(cmd) in STATE_CHANGING:
            cmd = cmd._replace(ts=time.time_ns() // 1_000_000)  # type: ignore[attr-defined]
        self.sent.append((shard, cmd))
        engine = self.engines[shard]
        result = engine.apply(cmd)
        engine.take_events()
        return result

    async def call(self, shard: int, cmd: object) -> Result:
        return self._apply(shard, cmd)

    async def call_batch(self, items: Sequence[tuple[int, object]]) -> list[Result | Exception]:
        return [self._apply(shard, cmd) for shard, cmd in items]

    async def call_orders(self, bodies: Sequence[Sequence[bytes]]) -> list[list[tuple[int, object]]]:
        """Each shard's packed orders through the wire as one NewOrders record, answered by a Results record."""
        out: list[list[tuple[int, object]]] = []
        for shard, orders in enumerate(bodies):
            if not orders:
                out.append([])
                continue
            rid, cmds = wire.decode_new_orders(wire.new_orders_record(7, orders))
            results = [self._apply(shard, cmd) for cmd in cmds]
            out.append([(len(orders), wire.encode_results(rid, results))])
        return out

    async def ping(self, shard: int) -> bool:
        return self.up[shard]


class SubmittingEngineClient(LocalEngineClient):
    """A LocalEngineClient with ``submit``: the result as an already resolved future (counted in ``submitted``)."""

    def __init__(self, config) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config)
        self.submitted = 0

    def submit(self, shard: int, cmd: object) -> asyncio.Future[Result]:
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(self._apply(shard, cmd))
        self.submitted += 1
        return fut


class FailingEngineClient:
    """Every call raises ``error_type`` (EngineBusy or EngineTimeout); batches answer it per item."""

    def __init__(self, shard_count: int, error_type: type[Exception]) -> None:
        assert error_type in (EngineBusy, EngineTimeout)
        self.shard_count = shard_count
        self.worker_index = 0
        self.error_type = error_type
        self.calls = 0

    async def call(self, shard: int, cmd: object) -> Result:
        self.calls += 1
        raise self.error_type(f"shard {shard}")

    async def call_batch(self, items: Sequence[tuple[int, object]]) -> list[Result | Exception]:
        self.calls += 1
        return [self.error_type(f"shard {shard}") for shard, _ in items]

    async def call_orders(self, bodies: Sequence[Sequence[bytes]]) -> list[list[tuple[int, object]]]:
        self.calls += 1
        return [
            [(len(orders), self.error_type(f"shard {shard}"))] if orders else [] for shard, orders in enumerate(bodies)
        ]

    async def ping(self, shard: int) -> bool:
        return False
