"""The studio's page (app/studio/page.py) through the ASGI app: its headers (the
Content-Security-Policy the contract fixes), its elements, its files under
`/designer/static/` (only those, whatever path a request makes up), and the OpenAPI
description of its routes."""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from starlette.applications import Starlette
from support import serve

from app.app import create_app

STATIC = Path(__file__).resolve().parent.parent / "app" / "studio" / "static"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: https: http:; frame-src 'self' blob: data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# The ids other parts of the studio and its tests rely on (the contract of issue 14).
IDS = (
    "template", "reader-kind", "sample", "user-id", "profile-json", "variant", "segment",
    "consent-personalization", "consent-tracking", "consent-email", "frame-desktop",
    "frame-mobile", "frame-amp", "text", "inbox", "amp-verdict", "errors", "dark", "gallery",
    "send-to", "send",
)  # fmt: skip


@contextlib.asynccontextmanager
async def loopback(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield client


@pytest.fixture
async def studio(settings) -> AsyncIterator[httpx.AsyncClient]:
    async with loopback(create_app(settings())) as client:
        yield client


async def test_the_page_sets_its_security_headers(studio):
    r = await studio.get("/designer")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["content-security-policy"] == CSP
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-store"


async def test_the_login_form_sets_them_too(settings):
    app = create_app(settings())
    async with serve(app) as client:  # not loopback: the login form
        r = await client.get("/designer")
        assert 'id="login"' in r.text
        assert r.headers["content-security-policy"] == CSP
        assert r.headers["x-frame-options"] == "DENY"


async def test_the_page_has_the_elements_of_the_contract(studio):
    page = (await studio.get("/designer")).text
    for element_id in IDS:
        assert len(re.findall(rf'\sid="{element_id}"', page)) == 1, element_id
    # Scripts only from this server: no inline script, no CDN.
    scripts = re.findall(r"<script\b[^>]*>", page)
    assert scripts == ['<script src="/designer/static/studio.js" defer>']
    assert "http://" not in page and "https://" not in page
    # Every template is offered, and the HTML frames run no script.
    for name in ("abandoned_cart", "weekly_picks", "welcome"):
        assert f'<option value="{name}">' in page
    for frame in ("frame-desktop", "frame-mobile"):
        tag = re.search(rf'<iframe id="{frame}"[^>]*>', page)
        assert tag and 'sandbox="' in tag.group(0) and "allow-scripts" not in tag.group(0)


@pytest.mark.parametrize("name", ["studio.js", "studio.css"])
async def test_static_files_are_served_with_their_etag(studio, name: str):
    body = (STATIC / name).read_bytes()
    r = await studio.get(f"/designer/static/{name}")
    assert r.status_code == 200
    assert r.content == body
    media = "text/javascript" if name.endswith(".js") else "text/css"
    assert r.headers["content-type"] == f"{media}; charset=utf-8"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-cache"
    etag = r.headers["etag"]
    assert etag == '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    again = await studio.get(f"/designer/static/{name}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    stale = await studio.get(f"/designer/static/{name}", headers={"If-None-Match": '"old"'})
    assert stale.status_code == 200 and stale.content == body


@pytest.mark.parametrize(
    "path",
    [
        "/designer/static/page.py",  # beside the static folder, not in it
        "/designer/static/..%2Fpage.py",
        "/designer/static/%2e%2e%2faccess.py",
        "/designer/static/%2e%2e%2f%2e%2e%2fsettings%2ftable.py",
        "/designer/static/..",
        "/designer/static/%2e%2e",
        "/designer/static/.",
        "/designer/static/",
        "/designer/static/studio.js%00.css",
        "/designer/static/STUDIO.JS",
        "/designer/static/..%5c..%5capp.py",
        "/designer/static/%2fetc%2fpasswd",
        "/designer/static/templates%2fdesigner.html",
        "/designer/static/..%2ftemplates%2fdesigner.html",
    ],
)
async def test_nothing_but_the_static_files_is_served(settings, path: str):
    # Straight to the app as uvicorn hands a request over (the path percent-decoded,
    # dot segments kept): an HTTP client would tidy `..` away before sending.
    app = create_app(settings())
    async with serve(app):
        status, headers, body = await raw_get(app, path)
    assert status == 404, body[:300]
    assert headers[b"content-type"] == b"application/json"
    assert b"import" not in body and b"root:" not in body


async def raw_get(app: Starlette, raw_path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote(raw_path),
        "raw_path": raw_path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


async def test_openapi_documents_the_studio(studio):
    doc = (await studio.get("/openapi.json")).json()
    assert set(doc["paths"]["/designer"]) == {"get"}
    assert set(doc["paths"]["/designer/login"]) == {"post"}
    assert "404" in doc["paths"]["/designer"]["get"]["responses"]


@pytest.mark.parametrize(
    ("allowed", "sender"),
    [
        (("*@news.example.com",), "studio@news.example.com"),
        (("deals@shop.example.com", "*@news.example.com"), "deals@shop.example.com"),
        (("*",), "studio@kairos.invalid"),
        ((), "studio@kairos.invalid"),
    ],
)
def test_the_amp_frame_asks_as_a_sender_the_allow_list_accepts(allowed, sender):
    from app.amp_cors import AmpCors
    from app.studio.page import studio_sender

    assert studio_sender(allowed) == sender
    assert AmpCors(allowed).allows(sender) is bool(allowed)
