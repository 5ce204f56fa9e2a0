"""The typed errors a request can end with, and their one mapping to JSON responses."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import Response

from app.responses import JSONResponse

log = logging.getLogger("kairos.errors")


class KairosError(Exception):
    """An error with an HTTP status and a message that is safe to show to the caller."""

    status = 400
    code = "bad_request"
    # Headers of the answer besides the body's (a 429's Retry-After and RateLimit-*).
    headers: Mapping[str, str] | None = None

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code

    def body(self) -> dict[str, object]:
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.field:
            error["field"] = self.field
        return {"error": error}


class BadRequest(KairosError):
    status, code = 400, "bad_request"


class Unauthorized(KairosError):
    status, code = 401, "unauthorized"


class Forbidden(KairosError):
    status, code = 403, "forbidden"


class NotFound(KairosError):
    status, code = 404, "not_found"


class Conflict(KairosError):
    status, code = 409, "conflict"


class PayloadTooLarge(KairosError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(KairosError):
    status, code = 415, "unsupported_media_type"


class Unprocessable(KairosError):
    status, code = 422, "invalid"


class Busy(KairosError):
    """Not started in time behind the work already waiting: nothing was done; retry."""

    status, code = 503, "busy"
    headers = MappingProxyType({"Retry-After": "1"})


class TooManyRequests(KairosError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, headers: Mapping[str, str]) -> None:
        super().__init__(message)
        self.headers = headers


class StoreUnavailable(Exception):
    """The profile store cannot answer; callers serve cached or fallback content."""


class CircuitOpen(StoreUnavailable):
    """The store was not even asked: its circuit breaker is open (the breaker logged
    the opening once; each refusal need not be logged again)."""


class CorruptData(Exception):
    """The store answered, but what it holds for one key cannot be read."""


NO_STORE = MappingProxyType({"Cache-Control": "no-store"})
_HTTP_CODES = MappingProxyType(
    {
        404: "not_found",
        405: "method_not_allowed",
        400: "bad_request",
        413: "payload_too_large",
    }
)


def error_response(exc: Exception, method: str, path: str) -> Response:
    """The one mapping from an exception a request ended with to its JSON answer; what
    is not a typed error is logged with its traceback and answered 500 with no detail.
    No error answer is stored by a cache (`Cache-Control: no-store`): a shared cache
    must not serve one reader's refusal to another, or keep serving a passing one.
    `path` is as the logs may show it (`app.middleware.observe.loggable_path`)."""
    if isinstance(exc, KairosError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else exc.headers
        return _error(exc.body(), exc.status, headers)
    if isinstance(exc, HTTPException):
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code
        return _error({"error": {"code": code, "message": message}}, exc.status_code, exc.headers)
    if isinstance(exc, StoreUnavailable):
        # During an outage every request would log this: refusals by the open circuit,
        # said once when it opened, only at debug level.
        level = logging.DEBUG if isinstance(exc, CircuitOpen) else logging.WARNING
        log.log(level, "store unavailable on %s %s: %s", method, path, exc)
        return _error(
            {"error": {"code": "store_unavailable", "message": "the profile store is unavailable"}},
            503,
            {"Retry-After": "1"},
        )
    if isinstance(exc, CorruptData):
        log.error("unreadable stored data on %s %s: %s", method, path, exc)
        return _error(
            {"error": {"code": "invalid_stored_data", "message": "the stored data is unreadable"}},
            500,
        )
    log.error("unhandled error on %s %s", method, path, exc_info=exc)
    return _error({"error": {"code": "internal", "message": "internal error"}}, 500)


def _error(body: dict[str, Any], status: int, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers={**(headers or {}), **NO_STORE})
