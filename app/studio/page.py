"""The designer's studio page: `GET /designer` (the page, or its login form),
`GET /designer/static/{file}` (its script and styles), `POST /designer/login` and
`POST /designer/logout`.

The page is rendered by a plain autoescaped Jinja environment of its own (not the
designers' sandbox) and calls the same `/v1/...` routes as a script would, with its
session cookie and CSRF token (app/studio/access.py). Its Content-Security-Policy
allows scripts from this server alone; inline styles are allowed because emails are
made of them, and the email frames (srcdoc) inherit the policy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from app.errors import NotFound, Unauthorized, Unprocessable
from app.responses import JSONResponse
from app.routes.profiles import _json_body
from app.services import Services
from app.studio.access import StudioAccess, clear_cookie, set_cookie

HERE = Path(__file__).resolve().parent
MEDIA_TYPES = MappingProxyType(
    {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
)
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: https: http:; frame-src 'self' blob: data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = MappingProxyType(
    {
        "Content-Security-Policy": CSP,
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        "X-Robots-Tag": "noindex",
    }
)


@dataclass(frozen=True)
class Asset:
    """A static file of the page, read once at start-up."""

    body: bytes
    etag: str
    media_type: str


def load_assets(folder: Path) -> Mapping[str, Asset]:
    """The scripts and styles in `folder`, by file name. Only these names are ever
    served, so no path a request makes up reaches the file system."""
    assets = {}
    for path in sorted(folder.iterdir()):
        media_type = MEDIA_TYPES.get(path.suffix)
        if media_type is None or not path.is_file():
            continue
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        assets[path.name] = Asset(body, etag, media_type)
    return MappingProxyType(assets)


def routes(services: Services, access: StudioAccess) -> list[Route]:
    """The page's routes; none when the studio is off, so every path answers 404."""
    if not access.enabled:
        return []
    pages = Environment(
        loader=FileSystemLoader(HERE / "templates"), autoescape=True, undefined=StrictUndefined
    )
    assets = load_assets(HERE / "static")
    renderer = services.renderer
    amp_sender = studio_sender(services.settings.amp_senders)

    def html(name: str, context: dict[str, Any]) -> HTMLResponse:
        text = pages.get_template(name).render(context)
        return HTMLResponse(text, headers=dict(PAGE_HEADERS))

    async def page(request: Request) -> Response:
        session, cookie = access.session(request), None
        if session is None and access.open_without_login(request):
            session, cookie = access.new_session()
        if session is None:
            return html("login.html", {})
        response = html(
            "designer.html",
            {"csrf": session.csrf, "templates": renderer.names(), "amp_sender": amp_sender},
        )
        if cookie is not None:
            set_cookie(response, request, cookie)
        return response

    async def static(request: Request) -> Response:
        asset = assets.get(request.path_params["file"])
        if asset is None:
            raise NotFound("no such file of the studio")
        headers = {
            "ETag": asset.etag,
            # Revalidated at every load: a new Kairos brings new files under the same names.
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        }
        if request.headers.get("if-none-match") == asset.etag:
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.media_type, headers=headers)

    async def login(request: Request) -> Response:
        doc = await _json_body(request)
        if not isinstance(doc, dict) or not isinstance(doc.get("key"), str):
            raise Unprocessable('send the API key as {"key": ...}', field="key")
        if not access.login(doc["key"]):
            raise Unauthorized("this is not an API key of this server", code="invalid_api_key")
        _, cookie = access.new_session()
        response = JSONResponse({"signed_in": True})
        set_cookie(response, request, cookie)
        return response

    async def logout(request: Request) -> Response:
        session = access.session(request)
        if session is not None:
            access.authorize(request, session)
        response = JSONResponse({"signed_in": False})
        clear_cookie(response, request)
        return response

    return [
        Route("/designer", page, methods=["GET"]),
        Route("/designer/static/{file}", static, methods=["GET"]),
        Route("/designer/login", login, methods=["POST"]),
        Route("/designer/logout", logout, methods=["POST"]),
    ]


def studio_sender(allowed: tuple[str, ...]) -> str:
    """A sender the AMP allow-list accepts, for the AMP frame's feed requests: the first
    pattern with its `*` spelled `studio` (`*@news.example.com`: studio@news.example.com);
    with none, one the server will refuse (the lists then show their fallbacks)."""
    for pattern in allowed:
        if pattern != "*" and "@" in pattern:
            return pattern.replace("*", "studio")
    return "studio@kairos.invalid"
