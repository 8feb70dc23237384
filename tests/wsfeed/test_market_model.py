"""``wsfeed.market`` against its reference model (per-event objects, everything tracked eagerly) and the engine.

Real engines run a random order flow (resting limits, crossing IOCs, MARKET
orders by quantity and by quote amount, LIMIT_MAKER and FOK rejections,
self-trade prevention, cancels, amends, several users and symbols); their
journal bytes are cut into entries of random sizes. The first entries are
caught up silently, the rest applied live while a random schedule subscribes
and unsubscribes every kind of public stream, connects and disconnects users
and runs the timers on a controlled clock. The same entries and schedule go
to ``wsfeed.market.Market`` (packed walker, lazy work) and to
``tests.wsfeed.reference_market.Market``: every message must be byte for byte
the same, in the same order.

Depth subscribed mid-stream: Binance's procedure (buffer, REST snapshot =
the engine's book and depth sequence at that moment, drop ``u <= lastUpdateId``,
apply the rest) keeps a book equal to the engine's; a late ``bookTicker`` and
``ticker`` show the engine's best bid and ask.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from deploy.config import load_config
from ingress.symbols import Catalog
from shards.book import L_QTY
from shards.engine import Engine
from shards.events import decode_events
from shards.protocol import AmendOrder, CancelOrder, NewOrder, OrderResult
from tests.wsfeed import reference_market
from wsfeed import market as market_module
from wsfeed.hub import Hub
from wsfeed.market import Market
from wsfeed.names import StreamNames

MID = 10_000
T0 = 1_700_000_000_000
OPEN = (1, 2)  # OrderStatus NEW, PARTIALLY_FILLED


class Recorder:
    """A hub client that keeps every frame it gets (its payload after the 2- or 4-byte frame head)."""

    combined = False
    listen_key = None

    def __init__(self, out: list) -> None:
        self.streams: set[str] = set()
        self.out = out

    def send_frame(self, frame: bytes) -> None:
        self.out.append(frame[4:] if frame[1] == 126 else frame[2:])

    def send(self, data: bytes) -> None:
        self.out.append(data)


class Flow:
    """Commands for a few engines (one per shard) and their journal bytes cut into entries."""

    def __init__(self, seed: int) -> None:
        self.config = load_config(None)
        self.rng = random.Random(seed)
        shards = self.config.engine.shards
        self.engines = [Engine([s.spec() for s in self.config.symbols_of_shard(i)]) for i in range(shards)]
        self.symbols = [(s.symbol_id, self.config.shard_of(s.symbol)) for s in self.config.symbols[:4]]
        self.open: list[tuple[int, int, int, int]] = []  # (shard, symbol, user, order id)
        self.ts = T0
        self.count = 0

    def command(self) -> int:
        """Apply one random command; its shard."""
        rng = self.rng
        self.count += 1
        self.ts += rng.choice((0, 1, 3, 40, 400, 1_300))
        sid, shard = rng.choice(self.symbols)
        user = rng.randint(1, 5)
        side = rng.choice((1, 2))
        sign = 1 if side == 1 else -1
        roll = rng.random()
        coid = f"c{self.count}-é" if roll < 0.02 else f"c{self.count}"
        stp = rng.choice((0, 1, 2, 3)) if rng.random() < 0.2 else 2
        if roll < 0.45:
            cmd: Any = NewOrder(sid, user, coid, side, 1, 1, MID - sign * rng.randint(0, 20), rng.randint(1, 5), 0, stp,
                                self.ts)  # fmt: skip
        elif roll < 0.65:
            cmd = NewOrder(sid, user, coid, side, 1, 2, MID + sign * 20, rng.randint(3, 12), 0, stp, self.ts)
        elif roll < 0.70:
            cmd = NewOrder(sid, user, coid, side, 2, 1, 0, rng.randint(1, 8), 0, stp, self.ts)
        elif roll < 0.74:
            cmd = NewOrder(sid, user, coid, 1, 2, 1, 0, 0, rng.randint(5_000, 60_000), stp, self.ts)
        elif roll < 0.77:
            cmd = NewOrder(sid, user, coid, side, 3, 1, MID + sign * rng.randint(-3, 3), 2, 0, stp, self.ts)
        elif roll < 0.79:
            cmd = NewOrder(sid, user, coid, side, 1, 3, MID + sign * 5, rng.randint(1, 40), 0, stp, self.ts)
        elif roll < 0.92 and self.open:
            shard, sid, user, oid = self.open.pop(rng.randrange(len(self.open)))
            cmd = CancelOrder(sid, user, oid, "", self.ts)
        elif self.open:
            shard, sid, user, oid = rng.choice(self.open)
            view = self.engines[shard].book(sid).orders.get(oid)
            cmd = AmendOrder(sid, user, oid, "", max(1, (view[5] if view else 2) - 1), self.ts)
        else:
            cmd = NewOrder(sid, user, coid, side, 1, 1, MID - sign * 5, 2, 0, stp, self.ts)
        result = self.engines[shard].apply(cmd)
        if isinstance(result, OrderResult) and type(cmd) is NewOrder and result.order.status in OPEN:
            self.open.append((shard, sid, user, result.order.order_id))
        return shard

    def entry(self) -> bytes:
        """The journal bytes of 1 to 12 commands of one shard (commands of other shards stay pending there)."""
        wanted = self.rng.randint(1, 12)
        while True:
            shard = self.command()
            wanted -= 1
            if wanted <= 0:
                data = self.engines[shard].take_encoded()
                if data:
                    return data


def _markets(config: Any) -> tuple[list, list[Hub], list[list]]:
    outs: list[list] = [[], []]
    hubs = [Hub(), Hub()]
    names = StreamNames(s.symbol for s in config.symbols)
    markets = [
        Market(Catalog.from_config(config), names, hubs[0]),
        reference_market.Market(Catalog.from_config(config), names, hubs[1]),
    ]
    return markets, hubs, outs


def _streams_by_kind(config: Any, symbols: int) -> list[list[str]]:
    """The public streams of the first ``symbols`` symbols, one list per kind (every kline interval one kind)."""
    names = StreamNames(s.symbol for s in config.symbols)
    kinds: list[list[str]] = [[], [], [], [], [], []]
    for s in config.symbols[:symbols]:
        n = names.by_symbol[s.symbol]
        for kind, stream in enumerate((n.trade, n.depth, n.depth100, n.book_ticker, n.ticker)):
            kinds[kind].append(stream)
        kinds[5] += [stream for _, stream in n.klines]
    return kinds


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_messages_equal_the_reference_models_for_any_subscription_schedule(monkeypatch, seed):
    # arrange
    flow = Flow(seed)
    clock = [T0]
    monkeypatch.setattr(market_module, "now_ms", lambda: clock[0])
    monkeypatch.setattr(reference_market, "now_ms", lambda: clock[0])
    markets, hubs, outs = _markets(flow.config)
    clients = [Recorder(outs[0]), Recorder(outs[1])]
    streams = _streams_by_kind(flow.config, 4)
    rng = random.Random(seed * 7)
    caught_up = 40
    new, ref = markets
    # act
    for i in range(700):
        data = flow.entry()
        live = i >= caught_up
        clock[0] = max(clock[0], flow.ts + rng.choice((0, 0, 1, 5)))
        new.apply_packed(data, live)
        ref.apply(decode_events(data), live)
        if i + 1 == caught_up:
            new.refresh_best()
            ref.refresh_best()
        if not live:
            continue
        roll = rng.random()
        stream = rng.choice(rng.choice(streams))
        if roll < 0.22 and clients[0].streams:
            stream = rng.choice(sorted(clients[0].streams))
        user = rng.randint(1, 5)
        for hub, client in zip(hubs, clients, strict=True):
            if roll < 0.15:
                hub.subscribe(client, stream)
            elif roll < 0.22:
                hub.unsubscribe(client, stream)
            elif roll < 0.26:
                hub.users.setdefault(user, {})[client] = None
            elif roll < 0.28:
                hub.users.pop(user, None)
        for market in markets:
            if roll < 0.3:
                market.flush_depth100()
            if 0.3 <= roll < 0.45:
                market.flush_klines()
            if 0.45 <= roll < 0.55:
                market.flush_tickers()
    # assert
    assert len(outs[0]) > 1_000
    kinds = {orjson.loads(m).get("e", "bookTicker") for m in outs[1]}
    assert kinds >= {"trade", "depthUpdate", "bookTicker", "kline", "24hrTicker", "executionReport"}
    assert outs[0] == outs[1]


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_a_depth_subscriber_that_joins_mid_stream_keeps_the_engines_book(monkeypatch, seed):
    # arrange: a flow runs with nobody listening (the best bid/ask goes stale), then a client subscribes
    flow = Flow(seed)
    market = Market(Catalog.from_config(flow.config), StreamNames(s.symbol for s in flow.config.symbols), Hub())
    symbol = flow.config.symbols[0]
    sid, shard = symbol.symbol_id, flow.config.shard_of(symbol.symbol)
    low = symbol.symbol.lower()
    for _ in range(300):
        market.apply_packed(flow.entry(), True)
    got: list[bytes] = []
    client = Recorder(got)
    # act: buffer, then take the "REST snapshot" (the engine's book) while entries keep coming, then follow
    market.hub.subscribe(client, f"{low}@depth")
    market.hub.subscribe(client, f"{low}@bookTicker")
    for _ in range(20):
        market.apply_packed(flow.entry(), True)
    book = flow.engines[shard].book(sid)
    rules = market.symbols[sid].rules
    last_update_id = book.depth_seq
    local = _levels(book, rules)
    for _ in range(300):
        market.apply_packed(flow.entry(), True)
    market.hub.subscribe(client, f"{low}@ticker")
    market.flush_tickers()
    # assert: Binance's procedure holds the engine's book; the chain has no gap
    messages = [orjson.loads(m) for m in got]
    depth = [m for m in messages if m.get("e") == "depthUpdate"]
    kept = [m for m in depth if m["u"] > last_update_id]
    assert kept and kept[0]["U"] <= last_update_id + 1 <= kept[0]["u"]
    assert all(b["U"] == a["u"] + 1 for a, b in zip(depth, depth[1:], strict=False))
    for m in kept:
        for side in ("b", "a"):
            for price, qty in m[side]:
                if qty != "0":
                    local[side][price] = qty
                else:
                    local[side].pop(price, None)
    final = flow.engines[shard].book(sid)
    assert depth[-1]["u"] == final.depth_seq
    assert local == _levels(final, rules)
    bid = max(final.bids, default=0, key=lambda p: (final.bids[p][L_QTY] > 0, p))
    ask = min(final.asks, default=0, key=lambda p: (final.asks[p][L_QTY] <= 0, p))
    expected = (
        rules.price(bid), rules.qty(final.bids[bid][L_QTY] if bid else 0),
        rules.price(ask), rules.qty(final.asks[ask][L_QTY] if ask else 0),
    )  # fmt: skip
    book_tickers = [(m["b"], m["B"], m["a"], m["A"]) for m in messages if "e" not in m]
    tickers = [(m["b"], m["B"], m["a"], m["A"]) for m in messages if m.get("e") == "24hrTicker"]
    assert book_tickers and book_tickers[-1] == expected
    assert tickers == [expected]


def _levels(book: Any, rules: Any) -> dict[str, dict[str, str]]:
    """One side's levels as the API writes them (price text -> quantity text)."""
    return {
        side: {rules.price(p): rules.qty(level[L_QTY]) for p, level in levels.items() if level[L_QTY] > 0}
        for side, levels in (("b", book.bids), ("a", book.asks))
    }
