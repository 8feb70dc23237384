"""Fixtures and helpers shared by the deploy tests: a private folder for the embedded servers, the autogroup nice."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


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
