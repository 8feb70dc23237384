"""wsfeed: the WebSocket market-data and user-data feed (API.md, "WebSocket feed").

Each wsfeed process tails every shard's Redis event stream on its own and fans
the events out to its subscribers. Modules, from the socket inwards:

- ``main``: the process entry point ``run(config, ctx, index)``, timers, signals;
- ``server``: handshake paths, control messages, per-connection limits, listenKey upkeep;
- ``hub``: subscriptions and the non-blocking fan-out (bounded queue per client,
  1008 ``slow consumer``);
- ``market``: the state rebuilt from each entry's packed events (one pass over the
  bytes, no event objects; work nobody can observe is skipped); public messages;
- ``candles``: kline candles and the 24 h ticker of a symbol, from its trades;
- ``orders``: open orders' running state and ``executionReport`` texts;
- ``tail``: catch-up and ``XREAD`` tailing of the shard streams;
- ``xread``: the follower's own Redis connection (hand-packed ``XREAD``, hiredis replies);
- ``names``, ``klines``, ``listenkeys``: stream names, kline periods, listenKey keys in Redis.

It never writes to the shard streams and never talks to the shards directly.
"""
