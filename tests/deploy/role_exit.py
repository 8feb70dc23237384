"""Stand-in role for launcher tests: records its pid in ``<data_dir>/exits.log`` and exits at once."""

from __future__ import annotations

import os

from deploy.config import Config
from deploy.topology import ProcessContext


def run(config: Config, ctx: ProcessContext, index: int) -> None:
    fd = os.open(config.data_dir / "exits.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)
