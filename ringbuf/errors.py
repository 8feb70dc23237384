"""Errors raised by the rings and doorbells; owns nothing else.

Every error carries a stable ``code`` (for logs and metrics) and a message
naming the offending value. The hierarchy::

    RingError
    ├── RecordTooLarge (also ValueError)   a record above ``Ring.max_record``
    ├── BadRingConfig  (also ValueError)   capacity not a power of two, unknown wait strategy, ...
    ├── WrongRecordSize (also ValueError)  ``read_array`` met a record of another size
    ├── BadPosition (also ValueError)      ``seek`` outside the records between head and tail
    ├── RingCorrupt                        header or record framing that cannot be right
    └── NotCreator                         ``unlink()`` called by an attacher
"""

from __future__ import annotations


class RingError(Exception):
    """Base of every ring error: ``code`` is stable, the message names the value."""

    code = "RING_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(f"{self.code}: {message}")
        self.message = message


class RecordTooLarge(RingError, ValueError):
    code = "RING_RECORD_TOO_LARGE"


class BadRingConfig(RingError, ValueError):
    code = "RING_BAD_CONFIG"


class WrongRecordSize(RingError, ValueError):
    code = "RING_WRONG_RECORD_SIZE"


class BadPosition(RingError, ValueError):
    code = "RING_BAD_POSITION"


class RingCorrupt(RingError):
    code = "RING_CORRUPT"


class NotCreator(RingError):
    code = "RING_NOT_CREATOR"
