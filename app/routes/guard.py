"""Bearer API keys as a guard on a group of routes: every server-to-server route is
wrapped once here, so no handler can forget the check.

The designer's studio calls the same routes from its page with its session cookie
instead of a key (app/studio/access.py): a request without an `Authorization` header
but with a valid session passes for GET and HEAD, and for other methods only with the
session's CSRF token.

A request with a key counts against that key's rate limit (`app/ratelimit.py`, family
`api`) once the key is found valid: unknown keys never make buckets. A studio session is
a person at a page, not a sender, and is not counted."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.auth import ApiKeys, bearer
from app.errors import KairosError
from app.ratelimit import API, RateLimits, attach, stamp
from app.studio.access import StudioAccess

Handler = Callable[[Request], Awaitable[Response]]


def guarded(
    api_keys: ApiKeys,
    routes: Sequence[Route],
    studio: StudioAccess | None = None,
    limits: RateLimits | None = None,
) -> list[Route]:
    """`routes` with each endpoint answering 401 unless the request carries a valid key
    (or a studio session, when `studio` is given), and 429 when the key is over its
    rate limit (when `limits` are given)."""
    return [
        Route(
            route.path,
            _guard(api_keys, studio, limits, route.endpoint),
            methods=route.methods,
            name=route.name,
        )
        for route in routes
    ]


def _guard(
    api_keys: ApiKeys, studio: StudioAccess | None, limits: RateLimits | None, handler: Handler
) -> Handler:
    async def checked(request: Request) -> Response:
        # A key, when given, decides alone: a bad key is never rescued by a cookie.
        if studio is not None and "authorization" not in request.headers:
            session = studio.session(request)
            if session is not None:
                studio.authorize(request, session)
                return await handler(request)
        api_keys.check(request)
        if limits is None:
            return await handler(request)
        fields = await limits.take(API, bearer(request) or b"")
        try:
            response = await handler(request)
        except KairosError as exc:
            attach(exc, fields)
            raise
        return stamp(response, fields)

    checked.__name__ = checked.__qualname__ = getattr(handler, "__name__", "endpoint")
    return checked
