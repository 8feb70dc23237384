"""What every resource shares: the app context, reading parameters, answering JSON.

``Context`` is built by ``create_app``; ``pool`` and ``redis`` are filled in at
ASGI startup by the lifecycle middleware (``ingress/app.py``). The helpers here
are the request path's only glue: read the parameters once, authenticate when
signed, reject unexpected names, call the engine and turn ``Rejected`` into
its contract error. Nothing here logs.
"""

from __future__ import annotations

from typing import Any

import falcon.asgi
import orjson

from ingress.auth import Authenticator
from ingress.dispatch import EngineClient
from ingress.errors import ApiError, rejected_error
from ingress.inputs import Inputs, check_allowed, read_inputs
from ingress.symbols import Catalog
from ingress.users import UserDirectory
from shards.protocol import Rejected, Result


class Context:
    """Everything a resource needs, shared by all resources of one app."""

    def __init__(self, config: Any, engine: EngineClient, catalog: Catalog, users: UserDirectory) -> None:
        self.config = config
        self.engine = engine
        self.catalog = catalog
        self.users = users
        self.auth = Authenticator(users, config.rest.recv_window_max_ms)
        self.max_body_bytes: int = config.rest.max_body_bytes
        self.pool: Any = None  # asyncpg.Pool, opened at startup
        self.redis: Any = None  # redis.asyncio.Redis, opened at startup

    async def public(self, req: falcon.asgi.Request, allowed: frozenset[str]) -> dict[str, Any]:
        """Parameters of a public request, checked against ``allowed``."""
        inputs = await read_inputs(req, self.max_body_bytes)
        check_allowed(inputs.params, allowed)
        return inputs.params

    async def signed(self, req: falcon.asgi.Request, allowed: frozenset[str]) -> tuple[dict[str, Any], int]:
        """Parameters and user id of a signed request (``allowed`` includes the signing names)."""
        inputs: Inputs = await read_inputs(req, self.max_body_bytes)
        user_id = await self.auth.verify(req, inputs)
        check_allowed(inputs.params, allowed)
        return inputs.params, user_id

    async def call(self, shard: int, cmd: object) -> Result:
        """One engine command; ``Rejected`` raises its contract error."""
        res = await self.engine.call(shard, cmd)
        if type(res) is Rejected:
            raise rejected_error(res)
        return res


def answer(resp: falcon.asgi.Response, body: Any) -> None:
    resp.data = orjson.dumps(body)


def unexpected(res: object) -> ApiError:
    return ApiError(-1000, f"unexpected engine answer {type(res).__name__}", 500)
