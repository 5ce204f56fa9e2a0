"""Baselines for bench/feeds.py: the least a Starlette app can do to answer a cart feed.

Neither app imports Kairos: they stand for "Starlette + uvicorn + orjson (+ Redis)" with
nothing else, so bench/feeds.py can say how much of that ceiling Kairos keeps.

`static_app` (bench case c)
    GET /v1/feeds/{feed} answers `orjson.dumps(doc)`, built per request from a dict loaded
    at start-up from the JSON file named by BENCH_FEED_BODY (the body Kairos served for
    one reader's cart feed). The query string (a Kairos token) is ignored.

`redis_app` (bench case d)
    GET /v1/feeds/{feed}?u=<user_id> does one GET of `kairos:{<user_id>}:profile` through
    a pooled `redis.asyncio` client created at start-up (REDIS_URL), then
    `orjson.loads` + `orjson.dumps` of the stored profile: 404 when the key is missing.

Both answer `GET /healthz` and send the same `Cache-Control` header as Kairos's feeds.

    uvicorn --app-dir bench bare:static_app    # BENCH_FEED_BODY=/path/to/body.json
    uvicorn --app-dir bench bare:redis_app     # REDIS_URL=redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import BlockingConnectionPool, Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

HEADERS = {"Cache-Control": "private, no-store"}


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


# --- (c): a constant feed, serialised per request -------------------------------------

_doc: dict[str, Any] = {}


async def static_feed(request: Request) -> Response:
    return Response(orjson.dumps(_doc), media_type="application/json", headers=HEADERS)


def _load_doc() -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(Path(os.environ["BENCH_FEED_BODY"]).read_bytes())
    return doc


@contextlib.asynccontextmanager
async def _static_lifespan(app: Starlette) -> AsyncIterator[None]:
    global _doc
    _doc = _load_doc()  # once, at start-up
    yield


static_app = Starlette(
    routes=[
        Route("/healthz", healthz, methods=["GET"]),
        Route("/v1/feeds/{feed}", static_feed, methods=["GET"]),
    ],
    lifespan=_static_lifespan,
)


# --- (d): one Redis GET per request -----------------------------------------------------

_redis: Redis | None = None


async def redis_feed(request: Request) -> Response:
    user_id = request.query_params.get("u", "")
    assert _redis is not None
    raw = await _redis.get(f"kairos:{{{user_id}}}:profile")
    if raw is None:
        return Response(b'{"error":"not_found"}', status_code=404, media_type="application/json")
    profile = orjson.loads(raw)
    return Response(orjson.dumps(profile), media_type="application/json", headers=HEADERS)


@contextlib.asynccontextmanager
async def _redis_lifespan(app: Starlette) -> AsyncIterator[None]:
    global _redis
    # The same pool style as Kairos's Redis stores: a blocking pool of 64 connections,
    # 0.5 s timeouts, created once at start-up.
    pool = BlockingConnectionPool.from_url(
        os.environ["REDIS_URL"],
        max_connections=64,
        timeout=0.5,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
    )
    _redis = Redis(connection_pool=pool)
    try:
        await _redis.ping()
        yield
    finally:
        await _redis.aclose()
        await pool.disconnect()
        _redis = None


redis_app = Starlette(
    routes=[
        Route("/healthz", healthz, methods=["GET"]),
        Route("/v1/feeds/{feed}", redis_feed, methods=["GET"]),
    ],
    lifespan=_redis_lifespan,
)
