"""What the reader's mail client hits besides feeds: the open pixel and click redirects.

A click redirects to exactly the target signed into its token and nowhere else; a bad
token is 403, never a redirect. An email's links are `/c/{link}?r={reader}`: the link
token signs the target and campaign (shared by every reader of the campaign), the reader
token signs the reader and campaign. A link token that names its reader itself needs no
`r`; a link whose `r` was lost on the way (a tool stripped the query) still redirects to
its signed target, unattributed.

The one exception to "exactly the target" is chosen by us, not by the link: a click on
recommendation slot k (a token carrying `{"slot": k}`) goes to the product the reader
saw in that slot's live image, when one is remembered (app/picks.py), else to the signed
target.

Each open and attributed click is queued as an event (app/campaigns/tracking.py), after
the answer is decided and without waiting for the store; a machine's fetch is flagged,
and the variant signed by the render goes with it (for the campaign's A/B counts).
"""

from __future__ import annotations

import base64
from types import MappingProxyType

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from app.campaigns.machine import machine_click_reason, machine_open_reason
from app.services import Services
from app.targets import UnsafeTarget, check_target
from app.tokens import BadToken, Grant, Tokens

PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_CACHE = MappingProxyType(
    {
        "Cache-Control": "no-cache, no-store, must-revalidate, max-age=0",
        "Expires": "0",
        "Referrer-Policy": "no-referrer",
    }
)


def routes(services: Services) -> list[Route]:
    tokens = services.tokens
    picks, tracker = services.picks, services.tracker

    async def click(request: Request) -> Response:
        grant = tokens.verify("click", request.path_params["token"])
        reader = grant if grant.user_id else _reader(tokens, request, grant.campaign)
        user_id = reader.user_id if reader is not None else ""
        try:
            target = check_target(grant.resource)
        except UnsafeTarget:
            # Signed by us but unsafe: only possible with an old or leaked key.
            raise BadToken("this link's target is not allowed") from None
        slot = (grant.params or {}).get("slot")
        if not isinstance(slot, int) or isinstance(slot, bool):
            slot = None
        if user_id and slot is not None:
            target = await picks.target(user_id, grant.campaign, slot) or target
        if reader is not None and user_id:
            headers = request.headers
            machine = machine_click_reason(headers.get("user-agent"), headers, request.method)
            tracker.click(user_id, grant.campaign, target, slot, machine, reader.variant)
        # An expired click token still redirects: the target is what we signed, and an
        # old email should keep working.
        return RedirectResponse(target, status_code=302, headers=NO_CACHE)

    async def pixel(request: Request) -> Response:
        grant = tokens.verify("pixel", request.path_params["token"])
        if grant.user_id:
            headers = request.headers
            machine = machine_open_reason(headers.get("user-agent"), headers)
            tracker.open(grant.user_id, grant.campaign, machine, grant.variant)
        return Response(PIXEL_GIF, media_type="image/gif", headers=NO_CACHE)

    return [
        Route("/c/{token}", click, methods=["GET"]),
        Route("/v1/px/{token}.gif", pixel, methods=["GET"]),
    ]


def _reader(tokens: Tokens, request: Request, campaign: str | None) -> Grant | None:
    """The reader (and variant) of a shared click link, from its `r` token (None when
    there is none); a reader token that is bad or from another campaign is a bad link:
    403."""
    token = request.query_params.get("r")
    if not token:
        return None
    reader = tokens.verify("reader", token)
    if reader.campaign != campaign:
        raise BadToken("this reader token belongs to another campaign")
    return reader
