"""An HTTP client for end-to-end tests: plain urllib and aiohttp, signing as a Binance client does.

The signature is computed here from API.md alone (HMAC-SHA256 of the query
string followed by the raw body, hex), not with the exchange's own helper, so
the tests check the contract rather than agree with the code under test.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

REQUEST_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class User:
    user_id: int
    api_key: str
    secret: str


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any  # parsed JSON, or the raw text when it is not JSON

    @property
    def code(self) -> int | None:
        return self.body.get("code") if isinstance(self.body, dict) else None


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def sign(secret: str, text: bytes) -> str:
    return hmac.new(secret.encode(), text, hashlib.sha256).hexdigest()


def signed_parts(
    user: User, params: dict[str, Any], where: str = "query", timestamp: int | None = None, recv_window: int = 5000
) -> tuple[str, bytes, dict[str, str]]:
    """(query string, body, headers) of a signed request with ``params`` in the query, a form or a JSON body."""
    full = dict(params)
    full.setdefault("timestamp", now_ms() if timestamp is None else timestamp)
    full.setdefault("recvWindow", recv_window)
    headers = {"X-MBX-APIKEY": user.api_key}
    if where == "query":
        query = urlencode(full)
        return f"{query}&signature={sign(user.secret, query.encode())}", b"", headers
    if where == "form":
        body = urlencode(full)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return "", f"{body}&signature={sign(user.secret, body.encode())}".encode(), headers
    if where == "json":
        body = json.dumps(full, separators=(",", ":")).encode()
        headers["Content-Type"] = "application/json"
        return f"signature={sign(user.secret, body)}", body, headers
    raise ValueError(f"where must be query, form or json, got {where!r}")


class Api:
    """Synchronous client of one running exchange."""

    def __init__(self, rest_url: str, admin_token: str) -> None:
        self.rest_url = rest_url.rstrip("/")
        self.admin_token = admin_token

    def request(
        self, method: str, path: str, query: str = "", body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Reply:
        url = self.rest_url + path + (f"?{query}" if query else "")
        req = urllib.request.Request(url, data=body or None, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as resp:
                return _reply(resp.status, dict(resp.headers), resp.read())
        except urllib.error.HTTPError as err:
            return _reply(err.code, dict(err.headers), err.read())

    def get(self, path: str, **params: Any) -> Reply:
        return self.request("GET", path, urlencode(params))

    def new_user(self) -> User:
        reply = self.request("POST", "/admin/v1/users", headers={"X-Admin-Token": self.admin_token})
        assert reply.status == 200, reply
        return User(reply.body["userId"], reply.body["apiKey"], reply.body["secretKey"])

    def signed(self, method: str, path: str, user: User, where: str = "query", **params: Any) -> Reply:
        query, body, headers = signed_parts(user, params, where)
        return self.request(method, path, query, body, headers)

    def batch(self, user: User, orders: list[dict[str, Any]]) -> Reply:
        body = json.dumps({"orders": orders}).encode()
        query = urlencode({"timestamp": now_ms(), "recvWindow": 5000})
        signature = sign(user.secret, query.encode() + body)
        headers = {"X-MBX-APIKEY": user.api_key, "Content-Type": "application/json"}
        return self.request("POST", "/api/v3/batchOrders", f"{query}&signature={signature}", body, headers)


def _reply(status: int, headers: dict[str, str], raw: bytes) -> Reply:
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = raw.decode(errors="replace")
    return Reply(status, {k.lower(): v for k, v in headers.items()}, body)


async def async_signed(session: Any, rest_url: str, method: str, path: str, user: User, **params: Any) -> Reply:
    """One signed request through an ``aiohttp.ClientSession`` (parameters in the query string)."""
    query, body, headers = signed_parts(user, params)
    async with session.request(method, f"{rest_url}{path}?{query}", data=body or None, headers=headers) as resp:
        return _reply(resp.status, dict(resp.headers), await resp.read())
