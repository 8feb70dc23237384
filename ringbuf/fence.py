"""A full memory barrier across processes, for the doorbell handshake's fallback only.

Owns: the Linux ``membarrier(2)`` calls (through ctypes) that close the
store->load reordering window described in ``ringbuf.doorbell`` where a
producer does not fence its own doorbell check.
Never: is called on a ring's write or read path (it is a system call).

Producers that fence (every ``Producer`` where ``ringbuf._ringcore`` is
built) need none of this. ``register_producer()`` is called once per process
by a producer that does not fence (pure Python), and ``barrier()`` by a
consumer about to sleep on a ring such a producer marked (or by a consumer
without the C core). With ``MEMBARRIER_CMD_GLOBAL_EXPEDITED`` the kernel runs
a full barrier here and on every CPU currently running a registered process
(and a process not running has passed a context switch, itself a full
barrier), so those producers pay nothing on their hot path. Where the call is
missing (another OS, an old kernel, a seccomp filter), ``AVAILABLE`` is
False, ``barrier()`` returns False and the doorbell falls back on its bounded
sleep.
"""

from __future__ import annotations

import ctypes
import os
import platform

_SYSCALL_NUMBER = {"x86_64": 324, "aarch64": 283}
CMD_QUERY = 0
CMD_GLOBAL_EXPEDITED = 1 << 1
CMD_REGISTER_GLOBAL_EXPEDITED = 1 << 2

_registered_pid = 0


def _load() -> tuple[object | None, int]:
    number = _SYSCALL_NUMBER.get(platform.machine())
    if number is None or not hasattr(os, "eventfd"):
        return None, 0
    try:
        syscall = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None, 0
    syscall.restype = ctypes.c_long
    supported = syscall(number, CMD_QUERY, 0, 0)
    needed = CMD_GLOBAL_EXPEDITED | CMD_REGISTER_GLOBAL_EXPEDITED
    if supported < 0 or supported & needed != needed:
        return None, 0
    return syscall, number


_syscall, _number = _load()
AVAILABLE = _syscall is not None


def register_producer() -> bool:
    """Make this process a target of consumers' barriers (idempotent per process)."""
    global _registered_pid
    if _syscall is None:
        return False
    pid = os.getpid()
    if _registered_pid != pid:
        if _syscall(_number, CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) != 0:  # type: ignore[operator]
            return False
        _registered_pid = pid
    return True


def barrier() -> bool:
    """Full barrier here and on every CPU running a registered producer; False if unavailable."""
    if _syscall is None:
        return False
    return _syscall(_number, CMD_GLOBAL_EXPEDITED, 0, 0) == 0  # type: ignore[operator]
