"""deploy.idlegroup: finding the cpu cgroup, making an idle group, moving processes into it, removing it.

The parsing runs everywhere; the group itself only where this process may write its cpu cgroup (root on a
host with a cpu hierarchy that has ``cpu.idle``), else those tests are skipped with the reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.idlegroup import IdleGroup, cpu_cgroup_dir, remove_stale

V1_MOUNTS = """\
25 24 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
27 25 0:24 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
28 25 0:25 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
"""
V2_MOUNTS = "30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev - cgroup2 cgroup2 rw,nsdelegate\n"


@pytest.mark.parametrize(
    ("proc_cgroup", "mountinfo", "expected"),
    [
        ("4:memory:/a\n1:cpu:/\n0::/\n", V1_MOUNTS, "/sys/fs/cgroup/cpu"),
        ("3:cpu,cpuacct:/user.slice/x\n", V1_MOUNTS.replace("rw,cpu", "rw,cpu,cpuacct"),
         "/sys/fs/cgroup/cpu/user.slice/x"),
        ("0::/user.slice/session-1.scope\n", V2_MOUNTS, "/sys/fs/cgroup/user.slice/session-1.scope"),
        # a container whose hierarchy is mounted from a sub-folder: the path is relative to that mount's root
        ("1:cpu:/docker/abc\n", V1_MOUNTS.replace(" / /sys/fs/cgroup/cpu ", " /docker/abc /sys/fs/cgroup/cpu "),
         "/sys/fs/cgroup/cpu"),
    ],
    ids=["v1", "v1-joint-controllers", "v2", "container-root"],
)  # fmt: skip
def test_the_cpu_cgroup_folder_comes_from_the_cgroup_and_its_mount(proc_cgroup, mountinfo, expected) -> None:
    assert cpu_cgroup_dir(proc_cgroup, mountinfo) == Path(expected)


def test_without_a_mounted_cpu_hierarchy_there_is_no_folder() -> None:
    assert cpu_cgroup_dir("4:memory:/a\n", V1_MOUNTS) is None  # no cpu controller in the process's list
    assert cpu_cgroup_dir("1:cpu:/\n", V1_MOUNTS.replace("rw,cpu\n", "rw,cpuset\n")) is None  # cpu not mounted


def test_a_folder_without_cpu_idle_is_refused_and_left_as_it_was(tmp_path) -> None:
    with pytest.raises(OSError):
        IdleGroup.create(tmp_path, "exchange-1")

    assert list(tmp_path.iterdir()) == []


def test_empty_groups_of_launchers_gone_are_removed_and_others_kept(tmp_path) -> None:
    gone = _pid_of_a_process_that_exited()
    (tmp_path / f"exchange-{gone}").mkdir()
    (tmp_path / f"exchange-{os.getpid()}").mkdir()  # a launcher still running
    (tmp_path / "exchange-other").mkdir()  # not one of ours
    busy = tmp_path / "exchange-99999999"  # gone (above any pid_max), but not empty
    busy.mkdir()
    (busy / "cgroup.procs").write_text("")

    removed = remove_stale(tmp_path)

    assert removed == [tmp_path / f"exchange-{gone}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"exchange-{os.getpid()}", "exchange-other", busy.name]
    )


def _pid_of_a_process_that_exited() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _real_group() -> IdleGroup:
    try:
        return IdleGroup.create(name=f"exchange-test-{os.getpid()}")
    except OSError as exc:
        pytest.skip(f"no idle cpu cgroup can be made here: {exc!r}")


def test_a_process_moved_into_the_idle_group_runs_there_and_takes_its_later_children() -> None:
    group = _real_group()
    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time; sys.stdin.readline();"
         " child = subprocess.Popen(['sleep', '30']); print(child.pid, flush=True); time.sleep(30)"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        group.add(parent.pid)
        parent.stdin.write("fork now\n")  # type: ignore[union-attr]
        parent.stdin.flush()  # type: ignore[union-attr]
        child = int(parent.stdout.readline())  # type: ignore[union-attr]

        assert (group.path / "cpu.idle").read_text().strip() == "1"
        assert sorted(group.pids()) == sorted([parent.pid, child])
        assert _in_group(child, group)
    finally:
        subprocess.run(["pkill", "-P", str(parent.pid)], check=False)
        parent.kill()
        parent.wait()
        _remove_when_empty(group)
    assert not group.path.exists()


def test_a_group_with_a_process_in_it_is_not_removed() -> None:
    group = _real_group()
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        group.add(sleeper.pid)

        with pytest.raises(OSError):
            group.remove()

        assert group.path.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
        _remove_when_empty(group)


def _in_group(pid: int, group: IdleGroup) -> bool:
    """Whether /proc/PID/cgroup names the group (its path there is relative to the hierarchy's mount)."""
    return any(line.endswith("/" + group.path.name) for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines())


def _remove_when_empty(group: IdleGroup) -> None:
    deadline = time.monotonic() + 5
    while group.path.exists():
        try:
            group.remove()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
