"""`GET /v1/img/{image}.{format}?t=`: a live image, drawn for this moment and reader.

Order of work: verify the token (before anything else is parsed: a bad signature is
403), match the image it grants, check its parameters and limits, then the data within
the budget, then the pixels from the cache or the worker pool. Whatever goes wrong after
the token is answered 200 with the image's fallback, named in `X-Kairos-Fallback`: a
reader never sees a broken image. This is that one place.

Like the feeds, a plain ASGI endpoint on the open-time hot path.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from app.errors import NotFound
from app.fallbacks import Fallback, Reason, reason_for
from app.http import query_dict
from app.images import FORMATS
from app.middleware.observe import FALLBACK_SCOPE_KEY
from app.services import Services
from app.tokens import BadToken

log = logging.getLogger("kairos.images")

# Live content: no mail proxy or browser may keep it (Gmail's image proxy honours these).
NO_STORE = (
    (b"cache-control", b"no-cache, no-store, must-revalidate, max-age=0"),
    (b"expires", b"0"),
    (b"pragma", b"no-cache"),
)


class ImageEndpoint:
    def __init__(self, services: Services) -> None:
        self.tokens = services.tokens
        self.images = services.images
        self.fallbacks = services.fallbacks
        self.budget_s = services.settings.budget_s
        self._headers = {
            fmt: ((b"content-type", media.encode()), *NO_STORE) for fmt, media in FORMATS.items()
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        deadline = asyncio.get_running_loop().time() + self.budget_s
        token = query_dict(scope["query_string"]).get("t", "")
        grant = self.tokens.verify("image", token)
        name = scope["path_params"]["image"]
        if grant.resource != name:
            raise BadToken("this token is for another image")
        kind = self.images.kinds.get(name)
        if kind is None or scope["path_params"]["format"] != kind.format:
            raise NotFound(f"no live image {name}.{scope['path_params']['format']}")

        # The one place an image's fallback is swapped in (the module doc).
        reason = None
        try:
            if grant.expired():
                raise Fallback(Reason.EXPIRED_TOKEN)
            spec = self.images.spec(kind, token, grant)
            body = await self.images.image(kind, spec, grant, deadline)
        except Exception as exc:  # noqa: BLE001 - a reader never gets a broken image
            reason = reason_for(exc)
            if reason is Reason.ERROR:
                log.exception("image %s failed; serving its fallback", name)
            else:
                log.debug("image %s: %s", name, exc)

        headers = list(self._headers[kind.format])
        if reason is not None:
            body = self.fallbacks.image(name, reason)
            headers.append((b"x-kairos-fallback", reason.encode()))
            scope[FALLBACK_SCOPE_KEY] = reason  # for the access log
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def routes(services: Services) -> list[Route]:
    return [Route("/v1/img/{image}.{format}", ImageEndpoint(services), methods=["GET"])]
