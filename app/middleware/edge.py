"""The edge every request passes: observed (metrics, access log), its body capped, and
whatever it raises answered by the one error path (`app.errors.error_response`).

The three run in one ASGI frame rather than three nested middlewares: measured under
uvicorn, each nested layer cost an open-time request about 2.5 µs (a cached countdown
answered 13% fewer requests a second with three layers than before them).
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import error_response
from app.middleware.body_limit import BodyLimit
from app.middleware.observe import Observer, loggable_path


class Edge:
    def __init__(self, app: ASGIApp, observer: Observer, body_limit: BodyLimit | None = None):
        self.app = app
        self.observer = observer
        self.body_limit = body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        started = False

        async def edge_send(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
            await send(message)

        try:
            if self.body_limit is not None:
                receive = self.body_limit.receive(scope, receive)
            await self.app(scope, receive, edge_send)
        except Exception as exc:
            if started:
                raise  # too late for an error answer: the server closes the connection
            response = error_response(exc, scope["method"], loggable_path(scope))
            await response(scope, receive, edge_send)
        finally:
            self.observer.record(scope, status, time.perf_counter() - start)
