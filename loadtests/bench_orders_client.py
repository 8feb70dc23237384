"""Fallback load client for bench_orders when wrk is not installed: asyncio, raw keep-alive sockets.

``python -m loadtests.bench_orders_client URL REQUESTS.tsv --connections 64 --duration 10``
reads the same request file as ``bench_orders_wrk.lua`` (METHOD \\t TARGET \\t
API-KEY \\t CONTENT-TYPE \\t BODY per line), keeps ``--connections`` HTTP/1.1
connections busy (closed loop; ``--delay-ms`` waits a random think time,
exponential with that mean, after each response: pacing as the wrk script's)
for ``--duration`` seconds, and prints the same ``BENCH_JSON {...}`` line as
the wrk script. One Python process tops out well below the server on
a 2-core machine, so its figures are a floor, not the ceiling: install wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from urllib.parse import urlsplit


def load_requests(path: str, host: str) -> list[bytes]:
    out = []
    with open(path, encoding="ascii") as f:
        for line in f:
            method, target, key, ctype, body = line.rstrip("\n").split("\t", 4)
            head = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"X-MBX-APIKEY: {key}"]
            if ctype:
                head.append(f"Content-Type: {ctype}")
            head.append(f"Content-Length: {len(body)}")
            out.append(("\r\n".join(head) + "\r\n\r\n" + body).encode())
    return out


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.status_errors = 0
        self.read_errors = 0
        self.codes = 0
        self.bytes = 0


async def _connection(host: str, port: int, requests: list[bytes], offset: int, stop_at: float, delay_s: float,
                      count_codes: bool, stats: Stats) -> None:  # fmt: skip
    reader, writer = await asyncio.open_connection(host, port)
    i = offset
    n = len(requests)
    clock = time.perf_counter
    think = random.Random(offset).expovariate
    try:
        while clock() < stop_at:
            req = requests[i % n]
            i += 1
            started = clock()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length) if length else b""
            stats.latencies.append(clock() - started)
            stats.bytes += len(head) + length
            if status >= 400:
                stats.status_errors += 1
            if count_codes:
                stats.codes += body.count(b'"code":')
            if delay_s:
                await asyncio.sleep(think(1 / delay_s))
    except (OSError, asyncio.IncompleteReadError):
        stats.read_errors += 1
    finally:
        writer.close()


def _percentile(sorted_values: list[float], p: float) -> int:
    if not sorted_values:
        return 0
    k = min(len(sorted_values) - 1, int(len(sorted_values) * p / 100))
    return int(sorted_values[k] * 1e6)


async def run(url: str, path: str, connections: int, duration: float, delay_ms: float, count_codes: bool) -> dict:
    parts = urlsplit(url)
    requests = load_requests(path, parts.netloc)
    stats = Stats()
    started = time.perf_counter()
    stop_at = started + duration
    await asyncio.gather(
        *(
            _connection(parts.hostname, parts.port, requests, c * 7919, stop_at, delay_ms / 1000, count_codes, stats)
            for c in range(connections)
        )
    )
    elapsed = time.perf_counter() - started
    lat = sorted(stats.latencies)
    return {
        "requests": len(lat),
        "duration_us": int(elapsed * 1e6),
        "bytes": stats.bytes,
        "connect_errors": 0,
        "read_errors": stats.read_errors,
        "write_errors": 0,
        "status_errors": stats.status_errors,
        "timeouts": 0,
        "codes_in_bodies": stats.codes,
        "p50_us": _percentile(lat, 50),
        "p90_us": _percentile(lat, 90),
        "p99_us": _percentile(lat, 99),
        "p999_us": _percentile(lat, 99.9),
        "mean_us": sum(lat) / len(lat) * 1e6 if lat else 0.0,
        "max_us": int(lat[-1] * 1e6) if lat else 0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("requests")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--count-codes", action="store_true")
    args = parser.parse_args(argv)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover
        runner = asyncio.Runner()
    with runner:
        result = runner.run(
            run(args.url, args.requests, args.connections, args.duration, args.delay_ms, args.count_codes)
        )
    print("BENCH_JSON " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
