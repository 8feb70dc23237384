"""Shared-memory rings between the exchange's processes.

Owns: single-producer/single-consumer byte rings over
``multiprocessing.shared_memory``: ``ringbuf.ring`` (the specification: layout,
framing, publish order, memory-model argument; the record and batch paths),
``ringbuf.arrays`` (the numpy batch path), ``ringbuf.segment`` (creating,
attaching and unlinking segments without resource-tracker accidents),
``ringbuf.doorbell`` (one eventfd per consumer process, the spin / yield /
block / hybrid wait strategies, the low-latency send/recv lane, the asyncio
reader, the sleep/wake handshake) and
``ringbuf.fence`` (the membarrier call that closes that handshake's
reordering window). Errors: ``ringbuf.errors``.
Never: knows what a record means (``shards.wire``), names rings
(``deploy.topology``), or creates or unlinks a segment in a child process
(the launcher creates and unlinks; children attach).
"""

from ringbuf.doorbell import BLOCK_SLICE, HYBRID_SPIN_US, STRATEGIES, AsyncConsumer, Consumer, Doorbell, Producer
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
    "HYBRID_SPIN_US",
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
