"""Events in: `POST /v1/events` (native) and the Segment HTTP Tracking API under
`/segment` (`/segment/v1/batch`, `/segment/v1/track`, ...), both taking write keys, both
answering CORS preflight so a site's pages can post them. Each request counts once
against its key's rate limit (`app/ratelimit.py`, family `events`), a batch as one, and
takes its turn to be applied (`KAIROS_EVENTS_IN_FLIGHT` events at once per process)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from types import MappingProxyType
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.auth import presented_key
from app.errors import (
    NO_STORE,
    Busy,
    Forbidden,
    KairosError,
    UnsupportedMediaType,
    error_response,
)
from app.events.intake import (
    WEBHOOK,
    SegmentBody,
    check_count,
    native_events,
    read_body,
)
from app.events.outcome import IngestResult
from app.events.segment import CALLS
from app.http import content_type, parse_json
from app.ratelimit import EVENTS, attach, stamp
from app.responses import JSONResponse
from app.services import Services
from app.turns import Turns

NATIVE_PATH = "/v1/events"
SEGMENT_PREFIX = "/segment"
# The path names Segment's clients post to, and the call each is: the full names, the
# short ones analytics.js uses (`/v1/t`, `/v1/b`...), and `webhook` for webhook
# destinations, which post every message, whatever its type, to one URL.
SEGMENT_CALLS = MappingProxyType(
    {
        **{call: call for call in CALLS},
        **{"t": "track", "p": "page", "i": "identify", "a": "alias", "s": "screen"},
        **{"g": "group", "b": "batch", WEBHOOK: WEBHOOK},
    }
)
SEGMENT_PATHS = tuple(f"{SEGMENT_PREFIX}/v1/{name}" for name in SEGMENT_CALLS)
PATHS = (NATIVE_PATH, *SEGMENT_PATHS)
Handler = Callable[[Request], Awaitable[Response]]
EXPOSED = "Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, RateLimit-Policy"


def routes(services: Services) -> list[Route]:
    settings = services.settings
    keys, ingest, limits = services.api_keys, services.ingest, services.limits
    limit, max_count = settings.events_max_body_bytes, settings.events_max_count
    cors = Cors(settings.event_origins)
    waited, refused = (services.metrics.events_turns.labels(r) for r in ("waited", "busy"))

    def busy() -> Busy:
        refused.inc()
        return Busy("the server is busy applying other events: nothing was applied; retry")

    # Requests wait here, their bodies read but not yet parsed, rather than interleave: a
    # few at a time, each parsed just before it is applied, keep their events and readers
    # in the CPU's caches (16 interleaved 100-event requests cost each event 10-20 %
    # more). A body counts its events by their ids, before it is parsed (a count that is
    # off only moves its place in line: nothing is checked by it).
    turns = Turns(settings.events_in_flight, settings.events_wait_s, busy, waited.inc)

    async def native(request: Request) -> Response:
        presented = presented_key(request)
        trusted = keys.check_writer(presented)
        fields = await limits.take(EVENTS, (presented or "").encode())
        try:
            media_type = content_type(request.headers)
            if media_type != "application/json":
                raise UnsupportedMediaType("send the events as application/json")
            body = await read_body(request, limit)
            async with turns(body.count(b'"event_id"')):
                docs = native_events(parse_json(body))
                check_count(docs, max_count)
                result = await ingest.ingest(docs, trusted=trusted, body_bytes=len(body))
        except KairosError as exc:
            attach(exc, fields)
            raise
        if docs and len(result.rejected) == len(docs):
            return stamp(_nothing_valid(result, 422), fields)
        return stamp(JSONResponse(result.body(), status_code=202), fields)

    def segment(call: str) -> Handler:
        async def handler(request: Request) -> Response:
            presented = presented_key(request)
            # A key in the header is checked (and counted) before the body costs
            # anything to read.
            trusted, fields = None, None
            if presented is not None:
                trusted = keys.check_writer(presented)
                fields = await limits.take(EVENTS, presented.encode())
            try:
                # analytics.js posts text/plain (no preflight); the SDKs application/json.
                raw = await read_body(request, limit)
                async with turns(raw.count(b'"messageId"')):
                    body = SegmentBody(call, parse_json(raw))
                    if trusted is None:
                        trusted = keys.check_writer(body.write_key)
                        fields = await limits.take(EVENTS, (body.write_key or "").encode())
                    check_count(body.messages, max_count)
                    docs = body.translated(ingest.clock)
                    del body  # the messages, translated: freed before the events are applied
                    result = await ingest.ingest(docs, dialect="segment", trusted=trusted)
            except KairosError as exc:
                attach(exc, fields)
                raise
            if docs and len(result.rejected) == len(docs):
                return stamp(_nothing_valid(result, 400), fields)
            # The SDKs retry anything but 200: an accepted request must be 200 here.
            return stamp(JSONResponse({"success": True, **result.body()}), fields)

        handler.__name__ = f"segment_{call}"  # the route's name in metrics and logs
        return handler

    endpoints: list[tuple[str, Handler]] = [(NATIVE_PATH, native)]
    endpoints += [
        (path, segment(call))
        for path, call in zip(SEGMENT_PATHS, SEGMENT_CALLS.values(), strict=True)
    ]
    return [
        Route(path, cors.wrap(handler), methods=["POST", "OPTIONS"], name=handler.__name__)
        for path, handler in endpoints
    ]


def _nothing_valid(result: IngestResult, status: int) -> Response:
    body: dict[str, Any] = {
        "error": {"code": "no_valid_events", "message": "no event in the request is valid"},
        **result.body(),
    }
    if status == 400:
        body["success"] = False
    return JSONResponse(body, status_code=status, headers=NO_STORE)


class Cors:
    """CORS for the events routes: preflight answered, and every answer (errors too)
    readable by the allowed origins. Credentials are never allowed: the write key
    travels in the Authorization header or the body, not in cookies."""

    def __init__(self, origins: Sequence[str]) -> None:
        self._any = "*" in origins
        self._origins = frozenset(o.rstrip("/").lower() for o in origins)

    def allowed(self, origin: str | None) -> str | None:
        if origin is None:
            return None
        if self._any:
            return "*"
        return origin if origin.rstrip("/").lower() in self._origins else None

    def wrap(self, handler: Handler) -> Handler:
        async def with_cors(request: Request) -> Response:
            allowed = self.allowed(request.headers.get("origin"))
            if request.method == "OPTIONS":
                return self.preflight(allowed)
            try:
                response = await handler(request)
            except Exception as exc:
                if allowed is None:
                    raise
                response = error_response(exc, request.method, request.url.path)
            if allowed is not None:
                response.headers["Access-Control-Allow-Origin"] = allowed
                # A page's script may read how long to wait, and what is left.
                response.headers["Access-Control-Expose-Headers"] = EXPOSED
                if allowed != "*":
                    response.headers["Vary"] = "Origin"
            return response

        with_cors.__name__ = getattr(handler, "__name__", "events")
        return with_cors

    def preflight(self, allowed: str | None) -> Response:
        if allowed is None:
            raise Forbidden("this origin may not post events", code="origin_not_allowed")
        headers = {
            "Access-Control-Allow-Origin": allowed,
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            # AnonymousId: RudderStack's browser SDK sends it on every call.
            "Access-Control-Allow-Headers": "Authorization, Content-Type, Content-Encoding, "
            "AnonymousId",
            "Access-Control-Max-Age": "86400",
        }
        if allowed != "*":
            headers["Vary"] = "Origin"
        return Response(status_code=204, headers=headers)
