"""The user directory: API key -> (user id, HMAC key), cached in the worker.

Users live in PostgreSQL (table ``users``, migration 0001). At startup the
directory loads them all; afterwards new users arrive through LISTEN/NOTIFY on
channel ``users_changed`` (payload: the API key), which ``create`` sends
in the same transaction as its INSERT. A key the cache does not know costs at
most one SELECT per key per second (concurrent requests for it share one
query), so a user created on another worker a moment ago works at once, and a
known user never costs a database query. When the LISTEN connection drops the
directory reconnects and reloads everything.

This module must never query the database for a known key, and never log
per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import secrets
import time
from collections.abc import Coroutine
from typing import Any, NamedTuple

import asyncpg

log = logging.getLogger("ingress.users")

CHANNEL = "users_changed"
MISS_INTERVAL_S = 1.0
MAX_REMEMBERED_MISSES = 100_000
KEY_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
KEY_LENGTH = 64
_BLOCK = 64  # SHA-256 block size: the HMAC key pads' length


class MacKey:
    """A secret as HMAC-SHA256 (RFC 2104) keeps it: the hash states after the inner and outer key pads.

    ``hexdigest(payload)`` equals ``hmac.new(secret, payload, "sha256").hexdigest()``; it copies
    the two precomputed states instead of a keyed ``hmac.HMAC`` (whose ``copy`` and ``hexdigest``
    each copy an OpenSSL context through Python wrappers): half the time per signature.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, secret: bytes) -> None:
        key = hashlib.sha256(secret).digest() if len(secret) > _BLOCK else secret
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def hexdigest(self, payload: bytes) -> str:
        """The lower-case hex HMAC-SHA256 of ``payload``."""
        inner = self._inner.copy()
        inner.update(payload)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


class User(NamedTuple):
    user_id: int
    api_key: str
    mac: MacKey  # keyed with the secret


def _user(user_id: int, api_key: str, secret: str) -> User:
    return User(user_id, api_key, MacKey(secret.encode()))


def new_key() -> str:
    return "".join(secrets.choice(KEY_ALPHABET) for _ in range(KEY_LENGTH))


class UserDirectory:
    """Cached users of one worker; ``start``/``close`` around the app's life."""

    def __init__(self, dsn: str, *, channel: str = CHANNEL, miss_interval_s: float = MISS_INTERVAL_S) -> None:
        self._dsn = dsn
        self._channel = channel
        self._miss_interval_s = miss_interval_s
        self._users: dict[str, User] = {}
        self._misses: dict[str, float] = {}
        self._pending: dict[str, asyncio.Task[User | None]] = {}
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._tasks: set[asyncio.Task] = set()
        self._creating: set[str] = set()  # keys this worker is inserting (its own NOTIFY needs no fetch)
        self._closing = False
        self.queries = 0  # SELECTs for single keys (tests check the cache with it)

    # --- lifecycle ---------------------------------------------------------------

    async def start(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._closing = False
        await self._listen()
        await self.reload()

    async def close(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._listener is not None:
            listener, self._listener = self._listener, None
            with contextlib.suppress(Exception):
                await listener.close(timeout=2)

    async def reload(self) -> None:
        """Load every user (at start and after the LISTEN connection came back)."""
        assert self._pool is not None
        rows = await self._pool.fetch("SELECT id, api_key, secret_key FROM users")
        self._users.update({row["api_key"]: _user(row["id"], row["api_key"], row["secret_key"]) for row in rows})

    async def _listen(self) -> None:
        conn = await asyncpg.connect(self._dsn)
        await conn.add_listener(self._channel, self._on_notify)
        conn.add_termination_listener(self._on_listener_lost)
        self._listener = conn

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _on_notify(self, conn: object, pid: int, channel: str, payload: str) -> None:
        if payload and payload not in self._users and payload not in self._creating and not self._closing:
            self._lookup(payload)

    def _on_listener_lost(self, conn: object) -> None:
        if not self._closing:
            log.warning("users listener connection lost; reconnecting")
            self._spawn(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.1
        while not self._closing:
            try:
                await self._listen()
                await self.reload()
                log.info("users listener reconnected")
                return
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                log.warning("users listener reconnect failed: %s; retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # --- lookups -----------------------------------------------------------------

    def get(self, api_key: str) -> User | None:
        """The cached user of ``api_key`` (no I/O)."""
        return self._users.get(api_key)

    def add(self, user_id: int, api_key: str, secret: str) -> User:
        user = self._users[api_key] = _user(user_id, api_key, secret)
        self._misses.pop(api_key, None)
        return user

    async def resolve(self, api_key: str) -> User | None:
        """The user of ``api_key``: the cache, else at most one SELECT per key per second.

        The SELECT runs in a task of its own that concurrent requests for the same
        key share; a request that goes away (client disconnect) leaves it running.
        """
        user = self._users.get(api_key)
        if user is not None:
            return user
        task = self._pending.get(api_key)
        if task is None:
            now = time.monotonic()
            last = self._misses.get(api_key)
            if last is not None and now - last < self._miss_interval_s:
                return None
            if len(self._misses) >= MAX_REMEMBERED_MISSES:
                self._misses = {k: t for k, t in self._misses.items() if now - t < self._miss_interval_s}
            self._misses[api_key] = now
            task = self._lookup(api_key)
        return await asyncio.shield(task)

    def _lookup(self, api_key: str) -> asyncio.Task[User | None]:
        """The SELECT task for ``api_key``: the one under way, or a new one."""
        task = self._pending.get(api_key)
        if task is None:
            task = self._spawn(self._fetch(api_key))
            self._pending[api_key] = task
            task.add_done_callback(functools.partial(self._fetched, api_key))
        return task

    def _fetched(self, api_key: str, task: asyncio.Task[User | None]) -> None:
        self._pending.pop(api_key, None)
        if not task.cancelled() and task.exception() is not None:
            log.warning("user lookup failed: %r", task.exception())

    async def create(self) -> tuple[int, str, str]:
        """Insert a new user with fresh keys, NOTIFY every worker in the same transaction, cache it here."""
        assert self._pool is not None
        api_key = new_key()
        secret = new_key()
        self._creating.add(api_key)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                user_id = await conn.fetchval(
                    "INSERT INTO users (api_key, secret_key) VALUES ($1, $2) RETURNING id", api_key, secret
                )
                await conn.execute("SELECT pg_notify($1, $2)", self._channel, api_key)
            self.add(user_id, api_key, secret)
        finally:
            self._creating.discard(api_key)
        return user_id, api_key, secret

    async def _fetch(self, api_key: str) -> User | None:
        assert self._pool is not None
        self.queries += 1
        row = await self._pool.fetchrow("SELECT id, secret_key FROM users WHERE api_key = $1", api_key)
        if row is None:
            return None
        return self.add(row["id"], api_key, row["secret_key"])
