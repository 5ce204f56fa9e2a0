"""Caps request bodies: a declared oversize is refused before reading, a streamed one as
soon as it crosses the limit."""

from __future__ import annotations

from starlette.types import Message, Receive, Scope

from app.errors import BadRequest, PayloadTooLarge

BODYLESS = frozenset({"GET", "HEAD", "OPTIONS"})


class BodyLimit:
    def __init__(self, max_bytes: int, exempt: tuple[str, ...] = ()) -> None:
        # Streaming endpoints that cap each record themselves (the NDJSON batch).
        self.exempt = frozenset(exempt)
        self.max_bytes = max_bytes
        self.message = f"request body is larger than {max_bytes} bytes"

    def receive(self, scope: Scope, receive: Receive) -> Receive:
        """`receive` for the request's app: raises `PayloadTooLarge` (or `BadRequest`
        for a Content-Length that is not a number) for a declared oversize, and watches
        a streamed body, raising `PayloadTooLarge` into the handler reading it."""
        if scope["path"] in self.exempt:
            return receive
        declared = chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = True
                if not (value.isascii() and value.isdigit()):
                    raise BadRequest("Content-Length is not a number")
                if int(value) > self.max_bytes:
                    raise PayloadTooLarge(self.message)
            elif name == b"transfer-encoding":
                chunked = True
        if (declared and not chunked) or (not chunked and scope["method"] in BODYLESS):
            # A declared length already within the cap (the HTTP server never delivers
            # more than Content-Length), or no body at all: nothing to watch.
            return receive
        received = 0
        limit = self.max_bytes

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(self.message)
            return message

        return capped_receive
