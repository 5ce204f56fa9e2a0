"""The designer's studio API: `GET /v1/blocks` (the block gallery) and `POST
/v1/preview` (a render of saved files or of an unsaved edit, as any reader, with
diagnostics: app/studio/preview.py). Behind the server-to-server guard, as
`GET /v1/templates` is."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.render.mime import mime_message
from app.responses import JSONResponse
from app.routes.profiles import _json_body
from app.services import Services
from app.studio import gallery


def routes(services: Services) -> list[Route]:
    previews = services.previews
    registry = services.renderer.templates

    async def blocks(request: Request) -> Response:
        return JSONResponse({"blocks": await asyncio.to_thread(gallery.listing, registry)})

    async def preview(request: Request) -> Response:
        doc = await _json_body(request)
        if "message/rfc822" in request.headers.get("accept", ""):
            # What would be sent: never annotated.
            sent = await previews.preview(doc, annotated=False)
            return Response(mime_message(sent.result), media_type="message/rfc822")
        return JSONResponse((await previews.preview(doc)).body())

    return [
        Route("/v1/blocks", blocks, methods=["GET"]),
        Route("/v1/preview", preview, methods=["POST"]),
    ]
