"""The spawning helpers: a lowered priority takes hold in the process and, under autogroup scheduling, in the
scheduling group of its session; a server's later children are lowered by the sweep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.procs import die_with_parent, lower_children, lower_priority
from tests.deploy.conftest import group_nice

AUTOGROUP = Path("/proc/self/autogroup").exists()
needs_autogroup = pytest.mark.skipif(not AUTOGROUP, reason="this kernel has no autogroup scheduling")

# A parent that forks one child leading its own session and one that stays in the parent's, then waits.
FORKING_PARENT = """
import os, sys, time
for new_session in (True, False):
    if os.fork() == 0:
        if new_session:
            os.setsid()
        os.write(1, f"{os.getpid()} {new_session}\\n".encode())  # one write: the two lines never interleave
        time.sleep(30)
        os._exit(0)
time.sleep(30)
"""


def _child_nice(preexec: object) -> tuple[int, str]:
    out = subprocess.run(
        [sys.executable, "-c", "import os; print(os.nice(0)); print(open('/proc/self/autogroup').read())"],
        capture_output=True, text=True, check=True, preexec_fn=preexec, start_new_session=True,  # type: ignore[arg-type]
    )  # fmt: skip
    nice, group = out.stdout.split("\n", 1)
    return int(nice), group.strip()


@needs_autogroup
def test_a_child_runs_lowered_by_the_nice_asked_for_and_so_does_its_group() -> None:
    own = os.nice(0)

    lowered, lowered_group = _child_nice(die_with_parent(signal.SIGTERM, 7))
    plain, plain_group = _child_nice(die_with_parent(signal.SIGTERM))

    assert lowered == max(own, 7)
    assert lowered_group.endswith(f"nice {max(own, 7)}")
    assert plain == own
    assert plain_group.endswith("nice 0")


@needs_autogroup
def test_a_process_sharing_its_session_keeps_the_session_group_as_it_was() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])  # in this test's session
    try:
        group_before = group_nice(proc.pid)

        grouped = lower_priority(9, proc.pid)

        assert grouped is False
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) == max(os.nice(0), 9)
        assert group_nice(proc.pid) == group_before
    finally:
        proc.kill()
        proc.wait()


def test_lowering_never_raises_a_priority() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        lower_priority(12, proc.pid)

        lower_priority(4, proc.pid)

        assert os.getpriority(os.PRIO_PROCESS, proc.pid) == max(os.nice(0), 12)
    finally:
        proc.kill()
        proc.wait()


@needs_autogroup
def test_the_sweep_lowers_each_child_that_leads_its_session_once() -> None:
    parent = subprocess.Popen([sys.executable, "-c", FORKING_PARENT], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)  # fmt: skip
    assert parent.stdout is not None
    children = dict(parent.stdout.readline().split() for _ in range(2))  # pid -> "True"/"False"
    try:
        leader = next(int(pid) for pid, new_session in children.items() if new_session == "True")
        follower = next(int(pid) for pid, new_session in children.items() if new_session == "False")
        done: set[int] = set()

        first = lower_children(parent.pid, 6, done)
        second = lower_children(parent.pid, 6, done)

        assert first == [leader]
        assert second == []
        assert done == {leader}
        assert group_nice(leader) == max(os.nice(0), 6)
        assert os.getpriority(os.PRIO_PROCESS, leader) == max(os.nice(0), 6)
        assert os.getpriority(os.PRIO_PROCESS, follower) == os.nice(0)  # left for a sweep after its setsid
    finally:
        for pid in (parent.pid, *map(int, children)):
            os.kill(pid, signal.SIGKILL)
        parent.wait()


def test_the_sweep_of_a_process_that_is_gone_lowers_nothing() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()

    assert lower_children(proc.pid, 5, set()) == []
