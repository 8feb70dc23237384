"""Admin endpoints: POST /admin/v1/users creates a user and its API key pair.

Guarded by header ``X-Admin-Token`` compared in constant time with the
configured token (-2014 when missing, -2015 when wrong or when no token is
configured). The user is inserted and announced to every worker (NOTIFY) in
one transaction, and cached here at once (``ingress/users.py``).
"""

from __future__ import annotations

import hmac

import falcon.asgi

from ingress.errors import ApiKeyInvalid, ApiKeyMissing
from ingress.resources.base import Context, answer

NONE: frozenset[str] = frozenset()


def check_admin(req: falcon.asgi.Request, token: str) -> None:
    given = req.get_header("X-Admin-Token")
    if not given:
        raise ApiKeyMissing("admin token missing: send header X-Admin-Token")
    if not token or not hmac.compare_digest(given.encode(), token.encode()):
        raise ApiKeyInvalid("admin token invalid")


class Users:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        ctx = self.ctx
        check_admin(req, ctx.config.admin_token)
        await ctx.public(req, NONE)
        user_id, api_key, secret = await ctx.users.create()
        answer(resp, {"userId": user_id, "apiKey": api_key, "secretKey": secret})
