"""Test helpers for wsfeed: a real wsfeed process, a journal writer, and WebSocket client helpers.

``start_feed`` runs ``python -m wsfeed.main --config F`` (a real process
listening on a real port) against a Redis logical db of the session Redis;
``Journal`` writes shard stream entries there exactly as a shard does
(``shards.stream.encode_entry``), with consecutive sequence numbers.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import redis
from websockets.asyncio.client import ClientConnection, connect

from shards.protocol import DepthUpdate, OrderAccepted, TradeEvent
from shards.stream import encode_entry, stream_key
from tests.conftest import REPO_ROOT, to_toml

READY_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FeedProcess:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log_path: Path, config_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.log_path = log_path
        self.config_path = config_path

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def symbol_table(names: Sequence[str]) -> list[dict[str, str]]:
    return [
        {"symbol": n, "base_asset": n, "quote_asset": "USD", "tick_size": "0.01", "step_size": "1",
         "min_price": "0.01", "max_price": "1000000", "min_qty": "1", "max_qty": "1000000"}
        for n in names
    ]  # fmt: skip


def start_feed(
    tmp_path: Path, redis_url: str, shards: int = 2, name: str = "feed", symbols: Sequence[str] = ()
) -> FeedProcess:
    port = free_port()
    config: dict[str, Any] = {
        "data_dir": str(tmp_path / f"{name}-data"),
        "wsfeed": {"host": "127.0.0.1", "port": port},
        "engine": {"shards": shards},
        "redis": {"url": redis_url},
    }
    if symbols:
        config["symbols"] = symbol_table(symbols)
    config_path = tmp_path / f"{name}.toml"
    config_path.write_text(to_toml(config))
    log_path = tmp_path / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wsfeed.main", "--config", str(config_path)],
            cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )  # fmt: skip
    feed = FeedProcess(proc, port, log_path, config_path)
    deadline = time.monotonic() + READY_S
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return feed
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                feed.stop()
                raise RuntimeError(f"wsfeed did not start:\n{feed.log_text()}") from None
            time.sleep(0.05)


class Journal:
    """Writes shard stream entries with consecutive sequence numbers per shard, and depth_seq per symbol."""

    def __init__(self, redis_url: str) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.seq: dict[int, int] = {}
        self.depth_seq: dict[int, int] = {}
        self.trade_id: dict[int, int] = {}
        self.order_id: dict[int, int] = {}

    def close(self) -> None:
        self.client.close()

    def next_seq(self, shard: int) -> int:
        self.seq[shard] = self.seq.get(shard, 0) + 1
        return self.seq[shard]

    def write(self, shard: int, events: Sequence[Any]) -> None:
        self.client.xadd(stream_key(shard), encode_entry(list(events)))

    def ts(self) -> int:
        return time.time_ns() // 1_000_000

    def trade(self, shard: int, symbol_id: int, price: int, qty: int, **kw: Any) -> TradeEvent:
        self.trade_id[symbol_id] = tid = self.trade_id.get(symbol_id, 0) + 1
        ts = kw.pop("ts", None) or self.ts()
        fields = dict(maker_order_id=1, taker_order_id=2, maker_user_id=1, taker_user_id=2, taker_side=1)
        fields.update(kw)
        return TradeEvent(self.next_seq(shard), ts, symbol_id, tid, price, qty, **fields)

    def depth(self, shard: int, symbol_id: int, bids: Any = (), asks: Any = ()) -> DepthUpdate:
        self.depth_seq[symbol_id] = d = self.depth_seq.get(symbol_id, 0) + 1
        return DepthUpdate(self.next_seq(shard), self.ts(), symbol_id, d, tuple(bids), tuple(asks))

    def accepted(
        self, shard: int, symbol_id: int, user_id: int, side: int, price: int, qty: int, coid: str = "c", **kw: Any
    ) -> OrderAccepted:
        self.order_id[symbol_id] = oid = self.order_id.get(symbol_id, 0) + 1
        order_type = kw.get("order_type", 1)
        tif = kw.get("tif", 1)
        return OrderAccepted(
            self.next_seq(shard), self.ts(), symbol_id, oid, user_id, coid, side, order_type, tif, 2, price, qty,
            kw.get("quote_qty", 0),
        )  # fmt: skip


async def recv_json(ws: ClientConnection, timeout: float = 5.0) -> Any:
    return orjson.loads(await asyncio.wait_for(ws.recv(), timeout))


async def request(ws: ClientConnection, message: Any, timeout: float = 5.0) -> Any:
    """Send a control message and return the next message that is an answer (has ``id`` or ``error``)."""
    await ws.send(message if isinstance(message, (str, bytes)) else orjson.dumps(message).decode())
    deadline = time.monotonic() + timeout
    while True:
        msg = await recv_json(ws, max(0.01, deadline - time.monotonic()))
        if isinstance(msg, dict) and ("id" in msg or "error" in msg) and "e" not in msg:
            return msg


async def until(ws: ClientConnection, pred: Any, timeout: float = 5.0) -> Any:
    """The first message satisfying ``pred``."""
    deadline = time.monotonic() + timeout
    while True:
        msg = await recv_json(ws, max(0.01, deadline - time.monotonic()))
        if pred(msg):
            return msg


def ws_connect(url: str, **kw: Any) -> Any:
    return connect(url, compression=None, open_timeout=10, **kw)
