"""`GET /v1/feeds/{feed}?t=`: a reader's JSON feed for AMP `<amp-list>`.

Order of work: verify the token, check the sender allow-list, then read data. Anything
that goes wrong with the data (missing reader, store down, budget overrun, bad stored
data) is answered 200 with the feed's fallback, named in `X-Kairos-Fallback`.

An item's `url` is a signed click URL for the token's reader and campaign (`/c/...`),
like every link of a rendered email; the plain target for readers who declined
tracking.

This is the route every email open hits, so it is a plain ASGI endpoint: no Request or
Response objects, headers prepared once. Errors it raises are still answered by the
app's exception handlers.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from app.errors import BadRequest, CorruptData, NotFound, StoreUnavailable
from app.feeds import FEEDS, PERSONAL_FEEDS, FeedContext
from app.feeds.base import Item, personalized, tracked
from app.http import header, query_dict
from app.middleware.observe import FALLBACK_SCOPE_KEY
from app.render.links import Links
from app.services import Services
from app.tokens import BadToken

log = logging.getLogger("kairos.feeds")

DEFAULT_LIMIT = 4
MAX_LIMIT = 20
BASE_HEADERS = (
    (b"content-type", b"application/json"),
    (b"cache-control", b"private, no-store"),
)


class FeedEndpoint:
    def __init__(self, services: Services) -> None:
        self.tokens = services.tokens
        self.cors = services.amp_cors
        self.profiles = services.profiles
        self.catalog = services.catalog
        self.fallbacks = services.fallbacks
        self.budget_s = services.settings.budget_s
        self.signer = services.renderer.signer
        self.public_url = services.settings.public_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        deadline = asyncio.get_running_loop().time() + self.budget_s
        name = scope["path_params"]["feed"]
        query = query_dict(scope["query_string"])
        grant = self.tokens.verify("feed", query.get("t", ""))
        if grant.resource != name:
            raise BadToken("this token is for another feed")
        builder = FEEDS.get(name)
        if builder is None:
            raise NotFound(f"no feed named {name!r}")
        cors = self.cors.headers(
            header(scope, b"amp-email-sender"), header(scope, b"origin"), query
        )
        limit = _limit(query.get("limit"))

        reason = None
        body = b""
        if grant.expired():
            reason = "expired-token"
        else:
            lookup = self.profiles.cached(grant.user_id) or await self.profiles.get(
                grant.user_id, self.budget_s
            )
            if lookup.profile is None:
                reason = lookup.reason or "missing-profile"
            elif name in PERSONAL_FEEDS and not personalized(lookup.profile):
                reason = "no-consent"
            else:
                # A feed built from a cached profile is kept beside it until the profile
                # changes or the catalog cache turns over.
                memo, key = lookup.memo, (name, limit, grant.campaign)
                generation = self.catalog.generation()
                built = memo.get(key) if memo is not None else None
                if built is not None and built[1] == generation:
                    body = built[0]
                else:
                    ctx = FeedContext(lookup.profile, self.catalog, limit, deadline)
                    try:
                        links = Links(
                            self.signer,
                            self.public_url,
                            grant.user_id,
                            grant.campaign,
                            "",  # an unsafe target loses its link
                            tracking=tracked(lookup.profile),
                        )
                        body = orjson.dumps({"items": clicked(await builder(ctx), links)})
                        if memo is not None:
                            memo[key] = (body, generation)
                    except TimeoutError:
                        reason = "budget"
                    except StoreUnavailable:
                        reason = "store-unavailable"
                    except (CorruptData, KeyError, TypeError, ValueError, AttributeError):
                        log.exception("feed %s: stored data for a reader is invalid", name)
                        reason = "invalid-data"

        if reason is not None:
            body = self.fallbacks.feed(name, reason)
            cors = [(b"x-kairos-fallback", reason.encode()), *cors]
            scope[FALLBACK_SCOPE_KEY] = reason  # for the access log
        headers = [*BASE_HEADERS, (b"content-length", str(len(body)).encode()), *cors]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def clicked(items: list[Item], links: Links) -> list[Item]:
    """`items` with each `url` made the reader's click URL (new dicts: items may be
    shared by readers)."""
    return [
        {**item, "url": links.click(item["url"])} if item.get("url") else item for item in items
    ]


def routes(services: Services) -> list[Route]:
    return [Route("/v1/feeds/{feed}", FeedEndpoint(services), methods=["GET"])]


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}", field="limit")
    return int(raw)
