"""Send-time rendering for ESPs: `POST /v1/render`, `GET /v1/render/{template}`,
`POST /v1/render/batch` (NDJSON streamed), and the designers' `GET /v1/templates` (their
previews: app/routes/studio.py).

A render of a campaign for a tracked reader is a send: it is queued to be counted for
the reader's variant (app/campaigns/tracking.py), never waited for. A preview is not."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.campaigns.tracking import Tracker
from app.errors import KairosError, UnsupportedMediaType
from app.http import content_type
from app.profiles.cache import Lookup
from app.render.batch import batch_answers, request_lines
from app.render.compiler import Compiled
from app.render.mime import mime_message
from app.render.renderer import Renderer
from app.render.request import RenderRequest
from app.render.result import FORMATS, RenderResult
from app.responses import JSONResponse, StreamResponse
from app.routes.profiles import _json_body
from app.services import Services
from app.stores.protocols import Profile


class Sending:
    """A renderer whose renders are sends, each counted by `tracker` (the batch's)."""

    def __init__(self, renderer: Renderer, tracker: Tracker) -> None:
        self._renderer, self._tracker = renderer, tracker

    async def lookup(self, user_id: str) -> Lookup:
        return await self._renderer.lookup(user_id)

    async def render(
        self,
        template: str,
        user_id: str,
        *,
        profile: Profile | None = None,
        campaign: str | None = None,
        formats: tuple[str, ...] = FORMATS,
        lookup: Lookup | None = None,
        unsubscribe: str | None = None,
    ) -> RenderResult:
        result = await self._renderer.render(
            template,
            user_id,
            profile=profile,
            campaign=campaign,
            formats=formats,
            lookup=lookup,
            unsubscribe=unsubscribe,
        )
        self.sent(campaign, user_id, result)
        return result

    def sent(self, campaign: str | None, user_id: str, result: RenderResult) -> None:
        # A reader who declined tracking is not counted: their opens and clicks never
        # are, and counting the send alone would keep their id in campaign data.
        if campaign and result.tracked:
            self._tracker.send(campaign, result.variant, user_id, result.weights)


def routes(services: Services) -> list[Route]:
    renderer = services.renderer
    sending = Sending(renderer, services.tracker)

    async def run(req: RenderRequest, compiled: Compiled | None = None) -> RenderResult:
        """`req` rendered, with `compiled` for its template when given (a preview)."""
        return await renderer.render(
            req.template if compiled is None else compiled,
            req.user_id,
            profile=req.profile,
            campaign=req.campaign,
            formats=req.formats,
            unsubscribe=req.unsubscribe_url,
        )

    def answer(request: Request, result: RenderResult) -> Response:
        if "message/rfc822" in request.headers.get("accept", ""):
            return Response(mime_message(result), media_type="message/rfc822")
        return Response(result.json(), media_type="application/json")

    async def send(req: RenderRequest) -> RenderResult:
        result = await run(req)
        sending.sent(req.campaign, req.user_id, result)
        return result

    async def render(request: Request) -> Response:
        req = RenderRequest(await _json_body(request))
        return answer(request, await send(req))

    async def render_get(request: Request) -> Response:
        query = request.query_params
        doc: dict[str, Any] = {"template": request.path_params["template"]}
        for key in ("user_id", "campaign", "unsubscribe_url"):
            if key in query:
                doc[key] = query[key]
        if "formats" in query:
            doc["formats"] = query["formats"].split(",")
        return answer(request, await send(RenderRequest(doc)))

    async def batch(request: Request) -> Response:
        media_type = content_type(request.headers)
        if media_type not in ("application/x-ndjson", "application/jsonl", "application/json"):
            raise UnsupportedMediaType("send the batch as application/x-ndjson")
        default_template = request.query_params.get("template")
        lines = batch_answers(request_lines(request.stream()), default_template, sending)
        return StreamResponse(lines, media_type="application/x-ndjson")

    async def templates(request: Request) -> Response:
        listing = []
        for name in renderer.names():
            try:
                compiled = renderer.compiled(name)
            except KairosError as exc:
                listing.append({"name": name, "ok": False, "error": exc.message})
                continue
            source = compiled.source
            listing.append(
                {
                    "name": name,
                    "ok": True,
                    "description": source.description,
                    "variants": source.variants,
                    "blocks": [use.block for use in source.blocks],
                    "samples": sorted(renderer.samples(name)),
                    "version": compiled.version,
                }
            )
        return JSONResponse({"templates": listing})

    return [
        Route("/v1/render", render, methods=["POST"]),
        Route("/v1/render/batch", batch, methods=["POST"]),
        Route("/v1/render/{template}", render_get, methods=["GET"]),
        Route("/v1/templates", templates, methods=["GET"]),
    ]
