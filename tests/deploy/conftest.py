"""Fixtures and helpers shared by the deploy tests: a private folder for the embedded servers, the autogroup nice,
and what the ``exchange up`` tests with sleeper roles need (their children, the embedded server's URL)."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import child_pids

SLEEPERS = {"ingress": "role_sleeper", "shard": "role_sleeper", "persist": "role_sleeper"}  # roles that only wait


@pytest.fixture
def private_tmp() -> Iterator[Path]:
    """A folder outside pytest's 0700 base: as root, PostgreSQL runs as another user and must reach it."""
    path = Path(tempfile.mkdtemp(prefix="exchange-up-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def group_nice(pid: int) -> int | None:
    """The nice value of ``pid``'s autogroup (``/autogroup-123 nice 5``); None for a process in the root group
    (a session never split from init's, as under some CI runners: the kernel shows an empty file)."""
    fields = Path(f"/proc/{pid}/autogroup").read_text().split()
    return int(fields[-1]) if fields else None


def named_child(launcher: int, title: str) -> int:
    """The pid of the launcher's child ``<title> 0``, once it has named itself."""
    deadline = time.monotonic() + 30
    while not (found := child_pids(launcher, title)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert found, f"no process named {title!r}"
    return found[0]


def embedded_database_url(tmp: Path) -> str:
    """The embedded server's URL, as the sleeper roles recorded it."""
    deadline = time.monotonic() + 30
    path = tmp / "var" / "roles.log"
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                return json.loads(line)["database_url"]
        time.sleep(0.05)
    raise AssertionError("no role recorded its URLs")
