"""What the reader's mail client hits besides feeds: click redirects (`/c/{token}`) and the
open pixel (`/v1/px/{token}.gif`), as embedded in real renders. A click goes to exactly
the target signed into its token and nowhere else; any bad token is 403 JSON, never a
redirect."""

from __future__ import annotations

import html
import io
import re
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image
from support import AUTH, TOKENS, assert_error, click_grants

from app.render.variants import assign

HREF = re.compile(r"\shref=\"([^\"]*)\"")
PIXEL = re.compile(r"\ssrc=\"([^\"]*/v1/px/[^\"]*)\"")


def public_url(render_app: Any) -> str:
    return str(render_app.state.services.settings.public_url)


async def render(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await client.post("/v1/render", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


async def renders_for(
    client: httpx.AsyncClient, render_app: Any, user_id: str, **extra: Any
) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(template, campaign, render) for every template and each of its variants."""
    out = []
    renderer = render_app.state.services.renderer
    for name in renderer.names():
        variants = renderer.compiled(name).source.variants
        campaigns: dict[str, str] = {}
        for i in range(1000):
            campaigns.setdefault(assign(variants, f"c{i}", user_id), f"c{i}")
            if len(campaigns) == sum(1 for w in variants.values() if w > 0):
                break
        for campaign in campaigns.values():
            doc = await render(client, template=name, user_id=user_id, campaign=campaign, **extra)
            out.append((name, campaign, doc))
    return out


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def outside_mustache(amp: str) -> str:
    """The AMP document without its amp-mustache templates (their links come from feeds
    at open time, unsigned by design)."""
    return re.sub(r"<template type=\"amp-mustache\">.*?</template>", "", amp, flags=re.S)


# --- clicks ----------------------------------------------------------------------------------


async def test_every_kairos_link_is_a_click_url_that_redirects_to_its_target(
    render_client, render_app
):
    base = public_url(render_app)
    click = re.compile(re.escape(base) + r"/c/[A-Za-z0-9_\-.]+\?r=[A-Za-z0-9_\-.]+")
    followed: dict[str, str] = {}
    for name, campaign, doc in await renders_for(render_client, render_app, "ada"):
        urls = [html.unescape(h) for h in HREF.findall(doc["html"])]
        urls += [html.unescape(h) for h in HREF.findall(outside_mustache(doc["amp"]))]
        urls += re.findall(re.escape(base) + r"/c/\S+", doc["text"])
        links = [u for u in urls if not u.startswith("mailto:")]
        assert links, name
        for url in links:
            assert not url.lower().startswith(("javascript:", "data:", "//")), (name, url)
            if not url.startswith(base):
                continue
            if url.startswith(f"{base}/v1/unsubscribe/"):
                # The one Kairos link that is not a click: the reader's unsubscribe URL.
                grant = TOKENS.verify("unsubscribe", url.rsplit("/", 1)[1])
                assert (grant.user_id, grant.campaign) == ("ada", campaign), url
                continue
            assert click.fullmatch(url), f"{name}: a Kairos link that is not a click URL: {url}"
            grant, reader = click_grants(url)
            assert reader is not None and (reader.user_id, reader.campaign) == ("ada", campaign)
            assert (grant.user_id, grant.campaign) == ("", campaign), url
            assert re.match(r"https?://[^/\s]", grant.resource), grant
            followed[url] = grant.resource
        assert any(u.startswith(f"{base}/c/") for u in links), name
    assert followed
    for url, target in followed.items():
        r = await render_client.get(path_of(url))
        assert r.status_code == 302, (url, r.text)
        assert r.headers["location"] == target
        assert "no-store" in r.headers["cache-control"]
        assert r.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize(
    "target",
    [
        "https://shop.example.com/p/sku-1?utm_source=kairos&size=l#reviews",
        "http://shop.example.com/",
        "https://shop.example.com/search?q=brass%20lamp",
    ],
)
async def test_click_redirects_to_exactly_the_signed_target(render_client, target):
    token = TOKENS.sign("click", "ada", target, campaign="spring")
    r = await render_client.get(f"/c/{token}")
    assert r.status_code == 302
    assert r.headers["location"] == target


def tampered(token: str) -> list[str]:
    body, _, signature = token.rpartition(".")
    other = TOKENS.sign("click", "ada", "https://evil.example/").rpartition(".")[0]
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    return [
        f"{body}.{flipped}",  # signature changed
        f"{other}.{signature}",  # payload swapped for another target
        body,  # signature dropped
        token[:-3],  # truncated
        "not-a-token",
        "x" * 3000,  # oversized
        TOKENS.sign("pixel", "ada", "https://shop.example.com/"),  # another purpose
        TOKENS.sign("feed", "ada", "https://shop.example.com/"),
    ]


async def test_tampered_click_token_is_403_never_a_redirect(render_client):
    token = TOKENS.sign("click", "ada", "https://shop.example.com/")
    assert (await render_client.get(f"/c/{token}")).status_code == 302
    for bad in tampered(token):
        r = await render_client.get(f"/c/{bad}")
        assert_error(r, 403, "bad_token")
        assert "location" not in r.headers


@pytest.mark.parametrize(
    "target", ["javascript:alert(1)", "data:text/html,<script>1</script>", "//evil.example/"]
)
async def test_a_signed_but_unsafe_target_is_refused(render_client, target):
    r = await render_client.get(f"/c/{TOKENS.sign('click', 'ada', target)}")
    assert_error(r, 403, "bad_token")
    assert "location" not in r.headers


async def test_an_expired_click_token_still_redirects(render_client):
    token = TOKENS.sign("click", "ada", "https://shop.example.com/old", ttl_s=-60)
    assert TOKENS.verify("click", token).expired()
    r = await render_client.get(f"/c/{token}")
    assert r.status_code == 302
    assert r.headers["location"] == "https://shop.example.com/old"


# --- the open pixel ----------------------------------------------------------------------------


def assert_pixel(r: httpx.Response) -> None:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/gif"
    assert "no-store" in r.headers["cache-control"]
    image = Image.open(io.BytesIO(r.content))
    assert image.format == "GIF"
    assert image.size == (1, 1)


async def test_the_open_pixel_in_every_render_is_a_1x1_gif(render_client, render_app):
    base = public_url(render_app)
    for name, campaign, doc in await renders_for(render_client, render_app, "ada"):
        [in_html] = {html.unescape(u) for u in PIXEL.findall(doc["html"])}
        [in_amp] = {html.unescape(u) for u in PIXEL.findall(doc["amp"])}
        assert in_html == in_amp, name  # signed once per render
        assert in_html.startswith(f"{base}/v1/px/") and in_html.endswith(".gif")
        token = urlsplit(in_html).path.removeprefix("/v1/px/").removesuffix(".gif")
        grant = TOKENS.verify("pixel", token)
        assert (grant.user_id, grant.resource, grant.campaign) == ("ada", "open", campaign)
        assert_pixel(await render_client.get(path_of(in_html)))


async def test_a_bad_pixel_token_is_403(render_client):
    good = TOKENS.sign("pixel", "ada", "open")
    assert_pixel(await render_client.get(f"/v1/px/{good}.gif"))
    for bad in [
        good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
        "nope",
        TOKENS.sign("click", "ada", "open"),
    ]:
        r = await render_client.get(f"/v1/px/{bad}.gif")
        assert_error(r, 403, "bad_token")


# --- readers who declined tracking -------------------------------------------------------------


async def test_a_reader_who_declined_tracking_gets_no_pixel_and_plain_links(
    render_client, render_app
):
    base = public_url(render_app)
    profile = {"first_name": "Tess", "consent": {"personalization": True, "tracking": False}}
    for name, _, doc in await renders_for(render_client, render_app, "tess", profile=profile):
        for key in ("html", "amp", "text"):
            assert "/v1/px/" not in doc[key], (name, key)
            assert f"{base}/c/" not in doc[key], (name, key)
        hrefs = [html.unescape(h) for h in HREF.findall(doc["html"])]
        assert hrefs, name
        for href in hrefs:
            assert href.startswith(("https://", "http://", "mailto:")), (name, href)
