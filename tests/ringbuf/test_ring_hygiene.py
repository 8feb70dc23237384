"""Shared-memory hygiene: the creator unlinks, attachers leave no trace with the resource tracker
(no unlink when they exit, no "leaked" warning, no KeyError in a tracker shared through
multiprocessing), and a segment left by a dead creator can be removed by name."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from ringbuf import Ring

REPO = Path(__file__).resolve().parents[2]
SHM = Path("/dev/shm")

pytestmark = pytest.mark.skipif(not SHM.is_dir(), reason="POSIX shared memory is not under /dev/shm here")


def run_python(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(script))
    return subprocess.run(
        [sys.executable, str(path)],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_quiet(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr
    for word in ("Traceback", "KeyError", "leaked", "resource_tracker", "Warning"):
        assert word not in result.stderr, result.stderr


@pytest.fixture
def ring() -> Ring:
    ring = Ring.create(f"test-hyg-{uuid.uuid4().hex[:12]}", 4096)
    ring.write(b"kept")
    yield ring
    ring.close()
    if (SHM / ring.name).exists():
        ring.unlink()


@pytest.mark.parametrize("ending", ["ring.close()", "pass", "os._exit(0)"])
def test_an_attacher_in_another_interpreter_neither_unlinks_nor_warns(ring: Ring, tmp_path: Path, ending: str) -> None:
    script = f"""
        import os
        from ringbuf import Ring
        ring = Ring.attach({ring.name!r})
        assert ring.read() == [b"kept"]
        {ending}
    """

    result = run_python(script, tmp_path)

    assert_quiet(result)
    assert (SHM / ring.name).exists()
    with Ring.attach(ring.name) as again:
        assert again.read() == [b"kept"]


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing_children_that_attach_leave_the_creators_registration_alone(
    tmp_path: Path, method: str
) -> None:
    name = f"test-hyg-{uuid.uuid4().hex[:12]}"
    script = f"""
        import multiprocessing as mp
        from ringbuf import Ring

        def child(name):
            ring = Ring.attach(name)
            assert ring.read() == [b"hello"]
            ring.close()

        if __name__ == "__main__":
            ring = Ring.create({name!r}, 4096)
            ring.write(b"hello")
            ctx = mp.get_context({method!r})
            for _ in range(2):
                proc = ctx.Process(target=child, args=(ring.name,))
                proc.start()
                proc.join()
                assert proc.exitcode == 0
            ring.close()
            ring.unlink()
    """

    result = run_python(script, tmp_path)
    left_behind = Ring.unlink_name(name)

    assert_quiet(result)  # a child unregistering the name would make the creator's unlink a KeyError
    assert not left_behind


def test_the_creators_unlink_removes_the_segment(tmp_path: Path) -> None:
    ring = Ring.create(f"test-hyg-{uuid.uuid4().hex[:12]}", 4096)
    assert (SHM / ring.name).exists()

    ring.close()
    ring.unlink()

    assert not (SHM / ring.name).exists()
    with pytest.raises(FileNotFoundError):
        Ring.attach(ring.name)


def test_a_segment_left_by_a_dead_creator_is_removed_by_name(tmp_path: Path) -> None:
    name = f"test-hyg-{uuid.uuid4().hex[:12]}"
    script = f"""
        import os
        from multiprocessing import resource_tracker
        from ringbuf import Ring
        Ring.create({name!r}, 4096)
        resource_tracker.unregister("/" + {name!r}, "shared_memory")  # as if the tracker died too
        os._exit(0)
    """
    result = run_python(script, tmp_path)
    try:
        assert_quiet(result)
        assert (SHM / name).exists()

        removed = Ring.unlink_name(name)

        assert removed is True
        assert not (SHM / name).exists()
        assert Ring.unlink_name(name) is False
    finally:
        Ring.unlink_name(name)  # leave nothing behind when an assertion fails
