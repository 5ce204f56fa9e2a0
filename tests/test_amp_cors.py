"""AMP-for-Email CORS: the sender allow-list, version 2 and version 1 headers, over HTTP."""

from __future__ import annotations

import httpx
import pytest
from support import ADA_PROFILE_ITEM, assert_error, fallback_body, feed_url, serve

from app.amp_cors import AmpCors, SenderNotAllowed
from app.app import create_app

CORS_HEADERS = (
    "amp-email-allow-sender",
    "access-control-allow-origin",
    "amp-access-control-allow-source-origin",
    "access-control-expose-headers",
    "access-control-allow-credentials",
)


# --- the allow-list ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "allowed"),
    [
        ("news@news.example.com", True),
        ("Promo.Team+x@NEWS.example.COM", True),
        ("x@evil.com", False),
        ("a@news.example.com.evil.com", False),
        ("a@b@news.example.com", False),
        ("a@xnews.example.com", False),
        ("a@news.exampleXcom", False),  # the dot is literal, not "any character"
        ("a@sub.news.example.com", False),
        ("news.example.com", False),
        ("", False),
    ],
)
def test_wildcard_local_part(sender: str, allowed: bool):
    assert AmpCors(["*@news.example.com"]).allows(sender) is allowed


@pytest.mark.parametrize(
    ("sender", "allowed"),
    [
        ("news@example.com", True),
        ("NEWS@EXAMPLE.COM", True),
        ("xnews@example.com", False),
        ("news@example.com.au", False),
        ("news@example.co", False),
    ],
)
def test_exact_sender(sender: str, allowed: bool):
    assert AmpCors(["news@example.com"]).allows(sender) is allowed


def test_several_patterns():
    cors = AmpCors(["news@example.com", "*@promo.example.org"])
    assert cors.allows("news@example.com")
    assert cors.allows("anyone@promo.example.org")
    assert not cors.allows("anyone@example.com")


def test_star_allows_any_sender():
    assert AmpCors(["*"]).allows("anyone@anywhere.test")


def test_empty_allow_list_allows_nobody():
    assert not AmpCors([]).allows("news@example.com")


def test_overlong_sender_is_refused():
    cors = AmpCors(["*"])
    assert cors.allows("a" * 300 + "@example.com")
    assert not cors.allows("a" * 320 + "@example.com")


def test_headers_v2():
    cors = AmpCors(["*@news.example.com"])
    got = cors.headers("a@news.example.com", None, {})
    assert dict(got) == {b"amp-email-allow-sender": b"a@news.example.com"}
    with pytest.raises(SenderNotAllowed):
        cors.headers("a@evil.com", None, {})


def test_headers_v1():
    cors = AmpCors(["*@news.example.com"])
    got = dict(
        cors.headers(
            None, "https://mail.example.net", {"__amp_source_origin": "a@news.example.com"}
        )
    )
    assert got[b"access-control-allow-origin"] == b"https://mail.example.net"
    assert got[b"amp-access-control-allow-source-origin"] == b"a@news.example.com"
    assert got[b"access-control-expose-headers"] == b"AMP-Access-Control-Allow-Source-Origin"
    with pytest.raises(SenderNotAllowed):  # v1 without Origin
        cors.headers(None, None, {"__amp_source_origin": "a@news.example.com"})
    with pytest.raises(SenderNotAllowed):  # v1 with a sender off the list
        cors.headers(None, "https://mail.example.net", {"__amp_source_origin": "x@evil.com"})


def test_headers_none():
    assert list(AmpCors(["*@news.example.com"]).headers(None, "https://m.example", {})) == []


# --- over HTTP ---------------------------------------------------------------------------


@pytest.fixture
async def amp_client(settings):
    app = create_app(settings(KAIROS_AMP_SENDERS="*@news.example.com"))
    async with serve(app) as c:
        yield c


def no_cors(response: httpx.Response) -> bool:
    return not any(h in response.headers for h in CORS_HEADERS)


async def test_v2_allowed_sender(amp_client):
    r = await amp_client.get(
        feed_url("profile", "ada"), headers={"AMP-Email-Sender": "Deals@news.example.com"}
    )
    assert r.status_code == 200
    assert r.headers["amp-email-allow-sender"] == "Deals@news.example.com"
    assert "access-control-allow-origin" not in r.headers
    assert r.headers["cache-control"] == "private, no-store"
    assert r.json() == {"items": [ADA_PROFILE_ITEM]}


@pytest.mark.parametrize(
    "sender", ["x@evil.com", "a@news.example.com.evil.com", "a@b@news.example.com"]
)
async def test_v2_disallowed_sender(amp_client, sender: str):
    r = await amp_client.get(feed_url("profile", "ada"), headers={"AMP-Email-Sender": sender})
    assert_error(r, 403, "sender_not_allowed")
    assert "amp-email-allow-sender" not in r.headers
    assert "Ada" not in r.text


async def test_v1_allowed_sender(amp_client):
    r = await amp_client.get(
        feed_url("cart", "ada", __amp_source_origin="deals@news.example.com"),
        headers={"Origin": "https://mail.example.net"},
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://mail.example.net"
    assert r.headers["amp-access-control-allow-source-origin"] == "deals@news.example.com"
    assert r.headers["access-control-expose-headers"] == "AMP-Access-Control-Allow-Source-Origin"
    assert "amp-email-allow-sender" not in r.headers
    assert r.headers["cache-control"] == "private, no-store"
    assert [item["sku"] for item in r.json()["items"]] == ["SKU-1", "SKU-2"]


async def test_v1_disallowed_sender(amp_client):
    r = await amp_client.get(
        feed_url("cart", "ada", __amp_source_origin="x@evil.com"),
        headers={"Origin": "https://mail.example.net"},
    )
    assert_error(r, 403, "sender_not_allowed")
    assert no_cors(r)


async def test_v1_without_origin_is_refused(amp_client):
    r = await amp_client.get(feed_url("cart", "ada", __amp_source_origin="a@news.example.com"))
    assert_error(r, 403, "sender_not_allowed")


async def test_no_amp_headers_no_cors_headers(amp_client):
    r = await amp_client.get(feed_url("profile", "ada"))
    assert r.status_code == 200
    assert no_cors(r)
    assert r.headers["cache-control"] == "private, no-store"


async def test_v2_takes_precedence_over_v1(amp_client):
    r = await amp_client.get(
        feed_url("profile", "ada", __amp_source_origin="x@evil.com"),
        headers={"AMP-Email-Sender": "a@news.example.com", "Origin": "https://m.example"},
    )
    assert r.status_code == 200
    assert r.headers["amp-email-allow-sender"] == "a@news.example.com"


async def test_sender_is_checked_before_data_is_read(amp_client):
    # a disallowed sender learns nothing, not even whether the reader exists
    r = await amp_client.get(
        feed_url("profile", "nobody"), headers={"AMP-Email-Sender": "x@evil.com"}
    )
    assert_error(r, 403, "sender_not_allowed")
    assert "x-kairos-fallback" not in r.headers


@pytest.mark.parametrize(
    ("user", "ttl", "reason"),
    [("ada", None, None), ("nobody", None, "missing-profile"), ("ada", -1, "expired-token")],
)
@pytest.mark.parametrize("feed", ["profile", "cart", "recommendations"])
async def test_every_feed_answer_has_cors_and_no_store(
    amp_client, feed: str, user: str, ttl: int | None, reason: str | None
):
    r = await amp_client.get(
        feed_url(feed, user, ttl_s=ttl), headers={"AMP-Email-Sender": "a@news.example.com"}
    )
    assert r.status_code == 200
    assert r.headers["cache-control"] == "private, no-store"
    assert r.headers["amp-email-allow-sender"] == "a@news.example.com"
    assert r.headers.get("x-kairos-fallback") == reason
    if reason is not None:
        assert r.json() == fallback_body(feed)
