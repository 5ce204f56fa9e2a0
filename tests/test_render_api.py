"""`POST /v1/render`, `GET /v1/render/{template}`, `POST /v1/render/batch`, `GET
/v1/templates` and `POST /v1/preview` through the ASGI app: the JSON and MIME answers,
escaping of reader data (sent inline or stored), errors, the signed feed and image URLs
inside the AMP part, and NDJSON batches streamed both ways.

The app runs on a private copy of the real blocks and templates, plus one probe block
that prints the reader's names (no real block shows `last_name`)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import html
import io
import json
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from PIL import Image
from starlette.applications import Starlette
from support import API_KEY, AUTH, TOKENS, assert_error, serve, unstamped

from app.app import create_app
from app.render import batch
from app.render.variants import assign

PUBLIC_URL = "https://kairos.example.com"
NDJSON = {**AUTH, "Content-Type": "application/x-ndjson"}
MIME = {**AUTH, "Accept": "message/rfc822"}
HOSTILE = {"first_name": "{{ 7*7 }}", "last_name": "<script>alert(1)</script>"}
RENDER_KEYS = {
    "subject", "preheader", "html", "amp", "text", "segments", "variant", "fallbacks", "headers"
}

PROBE_BLOCK = {
    "block.json": json.dumps({"description": "test probe: the reader's names"}),
    "block.mjml": (
        "<mj-section><mj-column><mj-text>"
        '<span class="who">{{ first_name }} {{ last_name }}</span>'
        "</mj-text></mj-column></mj-section>\n"
    ),
    "block.amp.html": '<div class="who">{{ first_name }} {{ last_name }}</div>\n',
    "block.txt": "Names: {{ first_name }} {{ last_name }}\n",
}
PROBE_TEMPLATE = {
    "subject": "For {{ first_name }} {{ last_name }}",
    "links": {"home": "https://shop.example.com/"},
    "blocks": ["header", "whoami", "footer"],
}
COUNTDOWN_TEMPLATE = {
    "subject": "Sale",
    "links": {"home": "https://shop.example.com/"},
    "blocks": ["header", "countdown", "footer"],
}
PROBES = ("whoami_t", "countdown_t")


@pytest.fixture(scope="module")
def api_app(module_settings, module_sources_copy) -> Starlette:
    blocks, templates = module_sources_copy()
    (blocks / "whoami").mkdir()
    for name, text in PROBE_BLOCK.items():
        (blocks / "whoami" / name).write_text(text)
    (templates / "whoami_t").mkdir()
    (templates / "whoami_t" / "template.json").write_text(json.dumps(PROBE_TEMPLATE))
    (templates / "countdown_t").mkdir()
    (templates / "countdown_t" / "template.json").write_text(json.dumps(COUNTDOWN_TEMPLATE))
    return create_app(
        module_settings(
            KAIROS_PUBLIC_URL=PUBLIC_URL,
            KAIROS_BLOCKS_DIR=blocks,
            KAIROS_TEMPLATES_DIR=templates,
        )
    )


@pytest.fixture
async def client(api_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(api_app) as c:
        yield c


@pytest.fixture(scope="module")
def names(api_app: Starlette) -> list[str]:
    """The real templates (the probes left out)."""
    return [n for n in api_app.state.services.renderer.names() if n not in PROBES]


async def render(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await client.post("/v1/render", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    doc: dict[str, Any] = r.json()
    return doc


def campaign_for(variants: dict[str, int], variant: str, user_id: str) -> str:
    for i in range(1000):
        if assign(variants, f"c{i}", user_id) == variant:
            return f"c{i}"
    raise AssertionError(variant)


def variants_of(app: Starlette, template: str) -> list[str]:
    variants = app.state.services.renderer.compiled(template).source.variants
    return [v for v, w in variants.items() if w > 0]


# --- JSON and MIME ---------------------------------------------------------------------------


async def test_render_answers_the_json_shape(client, names):
    for name in names:
        body = await render(client, template=name, user_id="ada")
        assert RENDER_KEYS <= set(body) <= RENDER_KEYS | {"warnings"}, name
        assert body["subject"] and body["html"] and body["text"] and body["amp"], name
        assert isinstance(body["segments"], list) and isinstance(body["fallbacks"], list)


async def test_mime_answer_is_a_multipart_alternative_email(client, names):
    for name in names:
        for user, profile in (("ada", None), ("zoe", {"first_name": "Zoë Ünïcode — “quoted”"})):
            request: dict[str, Any] = {"template": name, "user_id": user}
            if profile:
                request["profile"] = profile
            doc = await render(client, **request)
            r = await client.post("/v1/render", json=request, headers=MIME)
            assert r.status_code == 200, r.text
            assert r.headers["content-type"] == "message/rfc822"
            message = email.message_from_bytes(r.content, policy=email.policy.default)
            assert message.get_content_type() == "multipart/alternative"
            assert message["Subject"] == doc["subject"]
            assert message.get_all("MIME-Version") == ["1.0"]
            parts = list(message.iter_parts())
            assert [p.get_content_type() for p in parts] == [
                "text/plain",
                "text/x-amp-html",
                "text/html",
            ]
            for part, key in zip(parts, ("text", "amp", "html"), strict=True):
                assert part.get_content_charset() == "utf-8"
                content = part.get_content().replace("\r\n", "\n")
                assert content.rstrip("\n") == doc[key].rstrip("\n"), (name, key)
            # every line within the SMTP limit
            assert max(len(line) for line in r.content.split(b"\r\n")) <= 998


async def test_mime_through_get_and_without_amp(client):
    r = await client.get("/v1/render/welcome", params={"user_id": "ada"}, headers=MIME)
    assert r.status_code == 200
    message = email.message_from_bytes(r.content, policy=email.policy.default)
    assert [p.get_content_type() for p in message.iter_parts()][1] == "text/x-amp-html"
    r = await client.post(
        "/v1/render",
        json={"template": "welcome", "user_id": "ada", "formats": ["html", "text"]},
        headers=MIME,
    )
    message = email.message_from_bytes(r.content, policy=email.policy.default)
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]


async def test_get_gives_the_same_render_as_post(client, names):
    for name in names:
        for query in ({"user_id": "ada"}, {"user_id": "grace", "campaign": "spring-2026"}):
            posted = await render(client, template=name, **query)
            r = await client.get(f"/v1/render/{name}", params=query, headers=AUTH)
            assert r.status_code == 200, r.text
            got = r.json()
            for key in ("subject", "preheader", "html", "amp", "text", "variant", "fallbacks"):
                assert got[key] == posted[key], (name, query, key)
    r = await client.get(
        "/v1/render/welcome", params={"user_id": "ada", "formats": "text"}, headers=AUTH
    )
    assert r.json()["html"] is None and r.json()["amp"] is None and r.json()["text"]


async def test_with_an_http_public_url_amp_is_null_with_a_warning(app):
    """(The default test app: KAIROS_PUBLIC_URL is http://127.0.0.1:8000.)"""
    async with serve(app) as plain_client:
        for name in ("welcome", "abandoned_cart", "weekly_picks"):
            doc = await render(plain_client, template=name, user_id="ada")
            assert doc["amp"] is None
            assert any("https" in w for w in doc["warnings"]), doc["warnings"]
            assert doc["html"] and doc["text"]
        r = await plain_client.post(
            "/v1/render", json={"template": "welcome", "user_id": "ada"}, headers=MIME
        )
        message = email.message_from_bytes(r.content, policy=email.policy.default)
        assert [p.get_content_type() for p in message.iter_parts()] == [
            "text/plain",
            "text/html",
        ]


async def test_a_reader_with_no_profile_gets_a_complete_email_and_its_fallbacks(client, names):
    for name in names:
        doc = await render(client, template=name, user_id="nobody-here")
        assert doc["subject"] and doc["html"] and doc["text"] and doc["amp"], name
        for fallback in doc["fallbacks"]:
            assert set(fallback) == {"block", "reason"}
            assert fallback["reason"] == "missing-profile", (name, fallback)
    doc = await render(client, template="abandoned_cart", user_id="nobody-here")
    assert {"block": "cart", "reason": "missing-profile"} in doc["fallbacks"]


async def test_a_stored_reader_without_personalization_consent(client):
    titles = ["Zanzibar velvet ottoman", "Quillon brass candlestick"]
    profile = {
        "first_name": "Nora",
        "cart": [
            {"sku": "SKU-1", "title": titles[0], "qty": 1},
            {"sku": "SKU-2", "title": titles[1], "qty": 1},
        ],
        "consent": {"personalization": False, "tracking": True},
    }
    r = await client.put("/v1/profiles/nora-no", json=profile, headers=AUTH)
    assert r.status_code in (200, 201), r.text
    doc = await render(client, template="abandoned_cart", user_id="nora-no")
    assert {"block": "cart", "reason": "no-consent"} in doc["fallbacks"]
    for key in ("subject", "html", "amp", "text"):
        for title in titles:
            assert title not in doc[key], (key, title)
    assert "/v1/feeds/cart" not in doc["amp"]
    # with consent, the same reader's cart is there
    profile["consent"]["personalization"] = True
    await client.put("/v1/profiles/nora-no", json=profile, headers=AUTH)
    doc = await render(client, template="abandoned_cart", user_id="nora-no")
    assert all(f["block"] != "cart" for f in doc["fallbacks"])
    assert titles[0] in doc["html"]


# --- reader data is data ----------------------------------------------------------------------


def assert_escaped(doc: dict[str, Any], plain: dict[str, Any]) -> None:
    """`doc` was rendered with HOSTILE names, `plain` with harmless ones."""
    for key in ("html", "amp"):
        out = doc[key]
        assert "{{ 7*7 }}" in out, key
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out, key
        assert "<script>alert" not in out, key
        assert out.count("49") == plain[key].count("49"), key  # never evaluated
    assert "{{ 7*7 }} <script>alert(1)</script>" in doc["text"]  # plain text, as is
    assert doc["subject"] == "For {{ 7*7 }} <script>alert(1)</script>"


async def test_inline_profile_is_escaped_never_evaluated(client):
    plain = await render(
        client,
        template="whoami_t",
        user_id="esc-1",
        profile={"first_name": "Aa", "last_name": "Bb"},
    )
    assert '<span class="who">Aa Bb</span>' in plain["html"]
    doc = await render(client, template="whoami_t", user_id="esc-1", profile=HOSTILE)
    assert_escaped(doc, plain)
    # and in a real template showing the first name
    real = await render(client, template="welcome", user_id="esc-1", profile=HOSTILE)
    assert "<script>alert" not in real["html"] and "<script>alert" not in real["amp"]
    assert "49" not in real["subject"]


async def test_stored_profile_is_escaped_never_evaluated(client):
    plain = await render(
        client,
        template="whoami_t",
        user_id="esc-2",
        profile={"first_name": "Aa", "last_name": "Bb"},
    )
    r = await client.put("/v1/profiles/esc-2", json=HOSTILE, headers=AUTH)
    assert r.status_code in (200, 201), r.text
    assert r.json()["first_name"] == "{{ 7*7 }}"  # stored exactly as sent
    doc = await render(client, template="whoami_t", user_id="esc-2")
    assert_escaped(doc, plain)
    r = await client.post(
        "/v1/render", json={"template": "whoami_t", "user_id": "esc-2"}, headers=MIME
    )
    message = email.message_from_bytes(r.content, policy=email.policy.default)
    assert message["Subject"] == "For {{ 7*7 }} <script>alert(1)</script>"


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "data:text/html,<b>x</b>", "//evil.example"]
)
async def test_unsafe_cart_urls_are_refused(client, url):
    line = {"sku": "SKU-1", "qty": 1, "url": url}
    r = await client.put("/v1/profiles/cart-url", json={"cart": [line]}, headers=AUTH)
    error = assert_error(r, 422)
    assert error["field"] == "cart[0].url"
    r = await client.post(
        "/v1/render",
        json={"template": "abandoned_cart", "user_id": "cart-url", "profile": {"cart": [line]}},
        headers=AUTH,
    )
    error = assert_error(r, 422)
    assert error["field"] == "profile.cart[0].url"
    image = {"sku": "SKU-1", "qty": 1, "image_url": url}
    r = await client.post(
        "/v1/render",
        json={"template": "abandoned_cart", "user_id": "cart-url", "profile": {"cart": [image]}},
        headers=AUTH,
    )
    assert assert_error(r, 422)["field"] == "profile.cart[0].image_url"


async def test_unsafe_catalog_links_are_sent_home(client, api_app):
    """A catalog product with a `javascript:` URL (the catalog import checks no URLs)
    never becomes a link: the click goes to the template's home instead."""
    await api_app.state.services.stores.catalog.put_products(
        [
            {
                "sku": "EVIL-1",
                "title": "Evil lamp",
                "price": 1.0,
                "currency": "EUR",
                "url": "javascript:alert(1)",
                "image_url": "https://shop.example.com/img/evil.jpg",
                "popularity": 1e12,
            }
        ]
    )
    api_app.state.services.catalog.clear()
    try:
        doc = await render(client, template="welcome", user_id="nobody-evil")
        assert "Evil lamp" in doc["html"]  # the product is shown...
        for key in ("html", "amp", "text"):
            assert "javascript:" not in doc[key], key  # ...but never as a script link
        assert any("unsafe" in w for w in doc.get("warnings", []))
    finally:
        await api_app.state.services.stores.catalog.put_products(
            [
                {
                    "sku": "EVIL-1",
                    "title": "Evil lamp",
                    "url": "https://shop.example.com/",
                    "popularity": -1,
                }
            ]
        )
        api_app.state.services.catalog.clear()


# --- errors ---------------------------------------------------------------------------------


async def test_unknown_template_is_404(client):
    r = await client.post(
        "/v1/render", json={"template": "no_such_template", "user_id": "ada"}, headers=AUTH
    )
    assert "no_such_template" in assert_error(r, 404, "template_not_found")["message"]
    r = await client.get("/v1/render/no_such_template", params={"user_id": "ada"}, headers=AUTH)
    assert_error(r, 404, "template_not_found")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"template": "welcome"}, "user_id"),
        ({"template": "welcome", "user_id": ""}, "user_id"),
        ({"template": "welcome", "user_id": "ada@example.org"}, "user_id"),
        ({"template": "welcome", "user_id": "a" * 129}, "user_id"),
        ({"template": "welcome", "user_id": 42}, "user_id"),
        ({"user_id": "ada"}, "template"),
        ({"template": 7, "user_id": "ada"}, "template"),
        ({"template": "welcome", "user_id": "ada", "colour": "red"}, "colour"),
        ({"template": "welcome", "user_id": "ada", "formats": "html"}, "formats"),
        ({"template": "welcome", "user_id": "ada", "formats": []}, "formats"),
        ({"template": "welcome", "user_id": "ada", "formats": ["pdf"]}, "formats"),
        ({"template": "welcome", "user_id": "ada", "campaign": "spring sale!"}, "campaign"),
        ({"template": "welcome", "user_id": "ada", "campaign": ""}, "campaign"),
        ({"template": "welcome", "user_id": "ada", "campaign": 2026}, "campaign"),
        ({"template": "welcome", "user_id": "ada", "campaign": "c" * 129}, "campaign"),
        ({"template": "welcome", "user_id": "ada", "profile": "Ada"}, "profile"),
        (
            {"template": "welcome", "user_id": "ada", "profile": {"first_name": 5}},
            "profile.first_name",
        ),
        ({"template": "welcome", "user_id": "ada", "profile": {"nick": "A"}}, "profile.nick"),
        ({"template": "welcome", "user_id": "ada", "profile": {"segments": "vip"}}, "profile"),
        (
            {"template": "welcome", "user_id": "ada", "profile": {"consent": {"tracking": "yes"}}},
            "profile.consent.tracking",
        ),
    ],
)
async def test_bad_render_body_is_422_naming_the_field(client, body, field):
    r = await client.post("/v1/render", json=body, headers=AUTH)
    error = assert_error(r, 422)
    assert error.get("field") == field, error


async def test_bad_render_requests(client):
    r = await client.post("/v1/render", json=["welcome", "ada"], headers=AUTH)
    assert_error(r, 422, "invalid_body")
    r = await client.post(
        "/v1/render", content=b"{not json", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert_error(r, 400, "invalid_json")
    r = await client.post(
        "/v1/render", content=b"template=welcome", headers={**AUTH, "Content-Type": "text/plain"}
    )
    assert_error(r, 415)
    r = await client.get("/v1/render/welcome", headers=AUTH)
    assert assert_error(r, 422)["field"] == "user_id"
    r = await client.get(
        "/v1/render/welcome", params={"user_id": "ada", "formats": "html,pdf"}, headers=AUTH
    )
    assert assert_error(r, 422)["field"] == "formats"


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/v1/render", {"json": {"template": "welcome", "user_id": "ada"}}),
        ("GET", "/v1/render/welcome?user_id=ada", {}),
        ("POST", "/v1/render/batch", {"content": b'{"template":"welcome","user_id":"ada"}\n'}),
        ("GET", "/v1/templates", {}),
        ("POST", "/v1/preview", {"json": {"template": "welcome"}}),
    ],
)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-the-key-0123456789"}, {"Authorization": API_KEY}],
)
async def test_render_routes_need_the_api_key(client, method, path, kwargs, headers):
    if "content" in kwargs:
        headers = {**headers, "Content-Type": "application/x-ndjson"}
    r = await client.request(method, path, headers=headers, **kwargs)
    assert_error(r, 401)
    assert r.headers["www-authenticate"] == "Bearer"


# --- templates listing and preview -----------------------------------------------------------


async def test_templates_listing(client, names):
    r = await client.get("/v1/templates", headers=AUTH)
    assert r.status_code == 200
    listing = {t["name"]: t for t in r.json()["templates"]}
    assert set(names) <= set(listing)
    for name in names:
        entry = listing[name]
        assert entry["ok"] is True, entry
        assert entry["blocks"] and entry["variants"] and entry["version"]
        for sample in entry["samples"]:
            r = await client.post(
                "/v1/preview", json={"template": name, "sample": sample}, headers=AUTH
            )
            assert r.status_code == 200, (name, sample, r.text)
            assert r.json()["html"]


async def test_preview_of_an_unknown_sample_is_404(client):
    r = await client.post(
        "/v1/preview", json={"template": "welcome", "sample": "no_such_sample"}, headers=AUTH
    )
    assert_error(r, 404)


# --- signed URLs inside the AMP part ---------------------------------------------------------

AMP_LIST_SRC = re.compile(r"<amp-list\b[^>]*?\ssrc=\"([^\"]+)\"")
SRC = re.compile(r"<(?:img|amp-img)\b[^>]*?\ssrc=\"([^\"]+)\"")


def path_of(url: str) -> str:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == PUBLIC_URL, url
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


async def test_amp_list_sources_are_working_feed_urls_for_the_reader(client, api_app, names):
    fetched = set()
    for name in names:
        variants = api_app.state.services.renderer.compiled(name).source.variants
        for variant in variants_of(api_app, name):
            campaign = campaign_for(variants, variant, "ada")
            doc = await render(client, template=name, user_id="ada", campaign=campaign)
            for raw in AMP_LIST_SRC.findall(doc["amp"]):
                url = html.unescape(raw)
                path = path_of(url)
                feed = urlsplit(url).path.removeprefix("/v1/feeds/")
                assert urlsplit(url).path == f"/v1/feeds/{feed}", url
                token = dict(p.split("=", 1) for p in urlsplit(url).query.split("&"))["t"]
                grant = TOKENS.verify("feed", token)
                assert (grant.user_id, grant.resource, grant.campaign) == ("ada", feed, campaign)
                r = await client.get(path)
                assert r.status_code == 200, (url, r.text)
                assert r.headers["content-type"] == "application/json"
                items = r.json()["items"]
                assert isinstance(items, list) and items, url
                assert "x-kairos-fallback" not in r.headers, url
                fetched.add(feed)
    assert "cart" in fetched and "recommendations" in fetched


async def test_kairos_images_in_html_and_amp_are_pixels_or_live_images(client, api_app, names):
    """Every image Kairos serves itself is the open pixel (which answers a GIF) or a live
    image under /v1/img/ (see the countdown test below)."""
    for name in names:
        variants = api_app.state.services.renderer.compiled(name).source.variants
        for variant in variants_of(api_app, name):
            doc = await render(
                client,
                template=name,
                user_id="ada",
                campaign=campaign_for(variants, variant, "ada"),
            )
            for key in ("html", "amp"):
                srcs = [html.unescape(s) for s in SRC.findall(doc[key])]
                ours = [s for s in srcs if s.startswith(PUBLIC_URL)]
                assert ours, (name, key)  # at least the open pixel
                for src in ours:
                    path = urlsplit(src).path
                    assert path.startswith(("/v1/px/", "/v1/img/")), src
                    if path.startswith("/v1/px/"):
                        r = await client.get(path_of(src))
                        assert r.status_code == 200 and r.headers["content-type"] == "image/gif"


async def test_countdown_live_image_url_is_served(client):
    doc = await render(client, template="countdown_t", user_id="ada")
    images = [
        html.unescape(s)
        for key in ("html", "amp")
        for s in SRC.findall(doc[key])
        if "/v1/img/" in s
    ]
    assert len(images) == 2  # the same signed URL in the HTML and the AMP part
    for src in images:
        r = await client.get(path_of(src))
        assert r.status_code == 200, (src, r.status_code)
        assert r.headers["content-type"] == "image/gif"
        assert "x-kairos-fallback" not in r.headers
        image = Image.open(io.BytesIO(r.content))
        assert (image.format, image.size) == ("GIF", (1200, 240))  # 2x


# --- batch -------------------------------------------------------------------------------------


def parse_ndjson(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert response.content.endswith(b"\n")
    return [json.loads(line) for line in response.content.split(b"\n")[:-1]]


async def chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    """A request body of unknown length (sent chunked), cut across lines."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_batch_of_mixed_lines_answers_each_in_order(client):
    lines: list[bytes] = []
    expected: dict[int, tuple[str | None, str | None]] = {}  # line -> (user_id, error code)
    for i in range(300):
        number = i + 1
        kind = i % 10
        if kind == 3:
            lines.append(b"{this is not json")
            expected[number] = (None, "invalid_json")
        elif kind == 5:
            lines.append(orjson.dumps({"template": "no_such_template", "user_id": f"r{i}"}))
            expected[number] = (f"r{i}", "template_not_found")
        elif kind == 7:
            lines.append(orjson.dumps({"template": "welcome", "user_id": "bad id!"}))
            expected[number] = ("bad id!", "invalid")
        elif kind == 9:
            lines.append(b"   ")  # blank: no answer
        elif i == 0:
            lines.append(orjson.dumps({"template": "abandoned_cart", "user_id": "ada"}))
            expected[number] = ("ada", None)
        else:
            template = ("welcome", "abandoned_cart", "weekly_picks")[i % 3]
            lines.append(
                orjson.dumps({"template": template, "user_id": f"r{i}", "formats": ["text"]})
            )
            expected[number] = (f"r{i}", None)
    body = b"\n".join(lines) + b"\n"
    r = await client.post("/v1/render/batch", content=chunked(body, 777), headers=NDJSON)
    answers = parse_ndjson(r)
    assert [a["line"] for a in answers] == sorted(expected)
    for answer in answers:
        user_id, code = expected[answer["line"]]
        assert answer["user_id"] == user_id, answer
        if code is None:
            assert "error" not in answer, answer
            assert answer["subject"] and answer["text"]
        else:
            assert answer["error"]["code"] == code, answer
            assert answer["error"]["message"]
            if code == "invalid":
                assert answer["error"]["field"] == "user_id"
    first = answers[0]
    single = await render(client, template="abandoned_cart", user_id="ada")
    assert unstamped({k: v for k, v in first.items() if k not in ("line", "user_id")}) == (
        unstamped(single)
    )


async def test_batch_with_a_default_template(client):
    body = (
        b'{"user_id": "ada"}\n'
        b"\n"
        b'{"user_id": "grace", "template": "weekly_picks", "formats": ["text"]}\n'
        b'{"user_id": "hedy", "formats": ["text"]}'  # no final newline
    )
    r = await client.post("/v1/render/batch?template=welcome", content=body, headers=NDJSON)
    answers = parse_ndjson(r)
    assert [(a["line"], a["user_id"]) for a in answers] == [(1, "ada"), (3, "grace"), (4, "hedy")]
    assert unstamped(answers[0]) == {
        "line": 1,
        "user_id": "ada",
        **unstamped(await render(client, template="welcome", user_id="ada")),
    }
    weekly = await render(client, template="weekly_picks", user_id="grace", formats=["text"])
    assert answers[1]["text"] == weekly["text"]
    r = await client.post("/v1/render/batch", content=b'{"user_id": "ada"}\n', headers=NDJSON)
    assert parse_ndjson(r)[0]["error"]["field"] == "template"
    crlf = (
        b'{"user_id": "ada", "formats": ["text"]}\r\n'
        b"\r\n"
        b'{"user_id": "grace", "formats": ["text"]}\r\n'
    )
    r = await client.post("/v1/render/batch?template=welcome", content=crlf, headers=NDJSON)
    assert [(a["line"], a["user_id"], "text" in a) for a in parse_ndjson(r)] == [
        (1, "ada", True),
        (3, "grace", True),
    ]


async def test_batch_media_type_and_line_limit(client):
    r = await client.post(
        "/v1/render/batch", content=b"{}", headers={**AUTH, "Content-Type": "text/csv"}
    )
    assert_error(r, 415)
    good = b'{"template": "welcome", "user_id": "ada", "formats": ["text"]}\n'
    huge = b'{"template": "welcome", "user_id": "ada", "x": "' + b"x" * 300_000
    r = await client.post("/v1/render/batch", content=chunked(good + huge, 65_536), headers=NDJSON)
    answers = parse_ndjson(r)
    assert answers[0]["line"] == 1 and "text" in answers[0]
    assert answers[-1]["line"] == 2
    assert "longer than" in answers[-1]["error"]["message"]


def batch_scope(query: bytes) -> dict[str, Any]:
    """The ASGI scope of a chunked `POST /v1/render/batch` with the API key."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/render/batch",
        "raw_path": b"/v1/render/batch",
        "root_path": "",
        "query_string": query,
        "headers": [
            (b"host", b"kairos.test"),
            (b"authorization", f"Bearer {API_KEY}".encode()),
            (b"content-type", b"application/x-ndjson"),
            (b"transfer-encoding", b"chunked"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("kairos.test", 80),
    }


async def test_batch_of_20000_lines_streams_with_bounded_work_in_flight(api_app, monkeypatch):
    """A 20,000-line batch made lazily: the answer starts long before the request ends,
    and lines read but not yet answered stay bounded by the read-ahead (memory stays
    flat). The read-ahead is made small here: 16 KB, some 350 of these lines."""
    monkeypatch.setattr(batch, "READ_AHEAD_BYTES", 16 * 1024)
    total = 20_000
    readers = [f"reader-{i}" for i in range(50)] + ["ada", "grace", "alan", "hedy"]
    state = {"sent": 0, "answered": 0, "backlog": 0, "first_answer_at": None}
    buffer = bytearray()
    problems: list[str] = []

    async def lines() -> AsyncIterator[bytes]:
        for start in range(0, total, 40):
            chunk = b"".join(
                orjson.dumps({"user_id": readers[n % len(readers)], "formats": ["text"]}) + b"\n"
                for n in range(start, min(start + 40, total))
            )
            state["sent"] = min(start + 40, total)
            yield chunk

    body = lines()

    async def receive() -> dict[str, Any]:
        try:
            chunk = await body.__anext__()
        except StopAsyncIteration:
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    status: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
            return
        buffer.extend(message.get("body", b""))
        while (end := buffer.find(b"\n")) >= 0:
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            answer = orjson.loads(line)
            state["answered"] += 1
            if answer.get("line") != state["answered"] or "text" not in answer:
                problems.append(line.decode()[:200])
        if state["answered"] and state["first_answer_at"] is None:
            state["first_answer_at"] = state["sent"]
        state["backlog"] = max(state["backlog"], state["sent"] - state["answered"])

    scope = batch_scope(b"template=whoami_t")
    async with serve(api_app):
        await api_app(scope, receive, send)
    assert status == [200]
    assert problems == []
    assert state["answered"] == total and not buffer
    assert state["first_answer_at"] is not None and state["first_answer_at"] < 1_000
    assert state["backlog"] <= 1_000, state


async def test_a_client_that_writes_its_whole_batch_before_reading_is_answered(api_app):
    """httpx, requests and urllib3 write a whole request before they read the answer.
    Kairos reads a batch ahead of its renders while an answer waits for the client, so
    such a client is answered (for requests up to the read-ahead, 32 MB). Here no answer
    is taken until the whole request has been read, like a socket whose buffers are full:
    without the read-ahead, this deadlocks."""
    users = ["ada", "grace", "alan", "hedy"]
    body = b"".join(
        orjson.dumps({"user_id": users[i % 4], "formats": ["text"]}) + b"\n" for i in range(1000)
    )
    pieces = iter([body[i : i + 4096] for i in range(0, len(body), 4096)])
    all_read = asyncio.Event()
    answer = bytearray()

    async def receive() -> dict[str, Any]:
        piece = next(pieces, None)
        if piece is None:
            all_read.set()
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(0)
        return {"type": "http.request", "body": piece, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            await all_read.wait()
            answer.extend(message.get("body", b""))

    async with serve(api_app):
        await asyncio.wait_for(api_app(batch_scope(b"template=welcome"), receive, send), 10)
    lines = [orjson.loads(line) for line in answer.splitlines()]
    assert [line["line"] for line in lines] == list(range(1, 1001))
    assert [line["user_id"] for line in lines] == [users[i % 4] for i in range(1000)]
    assert all(line["text"] and "error" not in line for line in lines)
