"""Keeps the exchange's child processes running, and stops them in order.

``Supervisor`` owns one slot per (role, index). ``poll()`` reaps a child that
exited, logs it (``event=child_exit role=shard index=1 pid=123 status=-9
restart_in=0.100s``) and starts it again after a back-off that doubles from 0.1 s
to 5 s and goes back to 0.1 s once a child has run 30 s. ``stop_rank(rank)``
sends SIGTERM to every child of that stop rank, waits for them to drain and
exit, and sends SIGKILL to those still running at the deadline.

It never decides what a process is (the spawn function does) and never touches
rings, servers or the lock.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from deploy.log import log_event

BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0
HEALTHY_AFTER_S = 30.0

Spawn = Callable[[str, int], "subprocess.Popen[bytes]"]


@dataclass
class Slot:
    role: str
    index: int
    stop_rank: int
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff_s: float = BACKOFF_MIN_S
    restart_at: float | None = None
    restarts: int = 0
    stopping: bool = False


def describe_status(status: int) -> str:
    if status < 0:
        try:
            return signal.Signals(-status).name
        except ValueError:
            return f"signal {-status}"
    return f"exit {status}"


class Supervisor:
    def __init__(self, spawn: Spawn, clock: Callable[[], float] = time.monotonic) -> None:
        self._spawn = spawn
        self._clock = clock
        self.slots: list[Slot] = []

    def add(self, role: str, index: int, stop_rank: int) -> None:
        self.slots.append(Slot(role=role, index=index, stop_rank=stop_rank))

    def _start(self, slot: Slot) -> None:
        slot.proc = self._spawn(slot.role, slot.index)
        slot.started_at = self._clock()
        slot.restart_at = None
        log_event("child_start", role=slot.role, index=slot.index, pid=slot.proc.pid, restarts=slot.restarts)

    def start_all(self) -> None:
        """Start every slot, highest stop rank first (writers, then shards, then ingress)."""
        for slot in sorted(self.slots, key=lambda s: -s.stop_rank):
            self._start(slot)

    def pids(self) -> dict[tuple[str, int], int]:
        return {(s.role, s.index): s.proc.pid for s in self.slots if s.proc is not None and s.proc.poll() is None}

    def poll(self) -> None:
        """Reap children that exited, schedule their restart, start those whose back-off is over."""
        now = self._clock()
        for slot in self.slots:
            if slot.stopping:
                continue
            if slot.proc is not None:
                status = slot.proc.poll()
                if status is None:
                    continue
                ran = now - slot.started_at
                if ran >= HEALTHY_AFTER_S:
                    slot.backoff_s = BACKOFF_MIN_S
                delay = slot.backoff_s
                slot.backoff_s = min(BACKOFF_MAX_S, slot.backoff_s * 2)
                log_event(
                    "child_exit",
                    "warning",
                    role=slot.role,
                    index=slot.index,
                    pid=slot.proc.pid,
                    status=status,
                    reason=describe_status(status),
                    ran=ran,
                    restart_in=delay,
                )
                slot.proc = None
                slot.restart_at = now + delay
                slot.restarts += 1
            elif slot.restart_at is not None and now >= slot.restart_at:
                self._start(slot)

    def stop_rank(self, rank: int, deadline_s: float, hurry: Callable[[], bool] = lambda: False) -> None:
        """SIGTERM every child of ``rank``; SIGKILL those still running after ``deadline_s`` (or once ``hurry()``)."""
        slots = [s for s in self.slots if s.stop_rank == rank]
        for slot in slots:
            slot.stopping = True
            slot.restart_at = None
            if slot.proc is not None and slot.proc.poll() is None:
                log_event("child_stop", role=slot.role, index=slot.index, pid=slot.proc.pid, signal="SIGTERM")
                slot.proc.send_signal(signal.SIGTERM)
        end = self._clock() + deadline_s
        running = [s for s in slots if s.proc is not None]
        while running:
            for slot in list(running):
                assert slot.proc is not None
                status = slot.proc.poll()
                if status is not None:
                    log_event("child_stopped", role=slot.role, index=slot.index, pid=slot.proc.pid, status=status)
                    running.remove(slot)
            if running and (self._clock() >= end or hurry()):
                for slot in running:
                    assert slot.proc is not None
                    log_event(
                        "child_kill", "warning", role=slot.role, index=slot.index, pid=slot.proc.pid, after=deadline_s
                    )
                    slot.proc.kill()
                    slot.proc.wait()
                break
            time.sleep(0.01)

    def stop_all(self, deadline_s: float, hurry: Callable[[], bool] = lambda: False) -> None:
        """Stop every rank in order, lowest first."""
        for rank in sorted({s.stop_rank for s in self.slots}):
            self.stop_rank(rank, deadline_s, hurry)
