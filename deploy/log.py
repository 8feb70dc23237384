"""Structured log lines for the launcher and its children: one event per line.

``log_event("child_exit", role="shard", index=1, pid=123, status=-9)`` writes
``ts=2026-01-01T12:00:00.123Z level=info proc=launcher event=child_exit role=shard index=1 pid=123 status=-9``
to standard error. Values with spaces or quotes are quoted. This module owns the
format only; it must never be called on a per-order hot path.
"""

from __future__ import annotations

import sys
import time
from typing import Any

_process_name = "exchange"


def set_process_name(name: str) -> None:
    """The ``proc=`` field of every later line from this process (e.g. ``shard.1``)."""
    global _process_name
    _process_name = name


def _format_value(value: Any) -> str:
    text = f"{value:.3f}s" if isinstance(value, float) else str(value)
    if not text or any(c in text for c in ' "=\n\t'):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def format_event(event: str, level: str = "info", **fields: Any) -> str:
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    parts = [f"ts={stamp}", f"level={level}", f"proc={_process_name}", f"event={event}"]
    parts.extend(f"{key}={_format_value(value)}" for key, value in fields.items())
    return " ".join(parts)


def log_event(event: str, level: str = "info", **fields: Any) -> None:
    """Write one structured line (``event=... key=value ...``) to standard error and flush it."""
    line = format_event(event, level, **fields) + "\n"
    out = sys.stderr
    try:
        out.write(line)
        out.flush()
    except (OSError, ValueError):  # a closed or broken stream must not take the process down
        pass
