"""The Kairos app: Starlette, with the open-time routes served ahead of its layers.

Every email open fetches feeds and live images. For those routes (plain ASGI endpoints),
Starlette's own layers (the server-error and exception middlewares, the body-size cap,
the router) cost about as much as the route itself: some 18 µs of a 48 µs feed request
over HTTP. So a request for a fast route is matched first, observed (metrics, access
log) and answered directly; an error it raises is answered by the app's exception
handlers, as through Starlette. Every other request goes through Starlette as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Message, Receive, Scope, Send

from app.metrics import Metrics
from app.middleware.observe import ObserveMiddleware

Handler = Callable[..., Response]


class KairosApp(Starlette):
    """Starlette, with `fast_routes` matched before anything else (see the module doc)."""

    def __init__(
        self,
        *,
        fast_routes: Sequence[Route],
        metrics: Metrics,
        exception_handlers: Mapping[Any, Handler],
        **options: Any,
    ) -> None:
        super().__init__(exception_handlers=dict(exception_handlers), **options)
        self._fast_routes = tuple(fast_routes)
        self._handlers = exception_handlers
        self._fast = ObserveMiddleware(self._serve_fast, metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for route in self._fast_routes:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child)
                    scope["app"] = self
                    scope["route"] = route
                    await self._fast(scope, receive, send)
                    return
        await super().__call__(scope, receive, send)

    async def _serve_fast(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def send_started(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await scope["route"].app(scope, receive, send_started)
        except Exception as exc:
            if started:
                raise  # too late for an error answer: the server closes the connection
            response = self._handler(exc)(Request(scope, receive), exc)
            await response(scope, receive, send)

    def _handler(self, exc: Exception) -> Handler:
        """The handler for `exc`, chosen as Starlette chooses it: by the exception's
        class, nearest first."""
        for kind in type(exc).__mro__:
            handler = self._handlers.get(kind)
            if handler is not None:
                return handler
        raise exc  # no handler at all (the app always has one for Exception)
