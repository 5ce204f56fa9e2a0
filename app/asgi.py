"""The Kairos ASGI app: one middleware stack in front of one router.

Every request, open-time or not, takes the same path: the edge (app/middleware/edge.py:
observed, its body capped, any exception answered by the one error path), then the
dispatch: an open-time path (every email open) to its route, any other to Starlette's
router. Starlette's own application
class is not used: its server-error and exception middlewares would be a second error
path, and cost the open-time routes as much as the route itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import State
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import Lifespan, Receive, Scope, Send

from app.metrics import Metrics
from app.middleware.body_limit import BodyLimit
from app.middleware.edge import Edge
from app.middleware.observe import Observer


class KairosApp:
    """`open_time` routes and then `routes`, each registered once, behind the one edge;
    `body_limit_exempt`: paths that cap what they read themselves (streams)."""

    def __init__(
        self,
        routes: Sequence[BaseRoute],
        *,
        open_time: Sequence[Route] = (),
        metrics: Metrics,
        max_body_bytes: int,
        body_limit_exempt: tuple[str, ...] = (),
        lifespan: Lifespan[KairosApp] | None = None,
    ) -> None:
        self.state = State()
        # No redirect to the path without its trailing slash: it answered a path that
        # names nothing ("/v1/profiles/..%2f") 307 to a URL made from the Host header.
        self.router = Router(list(routes), lifespan=lifespan, redirect_slashes=False)
        self._open_time = tuple(open_time)
        # Where the open-time paths start ("/v1/feeds/"): other paths skip their match.
        self._open_prefixes = tuple(r.path.split("{", 1)[0] for r in self._open_time)
        observer = Observer(metrics, self.routes)
        body_limit = BodyLimit(max_body_bytes, body_limit_exempt)
        self._edge = Edge(self._dispatch, observer, body_limit)

    @property
    def routes(self) -> list[BaseRoute]:
        return [*self._open_time, *self.router.routes]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The router raises 404 and 405 as exceptions, for the error path, when it
        # finds an app in the scope; handlers reach the app (and its state) there too.
        scope["app"] = self
        if scope["type"] == "lifespan":
            await self.router(scope, receive, send)
            return
        await self._edge(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        """An open-time path to its route (Starlette's own `Route.handle`: a wrong method
        is its 405), every other path to the router. Every email open takes this path:
        it skips the router's generic loop, about 1 µs of a 36 µs open."""
        if scope["path"].startswith(self._open_prefixes):
            for route in self._open_time:
                match, child = route.matches(scope)
                if match is not Match.NONE:
                    scope.update(child)
                    scope["route"] = route
                    await route.handle(scope, receive, send)
                    return
        await self.router(scope, receive, send)
