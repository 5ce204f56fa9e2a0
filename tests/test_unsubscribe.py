"""Deliverability headers and one-click unsubscribe, end to end through the ASGI app on
the embedded store and on a real redis-server: the MIME message parsed with `email`
(Message-ID, Date, List-Unsubscribe, List-Unsubscribe-Post), the same values in the JSON
and NDJSON answers, the signed endpoint (POST unsubscribes, GET only shows a page, a
forged token is 403, a repeat changes nothing), what an unsubscribed reader gets from
renders, feeds, the pixel and clicks, and an ESP's unsubscribe URL instead of ours."""

from __future__ import annotations

import asyncio
import email
import email.policy
import email.utils
import html
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from support import AUTH, TOKENS, assert_error, feed_url, render_json, serve

from app.app import create_app
from app.render.headers import BadUnsubscribe, esp_unsubscribe

PUBLIC_URL = "https://kairos.example.com"
DOMAIN = "mail.example.org"
MIME = {**AUTH, "Accept": "message/rfc822"}
NDJSON = {**AUTH, "Content-Type": "application/x-ndjson"}
ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}
HUMAN_UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko)"
UNSUBSCRIBE_LINK = re.compile(r'<a\b[^>]*\bhref="([^"]*)"[^>]*>\s*Unsubscribe\s*</a>')


@pytest.fixture(params=["embedded", "redis"])
def unsub_app(request: pytest.FixtureRequest, settings: Any) -> Starlette:
    redis = request.getfixturevalue("redis_url") if request.param == "redis" else None
    return create_app(
        settings(
            KAIROS_PUBLIC_URL=PUBLIC_URL,
            KAIROS_MESSAGE_ID_DOMAIN=DOMAIN,
            REDIS_URL=redis,
            KAIROS_DEMO_DATA="true",
        )
    )


@pytest.fixture
async def client(unsub_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(unsub_app) as c:
        yield c


async def mime(client: httpx.AsyncClient, **body: Any) -> EmailMessage:
    r = await client.post("/v1/render", json=body, headers=MIME)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("message/rfc822")
    message = email.message_from_bytes(r.content, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def unsubscribe_url(message: EmailMessage) -> str:
    value = str(message["List-Unsubscribe"])
    assert value.startswith("<") and value.endswith(">"), value
    return value[1:-1]


def path_of(url: str) -> str:
    assert url.startswith(PUBLIC_URL + "/v1/unsubscribe/"), url
    return urlsplit(url).path


def footer_links(doc: dict[str, Any]) -> dict[str, str]:
    """The footer's Unsubscribe link in each part of a JSON render."""
    found = {}
    for part in ("html", "amp"):
        [href] = UNSUBSCRIBE_LINK.findall(doc[part])
        found[part] = html.unescape(href)
    [line] = [line for line in doc["text"].splitlines() if line.startswith("Unsubscribe: ")]
    found["text"] = line.removeprefix("Unsubscribe: ")
    return found


async def consent(app: Starlette, user: str) -> Any:
    """The reader's stored `consent.email` (None: not recorded)."""
    profile = await app.state.services.stores.profiles.get(user)
    return None if profile is None else (profile.get("consent") or {}).get("email")


async def test_the_mime_message_carries_the_deliverability_headers(client):
    before = datetime.now(UTC).replace(microsecond=0)
    message = await mime(client, template="welcome", user_id="ada", campaign="spring")
    assert message.get_content_type() == "multipart/alternative"
    message_id = str(message["Message-ID"])
    unique = r"[0-9a-f]+\.[0-9a-f]+\.[0-9a-f]{16}"  # second, count, the process's name
    assert re.fullmatch(rf"<{unique}@{re.escape(DOMAIN)}>", message_id), message_id
    sent = email.utils.parsedate_to_datetime(str(message["Date"]))
    assert sent.tzinfo is not None and before <= sent <= datetime.now(UTC)
    url = unsubscribe_url(message)
    grant = TOKENS.verify("unsubscribe", url.rsplit("/", 1)[1])
    assert (grant.user_id, grant.resource, grant.campaign) == ("ada", "email", "spring")
    assert str(message["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    # Each header one line, never RFC 2047 encoded words (mail clients read the URL raw).
    raw = (
        await client.post(
            "/v1/render", json={"template": "welcome", "user_id": "ada"}, headers=MIME
        )
    ).content
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    [line] = [h for h in head.split("\r\n") if h.startswith("List-Unsubscribe:")]
    assert line.startswith("List-Unsubscribe: <https://") and "=?" not in line
    # The footer links there too, in every part.
    doc = await render_json(client, template="welcome", user_id="ada", campaign="spring")
    assert set(footer_links(doc).values()) == {doc["headers"]["List-Unsubscribe"][1:-1]}


async def test_every_render_has_its_own_message_id(client):
    ids = set()
    for _ in range(3):
        ids.add(str((await mime(client, template="welcome", user_id="ada"))["Message-ID"]))
        ids.add(
            (await render_json(client, template="welcome", user_id="ada"))["headers"]["Message-ID"]
        )
    assert len(ids) == 6
    assert all(i.endswith(f"@{DOMAIN}>") for i in ids)


async def test_the_json_and_batch_answers_give_the_mime_headers(client):
    doc = await render_json(client, template="abandoned_cart", user_id="grace")
    headers = doc["headers"]
    assert set(headers) == {"Message-ID", "Date", "List-Unsubscribe", "List-Unsubscribe-Post"}
    message = await mime(client, template="abandoned_cart", user_id="grace")
    for name in ("List-Unsubscribe", "List-Unsubscribe-Post"):
        assert headers[name] == str(message[name])
    email.utils.parsedate_to_datetime(headers["Date"])
    lines = b"".join(
        orjson.dumps({"template": "abandoned_cart", "user_id": u}) + b"\n" for u in ("grace", "ada")
    )
    r = await client.post("/v1/render/batch", content=lines, headers=NDJSON)
    answers = [json.loads(line) for line in r.text.splitlines()]
    assert [a["user_id"] for a in answers] == ["grace", "ada"]
    assert answers[0]["headers"]["List-Unsubscribe"] == headers["List-Unsubscribe"]
    ada = TOKENS.verify(
        "unsubscribe", answers[1]["headers"]["List-Unsubscribe"][1:-1].rsplit("/", 1)[1]
    )
    assert ada.user_id == "ada"
    assert answers[0]["headers"]["Message-ID"] != answers[1]["headers"]["Message-ID"]


async def test_a_post_unsubscribes_and_everything_respects_it(client, unsub_app):
    message = await mime(client, template="abandoned_cart", user_id="ada", campaign="spring")
    path = path_of(unsubscribe_url(message))
    cart = await client.get(feed_url("cart", "ada"))
    assert cart.status_code == 200 and cart.json()["items"]  # ada has a cart
    assert "x-kairos-fallback" not in cart.headers

    # What a mail client sends for List-Unsubscribe-Post: no cookie, no Accept.
    r = await client.post(path, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
    assert r.status_code == 200, r.text
    assert r.json() == {"unsubscribed": True} and len(r.content) < 100
    assert await consent(unsub_app, "ada") is False
    profile = (await client.get("/v1/profiles/ada", headers=AUTH)).json()
    assert profile["consent"]["email"] is False
    assert profile["first_name"] == "Ada"  # the rest of the profile is kept

    # A render has nothing to send: 409, and the batch's line for ada says so.
    r = await client.post(
        "/v1/render", json={"template": "welcome", "user_id": "ada"}, headers=AUTH
    )
    assert_error(r, 409, "unsubscribed")
    r = await client.post(
        "/v1/render", json={"template": "welcome", "user_id": "ada"}, headers=MIME
    )
    assert_error(r, 409, "unsubscribed")
    lines = (
        b'{"template": "welcome", "user_id": "ada"}\n{"template": "welcome", "user_id": "grace"}\n'
    )
    r = await client.post("/v1/render/batch", content=lines, headers=NDJSON)
    ada, grace = (json.loads(line) for line in r.text.splitlines())
    assert ada["error"]["code"] == "unsubscribed" and "html" not in ada
    assert grace["html"] and "error" not in grace
    # An ESP's inline copy of ada (which knows nothing of the opt-out) does not win.
    inline = {"template": "welcome", "user_id": "ada", "profile": {"first_name": "Ada"}}
    assert_error(await client.post("/v1/render", json=inline, headers=AUTH), 409, "unsubscribed")
    r = await client.post("/v1/render/batch", content=orjson.dumps(inline) + b"\n", headers=NDJSON)
    assert json.loads(r.text)["error"]["code"] == "unsubscribed"
    other = {**inline, "user_id": "grace", "profile": {"first_name": "Grace"}}
    assert (await client.post("/v1/render", json=other, headers=AUTH)).status_code == 200

    # Feeds serve their generic content, as for a reader who declined personalization.
    cart = await client.get(feed_url("cart", "ada"))
    assert cart.status_code == 200
    assert cart.headers["x-kairos-fallback"] == "no-consent"

    # The pixel and clicks still answer, and record nothing.
    stats = unsub_app.state.services.tracker
    pixel = f"/v1/px/{TOKENS.sign('pixel', 'ada', 'open', campaign='spring', variant='A')}.gif"
    r = await client.get(pixel, headers={"User-Agent": HUMAN_UA})
    assert r.status_code == 200 and r.headers["content-type"] == "image/gif"
    target = "https://shop.example.com/lamp"
    click = f"/c/{TOKENS.sign('click', 'ada', target, campaign='spring', variant='A')}"
    r = await client.get(click, headers={"User-Agent": HUMAN_UA})
    assert r.status_code == 302 and r.headers["location"] == target
    await stats.drained()
    counters = (await client.get("/v1/profiles/ada", headers=AUTH)).json().get("counters", {})
    assert "email_open" not in counters and "email_click" not in counters


async def test_unsubscribing_leaves_the_email_not_the_shop(client, unsub_app):
    # Site events are kept as the tracking consent says; only email opens and clicks stop.
    path = path_of(
        (await render_json(client, template="welcome", user_id="hedy"))["headers"][
            "List-Unsubscribe"
        ][1:-1]
    )
    assert (await client.post(path, headers=ONE_CLICK)).status_code == 200
    events = [
        {
            "event_id": "u-view",
            "user_id": "hedy",
            "type": "product_view",
            "properties": {"sku": "SKU-1"},
        },
        {"event_id": "u-open", "user_id": "hedy", "type": "email_open", "properties": {}},
    ]
    r = await client.post("/v1/events", json={"events": events}, headers=AUTH)
    assert r.status_code == 202, r.text
    counters = (await client.get("/v1/profiles/hedy", headers=AUTH)).json()["counters"]
    assert counters.get("product_view") == 1 and "email_open" not in counters


async def test_a_subscribed_readers_pixel_is_recorded(client, unsub_app):
    # The control for the test above: the same pixel counts for a subscribed reader.
    pixel = f"/v1/px/{TOKENS.sign('pixel', 'hedy', 'open', campaign='spring', variant='A')}.gif"
    await client.get(pixel, headers={"User-Agent": HUMAN_UA})
    await unsub_app.state.services.tracker.drained()
    counters = (await client.get("/v1/profiles/hedy", headers=AUTH)).json()["counters"]
    assert counters["email_open"] == 1


async def test_a_repeated_post_is_harmless(client, unsub_app):
    path = path_of(
        (await render_json(client, template="welcome", user_id="hedy"))["headers"][
            "List-Unsubscribe"
        ][1:-1]
    )
    metrics = unsub_app.state.services.metrics.unsubscribes
    store = unsub_app.state.services.stores.profiles
    first = await client.post(path, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
    # Marked, so that any second write shows (even within the same second).
    stored = {**await store.get("hedy"), "updated_at": "2000-01-01T00:00:00Z"}
    await store.put("hedy", stored)
    again = [await client.post(path, content=b"anything at all") for _ in range(2)]
    assert [r.status_code for r in (first, *again)] == [200, 200, 200]
    assert first.json() == again[0].json() == again[1].json()
    assert await store.get("hedy") == stored  # no second change
    assert metrics.labels("recorded").value == 1 and metrics.labels("already").value == 2
    text = (await client.get("/metrics")).text
    assert 'kairos_unsubscribes_total{result="recorded"} 1.0' in text


async def test_concurrent_writes_are_not_lost(client, unsub_app):
    # The opt-out goes through the store's compare-and-set: a profile PATCH racing it
    # keeps both changes.
    path = path_of(
        (await render_json(client, template="welcome", user_id="grace"))["headers"][
            "List-Unsubscribe"
        ][1:-1]
    )
    patches = [
        client.patch("/v1/profiles/grace", json={"loyalty_points": n}, headers=AUTH)
        for n in range(1, 6)
    ]
    answers = await asyncio.gather(client.post(path, headers=ONE_CLICK), *patches)
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    stored = await unsub_app.state.services.stores.profiles.get("grace")
    assert stored["consent"]["email"] is False and 1 <= stored["loyalty_points"] <= 5


async def test_a_get_shows_a_page_and_never_unsubscribes(client, unsub_app):
    message = await mime(client, template="welcome", user_id="ada")
    url = unsubscribe_url(message)
    for _ in range(2):  # a link scanner, then the reader
        r = await client.get(path_of(url))
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["cache-control"] == "no-store"
    assert await consent(unsub_app, "ada") is None  # nothing changed
    page = r.text
    assert '<html lang="en">' in page and "<h1>" in page and "<title>" in page
    assert page.count('<form method="post">') == 1  # to the page's own URL
    assert '<button type="submit">Unsubscribe</button>' in page
    assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in page
    assert "<script" not in page and "Ada" not in page
    # The page's button: a browser's form POST, which gets a page back.
    r = await client.post(
        path_of(url),
        content=b"List-Unsubscribe=One-Click",
        headers={**ONE_CLICK, "Accept": "text/html,application/xhtml+xml"},
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "You are unsubscribed" in r.text
    assert await consent(unsub_app, "ada") is False


@pytest.mark.parametrize(
    "token",
    [
        "forged",
        TOKENS.sign("unsubscribe", "ada", "email")[:-2] + "xx",  # signature tampered
        TOKENS.sign("feed", "ada", "email"),  # another purpose's token
        TOKENS.sign("unsubscribe", "ada", "cart"),  # not for email
        TOKENS.sign("unsubscribe", "", "email"),  # no reader
        "x" * 5000,
    ],
    ids=["garbage", "tampered", "feed-token", "other-resource", "no-reader", "oversized"],
)
async def test_a_forged_token_is_403(client, unsub_app, token):
    path = f"/v1/unsubscribe/{token}"
    r = await client.post(path, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
    assert_error(r, 403)
    r = await client.get(path)
    assert r.status_code == 403 and r.headers["content-type"].startswith("text/html")
    assert "<form" not in r.text
    assert await consent(unsub_app, "ada") is None
    assert unsub_app.state.services.metrics.unsubscribes.labels("recorded").value == 0


async def test_a_reader_without_a_profile_is_recorded_too(client, unsub_app):
    path = f"/v1/unsubscribe/{TOKENS.sign('unsubscribe', 'newcomer', 'email')}"
    assert (await client.post(path)).status_code == 200
    assert await consent(unsub_app, "newcomer") is False
    r = await client.post(
        "/v1/render", json={"template": "welcome", "user_id": "newcomer"}, headers=AUTH
    )
    assert_error(r, 409, "unsubscribed")


async def test_an_erased_reader_is_not_brought_back(client, unsub_app):
    assert (await client.delete("/v1/profiles/ada", headers=AUTH)).status_code == 204
    path = f"/v1/unsubscribe/{TOKENS.sign('unsubscribe', 'ada', 'email')}"
    r = await client.post(path, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
    assert r.status_code == 200 and r.json() == {"unsubscribed": True}
    assert await unsub_app.state.services.stores.profiles.get("ada") is None
    assert await unsub_app.state.services.erasure.leftovers("ada") == []
    assert unsub_app.state.services.metrics.unsubscribes.labels("erased").value == 1


async def test_a_user_id_merged_into_another_unsubscribes_that_user(client, unsub_app):
    # An email sent before an alias names the old id: the user renders read now is the
    # new one, so that is where the opt-out must land.
    body = {"messageId": "ak", "previousId": "grace", "userId": "grace-2"}
    assert (await client.post("/segment/v1/alias", json=body, headers=AUTH)).status_code == 200
    path = f"/v1/unsubscribe/{TOKENS.sign('unsubscribe', 'grace', 'email')}"
    assert (await client.post(path, headers=ONE_CLICK)).status_code == 200
    assert await consent(unsub_app, "grace-2") is False
    r = await client.post(
        "/v1/render", json={"template": "welcome", "user_id": "grace-2"}, headers=AUTH
    )
    assert_error(r, 409, "unsubscribed")


async def test_resubscribing_through_the_profile_api_sends_again(client):
    path = f"/v1/unsubscribe/{TOKENS.sign('unsubscribe', 'grace', 'email')}"
    await client.post(path)
    body = {"template": "welcome", "user_id": "grace"}
    assert (await client.post("/v1/render", json=body, headers=AUTH)).status_code == 409
    r = await client.patch("/v1/profiles/grace", json={"consent": {"email": True}}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert (await client.post("/v1/render", json=body, headers=AUTH)).status_code == 200


async def test_an_inline_profile_that_unsubscribed_is_409(client):
    body = {"template": "welcome", "user_id": "zoe", "profile": {"consent": {"email": False}}}
    assert_error(await client.post("/v1/render", json=body, headers=AUTH), 409, "unsubscribed")


@pytest.mark.parametrize(
    ("tag", "post"),
    [("*|UNSUB|*", False), ("https://esp.example.net/u/abc?x=1&y=2", False)],
)
async def test_a_renders_esp_unsubscribe_url_replaces_ours(client, tag, post):
    body = {"template": "welcome", "user_id": "ada", "unsubscribe_url": tag}
    doc = await render_json(client, **body)
    assert doc["headers"]["List-Unsubscribe"] == f"<{tag}>"
    assert ("List-Unsubscribe-Post" in doc["headers"]) is post
    assert set(footer_links(doc).values()) == {tag}  # not wrapped in a click redirect
    message = await mime(client, **body)
    assert unsubscribe_url(message) == tag and message["List-Unsubscribe-Post"] is None
    r = await client.get(
        "/v1/render/welcome", params={"user_id": "ada", "unsubscribe_url": tag}, headers=AUTH
    )
    assert r.json()["headers"]["List-Unsubscribe"] == f"<{tag}>"


@pytest.mark.parametrize(
    "bad",
    ["javascript:alert(1)", 'x"><script>{}', "plain", "//evil.example/{x}", 42, "a" * 201],
)
async def test_a_bad_esp_unsubscribe_url_is_422(client, bad):
    body = {"template": "welcome", "user_id": "ada", "unsubscribe_url": bad}
    error = assert_error(await client.post("/v1/render", json=body, headers=AUTH), 422)
    assert error["field"] == "unsubscribe_url"


async def test_a_templates_esp_url_and_its_one_click_declaration(settings, module_sources_copy):
    blocks, templates = module_sources_copy()
    base = json.loads((templates / "welcome" / "template.json").read_text())
    for name, links, one_click in [
        ("esp_tag", {"unsubscribe": "{{{ pm:unsubscribe }}}"}, False),
        ("esp_one_click", {"unsubscribe": "https://esp.example.net/one-click/u"}, True),
    ]:
        doc = {**base, "links": {**base["links"], **links}, "unsubscribe_one_click": one_click}
        (templates / name).mkdir()
        (templates / name / "template.json").write_text(json.dumps(doc))
    app = create_app(
        settings(
            KAIROS_PUBLIC_URL=PUBLIC_URL, KAIROS_BLOCKS_DIR=blocks, KAIROS_TEMPLATES_DIR=templates
        )
    )
    async with serve(app) as client:
        tag = await render_json(client, template="esp_tag", user_id="ada")
        assert tag["headers"]["List-Unsubscribe"] == "<{{{ pm:unsubscribe }}}>"
        assert "List-Unsubscribe-Post" not in tag["headers"]
        assert set(footer_links(tag).values()) == {"{{{ pm:unsubscribe }}}"}
        esp = await render_json(client, template="esp_one_click", user_id="ada")
        assert esp["headers"]["List-Unsubscribe"] == "<https://esp.example.net/one-click/u>"
        assert esp["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        # A render's own URL wins over the template's.
        own = await render_json(
            client, template="esp_tag", user_id="ada", unsubscribe_url="%unsubscribe_url%"
        )
        assert set(footer_links(own).values()) == {"%unsubscribe_url%"}


async def test_ours_is_one_click_only_over_https(settings):
    app = create_app(settings(KAIROS_PUBLIC_URL="http://127.0.0.1:8000"))
    async with serve(app) as client:
        doc = await render_json(client, template="welcome", user_id="ada", formats=["text"])
    assert doc["headers"]["List-Unsubscribe"].startswith("<http://127.0.0.1:8000/v1/unsubscribe/")
    assert "List-Unsubscribe-Post" not in doc["headers"]
    assert doc["headers"]["Message-ID"].endswith("@127.0.0.1>")  # the public URL's host


def test_esp_unsubscribe_urls_and_merge_tags():
    for good in (
        "*|UNSUB|*",
        "*|UNSUB:https://shop.example.com/bye|*",
        "{{{ pm:unsubscribe }}}",
        "${unsubscribe_url}",
        "{{amazonSESUnsubscribeUrl}}",
        "[unsubscribe]",
        "%unsubscribe_url%",
        "{% unsubscribe_url %}",
        "https://esp.example.net/u?id=1",
    ):
        assert esp_unsubscribe(good) == good
    for bad in (
        "javascript:*|x|*",
        "data:{x}",
        "<%asm_group_unsubscribe_raw_url%>",
        " *|x|*",
        "a\r\nBcc: x{",
        "mailto:x@example.org",
        "https://e.example/" + "a" * 900,
    ):
        with pytest.raises(BadUnsubscribe):
            esp_unsubscribe(bad)


async def test_another_server_sharing_the_redis_hears_of_it(settings, redis_url):
    # Two servers on one Redis, each with its profile cache: the opt-out recorded by one
    # reaches the other's cache through the change bus, as any profile write does.
    env = {
        "KAIROS_PUBLIC_URL": PUBLIC_URL,
        "REDIS_URL": redis_url,
        "KAIROS_DEMO_DATA": "true",
        # Only the change bus can refresh the copy: no expiry, no sweep writing segments.
        "KAIROS_CACHE_TTL_MS": "600000",
        "KAIROS_SEGMENTS_SWEEP_S": "0",
    }
    first, second = create_app(settings(**env)), create_app(settings(**env))
    body = {"template": "welcome", "user_id": "ada"}
    async with serve(first) as a, serve(second) as b:
        assert (await b.post("/v1/render", json=body, headers=AUTH)).status_code == 200
        assert second.state.services.profiles.cached("ada") is not None  # b holds a copy
        path = f"/v1/unsubscribe/{TOKENS.sign('unsubscribe', 'ada', 'email')}"
        assert (await a.post(path, headers=ONE_CLICK)).status_code == 200
        # Announced at once (milliseconds); other refreshes of the copy take longer.
        deadline = time.monotonic() + 0.25
        while True:
            r = await b.post("/v1/render", json=body, headers=AUTH)
            if r.status_code == 409 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.005)
        assert_error(r, 409, "unsubscribed")
