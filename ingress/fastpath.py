"""The fast lane for the hottest request: a signed ``POST /api/v3/order`` with its parameters in the query string.

It does what ``resources.orders.Order.on_post`` does, in the same order and with
the same functions (``inputs``, ``auth``, ``params``, ``views``, ``errors``), but
straight on the ASGI scope, without building falcon's Request and Response
objects or routing: those cost about as much as the order's own validation.

It takes only the plain case: method POST, path exactly ``/api/v3/order``, no
body (no Content-Length other than 0, no Transfer-Encoding), at most one
``X-MBX-APIKEY`` header and a UTF-8 query string. Anything else returns False
before touching the request, and falcon serves it as before. Every error is
answered exactly as ``ingress/errors.py`` maps it for falcon (status, code,
message, ``Retry-After``). A FULL answer is written as text by
``ingress.batch.full_text`` (the bytes of ``views.full``, without its dict and
``orjson``). Answers go out through ``ingress/reply.py``: the
same bytes in one socket write instead of two when uvicorn's httptools
protocol serves the request. A key the user cache knows is checked without
a coroutine (``Authenticator.check``). The command goes through the engine's
``submit`` where it has one (``RingEngineClient``): the lane awaits the
answer's future itself, one coroutine fewer per order than ``call``. This
module never logs except for unexpected exceptions (as the falcon error
mapping does).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from falcon.util.uri import parse_query_string

from ingress import params as p
from ingress import views
from ingress.batch import full_text
from ingress.dispatch import EngineBusy, EngineTimeout
from ingress.errors import BUSY_MSG, JSON, TIMEOUT_MSG, ApiError, rejected_error, unexpected_exception
from ingress.inputs import NO_BODY, Inputs, check_allowed, check_no_duplicates
from ingress.reply import Replier
from ingress.resources.base import unexpected
from shards.protocol import OrderResult, Rejected

PATH = "/api/v3/order"
NEW_ORDER = p.ORDER_PARAMS | p.SIGNED_PARAMS
_JSON = JSON.encode()
_BUSY_HEADERS = {"Retry-After": "1"}
_CONTENT_TYPE = (b"content-type", _JSON)

Send = Callable[[dict[str, Any]], Awaitable[None]]
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]  # status, headers (lower-case names), body


class FastOrderPost:
    """``await lane(scope, send)``: True when it answered the request, False to leave it to falcon."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.replier = Replier()
        # the engine's ``submit`` where it has one (RingEngineClient): the order's future, awaited
        # here, without ``call``'s coroutine in between
        self.submit: Callable[[int, object], Awaitable[Any]] | None = getattr(ctx.engine, "submit", None)

    async def __call__(self, scope: Mapping[str, Any], send: Send) -> bool:
        api_key: bytes | None = None
        headers = scope["headers"]
        if type(headers) is not list:  # ASGI allows any iterable: keep it readable for falcon after us
            headers = scope["headers"] = [tuple(h) for h in headers]  # type: ignore[index]
        for name, value in headers:
            if name == b"x-mbx-apikey":
                if api_key is not None:
                    return False
                api_key = value
            elif name == b"content-length":
                if value.strip() != b"0":
                    return False
            elif name == b"transfer-encoding":
                return False
        answer = await self.answer(scope["query_string"], api_key)
        if answer is None:
            return False
        status, headers, body = answer
        if not self.replier.write(send, status, headers, body):  # no coroutine where one write does it
            await self.replier.reply(send, status, headers, body)
        return True

    async def answer(self, query_string: bytes, api_key: bytes | None) -> Answer | None:
        """The whole answer to a plain signed ``POST /api/v3/order`` with this query string and
        ``X-MBX-APIKEY`` value: ``(status, headers, body)``, headers with lower-case names and one
        content-length; None when the lane does not take it (a query string that is not UTF-8), before
        anything happened."""
        try:
            query = query_string.decode()
        except UnicodeDecodeError:
            return None
        ctx = self.ctx
        try:
            params: dict[str, Any] = parse_query_string(query, keep_blank=True, csv=False) if query else {}
            if list in map(type, params.values()):  # a name sent twice (falcon made a list of its values)
                check_no_duplicates(params, "query string")
            inputs = Inputs(params, query, NO_BODY, "query" if "signature" in params else "")
            key = api_key.decode("latin1") if api_key is not None else None
            user = ctx.users.get(key) if key else None  # Authenticator.verify, its cache lookup inlined
            if user is None:
                user = await ctx.auth.resolve(key)
            user_id = ctx.auth.check(user, inputs)
            check_allowed(params, NEW_ORDER)
            rules, cmd, resp_type = p.new_order(ctx.catalog, params, user_id)
            submit = self.submit
            res = await (ctx.engine.call(rules.shard, cmd) if submit is None else submit(rules.shard, cmd))
            if type(res) is not OrderResult:
                raise rejected_error(res) if type(res) is Rejected else unexpected(res)
            if resp_type == "FULL":
                body = full_text(ctx.catalog, res.order, res.fills).encode()
            else:
                body = orjson.dumps(views.new_order(rules, res.order, res.fills, resp_type))
        except ApiError as ex:
            return _error(ex.http_status, ex.code, ex.msg, ex.headers)
        except EngineBusy:
            return _error(503, -1008, BUSY_MSG, _BUSY_HEADERS)
        except EngineTimeout:
            return _error(500, -1000, TIMEOUT_MSG, None)
        except Exception as ex:  # noqa: BLE001 - answered like falcon's catch-all handler
            err = unexpected_exception(ex, "POST", PATH)
            return _error(err.http_status, err.code, err.msg, None)
        return 200, [(b"content-length", str(len(body)).encode()), _CONTENT_TYPE], body


def _error(status: int, code: int, msg: str, headers: Mapping[str, str] | None) -> Answer:
    """An error answer as ``ingress/errors.py`` maps it for falcon: JSON ``code`` and ``msg``, extra headers."""
    body = orjson.dumps({"code": code, "msg": msg})
    items = [_CONTENT_TYPE, (b"content-length", str(len(body)).encode())]
    if headers:
        items += [(name.lower().encode("latin1"), value.encode("latin1")) for name, value in headers.items()]
    return status, items, body
