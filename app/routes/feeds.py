"""`GET /v1/feeds/{feed}?t=`: a reader's JSON feed for AMP `<amp-list>`.

Order of work: verify the token, check the sender allow-list, then read data. Anything
that goes wrong with the data (missing reader, store down, budget overrun, bad stored
data) is answered 200 with the feed's fallback, named in `X-Kairos-Fallback`.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.errors import BadRequest, NotFound, StoreUnavailable
from app.feeds import FEEDS, FeedContext
from app.services import Services
from app.tokens import BadToken

log = logging.getLogger("kairos.feeds")

DEFAULT_LIMIT = 4
MAX_LIMIT = 20
NO_STORE = "private, no-store"


def routes(services: Services) -> list[Route]:
    tokens, cors, profiles = services.tokens, services.amp_cors, services.profiles
    catalog, fallbacks = services.catalog, services.fallbacks
    budget_s = services.settings.budget_s

    async def feed(request: Request) -> Response:
        start = time.monotonic()
        name = request.path_params["feed"]
        grant = tokens.verify("feed", request.query_params.get("t", ""))
        if grant.resource != name:
            raise BadToken("this token is for another feed")
        if name not in FEEDS:
            raise NotFound(f"no feed named {name!r}")
        headers = cors.headers(request.headers, request.query_params)
        headers["Cache-Control"] = NO_STORE

        reason = None
        body = b""
        if grant.expired():
            reason = "expired-token"
        else:
            lookup = await profiles.get(grant.user_id, budget_s)
            if lookup.profile is None:
                reason = lookup.reason or "missing-profile"
            else:
                ctx = FeedContext(lookup.profile, catalog, _limit(request))
                remaining = budget_s - (time.monotonic() - start)
                try:
                    async with asyncio.timeout(max(remaining, 0.001)):
                        items = await FEEDS[name](ctx)
                    body = orjson.dumps({"items": items})
                except TimeoutError:
                    reason = "budget"
                except StoreUnavailable:
                    reason = "store-unavailable"
                except (KeyError, TypeError, ValueError, AttributeError):
                    log.exception("feed %s: stored data for a reader is invalid", name)
                    reason = "invalid-data"
        if reason is not None:
            body = fallbacks.feed(name, reason)
            headers["X-Kairos-Fallback"] = reason
        return Response(body, media_type="application/json", headers=headers)

    return [Route("/v1/feeds/{feed}", feed, methods=["GET"])]


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}", field="limit")
    return int(raw)
