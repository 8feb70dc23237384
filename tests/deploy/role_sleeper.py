"""Stand-in role for launcher tests: sleeps until SIGTERM, recording what it saw.

Each process appends JSON lines to ``<data_dir>/roles.log``: a ``start`` line with
its role, index, pid and the URLs it was given, and a ``stop`` line at SIGTERM
with the system-wide monotonic time and, for shards, whether Redis still answered
(the launcher must stop the servers only after the children).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

from deploy.config import Config
from deploy.topology import ProcessContext


def _record(config: Config, **fields: Any) -> None:
    line = json.dumps(fields) + "\n"
    fd = os.open(config.data_dir / "roles.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _redis_answers() -> bool:
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def run(config: Config, ctx: ProcessContext, index: int) -> None:
    role = sys.argv[1]
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    _record(
        config,
        event="start",
        role=role,
        index=index,
        pid=os.getpid(),
        database_url=os.environ["DATABASE_URL"],
        redis_url=os.environ["REDIS_URL"],
        doorbells=sorted(ctx.doorbell_fds),
        rest_fd=ctx.rest_listen_fd,
    )
    while not stopping:
        time.sleep(0.02)
    redis_ok = _redis_answers() if role == "shard" else None
    _record(config, event="stop", role=role, index=index, pid=os.getpid(), t=time.monotonic_ns(), redis_ok=redis_ok)
