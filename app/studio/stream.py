"""`GET /designer/events`: the studio's server-sent events. On connect `hello` with the
version of the templates served; after each save `change` (`app/studio/live.py`);
a `: keepalive` comment every 15 s, through proxies that close idle connections.

Nothing is queued for a page: a page slower than the saves gets the latest change
only (the page re-renders from it anyway), and at most MAX_STREAMS pages listen."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from types import MappingProxyType

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from app.errors import Forbidden, KairosError
from app.studio.access import StudioAccess
from app.studio.live import Live

log = logging.getLogger("kairos.studio")

MAX_STREAMS = 32
KEEPALIVE_S = 15.0
KEEPALIVE = b": keepalive\n\n"
HEADERS = MappingProxyType({"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


class TooManyStreams(KairosError):
    status, code = 503, "too_many_streams"


def routes(live: Live, access: StudioAccess) -> list[Route]:
    """The route of the studio's events; none when the studio is off (404). Open as the
    page is: with the studio's session, or without a login where the page needs none."""
    if not access.enabled:
        return []

    async def events(request: Request) -> Response:
        if access.session(request) is None and not access.open_without_login(request):
            raise Forbidden("sign in to the designer's studio first", code="studio_login")
        return EventStream(live)

    return [Route("/designer/events", events, methods=["GET"])]


class EventStream(Response):
    """The events of one page, counted among the MAX_STREAMS while it listens."""

    def __init__(self, live: Live) -> None:
        super().__init__()
        self.live = live

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        live = self.live
        if live.streams >= MAX_STREAMS:
            raise TooManyStreams(f"at most {MAX_STREAMS} pages of the studio listen at once")
        live.streams += 1
        try:
            await live.start()
            stream = StreamingResponse(_events(live), media_type="text/event-stream")
            stream.headers.update(HEADERS)
            await stream(scope, receive, send)
        except asyncio.CancelledError:
            # The server stopping ends the streams still open after a wait (uvicorn's
            # timeout_graceful_shutdown, set by `kairos serve`): the page reconnects.
            log.info("a page's event stream ended by the server stopping")
            with contextlib.suppress(Exception):  # the page may be gone too
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            live.streams -= 1


async def _events(live: Live) -> AsyncIterator[bytes]:
    latest = live.latest
    seen = latest.seq if latest is not None else 0
    yield _event("hello", orjson.dumps({"version": live.version}))
    while not live.closed:
        change = await live.next_change(seen, KEEPALIVE_S)
        if live.closed:
            return
        if change is None:
            yield KEEPALIVE
            continue
        seen = change.seq
        yield _event("change", change.data)


def _event(name: str, data: bytes) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"
