"""Spawning helpers shared by the launcher and the embedded servers.

Every process the exchange starts runs in a session of its own (so a Ctrl-C in
the terminal reaches only the launcher, which then stops everything in order)
and asks the kernel for a signal when its parent dies (``PR_SET_PDEATHSIG``),
so that a launcher killed with SIGKILL leaves no orphan behind. This module
must never decide what to start or when: that is the launcher's business.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1
_libc: ctypes.CDLL | None = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:  # pragma: no cover - a Linux without a loadable libc
        _libc = None


def die_with_parent(sig: signal.Signals, nice: int = 0) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child receive ``sig`` when this process dies (and lowers its priority by
    ``nice``, 0-19).

    It runs after ``Popen``'s user/group switch (a credential change clears the
    setting), and exits at once if the parent is already gone.
    """
    parent = os.getpid()
    libc = _libc

    def preexec() -> None:
        if libc is not None:
            libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if nice:
            os.nice(nice)
        if os.getppid() != parent:
            os._exit(1)

    return preexec
