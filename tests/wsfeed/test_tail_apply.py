"""The tailer's handling of raw XREAD replies: entries overlapping the snapshot, malformed entries, resume points."""

from __future__ import annotations

from deploy.config import load_config
from ingress.symbols import Catalog
from shards.events import decode_events, encode_events
from shards.protocol import DepthUpdate, TradeEvent
from shards.stream import encode_entry, stream_key
from wsfeed.hub import Hub
from wsfeed.market import Market
from wsfeed.names import StreamNames
from wsfeed.tail import Tailer

KEY = stream_key(0)


class SeqMarket:
    """Stands in for wsfeed.market.Market: keeps the sequence numbers of what it is given."""

    def __init__(self) -> None:
        self.seqs: list[int] = []

    def apply_packed(self, data: bytes, live: bool) -> None:
        self.seqs.extend(e.seq for e in decode_events(data))


def _raw(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list:
    """A raw XREAD reply of shard 0 (as ``wsfeed.xread`` returns it)."""
    return [[KEY.encode(), [[entry_id, [x for pair in fields.items() for x in pair]] for entry_id, fields in entries]]]


def _trades(first: int, count: int) -> list[TradeEvent]:
    return [TradeEvent(s, 1_000 + s, 1, s, 100, 1, 1, 2, 1, 2, 1) for s in range(first, first + count)]


def test_an_entry_overlapping_the_snapshot_gives_only_the_events_after_it() -> None:
    # arrange: the snapshot covers events up to 5; entries hold 3..7 and 8..9
    market = SeqMarket()
    tailer = Tailer(None, 1, market, None)  # type: ignore[arg-type]
    tailer.skip_seq[KEY] = 5
    reply = _raw([(b"1-0", encode_entry(_trades(3, 5))), (b"2-0", encode_entry(_trades(8, 2)))])
    # act
    tailer.apply_reply(reply)
    # assert
    assert market.seqs == [6, 7, 8, 9]
    assert tailer.skip_seq[KEY] == 0  # the second entry started after the snapshot: no more checks
    assert (tailer.last[KEY], tailer.entries, tailer.bad_entries) == (b"2-0", 2, 0)


def test_a_malformed_entry_is_counted_and_skipped_and_the_next_ones_apply() -> None:
    # arrange: a real market; the middle entry is cut short, one has an unknown event type, one no events field
    config = load_config(None)
    market = Market(Catalog.from_config(config), StreamNames(s.symbol for s in config.symbols), Hub())
    sid = config.symbols[0].symbol_id
    tailer = Tailer(None, 1, market, None)  # type: ignore[arg-type]
    good = encode_events([DepthUpdate(1, 1_000, sid, 1, ((100, 5),), ())])
    cut = encode_events([DepthUpdate(2, 1_000, sid, 2, ((101, 5), (99, 1)), ())])[:-3]
    later = encode_events([DepthUpdate(3, 1_000, sid, 3, ((102, 7),), ())])
    reply = _raw(
        [(b"1-0", {b"e": good}), (b"2-0", {b"e": cut}), (b"3-0", {b"e": b"\x63" + bytes(40)}), (b"4-0", {b"x": b"1"}),
         (b"5-0", {b"e": later})]
    )  # fmt: skip
    # act
    tailer.apply_reply(reply)
    # assert
    assert tailer.bad_entries == 3
    assert (tailer.last[KEY], tailer.entries) == (b"5-0", 5)
    assert market.symbols[sid].bids == {100: 5, 102: 7}
