"""POST/PUT/DELETE /api/v3/userDataStream: the listenKey of a user's private WebSocket stream.

USER_STREAM security (as Binance): header ``X-MBX-APIKEY`` only, no
signature (-2014 when missing or malformed, -2015 when unknown).

- ``POST`` → ``{"listenKey"}``: the user's current key extended for 60
  minutes, or a new one;
- ``PUT`` with ``listenKey`` → ``{}``: extends it for 60 minutes;
- ``DELETE`` with ``listenKey`` → ``{}``: deletes it; every wsfeed process
  closes the connections on it at once.

A ``listenKey`` that is missing answers -1102; one that is malformed -1100;
one that does not exist, has expired or belongs to another user -1125 (Binance's
code for "This listenKey does not exist"). Redis unreachable: -1000 (500).
The keys live in Redis as ``wsfeed.listenkeys`` defines them (shared with
wsfeed). ``register(app, ctx)`` adds the route. Nothing here logs per request.
"""

from __future__ import annotations

from typing import Any

import falcon.asgi

from ingress.errors import ApiError, Malformed, MissingParam
from ingress.resources.base import Context, answer
from wsfeed import listenkeys

NO_SUCH_KEY = -1125
NONE: frozenset[str] = frozenset()
KEY_ONLY = frozenset(("listenKey",))


class UserDataStream:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def _user(self, req: falcon.asgi.Request) -> int:
        api_key = req.get_header("X-MBX-APIKEY")
        user = self.ctx.users.get(api_key) if api_key else None
        if user is None:
            user = await self.ctx.auth.resolve(api_key)
        return user.user_id

    def _redis(self) -> Any:
        redis = self.ctx.redis
        if redis is None:
            raise ApiError(-1000, "the listenKey store (Redis) is not configured", 500)
        return redis

    async def _key(self, req: falcon.asgi.Request) -> str:
        params = await self.ctx.public(req, KEY_ONLY)
        key = params.get("listenKey")
        if key is None or key == "":
            raise MissingParam("mandatory parameter 'listenKey' was not sent, was empty or null")
        if not listenkeys.well_formed(key):
            raise Malformed(f"parameter 'listenKey' value {str(key)[:80]!r} is not a listenKey")
        return key

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        user_id = await self._user(req)
        await self.ctx.public(req, NONE)
        redis = self._redis()
        try:
            key = await listenkeys.open_key(redis, user_id)
        except Exception as exc:
            raise ApiError(-1000, f"the listenKey store is unavailable: {type(exc).__name__}", 500) from exc
        answer(resp, {"listenKey": key})

    async def on_put(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        await self._existing_key(req, resp, listenkeys.keep_alive)

    async def on_delete(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        await self._existing_key(req, resp, listenkeys.close_key)

    async def _existing_key(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, operation: Any) -> None:
        """Renew (PUT) or close (DELETE) one of the caller's listenKeys; -1125 when it is not theirs or gone."""
        user_id = await self._user(req)
        key = await self._key(req)
        try:
            ok = await operation(self._redis(), user_id, key)
        except ApiError:
            raise
        except Exception as exc:
            raise ApiError(-1000, f"the listenKey store is unavailable: {type(exc).__name__}", 500) from exc
        if not ok:
            raise ApiError(NO_SUCH_KEY, f"listenKey {key[:8]}... does not exist", 400)
        answer(resp, {})


def register(app: falcon.asgi.App, ctx: Context) -> None:
    """Add ``/api/v3/userDataStream`` to ``app``."""
    app.add_route("/api/v3/userDataStream", UserDataStream(ctx))
