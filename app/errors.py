"""The typed errors a request can end with, and their one mapping to JSON responses."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from app.responses import JSONResponse

log = logging.getLogger("kairos.errors")


class KairosError(Exception):
    """An error with an HTTP status and a message that is safe to show to the caller."""

    status = 400
    code = "bad_request"

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


class PayloadTooLarge(KairosError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(KairosError):
    status, code = 415, "unsupported_media_type"


class Unprocessable(KairosError):
    status, code = 422, "invalid"


class StoreUnavailable(Exception):
    """The profile store cannot answer; callers serve cached or fallback content."""


class CorruptData(Exception):
    """The store answered, but what it holds for one key cannot be read."""


_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    400: "bad_request",
    413: "payload_too_large",
}


def kairos_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, KairosError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code
    return JSONResponse(
        {"error": {"code": code, "message": message}},
        status_code=exc.status_code,
        headers=exc.headers,
    )


def internal_error_handler(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        {"error": {"code": "internal", "message": "internal error"}}, status_code=500
    )


def store_error_handler(request: Request, exc: Exception) -> Response:
    log.warning("store unavailable on %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        {"error": {"code": "store_unavailable", "message": "the profile store is unavailable"}},
        status_code=503,
        headers={"Retry-After": "1"},
    )


def corrupt_data_handler(request: Request, exc: Exception) -> Response:
    log.error("unreadable stored data on %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        {"error": {"code": "invalid_stored_data", "message": "the stored data is unreadable"}},
        status_code=500,
    )


EXCEPTION_HANDLERS = {
    CorruptData: corrupt_data_handler,
    KairosError: kairos_error_handler,
    StoreUnavailable: store_error_handler,
    HTTPException: http_error_handler,
    Exception: internal_error_handler,
}
