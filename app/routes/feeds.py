"""`GET /v1/feeds/{feed}?t=`: a reader's JSON feed for AMP `<amp-list>`.

Order of work: verify the token, check the sender allow-list, then read data. Anything
that goes wrong with the data (missing reader, store down, budget overrun, bad stored
data, a bug: `Reason`) is answered 200 with the feed's fallback, named in
`X-Kairos-Fallback`.

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

from app.errors import BadRequest, NotFound
from app.fallbacks import Fallback, Reason, reason_for
from app.feeds import FEEDS, PERSONAL_FEEDS, FeedBuilder, FeedContext
from app.http import header, query_dict
from app.links import Links
from app.middleware.observe import FALLBACK_SCOPE_KEY
from app.reader import Item, personalized, tracked
from app.services import Services
from app.tokens import BadToken, Grant

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
        self.reader = services.reader
        self.catalog = services.reader.catalog
        self.fallbacks = services.fallbacks
        self.budget_s = services.settings.budget_s
        self.signer = services.signer
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
        # The one place a feed's fallback is swapped in: whatever goes wrong with the
        # reader's data, a mail client gets 200 and the feed's static content.
        try:
            body = await self._body(name, builder, grant, limit, deadline)
        except Exception as exc:  # noqa: BLE001 - an open never answers 5xx for data
            reason = reason_for(exc)
            if reason is Reason.ERROR:
                log.exception("feed %s failed; serving its fallback", name)
            body = self.fallbacks.feed(name, reason)
            cors = [(b"x-kairos-fallback", reason.encode()), *cors]
            scope[FALLBACK_SCOPE_KEY] = reason  # for the access log
        headers = [*BASE_HEADERS, (b"content-length", str(len(body)).encode()), *cors]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _body(
        self, name: str, builder: FeedBuilder, grant: Grant, limit: int, deadline: float
    ) -> bytes:
        """The feed's JSON for the grant's reader; raises what asks for the fallback."""
        if grant.expired():
            raise Fallback(Reason.EXPIRED_TOKEN)
        lookup = await self.profiles.now(grant.user_id, self.budget_s)
        profile = lookup.profile
        if profile is None:
            raise Fallback(lookup.reason or Reason.MISSING_PROFILE)
        if name in PERSONAL_FEEDS and not personalized(profile):
            raise Fallback(Reason.NO_CONSENT)
        # A feed built from a cached profile is kept beside it until the profile
        # changes or the catalog cache turns over.
        language = grant.params.get("lang") if grant.params else None
        memo, key = lookup.memo, (name, limit, grant.campaign, language)
        generation = self.catalog.generation()
        built = memo.get(key) if memo is not None else None
        if built is not None and built[1] == generation:
            return built[0]  # type: ignore[no-any-return]
        formats = self.reader.formats_for(language)
        items = await builder(FeedContext(profile, self.reader, limit, deadline, formats))
        links = Links(
            self.signer,
            self.public_url,
            grant.user_id,
            grant.campaign,
            "",  # an unsafe target loses its link
            tracking=tracked(profile),
        )
        body = orjson.dumps({"items": clicked(items, links)})
        if memo is not None:
            memo[key] = (body, generation)
        return body


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
