"""AMP-for-Email CORS against hostile origins and senders, through the real app: version 1
refuses a `null` or non-https Origin and never allows credentials; look-alike senders are
refused in both versions; OPTIONS and HEAD give nothing away."""

from __future__ import annotations

import pytest
from support import ADA_PROFILE_ITEM, feed_url, serve

from app.app import create_app

SENDER = "deals@news.example.com"
BAD_ORIGINS = [
    "null",
    "http://mail.example.net",
    "https://",
    "https://mail.example.net/inbox",
    "https://user@mail.example.net",
    "https://mail.example.net:99999999",
    "javascript:alert(1)",
    "https://mail.example.net\r\nX-Injected: 1",
    "file://",
]
LOOK_ALIKES = [
    "deals@news.example.com.evil.test",
    "deals@evil.test@news.example.com",
    "deals@xnews.example.com",
    "deals@news-example.com",
    "deals@news.example.co",
    "deals@NEWS.EXAMPLE.COM.evil.test",
    "deals@sub.news.example.com",
    "",
    "x" * 400 + "@news.example.com",
]


@pytest.fixture
async def amp_client(settings):
    app = create_app(settings(KAIROS_AMP_SENDERS="*@news.example.com"))
    async with serve(app) as client:
        await client.put(
            "/v1/profiles/ada",
            json=ADA_PROFILE_ITEM,
            headers={"Authorization": "Bearer test-api-key-0123456789"},
        )
        yield client


@pytest.mark.parametrize("origin", BAD_ORIGINS)
async def test_v1_refuses_an_origin_that_is_not_a_mail_clients(amp_client, origin):
    url = feed_url("cart", "ada", __amp_source_origin=SENDER)
    try:
        r = await amp_client.get(url, headers={"Origin": origin})
    except Exception:  # a header httpx itself will not send (CR LF): refused before us
        return
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "sender_not_allowed"
    assert "access-control-allow-origin" not in r.headers


async def test_v1_from_a_mail_client_never_allows_credentials(amp_client):
    url = feed_url("cart", "ada", __amp_source_origin=SENDER)
    r = await amp_client.get(url, headers={"Origin": "https://mail.example.net"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://mail.example.net"
    assert "access-control-allow-credentials" not in r.headers


@pytest.mark.parametrize("sender", LOOK_ALIKES)
async def test_look_alike_senders_are_refused_in_both_versions(amp_client, sender):
    v2 = await amp_client.get(feed_url("cart", "ada"), headers={"AMP-Email-Sender": sender})
    v1 = await amp_client.get(
        feed_url("cart", "ada", __amp_source_origin=sender),
        headers={"Origin": "https://mail.example.net"},
    )
    for r in (v2, v1):
        assert r.status_code == 403, sender
        assert "amp-email-allow-sender" not in r.headers
        assert "amp-access-control-allow-source-origin" not in r.headers
        assert "Ada" not in r.text


@pytest.mark.parametrize("method", ["OPTIONS", "HEAD"])
async def test_other_methods_give_nothing_away(amp_client, method):
    r = await amp_client.request(
        method, feed_url("cart", "ada"), headers={"AMP-Email-Sender": "x@evil.test"}
    )
    assert r.status_code in (403, 405)
    assert "amp-email-allow-sender" not in r.headers
    assert "Ada" not in r.text
