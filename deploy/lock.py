"""The data folder's lock: one running exchange per data folder.

``DataDirLock(data_dir).acquire()`` takes an exclusive ``fcntl.flock`` on
``data_dir/exchange.lock`` without waiting and writes this process's pid into
it; a second launcher on the same folder gets ``LockError`` at once, naming the
folder and the pid that holds it. The kernel drops the lock when the holder
dies, however it dies, so a stale file never blocks a new start. The file is
never deleted (deleting a lock file races with the next taker).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class LockError(Exception):
    code = "locked"


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "exchange.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockError(
                f"data folder {self.path.parent} is in use by another exchange (pid {holder}, lock {self.path}); "
                "stop that one first, or give this one another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Idempotent."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None
