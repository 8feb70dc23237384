"""Fixtures shared by the launcher tests that run the embedded servers."""

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
