"""Caps request bodies: a declared oversize is refused before reading, a streamed one as
soon as it crosses the limit."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import BadRequest, KairosError, PayloadTooLarge
from app.responses import JSONResponse

BODYLESS = frozenset({"GET", "HEAD", "OPTIONS"})


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, exempt: tuple[str, ...] = ()) -> None:
        self.app = app
        # Streaming endpoints that cap each record themselves (the NDJSON batch).
        self.exempt = frozenset(exempt)
        self.max_bytes = max_bytes
        self.message = f"request body is larger than {max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        declared = chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = True
                error: KairosError | None = None
                if not value.isdigit():
                    error = BadRequest("Content-Length is not a number")
                elif int(value) > self.max_bytes:
                    error = PayloadTooLarge(self.message)
                if error is not None:
                    response = JSONResponse(error.body(), status_code=error.status)
                    await response(scope, receive, send)
                    return
            elif name == b"transfer-encoding":
                chunked = True
        if (declared and not chunked) or (not chunked and scope["method"] in BODYLESS):
            # A declared length already within the cap (the HTTP server never delivers
            # more than Content-Length), or no body at all: nothing to watch.
            await self.app(scope, receive, send)
            return
        received = 0
        limit = self.max_bytes

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised into the handler reading the body; the exception handler
                    # turns it into the 413 JSON answer.
                    raise PayloadTooLarge(self.message)
            return message

        await self.app(scope, capped_receive, send)
