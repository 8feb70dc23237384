"""Every error the REST API can answer, and the one place they become responses.

Resources, parameter parsing and authentication raise ``ApiError`` (or one of
its subclasses); ``install_error_handlers`` maps them, falcon's own HTTP errors
(unknown route 404, wrong method 405), the engine seam's ``EngineBusy`` and
``EngineTimeout``, and any unexpected exception to the contract's error body
``{"code": <negative int>, "msg": "..."}``. Nothing else writes an error body.

Hierarchy::

    ApiError(code, msg, http_status=None, headers=None)   any code; status from the contract table
     └── CodedError(msg, http_status=None, headers=None)  each subclass fixes its code
          ├── Malformed        -1100  bad characters, not a number, too long, bad JSON, oversized body (413)
          ├── MissingParam     -1102  mandatory parameter missing or empty
          ├── UnexpectedParam  -1104  parameter not accepted by the endpoint
          ├── InvalidType      -1116
          ├── InvalidSide      -1117
          ├── InvalidSymbol    -1121
          ├── FilterFailure    -1013  off the tick/step grid or out of range
          ├── BadTimestamp     -1021  (400)
          ├── BadSignature     -1022  (401)
          ├── ApiKeyMissing    -2014  (401)
          ├── ApiKeyInvalid    -2015  (401)
          ├── Busy             -1008  (503, Retry-After: 1)
          └── StatusUnknown    -1000  (500)

Engine ``Rejected(code, msg)`` results become ``ApiError(code, msg, status_for(code))``.
This module must never log per request except for unexpected exceptions.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Mapping

import falcon
import falcon.asgi
import orjson

from ingress.dispatch import EngineBusy, EngineTimeout

log = logging.getLogger("ingress.errors")

JSON = "application/json"

# Contract table: code -> HTTP status (API.md, "Errors").
HTTP_STATUS: dict[int, int] = {
    -1000: 500,
    -1003: 429,
    -1008: 503,
    -1013: 400,
    -1021: 400,
    -1022: 401,
    -1100: 400,
    -1102: 400,
    -1104: 400,
    -1116: 400,
    -1117: 400,
    -1121: 400,
    -2010: 400,
    -2011: 400,
    -2013: 400,
    -2014: 401,
    -2015: 401,
}


BUSY_MSG = "the engine is saturated; nothing was accepted, retry later"
TIMEOUT_MSG = "the shard did not answer in time; order status unknown; query the order"


def status_for(code: int) -> int:
    """HTTP status the contract gives ``code`` (400 for codes it does not list)."""
    return HTTP_STATUS.get(code, 400)


class ApiError(Exception):
    """A contract error: ``code`` (negative int), ``msg`` naming the offending value."""

    code = -1000
    http_status = 400

    def __init__(
        self,
        code: int | None = None,
        msg: str = "",
        http_status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(msg)
        if code is not None:
            self.code = code
        self.msg = msg
        if http_status is not None:
            self.http_status = http_status
        elif code is not None:
            self.http_status = status_for(code)
        self.headers = headers

    def body(self) -> bytes:
        return orjson.dumps({"code": self.code, "msg": self.msg})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}, {self.msg!r}, http_status={self.http_status})"


class CodedError(ApiError):
    """An ApiError whose subclass fixes the code (and usually the HTTP status)."""

    def __init__(self, msg: str, http_status: int | None = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(None, msg, http_status, headers)


class Malformed(CodedError):
    code = -1100


class MissingParam(CodedError):
    code = -1102


class UnexpectedParam(CodedError):
    code = -1104


class InvalidType(CodedError):
    code = -1116


class InvalidSide(CodedError):
    code = -1117


class InvalidSymbol(CodedError):
    code = -1121


class FilterFailure(CodedError):
    code = -1013


class BadTimestamp(CodedError):
    code = -1021


class BadSignature(CodedError):
    code = -1022
    http_status = 401


class ApiKeyMissing(CodedError):
    code = -2014
    http_status = 401


class ApiKeyInvalid(CodedError):
    code = -2015
    http_status = 401


class Busy(CodedError):
    code = -1008
    http_status = 503

    def __init__(self, msg: str = BUSY_MSG) -> None:
        super().__init__(msg, headers={"Retry-After": "1"})


class StatusUnknown(CodedError):
    code = -1000
    http_status = 500

    def __init__(self, msg: str = TIMEOUT_MSG) -> None:
        super().__init__(msg)


def rejected_error(res: object) -> ApiError:
    """The contract error of an engine ``Rejected(code, msg)``."""
    code: int = res.code  # type: ignore[attr-defined]
    return ApiError(code, res.msg, status_for(code))  # type: ignore[attr-defined]


def error_of_exception(ex: BaseException) -> ApiError:
    """An engine-seam exception as its contract error (used per item in batch answers)."""
    if isinstance(ex, ApiError):
        return ex
    if isinstance(ex, EngineBusy):
        return Busy()
    if isinstance(ex, EngineTimeout):
        return StatusUnknown()
    return ApiError(-1000, "unexpected error", 500)


# --- the one mapping to responses ----------------------------------------------

_request_ids = itertools.count(1)
_worker_tag = os.urandom(3).hex()


def _write(resp: falcon.asgi.Response, status: int, code: int, msg: str, headers: Mapping[str, str] | None) -> None:
    resp.status = status
    resp.content_type = JSON
    resp.data = orjson.dumps({"code": code, "msg": msg})
    if headers:
        for name, value in headers.items():
            resp.set_header(name, value)


async def _on_api_error(req: falcon.asgi.Request, resp: falcon.asgi.Response, ex: ApiError, params: dict) -> None:
    _write(resp, ex.http_status, ex.code, ex.msg, ex.headers)


async def _on_busy(req: falcon.asgi.Request, resp: falcon.asgi.Response, ex: EngineBusy, params: dict) -> None:
    _write(resp, 503, -1008, BUSY_MSG, {"Retry-After": "1"})


async def _on_timeout(req: falcon.asgi.Request, resp: falcon.asgi.Response, ex: EngineTimeout, params: dict) -> None:
    _write(resp, 500, -1000, TIMEOUT_MSG, None)


async def _on_http_error(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, ex: falcon.HTTPError, params: dict
) -> None:
    status = ex.status_code
    if status == 404:
        msg = f"no endpoint {req.method} {req.path}"
    elif status == 405:
        msg = f"method {req.method} is not allowed on {req.path}"
    else:
        msg = ex.description or ex.title or f"HTTP {status}"
    code = -1000 if status >= 500 or status in (404, 405) else -1100
    headers = ex.headers if isinstance(ex.headers, Mapping) else dict(ex.headers or ())
    _write(resp, status, code, msg, headers)


def unexpected_exception(ex: BaseException, method: str, path: str) -> ApiError:
    """An exception nothing expected: logged with a request id, answered 500 / -1000 naming that id."""
    request_id = f"{_worker_tag}-{next(_request_ids)}"
    log.error("unexpected error request_id=%s method=%s path=%s", request_id, method, path, exc_info=ex)
    return ApiError(-1000, f"unexpected error; request id {request_id}", 500)


async def _on_unexpected(req: falcon.asgi.Request, resp: falcon.asgi.Response, ex: Exception, params: dict) -> None:
    err = unexpected_exception(ex, req.method, req.path)
    _write(resp, err.http_status, err.code, err.msg, None)


def install_error_handlers(app: falcon.asgi.App) -> None:
    """Register the error mapping on ``app`` (falcon picks the most specific class)."""
    app.add_error_handler(Exception, _on_unexpected)
    app.add_error_handler(falcon.HTTPError, _on_http_error)
    app.add_error_handler(ApiError, _on_api_error)
    app.add_error_handler(EngineBusy, _on_busy)
    app.add_error_handler(EngineTimeout, _on_timeout)
