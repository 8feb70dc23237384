"""wsfeed: the WebSocket market-data and user-data feed (not built yet).

A later issue builds it: processes that tail the shards' Redis streams and fan events
out to subscribers (trade, depth, bookTicker, ticker, kline and user streams, in
Binance's shapes), each connection with a bounded queue and closed with 1008
``slow consumer`` when it falls behind. Until then this package holds nothing,
``exchange up`` starts no wsfeed process and binds no WebSocket port.
"""
