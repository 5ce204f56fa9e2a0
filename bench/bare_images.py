"""Baseline for bench/images.py: the least a Starlette app can do to serve a live image.

`static_app` answers `GET /v1/img/{image}.{format}` with the bytes of the file named by
BENCH_IMAGE_BODY (the GIF Kairos served for one reader), read once at start-up, with the
same headers as Kairos (`Content-Type`, `Cache-Control`, `Expires`, `Pragma`). The query
string (a Kairos token) is ignored. It does not import Kairos.

    BENCH_IMAGE_BODY=/path/to/countdown.gif uvicorn --app-dir bench bare_images:static_app
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

HEADERS = {
    "Cache-Control": "no-cache, no-store, must-revalidate, max-age=0",
    "Expires": "0",
    "Pragma": "no-cache",
}

_body = b""


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


async def image(request: Request) -> Response:
    return Response(_body, media_type="image/gif", headers=HEADERS)


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    global _body
    _body = _load()  # once, at start-up
    yield


def _load() -> bytes:
    return Path(os.environ["BENCH_IMAGE_BODY"]).read_bytes()


static_app = Starlette(
    routes=[
        Route("/healthz", healthz, methods=["GET"]),
        Route("/v1/img/{image}.{format}", image, methods=["GET"]),
    ],
    lifespan=_lifespan,
)
