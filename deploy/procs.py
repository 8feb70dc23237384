"""Spawning helpers shared by the launcher and the embedded servers.

Every process the exchange starts runs in a session of its own (so a Ctrl-C in
the terminal reaches only the launcher, which then stops everything in order)
and asks the kernel for a signal when its parent dies (``PR_SET_PDEATHSIG``),
so that a launcher killed with SIGKILL leaves no orphan behind. This module
must never decide what to start or when: that is the launcher's business.

CPU priority (``[nice]``): on Linux with autogroup scheduling
(``/proc/sys/kernel/sched_autogroup_enabled``, on by default in most
distributions) every session is a scheduling group of its own, and a
process's nice value only weighs it against the other processes of its
group. Each exchange process, and each PostgreSQL backend (PostgreSQL calls
``setsid`` in every child), leads a session alone, so nice alone changes
nothing: a nice-19 writer still gets as much CPU as a shard. ``lower_priority``
therefore sets the nice value of the process and, when the process leads its
own session, that of its group (``/proc/PID/autogroup``, which any owner may
raise). ``lower_children`` does the same for the children a server forks
later (the launcher sweeps the embedded PostgreSQL's backends with it).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

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
            lower_priority(nice)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def lower_priority(nice: int, pid: int = 0) -> bool:
    """Give process ``pid`` (0: this one) a nice value of at least ``nice`` (0-19; never raises its priority), and
    its autogroup the same when it leads its own session; True when the group was set (False: no autogroup here,
    or the process shares its session)."""
    pid = pid or os.getpid()
    nice = max(nice, os.getpriority(os.PRIO_PROCESS, pid))
    os.setpriority(os.PRIO_PROCESS, pid, nice)
    if os.getsid(pid) != pid:  # its group is its session's: leave the session's other processes alone
        return False
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
    except OSError:  # no autogroup (kernel without it, or not Linux): nice alone does the job there
        return False
    return True


def child_pids(parent: int) -> list[int]:
    """The pids of ``parent``'s children; none when it is gone or the kernel lacks CONFIG_PROC_CHILDREN."""
    try:
        return [int(pid) for pid in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()]
    except OSError:
        return []


def lower_children(parent: int, nice: int, done: set[int]) -> list[int]:
    """``lower_priority(nice)`` for each child of ``parent`` not in ``done`` that leads its session; returns them.

    ``done`` is updated (and pruned of children that are gone). A child that has not called ``setsid`` yet is
    left for the next sweep, so its own group is the one that gets lowered.
    """
    children = set(child_pids(parent))
    done &= children
    lowered = []
    for pid in children - done:
        try:
            if os.getsid(pid) != pid:
                continue
            lower_priority(nice, pid)
        except (ProcessLookupError, PermissionError):
            continue
        done.add(pid)
        lowered.append(pid)
    return lowered
