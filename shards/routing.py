"""Which shard owns a symbol, and which risk shard owns a user (house rule 5).

Nothing else in the project computes either. The hash is CRC-32 of the
symbol's UTF-8 bytes: stable across processes, restarts and Python versions
(unlike the salted built-in ``hash``).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping


def shard_for(symbol: str, shard_count: int, pinned: Mapping[str, int] | None = None) -> int:
    """Index of the matching shard owning ``symbol`` (pinning in config wins)."""
    if pinned is not None:
        shard = pinned.get(symbol)
        if shard is not None:
            return shard
    return zlib.crc32(symbol.encode()) % shard_count


def risk_shard_for(user_id: int, risk_shard_count: int) -> int:
    """Index of the risk shard owning ``user_id``'s balances."""
    return user_id % risk_shard_count
