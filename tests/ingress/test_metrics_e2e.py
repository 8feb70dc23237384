"""GET /metrics through a running exchange (2 shards): figures summed over 2 ingress workers, and the
shards', persist's and wsfeed's own figures.

Real processes (``exchange_factory``, tests/conftest.py). Orders go over many connections at once
(``urllib`` opens one per request) so that both workers, which share the listening socket, serve
some; whichever worker answers a scrape reports both, the other's from its Redis hash.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from deploy.config import load_config
from tests.e2e.api import Api
from tests.ingress.test_metrics_format import Scrape, parse
from tests.wsfeed.harness import ws_connect

ORDER = "/api/v3/order"
SENT = "exchange_ingress_engine_requests_sent_total"
ANSWERED = "exchange_ingress_engine_requests_answered_total"
ORDERS_PER_ROUND = 48
MAX_ROUNDS = 8
THREADS = 8
SETTLE_S = 15.0  # longest wait for the workers' published figures to catch up (a bound, not an assertion)
PINGS_PER_SCRAPE = 2  # a scrape pings each of the 2 shards through the worker that answers it


def _scrape(api: Api) -> Scrape:
    reply = api.get("/metrics")
    assert reply.status == 200, reply
    assert reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse(reply.body)


def _per_worker(scrape: Scrape, name: str) -> dict[str, float]:
    return {dict(labels)["worker"]: v for labels, v in scrape.values(name).items()}


def test_metrics_sum_both_workers_and_probe_every_component(exchange_factory) -> None:
    ex = exchange_factory(engine={"shards": 2}, rest={"workers": 2})
    api = Api(ex.rest_url, ex.admin_token)
    user = api.new_user()
    scrapes = 0

    def settled(want_sent: float) -> Scrape:
        """A scrape once both workers' figures are there and their sent sum reaches ``want_sent``."""
        nonlocal scrapes
        deadline = time.monotonic() + SETTLE_S
        while True:
            scrape = _scrape(api)
            scrapes += 1
            sent = _per_worker(scrape, SENT)
            if (set(sent) == {"0", "1"} and sum(sent.values()) >= want_sent) or time.monotonic() > deadline:
                return scrape
            time.sleep(0.2)

    def place(i: int) -> int:
        reply = api.signed("POST", ORDER, user, symbol=("AAPL", "MSFT")[i % 2], side="BUY", type="LIMIT",
                           timeInForce="GTC", quantity="1", price="1.00")  # fmt: skip
        return reply.status

    before = _per_worker(settled(0), SENT)
    placed = 0
    served_by_both = False
    with ThreadPoolExecutor(THREADS) as pool:
        for _ in range(MAX_ROUNDS):
            statuses = list(pool.map(place, range(ORDERS_PER_ROUND)))
            assert statuses == [200] * ORDERS_PER_ROUND
            placed += ORDERS_PER_ROUND
            after = settled(sum(before.values()) + placed)
            sent = _per_worker(after, SENT)
            # more than the pings of every scrape so far: that worker sent orders too
            served_by_both = all(sent[w] - before.get(w, 0) > PINGS_PER_SCRAPE * scrapes for w in ("0", "1"))
            if served_by_both:
                break

    answered = _per_worker(after, ANSWERED)
    assert served_by_both, (placed, before, sent, scrapes)
    assert sum(sent.values()) - sum(before.values()) >= placed
    assert set(answered) == {"0", "1"} and sum(answered.values()) >= placed
    assert after.value("exchange_up", component="shard", shard="0") == 1
    assert after.value("exchange_up", component="shard", shard="1") == 1
    assert after.value("exchange_up", component="redis") == 1
    assert after.value("exchange_up", component="postgres") == 1
    assert after.value("exchange_up", component="ingress", worker="0") == 1
    assert after.value("exchange_up", component="ingress", worker="1") == 1
    for shard in ("0", "1"):
        assert after.value("exchange_persist_lag_events", shard=shard) >= 0
        assert after.value("exchange_persisted_seq", shard=shard) >= 0
    assert sum(after.values("exchange_journaled_seq").values()) >= placed
    assert after.types[SENT] == "counter" and after.types["exchange_ingress_engine_pending"] == "gauge"


def test_metrics_show_the_shards_persist_and_wsfeed_at_work(exchange_factory) -> None:
    # arrange: crossing orders on two symbols, a WebSocket client connected while the scrapes run
    ex = exchange_factory(engine={"shards": 2}, rest={"workers": 1})
    config = load_config(ex.config_path, env={})
    api = Api(ex.rest_url, ex.admin_token)
    maker, taker = api.new_user(), api.new_user()
    symbols = ("AAPL", "MSFT")
    busy = {str(config.shard_of(s)) for s in symbols}
    for symbol in symbols:
        for user, side in ((maker, "SELL"), (taker, "BUY")):
            reply = api.signed("POST", ORDER, user, symbol=symbol, side=side, type="LIMIT", timeInForce="GTC",
                               quantity="2", price="10.00")  # fmt: skip
            assert reply.status == 200, reply

    def settled(scrape: Scrape) -> bool:
        shards = {dict(k)["shard"]: v for k, v in scrape.values("exchange_shard_trades_total").items()}
        rows = scrape.values("exchange_persist_rows_total", table="trades")
        return (
            all(shards.get(s, 0) > 0 for s in busy)
            and sum(rows.values()) >= len(symbols)
            and scrape.values("exchange_wsfeed_connections") == {(("process", "0"),): 1}
        )

    async def scrape_while_connected() -> Scrape:
        async with ws_connect(f"{ex.ws_url}/ws/aapl@trade"):
            deadline = time.monotonic() + SETTLE_S
            while True:
                scrape = await asyncio.to_thread(_scrape, api)
                if settled(scrape) or time.monotonic() > deadline:
                    return scrape
                await asyncio.sleep(0.2)

    # act
    scrape = asyncio.run(scrape_while_connected())

    # assert
    for shard in busy:
        assert scrape.value("exchange_shard_commands_total", shard=shard) >= 2
        assert scrape.value("exchange_shard_trades_total", shard=shard) >= 1
        assert scrape.value("exchange_shard_batches_total", shard=shard) >= 1
        assert scrape.value("exchange_shard_journal_appends_total", shard=shard) >= 1
        assert scrape.value("exchange_shard_journal_last_seq", shard=shard) > 0
    assert scrape.value("exchange_up", component="persist", process="0") == 1
    assert scrape.value("exchange_persist_commits_total", process="0") > 0
    assert scrape.value("exchange_persist_events_total", process="0") > 0
    assert scrape.value("exchange_persist_rows_total", process="0", table="trades") >= len(symbols)
    assert scrape.value("exchange_up", component="wsfeed", process="0") == 1
    assert scrape.value("exchange_wsfeed_connections", process="0") == 1
    assert scrape.value("exchange_wsfeed_subscriptions", process="0") == 1
    assert scrape.types["exchange_shard_commands_total"] == "counter"
    assert scrape.types["exchange_wsfeed_connections"] == "gauge"
