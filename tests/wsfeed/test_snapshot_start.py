"""A wsfeed process starting on a trimmed stream takes books and open orders from the shard's snapshot file."""

from __future__ import annotations

import asyncio

from deploy.config import load_config
from shards.engine import Engine
from shards.protocol import NewOrder
from shards.recovery import SnapshotFile, snapshot_path, write_snapshot
from shards.stream import encode_entry, stream_key
from tests.wsfeed.harness import Journal, recv_json, request, start_feed, ws_connect
from wsfeed import listenkeys


def test_books_and_open_orders_come_from_the_snapshot_when_the_stream_was_trimmed(services, tmp_path):
    # arrange: an engine with a resting order, its snapshot on disk, and the entry that made it trimmed away
    redis_url = services.redis_db_url()
    config = load_config(None, env={"EXCHANGE_DATA_DIR": str(tmp_path / "feed-data"), "REDIS_URL": redis_url})
    symbol = config.symbol("AAPL")
    shard = config.shard_of("AAPL")
    engine = Engine([s.spec() for s in config.symbols_of_shard(shard)])
    engine.apply(NewOrder(symbol.symbol_id, 31, "rest", 1, 1, 1, 10000, 5, 0, 0, 1000))
    journal = Journal(redis_url)
    entry_id = journal.client.xadd(stream_key(shard), encode_entry(engine.take_events()))
    snap = SnapshotFile(engine.last_seq, entry_id, [], engine.snapshot())
    write_snapshot(snapshot_path(config.data_dir, shard), snap)
    journal.client.xdel(stream_key(shard), entry_id)
    depth_seq = engine.book(symbol.symbol_id).depth_seq
    key = listenkeys.new_listen_key()
    journal.client.set(listenkeys.key_of(key), "31", ex=600)
    feed = start_feed(tmp_path, redis_url)

    async def scenario():
        url = f"{feed.url}/stream?streams=aapl@depth/aapl@bookTicker"
        async with ws_connect(url) as market, ws_connect(f"{feed.url}/ws/{key}") as private:
            await request(market, {"method": "LIST_SUBSCRIPTIONS", "id": 1})
            await request(private, {"method": "LIST_SUBSCRIPTIONS", "id": 1})
            # act: another user sells into the resting order
            engine.apply(NewOrder(symbol.symbol_id, 32, "take", 2, 1, 1, 10000, 2, 0, 0, 2000))
            journal.client.xadd(stream_key(shard), encode_entry(engine.take_events()))
            got = {}
            while len(got) < 2:
                msg = await recv_json(market)
                got[msg["stream"]] = msg["data"]
            return got, await recv_json(private)

    try:
        got, report = asyncio.run(scenario())
    finally:
        journal.close()
        assert feed.stop() == 0

    assert got["aapl@depth"]["U"] == depth_seq + 1 and got["aapl@depth"]["b"] == [["100.00", "3"]]
    assert (got["aapl@bookTicker"]["b"], got["aapl@bookTicker"]["B"]) == ("100.00", "3")
    assert (report["c"], report["x"], report["X"], report["z"], report["q"]) == (
        "rest", "TRADE", "PARTIALLY_FILLED", "2", "5",
    )  # fmt: skip
