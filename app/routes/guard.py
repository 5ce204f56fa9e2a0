"""Bearer API keys as a guard on a group of routes: every server-to-server route is
wrapped once here, so no handler can forget the check."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.auth import ApiKeys

Handler = Callable[[Request], Awaitable[Response]]


def guarded(api_keys: ApiKeys, routes: Sequence[Route]) -> list[Route]:
    """`routes` with each endpoint answering 401 unless the request carries a valid key."""
    return [
        Route(route.path, _guard(api_keys, route.endpoint), methods=route.methods, name=route.name)
        for route in routes
    ]


def _guard(api_keys: ApiKeys, handler: Handler) -> Handler:
    async def checked(request: Request) -> Response:
        api_keys.check(request)
        return await handler(request)

    checked.__name__ = checked.__qualname__ = getattr(handler, "__name__", "endpoint")
    return checked
