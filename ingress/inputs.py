"""A request's parameters: query string, form body or JSON object body, read once.

``read_inputs`` reads the raw body (bounded by ``max_body_bytes``: a larger one
answers 413 with code -1100), parses it by its Content-Type, and merges it with
the query string into one dict; a name in both takes the query string's value
(API.md, Conventions). The raw query string and body are kept for the
signature check (``ingress/auth.py``).

Values are ``str`` from the query string and form bodies, and whatever JSON
holds (str, int, float, bool, None, list, dict) from JSON bodies; the
validators in ``ingress/params.py`` accept strings and numbers only.
A name sent twice in one source is -1100. This module never logs.
"""

from __future__ import annotations

from typing import Any, cast

import falcon.asgi
import orjson
from falcon.util.uri import parse_query_string

from ingress.errors import Malformed, UnexpectedParam

FORM = "application/x-www-form-urlencoded"

NO_BODY = b""


class Inputs:
    """Merged parameters plus the raw texts the signature covers."""

    __slots__ = ("params", "query", "body", "signature_in")

    def __init__(self, params: dict[str, Any], query: str, body: bytes, signature_in: str) -> None:
        self.params = params
        self.query = query  # raw query string as sent (percent-encoded)
        self.body = body  # raw body bytes as sent
        self.signature_in = signature_in  # "query", "form", "json" or "" (no signature)


def check_no_duplicates(params: dict[str, Any], where: str) -> None:
    """-1100 naming a parameter sent more than once in one source (falcon parsed it into a list)."""
    for name, value in params.items():
        if type(value) is list:
            raise Malformed(f"parameter '{name}' was sent more than once in the {where}")


async def read_body(req: falcon.asgi.Request, max_bytes: int) -> bytes:
    """The raw body, at most ``max_bytes`` (413 / -1100 beyond)."""
    length = req.content_length
    if length is not None:
        if length == 0:
            return NO_BODY
        if length > max_bytes:
            raise Malformed(f"request body of {length} bytes is larger than the limit of {max_bytes} bytes", 413)
        return await req.stream.read()
    if req.get_header("Transfer-Encoding") is None:
        return NO_BODY
    chunks = []
    size = 0
    async for chunk in req.stream:
        size += len(chunk)
        if size > max_bytes:
            raise Malformed(f"request body is larger than the limit of {max_bytes} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_body(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Malformed(f"malformed JSON body: {exc}") from None
    if type(data) is not dict:
        raise Malformed(f"JSON body must be an object, got {type(data).__name__}")
    return data


def parse_form_body(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise Malformed("form body is not valid UTF-8") from None
    params = parse_query_string(text, keep_blank=True, csv=False)
    check_no_duplicates(params, "form body")
    return params


def _body_kind(content_type: str | None, body: bytes) -> str:
    if content_type is None:
        return "json" if body.lstrip()[:1] == b"{" else "form"
    media = content_type.partition(";")[0].strip().lower()
    if media == FORM:
        return "form"
    if media == "application/json" or media.endswith("+json"):
        return "json"
    raise Malformed(f"Content-Type {content_type!r} is not supported; send {FORM} or application/json")


def is_json_body(content_type: str | None, body: bytes) -> bool:
    """True when ``read_inputs`` parses ``body`` as JSON (False too where it refuses the Content-Type)."""
    try:
        return _body_kind(content_type, body) == "json"
    except Malformed:
        return False


def query_params(req: falcon.asgi.Request) -> dict[str, Any]:
    """The query string's parameters (-1100 for a name sent twice): the first step of ``read_inputs``."""
    params = cast(dict[str, Any], req.params)
    if params:
        check_no_duplicates(params, "query string")
    return params


async def read_inputs(req: falcon.asgi.Request, max_body_bytes: int) -> Inputs:
    """Read and merge the request's parameters (query string wins over the body)."""
    query = query_params(req)
    return inputs_of(req, query, await read_body(req, max_body_bytes))


def inputs_of(req: falcon.asgi.Request, query_params: dict[str, Any], body: bytes) -> Inputs:
    """``read_inputs`` once the query string's parameters and the body are read."""
    if not body:
        return Inputs(query_params, req.query_string, NO_BODY, "query" if "signature" in query_params else "")
    kind = _body_kind(req.content_type, body)
    params = parse_json_body(body) if kind == "json" else parse_form_body(body)
    if "signature" in query_params:
        if "signature" in params:
            raise Malformed("parameter 'signature' was sent in both the query string and the body")
        signature_in = "query"
    elif "signature" in params:
        signature_in = kind
    else:
        signature_in = ""
    if query_params:
        params.update(query_params)
    return Inputs(params, req.query_string, body, signature_in)


def check_allowed(params: dict[str, Any], allowed: frozenset[str]) -> None:
    """-1104 naming the first parameter the endpoint does not take."""
    if not allowed.issuperset(params):
        extra = sorted(name for name in params if name not in allowed)
        raise UnexpectedParam(f"parameter '{extra[0]}' is not accepted by this endpoint")
