"""The Kairos ASGI app: one middleware stack in front of one router.

Every request, open-time or not, takes the same path: the edge (app/middleware/edge.py:
observed, its body capped, any exception answered by the one error path), then
Starlette's router, whose first routes are the open-time ones (every email open hits
them). Starlette's own application
class is not used: its server-error and exception middlewares would be a second error
path, and cost the open-time routes as much as the route itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import State
from starlette.routing import BaseRoute, Router
from starlette.types import Lifespan, Receive, Scope, Send

from app.metrics import Metrics
from app.middleware.body_limit import BodyLimit
from app.middleware.edge import Edge
from app.middleware.observe import Observer


class KairosApp:
    """`routes` in order (the first match wins) behind the middleware stack;
    `body_limit_exempt`: paths that cap what they read themselves (streams)."""

    def __init__(
        self,
        routes: Sequence[BaseRoute],
        *,
        metrics: Metrics,
        max_body_bytes: int,
        body_limit_exempt: tuple[str, ...] = (),
        lifespan: Lifespan[KairosApp] | None = None,
    ) -> None:
        self.state = State()
        self.router = Router(list(routes), lifespan=lifespan)
        observer = Observer(metrics, self.router.routes)
        body_limit = BodyLimit(max_body_bytes, body_limit_exempt)
        self._edge = Edge(self.router, observer, body_limit)

    @property
    def routes(self) -> list[BaseRoute]:
        return self.router.routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The router raises 404 and 405 as exceptions, for the error path, when it
        # finds an app in the scope; handlers reach the app (and its state) there too.
        scope["app"] = self
        if scope["type"] == "lifespan":
            await self.router(scope, receive, send)
            return
        await self._edge(scope, receive, send)
