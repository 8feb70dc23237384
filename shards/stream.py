"""The shard event streams in Redis: key names and entry fields, defined once.

Each matching shard appends its events to its own stream, one entry per
group-committed batch (never one entry per event: redis-py tops out near
75 000 entries/s, see LIMITS.md). An entry holds the batch's sequence range
and the events packed by ``shards.events.encode_events``::

    XADD exchange:shard:<index>:events * f <first seq> l <last seq> e <packed events> [r <ring positions>]

Readers (persist, wsfeed, a restarting shard) unpack entries with
``decode_entry``; ``first``/``last`` let them skip what they already applied
without unpacking, and make a gap in the sequence visible. ``r`` is written
by the shard's journal and read only by its recovery (``shards/journal.py``
says what it holds); other readers ignore it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from shards.events import decode_events, encode_events
from shards.protocol import Event

FIELD_FIRST = b"f"
FIELD_LAST = b"l"
FIELD_EVENTS = b"e"
FIELD_POSITIONS = b"r"


def stream_key(shard: int) -> str:
    """Redis key of matching shard ``shard``'s event stream."""
    return f"exchange:shard:{shard}:events"


def entry_fields(first_seq: int, last_seq: int, packed_events: bytes, positions: bytes = b"") -> dict[bytes, bytes]:
    """Fields of one stream entry holding the already packed events ``first_seq..last_seq``."""
    fields = {FIELD_FIRST: b"%d" % first_seq, FIELD_LAST: b"%d" % last_seq, FIELD_EVENTS: packed_events}
    if positions:
        fields[FIELD_POSITIONS] = positions
    return fields


def encode_entry(events: Sequence[Event]) -> dict[bytes, bytes]:
    """Fields of one stream entry for a non-empty batch of consecutive events."""
    return entry_fields(events[0].seq, events[-1].seq, encode_events(events))


def entry_range(fields: Mapping[bytes, bytes]) -> tuple[int, int]:
    """(first seq, last seq) of an entry, without unpacking its events."""
    return int(fields[FIELD_FIRST]), int(fields[FIELD_LAST])


def decode_entry(fields: Mapping[bytes, bytes]) -> list[Event]:
    """The events of one stream entry, in sequence order."""
    return decode_events(fields[FIELD_EVENTS])
