"""Response classes: JSON through orjson."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class StreamResponse(Response):
    """Streams an async iterator of bytes. Unlike Starlette's StreamingResponse it does
    not listen for a disconnect while streaming, so the handler may go on reading the
    request body as it answers (NDJSON in, NDJSON out); a gone client shows up as a
    failed send."""

    def __init__(self, chunks: AsyncIterator[bytes], media_type: str) -> None:
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.chunks = chunks
        self.init_headers({})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        async for chunk in self.chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
