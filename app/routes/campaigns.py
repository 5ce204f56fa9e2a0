"""`GET /v1/campaigns/{campaign}/stats`: a campaign's A/B figures, behind a Bearer API key."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.campaigns.report import MIN_SAMPLE, report
from app.errors import BadRequest, NotFound
from app.render.request import CAMPAIGN
from app.responses import JSONResponse
from app.services import Services

MAX_MIN_SAMPLE = 1_000_000


def routes(services: Services) -> list[Route]:
    store = services.stores.campaigns

    async def stats(request: Request) -> Response:
        campaign = request.path_params["campaign"]
        query = request.query_params
        min_sample = _min_sample(query.get("min_sample"))
        # A name a render refuses was never counted.
        data = await store.campaign(campaign) if CAMPAIGN.fullmatch(campaign) else None
        if data is None:
            raise NotFound(
                f"nothing was counted for campaign {campaign!r}", code="campaign_not_found"
            )
        found = report(campaign, data, control=query.get("control"), min_sample=min_sample)
        return JSONResponse(found)

    return [Route("/v1/campaigns/{campaign}/stats", stats, methods=["GET"])]


def _min_sample(value: str | None) -> int:
    if value is None:
        return MIN_SAMPLE
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_MIN_SAMPLE:
        raise BadRequest(
            f"min_sample must be an integer from 1 to {MAX_MIN_SAMPLE}",
            code="invalid_query",
            field="min_sample",
        )
    return int(value)
