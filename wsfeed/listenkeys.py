"""listenKeys of the private user stream, in Redis: the one definition both ingress and wsfeed use.

Keys (both with the same TTL, ``LISTEN_KEY_TTL_S`` = 60 minutes)::

    exchange:listenkey:<listenKey>   -> user id (decimal text)
    exchange:listenkey:user:<userId> -> the user's current listenKey

``POST /api/v3/userDataStream`` (ingress) returns the user's current key and
extends it, or makes a new one; ``PUT`` extends; ``DELETE`` removes both keys
and publishes the key on channel ``exchange:listenkey:closed`` so every wsfeed
process closes its connections on it at once. An expired key is noticed by
wsfeed's periodic check (``wsfeed.server``). A listenKey is 60 characters of
``[A-Za-z0-9]``, so it can never be taken for a public stream name (those
contain ``@``). This module only talks to Redis through the client it is given.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

LISTEN_KEY_TTL_S = 3600
KEY_LENGTH = 60
CLOSED_CHANNEL = "exchange:listenkey:closed"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_FORMAT = re.compile(r"[A-Za-z0-9]{60}")


def key_of(listen_key: str) -> str:
    return f"exchange:listenkey:{listen_key}"


def user_key_of(user_id: int) -> str:
    return f"exchange:listenkey:user:{user_id}"


def well_formed(text: object) -> bool:
    return type(text) is str and _FORMAT.fullmatch(text) is not None


def new_listen_key() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(KEY_LENGTH))


async def open_key(redis: Any, user_id: int) -> str:
    """The user's listenKey, extended for another hour (a new one when it has none)."""
    current = await redis.get(user_key_of(user_id))
    if current is not None:
        key = current.decode() if isinstance(current, bytes) else str(current)
        # extend only if it still points at this user (it may have expired in between)
        if await redis.expire(key_of(key), LISTEN_KEY_TTL_S):
            await redis.expire(user_key_of(user_id), LISTEN_KEY_TTL_S)
            return key
    key = new_listen_key()
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(key_of(key), str(user_id), ex=LISTEN_KEY_TTL_S)
        pipe.set(user_key_of(user_id), key, ex=LISTEN_KEY_TTL_S)
        await pipe.execute()
    return key


async def owner(redis: Any, listen_key: str) -> int | None:
    """The user id of a valid listenKey, else None."""
    if not well_formed(listen_key):
        return None
    value = await redis.get(key_of(listen_key))
    return int(value) if value is not None else None


async def keep_alive(redis: Any, user_id: int, listen_key: str) -> bool:
    """Extend the user's ``listen_key``; False when it is not (or no longer) theirs."""
    if await owner(redis, listen_key) != user_id:
        return False
    await redis.expire(key_of(listen_key), LISTEN_KEY_TTL_S)
    await redis.expire(user_key_of(user_id), LISTEN_KEY_TTL_S)
    return True


async def close_key(redis: Any, user_id: int, listen_key: str) -> bool:
    """Delete the user's ``listen_key`` and tell every wsfeed; False when it is not theirs."""
    if await owner(redis, listen_key) != user_id:
        return False
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(key_of(listen_key))
        pipe.delete(user_key_of(user_id))
        pipe.publish(CLOSED_CHANNEL, listen_key)
        await pipe.execute()
    return True
