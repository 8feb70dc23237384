"""Shared-memory rings between the exchange's processes.

Owns: single-producer/single-consumer byte rings over
``multiprocessing.shared_memory`` (``ringbuf.ring``: layout, framing, publish
order, memory-model argument), the per-consumer doorbell and its wait
strategies (``ringbuf.doorbell``: sleep/wake handshake), and the membarrier
call that closes the handshake's reordering window (``ringbuf.fence``).
Never: knows what a record means (that is ``shards.protocol``), names rings
(that is ``deploy.topology``), or creates or unlinks a segment from a child
process (the launcher creates and unlinks; children attach).
"""

from ringbuf.doorbell import BLOCK_SLICE, STRATEGIES, AsyncConsumer, Consumer, Doorbell, Producer
from ringbuf.errors import (
    BadPosition,
    BadRingConfig,
    NotCreator,
    RecordTooLarge,
    RingCorrupt,
    RingError,
    WrongRecordSize,
)
from ringbuf.ring import Ring

__all__ = [
    "BLOCK_SLICE",
    "STRATEGIES",
    "AsyncConsumer",
    "BadPosition",
    "BadRingConfig",
    "Consumer",
    "Doorbell",
    "NotCreator",
    "Producer",
    "RecordTooLarge",
    "Ring",
    "RingCorrupt",
    "RingError",
    "WrongRecordSize",
]
