"""Opening, creating and unlinking the shared-memory segments behind the rings.

Owns: the ``multiprocessing.shared_memory`` calls and the resource-tracker
rules. Never: reads or writes ring contents.

Rules: the creator's segment is registered with
``multiprocessing.resource_tracker`` (so a creator that dies without
unlinking still has its segment removed), and the creator alone unlinks.
An attacher must not register: its own tracker would unlink the segment when
the attacher exits, and warn of a leak. Python 3.13 has
``SharedMemory(track=False)``; on 3.11 and 3.12 ``open_untracked`` gets the
same effect by standing in for the tracker while ``SharedMemory`` opens the
segment. Unregistering right after a normal attach is not enough: a child
started by ``multiprocessing`` shares its parent's tracker, which keeps one
entry per name, so the child's unregister would drop the creator's entry
(and the creator's later unlink makes the tracker print a KeyError).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from multiprocessing import shared_memory

_LOCK = threading.Lock()


class _NoTracking:
    """Stands in for ``resource_tracker`` inside ``shared_memory`` for one call."""

    @staticmethod
    def register(name: str, rtype: str) -> None:
        pass

    @staticmethod
    def unregister(name: str, rtype: str) -> None:
        pass


@contextlib.contextmanager
def _untracked() -> Iterator[None]:
    with _LOCK:
        tracker = shared_memory.resource_tracker  # type: ignore[attr-defined]
        shared_memory.resource_tracker = _NoTracking  # type: ignore[attr-defined]
        try:
            yield
        finally:
            shared_memory.resource_tracker = tracker  # type: ignore[attr-defined]


def create(name: str, size: int) -> shared_memory.SharedMemory:
    """A new segment of ``size`` bytes, registered with the tracker; FileExistsError if it exists."""
    return shared_memory.SharedMemory(name=name, create=True, size=size)


def open_untracked(name: str) -> shared_memory.SharedMemory:
    """Open an existing segment without registering it; FileNotFoundError if there is none."""
    if sys.version_info >= (3, 13):
        return shared_memory.SharedMemory(name=name, track=False)  # type: ignore[call-arg]
    with _untracked():
        return shared_memory.SharedMemory(name=name)


def unlink_name(name: str) -> bool:
    """Remove a segment whose creator is gone (no tracker entry to drop); False if there was none."""
    try:
        shm = open_untracked(name)
    except FileNotFoundError:
        return False
    shm.close()
    with _untracked():
        try:
            shm.unlink()
        except FileNotFoundError:
            return False
    return True
