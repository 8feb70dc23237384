"""Which processes ``exchange up`` starts: the role table.

Each role names the module whose ``run(config, ctx, index)`` a child process
calls, how many processes of it the configuration asks for, and its stop rank:
on shutdown the launcher stops rank 0 first (ingress: no new work comes in),
then rank 1 (shards: they drain what they hold), then rank 2 (the writers,
persist and wsfeed), and starts them in the reverse order.

Tests replace role modules with tiny stand-ins through the environment variable
``EXCHANGE_ROLE_MODULES`` (``"ingress=role_sleeper,shard=role_sleeper"``); the
children inherit it, so the launcher and ``deploy.child`` always agree. This
module must never import a role module: it only names them.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from deploy.config import Config

ROLE_MODULES_ENV = "EXCHANGE_ROLE_MODULES"


@dataclass(frozen=True)
class RoleSpec:
    name: str  # as in process titles and affinity keys: "shard"
    module: str  # "shards.process": its run(config, ctx, index) is the process
    stop_rank: int  # lower ranks stop first
    count: Callable[[Config], int]


ROLE_TABLE: tuple[RoleSpec, ...] = (
    RoleSpec("ingress", "ingress.worker", 0, lambda config: config.rest.workers),
    RoleSpec("shard", "shards.process", 1, lambda config: config.engine.shards),
    RoleSpec("persist", "persist.main", 2, lambda config: 1),
    # The WebSocket feed: its processes share the listening socket the launcher binds on wsfeed.host:port.
    RoleSpec("wsfeed", "wsfeed.main", 2, lambda config: config.wsfeed.processes),
)


class RoleError(Exception):
    code = "role"


def role_modules(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Role name -> module name, with the ``EXCHANGE_ROLE_MODULES`` overrides applied."""
    modules = {spec.name: spec.module for spec in ROLE_TABLE}
    for item in filter(None, env.get(ROLE_MODULES_ENV, "").split(",")):
        role, sep, module = item.partition("=")
        if not sep or role not in modules or not module:
            raise RoleError(f"{ROLE_MODULES_ENV}: bad entry {item!r} (want role=module, roles: {', '.join(modules)})")
        modules[role] = module
    return modules


def missing_modules(modules: Mapping[str, str]) -> dict[str, str]:
    """Role -> reason, for every role whose module cannot be found."""
    missing = {}
    for role, module in modules.items():
        try:
            found = importlib.util.find_spec(module) is not None
            reason = "no such module"
        except (ImportError, ValueError) as exc:
            found, reason = False, f"{type(exc).__name__}: {exc}"
        if not found:
            missing[role] = f"role {role!r}: module {module!r} cannot be found ({reason})"
    return missing


def check_roles(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The role -> module table, after checking that every module exists (``RoleError`` naming the missing)."""
    modules = role_modules(env)
    missing = missing_modules(modules)
    if missing:
        raise RoleError("; ".join(missing.values()))
    return modules
