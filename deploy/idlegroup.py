"""The idle CPU group: a cpu cgroup with ``cpu.idle`` = 1 for the roles configured ``"idle"`` in ``[nice]``.

Owns: finding this process's cpu cgroup (``/proc/self/cgroup`` and ``/proc/self/mountinfo``: the v1 hierarchy
that has the cpu controller, else the unified v2 one), making one child group per launcher run
(``exchange-<launcher pid>``) with ``cpu.idle`` = 1, moving processes into it, and removing it at the end (and
the empty groups of launchers that are gone). Never: decides which processes go there (the launcher does).

Why: the kernel runs an idle group only on CPU time nothing else wants, and a task waking outside it
preempts it at once. ``[nice]`` cannot do that here: every exchange process and every PostgreSQL backend
leads a session of its own, so under autogroup scheduling each is a group of its own, and neither nice 19
nor ``SCHED_IDLE`` inside such a group takes it below a shard's share (``deploy.procs``). Measured on the
2-core VM, ``loadtests/bench_orders.py --quick --paced-rate 5500``: persist and PostgreSQL in an idle group took
the paced p99 from 5.6 / 4.4 / 6.4 ms to 4.8 / 3.9 / 4.1 ms (interleaved pairs; README, CPU priority).

A process moved here takes its later children with it (a forked child starts in its parent's group), so
moving the postmaster covers the backends it forks afterwards. Making the group needs write access to the
cpu cgroup (root, or a delegated subtree); where that fails the launcher falls back to nice 19.
"""

from __future__ import annotations

import os
from pathlib import Path

PREFIX = "exchange-"


def cpu_cgroup_dir(proc_cgroup: str, mountinfo: str) -> Path | None:
    """The folder of a process's cpu cgroup, from the texts of its ``/proc/PID/cgroup`` and ``/proc/PID/mountinfo``;
    None when no mounted hierarchy has the cpu controller."""
    v1_path = v2_path = None
    for line in proc_cgroup.splitlines():
        hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if "cpu" in controllers.split(","):
            v1_path = path
        elif hierarchy == "0" and controllers == "":
            v2_path = path
    v2_mount = None
    for line in mountinfo.splitlines():
        mount_fields, _, fs_fields = line.partition(" - ")
        mount, fs = mount_fields.split(), fs_fields.split()
        if len(mount) < 5 or len(fs) < 3:
            continue
        root, point, fstype, options = mount[3], mount[4], fs[0], fs[2].split(",")
        if fstype == "cgroup" and "cpu" in options and v1_path is not None:
            return _under(point, root, v1_path)
        if fstype == "cgroup2" and v2_path is not None:
            v2_mount = _under(point, root, v2_path)
    return v2_mount


def _under(point: str, root: str, path: str) -> Path:
    """``path`` (as /proc/PID/cgroup names it) in the hierarchy mounted at ``point`` from its ``root``."""
    if root != "/" and (path == root or path.startswith(root + "/")):
        path = path[len(root) :]
    return Path(point) / path.lstrip("/")


class IdleGroup:
    """One idle cpu cgroup: ``create`` it, ``add`` processes, ``remove`` it once they are gone."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, parent: Path | None = None, name: str | None = None) -> IdleGroup:
        """Make ``parent/name`` (default: this process's cpu cgroup, ``exchange-<pid>``) with ``cpu.idle`` = 1.

        Raises OSError saying what failed (no cpu cgroup, no permission, a kernel without ``cpu.idle``), and then
        leaves nothing behind.
        """
        if parent is None:
            parent = cpu_cgroup_dir(Path("/proc/self/cgroup").read_text(), Path("/proc/self/mountinfo").read_text())
            if parent is None:
                raise FileNotFoundError("no mounted cgroup hierarchy has the cpu controller")
        remove_stale(parent)
        path = parent / (name or f"{PREFIX}{os.getpid()}")
        path.mkdir(exist_ok=True)
        try:
            idle = path / "cpu.idle"
            if not idle.exists():  # the kernel makes it in every new cpu cgroup that supports it
                raise FileNotFoundError(f"{idle} does not exist: not a cpu cgroup, or a kernel without cpu.idle")
            idle.write_text("1")
        except OSError:
            path.rmdir()
            raise
        return cls(path)

    def add(self, pid: int) -> None:
        """Move process ``pid`` (all its threads) into the group; raises OSError (a process gone: ESRCH)."""
        (self.path / "cgroup.procs").write_text(str(pid))

    def pids(self) -> list[int]:
        return [int(pid) for pid in (self.path / "cgroup.procs").read_text().split()]

    def remove(self) -> None:
        """Remove the group; OSError (EBUSY) while a process is still in it."""
        self.path.rmdir()


def remove_stale(parent: Path) -> list[Path]:
    """Remove the empty ``exchange-<pid>`` groups under ``parent`` whose launcher is gone; returns them."""
    removed = []
    for path in parent.glob(f"{PREFIX}*"):
        pid = path.name.removeprefix(PREFIX)
        if not pid.isdigit() or Path(f"/proc/{pid}").exists():
            continue
        try:
            path.rmdir()
        except OSError:  # still has processes (or was never ours): leave it
            continue
        removed.append(path)
    return removed
