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

from app.errors import Forbidden, KairosError, NotFound
from app.settings import Settings
from app.studio.live import Live, studio_on

log = logging.getLogger("kairos.studio")

MAX_STREAMS = 32
KEEPALIVE_S = 15.0
KEEPALIVE = b": keepalive\n\n"
LOOPBACK = frozenset({"127.0.0.1", "::1"})
HEADERS = MappingProxyType({"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


class TooManyStreams(KairosError):
    status, code = 503, "too_many_streams"


def admit(request: Request, settings: Settings) -> None:
    """Let the request into the studio, or raise: 404 when the studio is off; 403 but
    from this machine, in development and test."""
    if not studio_on(settings):
        raise NotFound("not found")
    client = request.client
    if client is None or client.host not in LOOPBACK:
        raise Forbidden("the designer's studio is open to this machine only", code="studio_login")


def routes(live: Live, settings: Settings) -> list[Route]:
    """The route of the studio's events."""

    async def events(request: Request) -> Response:
        admit(request, settings)
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
