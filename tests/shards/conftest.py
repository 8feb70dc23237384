"""Engine tests run once per engine core this install has (the C core and the pure-Python reference)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shards import engine


@pytest.fixture(params=engine.CORES)
def engine_core(request: pytest.FixtureRequest) -> Iterator[str]:
    """Select each core in turn for the test (modules opt in with ``pytestmark``); restore the default after."""
    before = engine.core
    engine.select_core(request.param)
    yield request.param
    engine.select_core(before)
