"""deploy.supervisor: restart back-off, its reset, and stop order, with stand-in processes."""

from __future__ import annotations

import re
import signal

import pytest

from deploy import supervisor as supervisor_module
from deploy.supervisor import Supervisor


class FakeProc:
    _next_pid = 1000

    def __init__(self) -> None:
        FakeProc._next_pid += 1
        self.pid = FakeProc._next_pid
        self.returncode: int | None = None
        self.signals: list[int] = []

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)
        self.returncode = -sig

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int | None:
        return self.returncode


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def events(monkeypatch):
    seen: list[tuple[str, dict]] = []
    monkeypatch.setattr(supervisor_module, "log_event", lambda event, *a, **f: seen.append((event, f)))
    return seen


def _restart_delays(events) -> list[float]:
    return [f["restart_in"] for e, f in events if e == "child_exit"]


def test_a_dying_child_is_restarted_with_doubling_backoff(events):
    clock, spawned = Clock(), []
    sup = Supervisor(lambda role, index: spawned.append(FakeProc()) or spawned[-1], clock)
    sup.add("shard", 0, 1)
    sup.start_all()

    for _ in range(8):  # die at once, then wait out the back-off
        spawned[-1].returncode = 1
        sup.poll()
        clock.now += 10.0
        sup.poll()

    assert _restart_delays(events) == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert len(spawned) == 9 and len({p.pid for p in spawned}) == 9


def test_backoff_resets_after_a_healthy_run(events):
    clock, spawned = Clock(), []
    sup = Supervisor(lambda role, index: spawned.append(FakeProc()) or spawned[-1], clock)
    sup.add("ingress", 1, 0)
    sup.start_all()
    for _ in range(3):
        spawned[-1].returncode = -9
        sup.poll()
        clock.now += 10.0
        sup.poll()

    clock.now += 31.0  # the fourth process runs longer than 30 s
    spawned[-1].returncode = -9
    sup.poll()

    assert _restart_delays(events) == [0.1, 0.2, 0.4, 0.1]
    last = [f for e, f in events if e == "child_exit"][-1]
    assert (last["role"], last["index"], last["status"], last["reason"]) == ("ingress", 1, -9, "SIGKILL")


def test_no_restart_before_the_backoff_is_over(events):
    clock, spawned = Clock(), []
    sup = Supervisor(lambda role, index: spawned.append(FakeProc()) or spawned[-1], clock)
    sup.add("shard", 0, 1)
    sup.start_all()

    spawned[-1].returncode = 1
    sup.poll()
    clock.now += 0.05
    sup.poll()
    before = len(spawned)
    clock.now += 0.06
    sup.poll()

    assert (before, len(spawned)) == (1, 2)


def test_stop_all_goes_rank_by_rank_and_never_restarts(events):
    sup = Supervisor(lambda role, index: FakeProc(), Clock())
    sup.add("shard", 0, 1)
    sup.add("ingress", 0, 0)
    sup.add("shard", 1, 1)
    sup.start_all()

    sup.stop_all(deadline_s=1.0)
    sup.poll()

    stops = [(f["role"], f["index"]) for e, f in events if e == "child_stop"]
    assert stops == [("ingress", 0), ("shard", 0), ("shard", 1)]
    assert not [e for e, _ in events if e == "child_exit"]
    starts = [(f["role"]) for e, f in events if e == "child_start"]
    assert starts == ["shard", "shard", "ingress"]


def test_format_of_the_exit_line():
    from deploy.log import format_event

    line = format_event("child_exit", "warning", role="shard", index=1, pid=123, status=-9, restart_in=0.1)

    assert re.search(r" event=child_exit role=shard index=1 pid=123 status=-9 restart_in=0.100s$", line)
