"""Entry point of every child process: ``python -m deploy.child ROLE INDEX``.

It names the process (``exchange: shard 1`` in ``ps``), reads the
``ProcessContext`` the launcher put in the environment, loads the same
configuration as the launcher (``load_config(ctx.config_path)`` with the same
environment overrides), pins itself to the configured CPUs
(``os.sched_setaffinity`` where the platform has it), then imports the role's
module and calls its ``run(config, ctx, index)``, which returns on a clean stop.
It never handles signals itself: the role's ``run`` does.
"""

from __future__ import annotations

import importlib
import os
import sys

from setproctitle import setproctitle

from deploy.config import load_config
from deploy.log import log_event, set_process_name
from deploy.procs import lower_priority
from deploy.roles import role_modules
from deploy.topology import ProcessContext


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or not args[1].isdigit():
        print("usage: python -m deploy.child ROLE INDEX", file=sys.stderr)
        return 2
    role, index = args[0], int(args[1])
    setproctitle(f"exchange: {role} {index}")
    set_process_name(f"{role}.{index}")
    ctx = ProcessContext.from_env()
    config = load_config(ctx.config_path)
    cpus = config.affinity.get(f"{role}.{index}")
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)
        log_event("affinity_set", cpus=",".join(map(str, cpus)))
    nice = config.nice.get(role, 0)
    if nice:
        group = lower_priority(nice)
        log_event("nice_set", nice=nice, group=group)
    module = importlib.import_module(role_modules()[role])
    module.run(config, ctx, index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
