"""The fast lane for the hottest request: a signed ``POST /api/v3/order`` with its parameters in the query string.

It does what ``resources.orders.Order.on_post`` does, in the same order and with
the same functions (``inputs``, ``auth``, ``params``, ``views``, ``errors``), but
straight on the ASGI scope, without building falcon's Request and Response
objects or routing: those cost about as much as the order's own validation.

It takes only the plain case: method POST, path exactly ``/api/v3/order``, no
body (no Content-Length other than 0, no Transfer-Encoding), no ``Expect``, at most one
``X-MBX-APIKEY`` header and a UTF-8 query string. Anything else returns False
before touching the request, and falcon serves it as before. Every error is
answered exactly as ``ingress/errors.py`` maps it for falcon (status, code,
message, ``Retry-After``). A FULL answer is written as text by
``ingress.batch.full_text`` (the bytes of ``views.full``, without its dict and
``orjson``).

Where the C core is selected (``ingress.batch.select_core``; not with
``INGRESS_BATCH_PURE_PYTHON=1``), ``answer`` first hands the raw query string
to ``batch.scan_query``, which takes only a plainly valid LIMIT order (see
``_batchcore.scan_query``: every name allowed and sent once, nothing to
decode, every value one ``params.new_order`` accepts as it is) and gives its
wire body, shard, response type and the signed parts. With a key the user
cache knows, the lane then runs ``Authenticator.check_signed`` (the signature,
recvWindow and timestamp rules of ``check``, in its order), adds the user id
and the generated client order id (``batch.order_body``, drawn after the
checks as ``params.new_order`` draws it), sends the body with the engine's
``submit_order_body`` where it has one (``RingEngineClient``: the answer record
comes back undecoded) and writes a FULL answer from the record's bytes
(``batch.render_order``); any other answer is decoded and written as below.
Everything else (a query the core declines, an unknown key) runs the Python
path, the reference, before anything happened; both give the same bytes and
send the same commands (``tests/ingress/test_fastcore.py``).

Answers go out through ``ingress/reply.py``: the
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
from ingress.batch import full_text, order_body, render_order, scan_query
from ingress.dispatch import EngineBusy, EngineTimeout
from ingress.errors import BUSY_MSG, JSON, TIMEOUT_MSG, ApiError, rejected_error, unexpected_exception
from ingress.inputs import NO_BODY, Inputs, check_allowed, check_no_duplicates
from ingress.reply import Replier
from ingress.resources.base import unexpected
from shards import wire
from shards.protocol import OrderResult, Rejected

PATH = "/api/v3/order"
NEW_ORDER = p.ORDER_PARAMS | p.SIGNED_PARAMS
_JSON = JSON.encode()
_BUSY_HEADERS = {"Retry-After": "1"}
_CONTENT_TYPE = (b"content-type", _JSON)
_FULL = p.RESP_TYPES.index("FULL")
_NEW_ORDER_HEAD = bytes((wire.T_NEW_ORDER,)) + bytes(8)  # a NewOrder command record's type and a request id 0

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
        # and its raw variant (``submit_order_body``) for the orders the C core read: the NewOrder from its wire
        # body, the answer record undecoded (a FULL answer is written from its bytes)
        self.submit_body: Callable[[int, bytes], Awaitable[Any]] | None = getattr(ctx.engine, "submit_order_body", None)

    async def __call__(self, scope: Mapping[str, Any], send: Send) -> bool:
        headers = scope["headers"]
        if type(headers) is not list:  # ASGI allows any iterable: keep it readable for falcon after us
            headers = scope["headers"] = [tuple(h) for h in headers]  # type: ignore[index]
        plain, api_key = plain_headers(headers)
        if not plain:
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
        ctx = self.ctx
        # the C core's plain LIMIT order, or None (an empty key is a missing one: the Python path answers -2014)
        scanned = scan_query(ctx.catalog, query_string) if api_key else None
        user = ctx.users.get(api_key.decode("latin1")) if scanned is not None else None  # type: ignore[union-attr]
        if user is not None:
            try:
                return await self._place_scanned(scanned, user)
            except Exception as ex:  # noqa: BLE001 - answered as the Python path answers it
                return failure(ex)
        # the Python path (the reference): every other query string, and every error named as it names it
        try:
            query = query_string.decode()
        except UnicodeDecodeError:
            return None
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
            rules, cmd, resp = p.new_order(ctx.catalog, params, user_id)
            submit = self.submit
            res = await (ctx.engine.call(rules.shard, cmd) if submit is None else submit(rules.shard, cmd))
            return _order_answer(ctx.catalog, rules, res, resp)
        except Exception as ex:  # noqa: BLE001 - answered like falcon's catch-all handler
            return failure(ex)

    async def _place_scanned(self, scanned: tuple, user: Any) -> Answer:
        """Check, place and answer an order ``scan_query`` read, for a user the cache knows; raises what the
        Python path would answer (``failure`` maps it)."""
        ctx = self.ctx
        body, shard, resp_type, payload, signature, timestamp, recv_window = scanned
        body = order_body(body, ctx.auth.check_signed(user, payload, signature, timestamp, recv_window))
        submit_body = self.submit_body
        if submit_body is None:  # an engine without the raw submit (tests' local engines): the command itself
            cmd = wire.decode_command(_NEW_ORDER_HEAD + body)[1]
            submit = self.submit
            res: Any = await (ctx.engine.call(shard, cmd) if submit is None else submit(shard, cmd))
        else:
            res = await submit_body(shard, body)
            if type(res) is bytes:
                if resp_type == _FULL:
                    text = render_order(ctx.catalog, res)  # None: a reject or a value the core leaves to Python
                    if text is not None:
                        return _ok(text)
                res = ctx.engine.decode(res)
                if isinstance(res, Exception):
                    raise res
        rules = ctx.catalog.by_id[int.from_bytes(body[:4], "little")]
        return _order_answer(ctx.catalog, rules, res, p.RESP_TYPES[resp_type])


def plain_headers(headers: list[tuple[bytes, bytes]]) -> tuple[bool, bytes | None]:
    """(True, the ``X-MBX-APIKEY`` value or None) when the request's headers (lower-case names) leave it to the
    lane: no body, no ``Expect``, at most one key; (False, None) otherwise, and falcon serves it."""
    api_key: bytes | None = None
    for name, value in headers:
        if name == b"x-mbx-apikey":
            if api_key is not None:
                return False, None
            api_key = value
        elif name == b"content-length":
            if value.strip() != b"0":
                return False, None
        elif name == b"transfer-encoding" or name == b"expect":
            return False, None
    return True, api_key


def _order_answer(catalog: Any, rules: Any, res: object, resp: str) -> Answer:
    """The 200 answer of response type ``resp`` to an order the engine answered ``res``; raises for a reject or
    anything else (``failure`` maps it)."""
    if type(res) is not OrderResult:
        raise rejected_error(res) if type(res) is Rejected else unexpected(res)
    if resp == "FULL":
        return _ok(full_text(catalog, res.order, res.fills).encode())
    return _ok(orjson.dumps(views.new_order(rules, res.order, res.fills, resp)))


def _ok(body: bytes) -> Answer:
    return 200, [(b"content-length", b"%d" % len(body)), _CONTENT_TYPE], body


def failure(ex: BaseException) -> Answer:
    """The answer to an exception raised while serving the order, as ``ingress/errors.py`` maps it for falcon."""
    if isinstance(ex, ApiError):
        return _error(ex.http_status, ex.code, ex.msg, ex.headers)
    if isinstance(ex, EngineBusy):
        return _error(503, -1008, BUSY_MSG, _BUSY_HEADERS)
    if isinstance(ex, EngineTimeout):
        return _error(500, -1000, TIMEOUT_MSG, None)
    err = unexpected_exception(ex, "POST", PATH)
    return _error(err.http_status, err.code, err.msg, None)


def _error(status: int, code: int, msg: str, headers: Mapping[str, str] | None) -> Answer:
    """An error answer as ``ingress/errors.py`` maps it for falcon: JSON ``code`` and ``msg``, extra headers."""
    body = orjson.dumps({"code": code, "msg": msg})
    items = [_CONTENT_TYPE, (b"content-length", str(len(body)).encode())]
    if headers:
        items += [(name.lower().encode("latin1"), value.encode("latin1")) for name, value in headers.items()]
    return status, items, body
