"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.errors import StoreUnavailable
from app.responses import JSONResponse
from app.services import Services


def routes(services: Services) -> list[Route]:
    stores, profiles, metrics = services.stores, services.profiles, services.metrics
    timeout_s = max(services.settings.redis_timeout_ms / 1000, 0.05)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    circuit = stores.backend.circuit

    def store(ok: bool) -> dict[str, Any]:
        # The breaker's state after the ping: while open, the ping failed at once.
        status: dict[str, Any] = {"backend": stores.name, "ok": ok}
        if circuit is not None:
            status["breaker"] = circuit.state
        return status

    async def readyz(request: Request) -> Response:
        try:
            async with asyncio.timeout(timeout_s):
                await stores.ping()
        except (StoreUnavailable, TimeoutError):
            metrics.store_up.set(0)
            body = {"status": "unavailable", "store": store(False)}
            return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
        metrics.store_up.set(1)
        profiles.mark_up()
        return JSONResponse({"status": "ready", "store": store(True)})

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
