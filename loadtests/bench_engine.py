"""Throughput and latency of the matching engine on a realistic order flow.

The flow (fixed seed): one symbol, 1 000 users, prices clustered around the
touch (which drifts as takers eat levels), sizes mostly small. About 60% limit
orders that rest (a few of them LIMIT_MAKER), 25% cancels of random resting
orders (a few stale), 15% marketable orders taking one to a few levels
(IOC and GTC limits, with a few FOK, MARKET and MARKET-by-quote). Self-trade
prevention is EXPIRE_MAKER, the API's default.

The flow is generated against a live engine (not timed), starting from a
book pre-filled to ``--resting`` orders; the generator steers taker sizes so
the book stays near that size. Timed runs restore the pre-filled snapshot
and apply the recorded commands, draining events every 64 commands like a
shard loop (as journal bytes; also reported: as protocol event objects).
Each run is done with the cyclic GC off (``gc.freeze()`` after
setup, then ``gc.disable()``: what a shard process does) and on (defaults).
The same commands also drive a bare heaps+deques book (no order types, no
events, no results) in the same run, for the ratio.

Throughput is commands per second of this process's CPU time
(``time.process_time``): the development machine has two cores shared with
other work, and CPU time does not count the moments another process had the
core. Latency is wall time per command (``perf_counter_ns``, clock cost
subtracted), so preemption shows in its tail.

Usage: ``python loadtests/bench_engine.py [--quick] [--ops N] [--profile]``.
The last stdout line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import json
import random
import sys
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shards.engine import Engine  # noqa: E402
from shards.protocol import (  # noqa: E402
    CancelOrder,
    NewOrder,
    OrderResult,
    OrderType,
    Side,
    StpMode,
    SymbolSpec,
    TimeInForce,
)

SPEC = SymbolSpec(1, "BENCH", 1, 10_000_000, 1, 1_000_000)
BATCH = 64
BUY, SELL = Side.BUY.value, Side.SELL.value
LIMIT, MARKET, LIMIT_MAKER = OrderType.LIMIT.value, OrderType.MARKET.value, OrderType.LIMIT_MAKER.value
GTC, IOC, FOK = TimeInForce.GTC.value, TimeInForce.IOC.value, TimeInForce.FOK.value
STP = StpMode.EXPIRE_MAKER.value


class FlowGenerator:
    """Builds the command stream against a live engine so cancels name real orders."""

    def __init__(self, seed: int, resting: int) -> None:
        self.rng = random.Random(seed)
        self.engine = Engine([SPEC])
        self.book = self.engine.book(1)
        self.target = resting
        self.live: list[int] = []  # order ids believed resting (some become stale)
        self.ts = 1_700_000_000_000
        self.coid = 0
        self.mid = 1_000_000

    def _size(self) -> int:
        r = self.rng.random()
        if r < 0.70:
            return self.rng.randint(1, 5)
        if r < 0.97:
            return self.rng.randint(6, 50)
        return self.rng.randint(51, 500)

    def _offset(self) -> int:
        return int(self.rng.expovariate(1 / 40)) if self.rng.random() < 0.9 else self.rng.randint(40, 3000)

    def _apply(self, cmd: object, out: list[object]) -> object:
        out.append(cmd)
        result = self.engine.apply(cmd)
        self.engine.take_events()
        if isinstance(result, OrderResult) and isinstance(cmd, NewOrder) and result.order.status in (1, 2):
            self.live.append(result.order.order_id)
        return result

    def _touch(self) -> tuple[int, int]:
        bid = self.book.best_bid or self.mid - 1
        ask = self.book.best_ask if self.book.best_ask < 1 << 62 else self.mid + 1
        self.mid = (bid + ask) // 2
        return bid, ask

    def _new(self, side: int, otype: int, tif: int, price: int, qty: int, quote_qty: int = 0) -> NewOrder:
        self.coid += 1
        self.ts += 1 if self.rng.random() < 0.01 else 0
        user = self.rng.randint(1, 1000)
        return NewOrder(1, user, f"c{self.coid}", side, otype, tif, price, qty, quote_qty, STP, self.ts)

    def resting_order(self) -> NewOrder:
        bid, ask = self._touch()
        side = BUY if self.rng.random() < 0.5 else SELL
        off = self._offset()
        otype = LIMIT_MAKER if self.rng.random() < 0.03 else LIMIT
        if side == BUY:
            price = max(1, min(self.mid - off, ask - 1) if otype == LIMIT else self.mid - off + 1)
        else:
            price = max(bid + 1, self.mid + off) if otype == LIMIT else self.mid + off - 1
        return self._new(side, otype, GTC, price, self._size())

    def marketable_order(self) -> NewOrder:
        bid, ask = self._touch()
        side = BUY if self.rng.random() < 0.5 else SELL
        # Steering: above the target size takers grow and reach deeper, below it they shrink, so the book stays
        # near ``target`` resting orders (fills must take ~0.35 makers per command to balance 60% adds).
        pressure = max(0.25, min(8.0, (len(self.book.orders) / self.target) ** 6))
        qty = max(1, int(sum(self._size() for _ in range(self.rng.randint(1, 3))) * pressure))
        through = self.rng.randint(0, 3) + int(2 * pressure)
        r = self.rng.random()
        if r < 0.05:
            return self._new(side, MARKET, GTC, 0, qty)
        if r < 0.08:
            return self._new(side, MARKET, GTC, 0, 0, qty * (ask if side == BUY else bid))
        tif = FOK if r < 0.13 else IOC if r < 0.6 else GTC
        price = ask + through if side == BUY else max(1, bid - through)
        return self._new(side, LIMIT, tif, price, qty)

    def cancel(self) -> CancelOrder | None:
        live = self.live
        while live:
            i = self.rng.randrange(len(live))
            live[i], live[-1] = live[-1], live[i]
            order_id = live.pop()
            order = self.book.orders.get(order_id)
            if order is not None or self.rng.random() < 0.02:  # a few stale cancels
                user = order[1] if order is not None else 1
                return CancelOrder(1, user, order_id, "", self.ts)
        return None

    def prefill(self) -> None:
        sink: list[object] = []
        while len(self.book.orders) < self.target:
            self._apply(self.resting_order(), sink)

    def generate(self, n: int) -> list[object]:
        out: list[object] = []
        rng = self.rng
        while len(out) < n:
            r = rng.random()
            if r < 0.60:
                self._apply(self.resting_order(), out)
            elif r < 0.85:
                cmd = self.cancel()
                if cmd is not None:
                    self._apply(cmd, out)
            else:
                self._apply(self.marketable_order(), out)
        return out


def run_engine(snapshot: bytes, commands: list[object], drain: str = "encoded") -> tuple[float, int]:
    """Seconds to apply ``commands`` to a restored engine, draining events every BATCH; and bytes or events drained.

    ``drain`` "encoded" takes the journal bytes (the shard loop's path, encoding included); "objects" takes the
    events as protocol NamedTuples.
    """
    engine = Engine.restore(snapshot, [SPEC])
    apply = engine.apply
    take = engine.take_encoded if drain == "encoded" else engine.take_events
    drained = 0
    start = time.process_time()
    for i in range(0, len(commands), BATCH):
        for cmd in commands[i : i + BATCH]:
            apply(cmd)
        drained += len(take())
    return time.process_time() - start, drained


def run_latency(snapshot: bytes, commands: list[object]) -> dict[str, list[int]]:
    """Wall ns per command, sorted, for all commands and by kind (place: rested or rejected, take: traded, cancel)."""
    engine = Engine.restore(snapshot, [SPEC])
    apply = engine.apply
    take = engine.take_encoded
    clock = time.perf_counter_ns
    lat: list[int] = []
    results: list[object] = []
    for i in range(0, len(commands), BATCH):
        for cmd in commands[i : i + BATCH]:
            t0 = clock()
            result = apply(cmd)
            lat.append(clock() - t0)
            results.append(result)
        take()  # journal bytes, outside the per-command figure
    overhead = min(_clock_overhead() for _ in range(3))
    by_kind: dict[str, list[int]] = {"all": [], "place": [], "take": [], "cancel": []}
    for cmd, result, ns in zip(commands, results, lat, strict=True):
        ns = max(0, ns - overhead)
        by_kind["all"].append(ns)
        if isinstance(cmd, CancelOrder):
            by_kind["cancel"].append(ns)
        elif isinstance(result, OrderResult) and result.fills:
            by_kind["take"].append(ns)
        else:
            by_kind["place"].append(ns)
    return {kind: sorted(values) for kind, values in by_kind.items()}


def _clock_overhead() -> int:
    clock = time.perf_counter_ns
    samples = []
    for _ in range(1000):
        t0 = clock()
        samples.append(clock() - t0)
    samples.sort()
    return samples[len(samples) // 2]


class BareBook:
    """The ceiling: price-time book on heaps and deques; ids given; no events, no order types."""

    def __init__(self) -> None:
        self.levels: tuple[dict[int, list], dict[int, list]] = ({}, {})  # price -> [live count, deque]
        self.heaps: tuple[list[int], list[int]] = ([], [])  # bids negated
        self.orders: dict[int, list] = {}

    def add(self, oid: int, side: int, price: int, qty: int, rest: bool) -> None:
        s = 0 if side == BUY else 1
        levels, heap = self.levels[1 - s], self.heaps[1 - s]
        while qty and heap:
            best = -heap[0] if s == 1 else heap[0]
            level = levels.get(best)
            if level is None:
                heapq.heappop(heap)
                continue
            if (s == 0 and best > price) or (s == 1 and best < price):
                break
            q = level[1]
            while qty and level[0]:
                m = q[0]
                if not m[1]:
                    q.popleft()
                    continue
                fill = min(qty, m[1])
                qty -= fill
                m[1] -= fill
                if not m[1]:
                    q.popleft()
                    level[0] -= 1
                    del self.orders[m[0]]
            if not level[0]:
                del levels[best]
                heapq.heappop(heap)
        if qty and rest:
            order = [oid, qty, s, price]
            self.orders[oid] = order
            level = self.levels[s].get(price)
            if level is None:
                level = self.levels[s][price] = [0, deque()]
                heapq.heappush(self.heaps[s], -price if s == 0 else price)
            level[0] += 1
            level[1].append(order)

    def cancel(self, oid: int) -> None:
        order = self.orders.pop(oid, None)
        if order is not None:
            order[1] = 0
            level = self.levels[order[2]][order[3]]
            level[0] -= 1
            if not level[0]:
                del self.levels[order[2]][order[3]]


def run_bare(engine_snapshot: bytes, commands: list[object]) -> float:
    """Seconds for the bare book on the same commands (state seeded from the same snapshot)."""
    engine = Engine.restore(engine_snapshot, [SPEC])
    bare = BareBook()
    for order in engine.book(1).resting_in_priority():
        bare.add(order[0], order[2], order[3], order[4], True)
    next_id = engine.book(1).next_order_id
    ops = []
    for cmd in commands:  # ids as the engine gives them (rejected orders take none)
        if isinstance(cmd, CancelOrder):
            ops.append((bare.cancel, (cmd.order_id,)))
        else:
            price = cmd.price or (10**12 if cmd.side == BUY else 1)
            qty = cmd.qty or max(1, cmd.quote_qty // max(1, cmd.price or 1_000_000))
            ops.append((bare.add, (next_id, cmd.side, price, qty, cmd.order_type != MARKET and cmd.tif == GTC)))
            next_id += 1
    start = time.process_time()
    for fn, args in ops:
        fn(*args)
    return time.process_time() - start


def percentile(sorted_values: list[int], q: float) -> int:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller run, under 30 s")
    parser.add_argument("--ops", type=int, default=0, help="commands per timed run")
    parser.add_argument("--resting", type=int, default=0, help="resting orders before the timed runs")
    parser.add_argument("--repeat", type=int, default=0, help="timed runs per GC mode (best is reported)")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one GC-off run")
    args = parser.parse_args()
    ops = args.ops or (60_000 if args.quick else 1_000_000)
    resting = args.resting or (20_000 if args.quick else 50_000)
    repeat = args.repeat or (1 if args.quick else 3)

    t0 = time.perf_counter()
    gen = FlowGenerator(args.seed, resting)
    gen.prefill()
    snapshot = gen.engine.snapshot()
    commands = gen.generate(ops)
    end_resting = len(gen.book.orders)
    levels = len(gen.book.bids) + len(gen.book.asks)
    kinds: dict[str, int] = {}
    for cmd in commands:
        if isinstance(cmd, CancelOrder):
            key = "cancel"
        else:
            key = {LIMIT: "limit", MARKET: "market", LIMIT_MAKER: "limit_maker"}[cmd.order_type]
            if cmd.order_type == LIMIT:
                key += "_" + {GTC: "gtc", IOC: "ioc", FOK: "fok"}[cmd.tif]
        kinds[key] = kinds.get(key, 0) + 1
    print(f"generated {len(commands)} commands in {time.perf_counter() - t0:.1f} s; resting {resting} -> "
          f"{end_resting} orders on {levels} levels; mix {dict(sorted(kinds.items()))}")  # fmt: skip

    figures: dict[str, object] = {"ops": len(commands), "resting_start": resting, "resting_end": end_resting}
    figures["levels_end"] = levels
    for mode in ("off", "on"):
        gc.collect()
        if mode == "off":
            gc.freeze()
            gc.disable()
        best = min(run_engine(snapshot, commands)[0] for _ in range(repeat))
        objects = min(run_engine(snapshot, commands, "objects")[0] for _ in range(repeat))
        bare = min(run_bare(snapshot, commands) for _ in range(repeat))
        figures[f"gc_{mode}_ops_per_s"] = round(len(commands) / best)
        figures[f"gc_{mode}_event_objects_ops_per_s"] = round(len(commands) / objects)
        figures[f"gc_{mode}_bare_ops_per_s"] = round(len(commands) / bare)
        figures[f"gc_{mode}_ratio_to_bare"] = round(bare / best, 3)
        if mode == "off":
            latencies = run_latency(snapshot, commands)
            lat = latencies["all"]
            for q, name in ((0.5, "p50"), (0.99, "p99"), (0.999, "p999")):
                figures[f"gc_off_latency_{name}_ns"] = percentile(lat, q)
            for kind in ("place", "take", "cancel"):
                figures[f"gc_off_latency_{kind}_p50_ns"] = percentile(latencies[kind], 0.5)
            if args.profile:
                import cProfile
                import pstats

                prof = cProfile.Profile()
                prof.runcall(run_engine, snapshot, commands)
                pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(14)
            gc.enable()
            gc.unfreeze()
        ours, bare_rate = figures[f"gc_{mode}_ops_per_s"], figures[f"gc_{mode}_bare_ops_per_s"]
        print(
            f"GC {mode}: engine {ours:,} ops/s with journal bytes, {round(len(commands) / objects):,} with event "
            f"objects; bare book {bare_rate:,} ops/s (ratio {bare / best:.3f})"
        )
    f = figures
    print(
        f"GC off latency ns: p50 {f['gc_off_latency_p50_ns']}, p99 {f['gc_off_latency_p99_ns']}, p99.9 "
        f"{f['gc_off_latency_p999_ns']}; p50 by kind: place {f['gc_off_latency_place_p50_ns']}, take "
        f"{f['gc_off_latency_take_p50_ns']}, cancel {f['gc_off_latency_cancel_p50_ns']}"
    )
    _, n_events = run_engine(snapshot, commands, "objects")
    figures["events_per_op"] = round(n_events / len(commands), 3)
    _, n_bytes = run_engine(snapshot, commands)
    figures["journal_bytes_per_op"] = round(n_bytes / len(commands), 1)
    figures["python"] = sys.version.split()[0]
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
