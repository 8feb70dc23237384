"""Signed requests: API key, HMAC-SHA256 signature, timestamp and recvWindow.

A signed request carries header ``X-MBX-APIKEY`` (-2014 when missing or
malformed, -2015 when unknown) and parameters ``timestamp``, ``signature`` and
optionally ``recvWindow`` (default 5000 ms, at most ``rest.recv_window_max_ms``).
The signature is the hex HMAC-SHA256, keyed by the user's secret, of the raw
query string concatenated with the raw body, with the ``signature`` parameter
left out of that text wherever it stands: ``name=value`` and one adjoining
``&`` are cut from the query string or the form body; in a JSON body the
``"signature": "..."`` member and one adjoining comma are cut. The comparison
is constant-time (-1022 on mismatch). The timestamp must be no more than
1000 ms ahead of the server clock and no older than recvWindow (-1021).

This module never queries the database for a known key (``ingress/users.py``
caches) and never logs.
"""

from __future__ import annotations

import hmac
import re
import time

import falcon.asgi

from ingress.errors import ApiKeyInvalid, ApiKeyMissing, BadSignature, BadTimestamp, Malformed, MissingParam
from ingress.inputs import Inputs
from ingress.params import integer
from ingress.users import User, UserDirectory

DEFAULT_RECV_WINDOW_MS = 5000
MAX_AHEAD_MS = 1000
_API_KEY = re.compile(r"[A-Za-z0-9_-]{1,128}")
_JSON_SIGNATURE_AFTER = re.compile(rb'\s*,\s*"signature"\s*:\s*"[^"\\]*"')
_JSON_SIGNATURE_FIRST = re.compile(rb'"signature"\s*:\s*"[^"\\]*"\s*,?\s*')


def strip_form_signature(text: str) -> str:
    """``text`` (query string or form body) without its ``signature=...`` parameter and one ``&``."""
    start = text.find("signature=")
    while start > 0 and text[start - 1] != "&":
        start = text.find("signature=", start + 1)
    if start < 0:
        return text
    end = text.find("&", start)
    if end < 0:
        return text[: start - 1] if start else ""
    return text[:start] + text[end + 1 :]


def strip_json_signature(body: bytes) -> bytes:
    """A JSON object body without its ``"signature"`` member and one adjoining comma."""
    stripped, count = _JSON_SIGNATURE_AFTER.subn(b"", body, count=1)
    if count:
        return stripped
    return _JSON_SIGNATURE_FIRST.sub(b"", body, count=1)


def signed_payload(inputs: Inputs) -> bytes:
    """The exact bytes the client signed."""
    where = inputs.signature_in
    query = inputs.query
    body = inputs.body
    if where == "query":
        return strip_form_signature(query).encode() + body
    if where == "form":
        return query.encode() + strip_form_signature(body.decode()).encode()
    return query.encode() + strip_json_signature(body)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Authenticator:
    """Checks signed requests against the worker's user directory."""

    def __init__(self, users: UserDirectory, recv_window_max_ms: int) -> None:
        self.users = users
        self.recv_window_max_ms = recv_window_max_ms

    async def resolve(self, api_key: str | None) -> User:
        """The user of an API key the cache does not hold (-2014 / -2015)."""
        if not api_key:
            raise ApiKeyMissing("API key missing: send header X-MBX-APIKEY")
        if not _API_KEY.fullmatch(api_key):
            raise ApiKeyMissing("API key format invalid: expected 1 to 128 of A-Z a-z 0-9 _ -")
        user = await self.users.resolve(api_key)
        if user is None:
            raise ApiKeyInvalid(f"API key {api_key[:8]}... is invalid")
        return user

    async def verify(self, req: falcon.asgi.Request, inputs: Inputs) -> int:
        """Authenticate a signed request; returns the user id."""
        api_key = req.get_header("X-MBX-APIKEY")
        user = self.users.get(api_key) if api_key else None
        if user is None:
            user = await self.resolve(api_key)
        return self.check(user, inputs)

    def check(self, user: User, inputs: Inputs) -> int:
        """The signature, timestamp and recvWindow of a request by ``user``; returns the user id.

        ``verify`` without the key lookup: the fast lane calls it directly when the cache knows the key.
        """
        params = inputs.params
        signature = params.get("signature")
        if signature is None or signature == "":
            raise MissingParam("mandatory parameter 'signature' was not sent, was empty or null")
        if type(signature) is not str:
            raise Malformed(f"parameter 'signature' must be a string, got {type(signature).__name__}")
        timestamp = integer(params, "timestamp")
        if timestamp is None:
            raise MissingParam("mandatory parameter 'timestamp' was not sent, was empty or null")
        recv_window = integer(params, "recvWindow")
        return self.check_signed(user, signed_payload(inputs), signature, timestamp, recv_window)

    def check_signed(self, user: User, payload: bytes, signature: str, timestamp: int, recv_window: int | None) -> int:
        """The rest of ``check`` once the request's parts are read: recvWindow's range (None: the default), the
        signature of ``payload`` (the bytes ``signed_payload`` gives), the timestamp; returns the user id.

        The single-order fast lane calls it with the parts ``ingress._batchcore.scan_query`` read.
        """
        if recv_window is None:
            recv_window = DEFAULT_RECV_WINDOW_MS
        elif recv_window > self.recv_window_max_ms or recv_window < 1:
            raise Malformed(f"parameter 'recvWindow' value {recv_window} is out of range 1..{self.recv_window_max_ms}")
        expected = user.mac.hexdigest(payload)
        if not hmac.compare_digest(expected.encode(), signature.lower().encode()):
            raise BadSignature(f"signature {signature[:16]!r} is not valid for this request")
        now = now_ms()
        if timestamp > now + MAX_AHEAD_MS:
            raise BadTimestamp(f"timestamp {timestamp} is {timestamp - now} ms ahead of the server time {now}")
        if now - timestamp > recv_window:
            raise BadTimestamp(f"timestamp {timestamp} is outside recvWindow {recv_window} (server time {now})")
        return user.user_id


def sign(secret: str, payload: str | bytes) -> str:
    """The signature a client sends for ``payload`` (used by tests and load generators)."""
    data = payload.encode() if isinstance(payload, str) else payload
    return hmac.new(secret.encode(), data, "sha256").hexdigest()
