"""The process layout of one running exchange, and how a child learns its part.

The launcher decides the layout once (``Topology``), creates every ring and
doorbell before it starts a process, and hands each child a ``ProcessContext``
through environment variables (``to_env`` / ``from_env``). Children never
create or unlink rings: they attach to the names given here.

Ring names are ``<instance>-<kind>-<producer>-<consumer>``; the instance id is
derived from the data folder so that two exchanges on one host never share a
segment, and a second launcher on the same folder is refused by the data
folder's lock before it touches any of them.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

ROLES = ("ingress", "shard", "persist", "wsfeed")


def instance_id(data_dir: Path) -> str:
    """Short, stable id for the exchange running on ``data_dir``."""
    digest = hashlib.blake2b(str(data_dir.resolve()).encode(), digest_size=4).hexdigest()
    return f"ex{digest}"


@dataclass(frozen=True, kw_only=True)
class Topology:
    instance: str
    ingress_workers: int
    shards: int
    ring_bytes: int

    def command_ring(self, worker: int, shard: int) -> str:
        """Ring written by ingress ``worker``, read by matching ``shard``."""
        return f"{self.instance}-cmd-i{worker}-s{shard}"

    def answer_ring(self, shard: int, worker: int) -> str:
        """Ring written by matching ``shard``, read by ingress ``worker``."""
        return f"{self.instance}-ans-s{shard}-i{worker}"

    def ring_names(self) -> list[str]:
        names = []
        for worker in range(self.ingress_workers):
            for shard in range(self.shards):
                names.append(self.command_ring(worker, shard))
                names.append(self.answer_ring(shard, worker))
        return names

    def doorbell_roles(self) -> list[str]:
        """Every process that consumes rings has one doorbell: ``role.index``."""
        return [f"ingress.{w}" for w in range(self.ingress_workers)] + [f"shard.{s}" for s in range(self.shards)]


@dataclass(frozen=True, kw_only=True)
class ProcessContext:
    """What a child process is told by the launcher (besides the config)."""

    topology: Topology
    config_path: str | None  # the TOML file, or None for the built-in default
    doorbell_fds: dict[str, int] = field(default_factory=dict)  # "shard.0" -> inherited eventfd
    rest_listen_fd: int = -1  # inherited listening socket of the REST API
    ws_listen_fd: int = -1  # inherited listening socket of the WebSocket feed

    def to_env(self) -> dict[str, str]:
        t = self.topology
        return {
            "EXCHANGE_TOPOLOGY": f"{t.instance},{t.ingress_workers},{t.shards},{t.ring_bytes}",
            "EXCHANGE_CONFIG": self.config_path or "",
            "EXCHANGE_DOORBELLS": ",".join(f"{role}={fd}" for role, fd in self.doorbell_fds.items()),
            "EXCHANGE_REST_FD": str(self.rest_listen_fd),
            "EXCHANGE_WS_FD": str(self.ws_listen_fd),
        }

    @classmethod
    def from_env(cls, env: os._Environ[str] | dict[str, str] = os.environ) -> ProcessContext:
        instance, workers, shards, ring_bytes = env["EXCHANGE_TOPOLOGY"].split(",")
        doorbells = {}
        for item in filter(None, env.get("EXCHANGE_DOORBELLS", "").split(",")):
            role, fd = item.split("=")
            doorbells[role] = int(fd)
        return cls(
            topology=Topology(
                instance=instance, ingress_workers=int(workers), shards=int(shards), ring_bytes=int(ring_bytes)
            ),
            config_path=env.get("EXCHANGE_CONFIG") or None,
            doorbell_fds=doorbells,
            rest_listen_fd=int(env.get("EXCHANGE_REST_FD", "-1")),
            ws_listen_fd=int(env.get("EXCHANGE_WS_FD", "-1")),
        )
