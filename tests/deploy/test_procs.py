"""The spawning helper: a child started with ``die_with_parent(sig, nice)`` runs at the lower priority asked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from deploy.procs import die_with_parent


def _child_nice(preexec: object) -> int:
    out = subprocess.run(
        [sys.executable, "-c", "import os; print(os.nice(0))"],
        capture_output=True, text=True, check=True, preexec_fn=preexec,  # type: ignore[arg-type]
    )  # fmt: skip
    return int(out.stdout)


def test_a_child_runs_lowered_by_the_nice_asked_for() -> None:
    own = os.nice(0)

    assert _child_nice(die_with_parent(signal.SIGTERM, 7)) == min(own + 7, 19)
    assert _child_nice(die_with_parent(signal.SIGTERM)) == own
