"""`/v1/unsubscribe/{token}`: one-click unsubscribe (RFC 8058) with a reader's signed
token (purpose "unsubscribe": the opaque reader id and the campaign, never PII).

`POST` is the unsubscribe: what mail clients send for `List-Unsubscribe-Post` (the body
`List-Unsubscribe=One-Click`, though any body is accepted and none is read; no cookie,
no script). It sets `consent.email` to false in the reader's profile through the profile
store's compare-and-set, so a concurrent write is not lost and every cache hears of it
as of any profile write; a repeated POST changes nothing and answers the same. `GET`
only shows a page whose button POSTs: link scanners fetch URLs, so a GET never
unsubscribes. A forged token is 403 (JSON for a POST, a page for a GET). The link has
no expiry, and one signed with an expiry is honoured past it: an opt-out is never
refused for its age.
"""

from __future__ import annotations

from types import MappingProxyType

from markupsafe import escape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from app.events.privacy import ReaderHashes
from app.links import UNSUBSCRIBE_PATH
from app.profiles.schema import updated_at
from app.reader import subscribed
from app.responses import JSONResponse
from app.services import Services
from app.stores.protocols import Profile, ReaderAsk
from app.tokens import BadToken, Grant, Tokens

HEADERS = MappingProxyType(
    {
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Robots-Tag": "noindex",
        "Content-Security-Policy": (
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
            "frame-ancestors 'none'"
        ),
    }
)
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; color: #1f2933; background: #fff;
  margin: 0; padding: 48px 24px; }}
main {{ max-width: 32rem; margin: 0 auto; }}
h1 {{ font-size: 1.5rem; line-height: 1.3; margin: 0 0 16px; }}
button {{ font: inherit; font-weight: 600; color: #fff; background: #1f2933;
  border: 0; border-radius: 6px; padding: 12px 24px; cursor: pointer; }}
button:focus-visible {{ outline: 3px solid #2563eb; outline-offset: 2px; }}
</style>
</head>
<body>
<main>
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"""


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    """A small page: `title` as the heading, `body` (markup, no reader data) under it."""
    html = PAGE.format(title=escape(title), body=body)
    return HTMLResponse(html, status_code=status, headers=dict(HEADERS))


def routes(services: Services) -> list[Route]:
    tokens, profiles, metrics = services.tokens, services.profiles, services.metrics
    events = services.stores.events
    hashes = ReaderHashes(services.settings.secret_keys)

    async def confirm(request: Request) -> Response:
        try:
            _grant(tokens, request.path_params["token"])
        except BadToken:
            body = "<p>This unsubscribe link is not valid. Please use the link in the email.</p>"
            return page("Link not valid", body, status=403)
        # No action: the form posts to the very URL of the page, whatever proxy or
        # path prefix it came through.
        body = (
            "<p>You will no longer receive these emails.</p>\n"
            '<form method="post">\n'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">\n'
            '<button type="submit">Unsubscribe</button>\n'
            "</form>"
        )
        return page("Unsubscribe from these emails?", body)

    async def unsubscribe(request: Request) -> Response:
        grant = _grant(tokens, request.path_params["token"])
        (state,) = await events.read([ReaderAsk(grant.user_id, (), hashes.of(grant.user_id))])
        if state.suppressed:
            # Erased: nothing is kept of the reader, not even this; nothing is sent either.
            metrics.unsubscribes.labels("erased").inc()
            return _done(request)
        # An id merged into another user: that user's profile is the one renders read.
        user_id = state.moved_to or grant.user_id
        recorded = False

        def opt_out(current: Profile | None) -> Profile | None:
            nonlocal recorded
            current = current or {}
            # Called again when a concurrent write came first: decided on the last read.
            recorded = subscribed(current)
            if not recorded:
                return None  # already out: nothing to write
            consent = current.get("consent")
            consent = dict(consent) if type(consent) is dict else {}
            return {**current, "consent": {**consent, "email": False}, "updated_at": updated_at()}

        await profiles.update(user_id, opt_out)
        if recorded:
            services.segments.notice(user_id)  # consent may move its segments
        metrics.unsubscribes.labels("recorded" if recorded else "already").inc()
        return _done(request)

    async def endpoint(request: Request) -> Response:
        # One route for both methods, so a 405 lists them in `Allow`.
        if request.method == "POST":
            return await unsubscribe(request)
        return await confirm(request)

    return [Route(UNSUBSCRIBE_PATH + "{token}", endpoint, methods=["GET", "POST"])]


def _done(request: Request) -> Response:
    """The answer to an unsubscribe: a page for a reader who pressed the button of the
    confirmation page (a browser accepts HTML), else a small JSON body."""
    if "text/html" in request.headers.get("accept", ""):
        return page("You are unsubscribed", "<p>You will no longer receive these emails.</p>")
    return JSONResponse({"unsubscribed": True}, headers=dict(HEADERS))


def _grant(tokens: Tokens, token: str) -> Grant:
    """The reader of an unsubscribe token; `BadToken` (403) for any other."""
    grant = tokens.verify("unsubscribe", token)
    if not grant.user_id or grant.resource != "email":
        raise BadToken("this unsubscribe link is not valid")
    return grant
