"""The app factory: `create_app(settings)` builds every dependency once and wires routes."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.asgi import KairosApp
from app.demo import load_demo
from app.errors import StoreUnavailable
from app.logs import configure_logging
from app.openapi import spec
from app.protocol import STATE_KEY as PROTOCOL_STATE
from app.protocol import Limits
from app.responses import JSONResponse
from app.routes import (
    campaigns,
    events,
    feeds,
    health,
    images,
    opens,
    profiles,
    render,
    segments,
    studio,
    unsubscribe,
)
from app.routes.guard import guarded
from app.services import Services, build_services
from app.settings import Settings
from app.stores.bundle import Stores
from app.studio import mail, stream
from app.studio import page as studio_page
from app.studio.access import StudioAccess
from app.studio.live import Live

log = logging.getLogger("kairos")

SHUTDOWN_WAIT_S = 3.0
GC_YOUNG_THRESHOLD = 100_000


def create_app(settings: Settings | None = None, *, stores: Stores | None = None) -> KairosApp:
    """A Kairos ASGI app. `stores` overrides the backend chosen by the settings."""
    settings = (settings or Settings.from_env()).with_development_key()
    services = build_services(settings, stores)
    openapi_doc = spec(settings.public_url)
    live = Live(services.renderer.templates, services.segments, settings)

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_doc)

    limits = Limits(settings.max_head_bytes, settings.head_timeout_s, settings.body_timeout_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: KairosApp) -> AsyncIterator[dict[str, Any]]:
        await _start(services)
        live.open()
        stop = asyncio.Event()
        follower = asyncio.create_task(services.profiles.follow_changes(stop))
        tracking = asyncio.create_task(services.tracker.run(stop))
        sweeping = asyncio.create_task(services.sweep.run(stop))
        cooccurrence = asyncio.create_task(services.cooccurrence.run(stop))
        sharing = asyncio.create_task(services.metrics.share(stop))
        try:
            # The HTTP protocol (app/protocol.py) reads its limits from this state.
            yield {PROTOCOL_STATE: limits}
        finally:
            await live.close()
            stop.set()
            services.tracker.wake()
            # The follower sees the flag within a second; cancel only as a last resort
            # (a cancel can be lost inside redis-py's subscribe on Python 3.11).
            tasks = {follower, tracking, sweeping, cooccurrence, sharing}
            done, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_WAIT_S)
            for task in pending:
                task.cancel()
            await services.images.close()
            await services.reader.recommender.close()
            await services.stores.close()
            services.renderer.close()
            await asyncio.to_thread(services.amp_check.close)
            # Last: what shutting down counted is in this worker's final numbers.
            services.metrics.close()

    api_keys = services.api_keys
    access = StudioAccess(settings, api_keys)
    app = KairosApp(
        [
            *opens.routes(services),
            *unsubscribe.routes(services),
            *health.routes(services),
            *events.routes(services),
            *guarded(
                api_keys,
                [
                    *profiles.routes(services),
                    *render.routes(services),
                    *studio.routes(services),
                    *mail.routes(services),
                    *segments.routes(services),
                    *campaigns.routes(services),
                ],
                access,
                services.limits,
            ),
            *studio_page.routes(services, access),
            *stream.routes(live, access),
            Route("/openapi.json", openapi, methods=["GET"]),
        ],
        # Every email open hits these.
        open_time=[*feeds.routes(services), *images.routes(services)],
        metrics=services.metrics,
        max_body_bytes=settings.max_body_bytes,
        # These cap what they read themselves (events: their own limit, gzip undone).
        body_limit_exempt=("/v1/render/batch", *events.PATHS),
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.live = live
    return app


async def _start(services: Services) -> None:
    settings = services.settings
    if settings.generated_secret:
        log.warning(
            "KAIROS_SECRET_KEYS is not set: signing with a development key generated on "
            "this machine. Set KAIROS_SECRET_KEYS before sending real email."
        )
    if not settings.api_keys:
        log.warning("KAIROS_API_KEYS is not set: the profiles API answers 401 to every call")
    if settings.demo_data:
        try:
            products, readers = await load_demo(services.stores)
            log.info("demo data loaded: %d products, %d readers", products, readers)
        except StoreUnavailable as exc:
            log.warning("could not load demo data: %s", exc)
    try:
        await services.stores.ping()
        services.metrics.store_up.set(1)
    except StoreUnavailable as exc:
        # Start anyway: feeds answer with fallbacks and /readyz says 503 until it is back.
        services.metrics.store_up.set(0)
        log.warning("store %s is unreachable at start-up: %s", services.stores.name, exc)
    log.info("kairos ready: store=%s budget=%dms", services.stores.name, settings.budget_ms)
    # What start-up built (modules, settings, demo data) lives as long as the process:
    # move it out of the collector's sight so full collections under load stay short.
    gc.freeze()
    # The youngest generation is collected when the objects alive since the last
    # collection pass a threshold. Sixteen events requests in flight hold some 50,000:
    # at Python's 700, or at 10,000, each collection finds them alive, promotes them and
    # soon traverses them again (3 ms each; ~10 % of the server's CPU). At 100,000 it
    # rarely runs under load (one 15 ms pause in 160,000 events measured), and only
    # reference cycles wait for it: events +10-20 %, feeds unchanged (docs/benchmarks.md).
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def factory() -> KairosApp:
    """Entry point for `uvicorn --factory app.app:factory` (settings from the environment)."""
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    return create_app(settings)
