"""Language, direction and reader text in renders, through the ASGI app with real MJML:
`<html lang>` and `dir` from the template's declared language (not the reader's
locale), reader names isolated from the copy around them (HTML, AMP, text, and the AMP
still valid), money and dates by the template's language and the reader's time zone
(also in the AMP feeds), a too-long reader field cut to fit instead of a 422, and cart
lines whose product the catalog no longer has.

The app runs on a private copy of the real blocks and templates, plus test-only
templates declaring other languages (one right to left)."""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from support import AUTH, assert_error, render_json, serve

from app.app import create_app
from app.render import ampvalidate

PUBLIC_URL = "https://kairos.example.com"
ARABIC_NAME = "سارة"
LINKS = {"home": "https://shop.example.com/"}
# An Arabic email: its own copy, right to left.
RTL_TEMPLATE = {
    "language": "ar",
    "subject": "مرحبا {{ first_name | default('', true) }}",
    "links": LINKS,
    "blocks": [
        "header",
        {
            "block": "greeting",
            "params": {
                "salutation": "مرحبا",
                "no_name": "مرحبا!",
                "message": "شكرا لانضمامك إلينا.",
            },
        },
        "footer",
    ],
}
# The same short email in British English, German, and English with a countdown.
GREETING_CART = ["header", "greeting", "cart", "product_grid", "footer"]
TEMPLATES: dict[str, dict[str, Any]] = {
    "lang_ar": RTL_TEMPLATE,
    "lang_en_gb": {
        "language": "en-GB",
        "subject": "Hello",
        "links": LINKS,
        "blocks": GREETING_CART,
    },
    "lang_de": {"language": "de-DE", "subject": "Hallo", "links": LINKS, "blocks": GREETING_CART},
    "lang_countdown_gb": {
        "language": "en-GB",
        "subject": "Sale",
        "links": LINKS,
        "blocks": ["header", "countdown", "footer"],
    },
    "lang_countdown_de": {
        "language": "de-DE",
        "subject": "Sale",
        "links": LINKS,
        "blocks": ["header", "countdown", "footer"],
    },
}
HTML_TAG = re.compile(r"<html\b[^>]*>")
AMP_LIST = re.compile(r"<amp-list\b[^>]*?\ssrc=\"([^\"]+)\"")


@pytest.fixture(scope="module")
def lang_app(module_settings, module_sources_copy) -> Starlette:
    blocks, templates = module_sources_copy()
    for name, doc in TEMPLATES.items():
        (templates / name).mkdir()
        (templates / name / "template.json").write_text(json.dumps(doc, ensure_ascii=False))
    return create_app(
        module_settings(
            KAIROS_PUBLIC_URL=PUBLIC_URL, KAIROS_BLOCKS_DIR=blocks, KAIROS_TEMPLATES_DIR=templates
        )
    )


@pytest.fixture
async def client(lang_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(lang_app) as c:
        yield c


def html_tag(document: str) -> str:
    found = HTML_TAG.search(document)
    assert found, document[:200]
    return found.group()


def visible(document: str) -> str:
    """The text of an HTML document, character references decoded, tags dropped."""
    return html.unescape(re.sub(r"<[^>]+>", " ", document))


def assert_amp_valid(documents: dict[str, str], amp_validator_dir: Any) -> None:
    if not ampvalidate.available(amp_validator_dir):
        pytest.fail("the AMP validator is not installed: run `bash .ci/amp-validator`")
    verdicts = ampvalidate.validate(documents, amp_validator_dir)
    failed = {name: v.errors[:3] for name, v in verdicts.items() if v.status != "PASS"}
    assert failed == {}


# --- lang and dir ----------------------------------------------------------------------------


async def test_html_lang_is_the_templates_language_not_the_readers_locale(client):
    reader = {"first_name": "Lin", "locale": "de-AT"}
    for template, lang in (("lang_en_gb", "en-GB"), ("welcome", "en"), ("lang_de", "de-DE")):
        doc = await render_json(client, template=template, user_id="lin", profile=reader)
        for part in ("html", "amp"):
            tag = html_tag(doc[part])
            assert f'lang="{lang}"' in tag, (template, part, tag)
            assert 'dir="rtl"' not in tag and "de-AT" not in doc[part]
        # Said outright: "auto" would let a name in another script turn the email round.
        assert 'dir="ltr"' in html_tag(doc["html"])


async def test_a_right_to_left_template_is_rtl_and_its_amp_is_valid(client, amp_validator_dir):
    doc = await render_json(
        client, template="lang_ar", user_id="rtl", profile={"first_name": "Lin"}
    )
    assert 'lang="ar"' in html_tag(doc["html"]) and 'dir="rtl"' in html_tag(doc["html"])
    assert 'lang="ar"' in html_tag(doc["amp"]) and 'dir="rtl"' in html_tag(doc["amp"])
    # MJML's own inline styles follow: sections and columns run right to left and text
    # starts on the right (the greeting's mj-text has no align of its own).
    assert "direction:rtl" in doc["html"] and "direction:ltr" not in doc["html"]
    salutation = "".join(f"&#{ord(c)};" for c in "مرحبا") + " <bdi>Lin</bdi>,"
    greeting = doc["html"][: doc["html"].index(salutation)]
    assert "text-align:right" in greeting[greeting.rindex("<div") :]
    ltr = await render_json(
        client, template="lang_en_gb", user_id="rtl", profile={"first_name": "Lin"}
    )
    assert "direction:rtl" not in ltr["html"]
    assert_amp_valid({"lang_ar": doc["amp"]}, amp_validator_dir)


async def test_a_template_declaring_an_unknown_language_is_refused(client, lang_app):
    files = {"template.json": json.dumps({**TEMPLATES["lang_en_gb"], "language": "xx-Nope"})}
    r = await client.post(
        "/v1/preview", json={"template": "lang_en_gb", "files": files}, headers=AUTH
    )
    error = assert_error(r, 422)
    assert "template.json" in error["message"] and "language" in error["message"]


# --- reader names isolated -----------------------------------------------------------------


async def test_an_arabic_name_is_isolated_in_an_english_greeting(client, amp_validator_dir):
    doc = await render_json(
        client, template="lang_en_gb", user_id="sara", profile={"first_name": ARABIC_NAME}
    )
    escaped = "".join(f"&#{ord(c)};" for c in ARABIC_NAME)
    assert f"Hi <bdi>{escaped}</bdi>," in doc["html"]
    assert f'Hi <span dir="auto">{escaped}</span>,' in doc["amp"]
    assert "<bdi>" not in doc["amp"]
    assert f"Hi {ARABIC_NAME}," in doc["text"] and "<" not in doc["text"].split("\n")[0]
    # Markup in a name stays text inside the isolation.
    hostile = await render_json(
        client, template="lang_en_gb", user_id="x", profile={"first_name": "<b>Bo</b>"}
    )
    assert "Hi <bdi>&lt;b&gt;Bo&lt;/b&gt;</bdi>," in hostile["html"]
    assert 'Hi <span dir="auto">&lt;b&gt;Bo&lt;/b&gt;</span>,' in hostile["amp"]
    assert_amp_valid({"sara": doc["amp"], "hostile": hostile["amp"]}, amp_validator_dir)


# --- money and dates ---------------------------------------------------------------------------


CART = [{"sku": "SKU-1", "qty": 1, "price": 1234.5, "currency": "EUR"}]


async def test_money_is_written_by_the_templates_language(client):
    reader = {"first_name": "Ada", "locale": "fr-FR", "cart": CART}
    gb = await render_json(client, template="lang_en_gb", user_id="ada-x", profile=reader)
    de = await render_json(client, template="lang_de", user_id="ada-x", profile=reader)
    assert "€1,234.50" in visible(gb["html"]) and "€1,234.50" in gb["text"]
    assert "1.234,50\xa0€" in visible(de["html"]) and "1.234,50\xa0€" in de["text"]
    assert "€1,234.50" not in de["text"] and "1.234,50" not in gb["text"]
    # The recommended products too, though readers of both languages share them.
    assert re.search(r"\(€\d+\.\d\d\)", gb["text"]) and not re.search(r"\(€\d", de["text"])
    assert re.search(r"\(\d+,\d\d\xa0€\)", de["text"])
    # The subtotal too (the `money` filter), and English templates keep "€39.00".
    assert "Subtotal: €1,234.50" in gb["text"] and "Subtotal: 1.234,50\xa0€" in de["text"]
    en = await render_json(client, template="abandoned_cart", user_id="ada")
    assert "€39.00" in en["text"] and "€49.00" in en["text"]


async def test_the_amp_feed_writes_prices_in_the_emails_language(client):
    prices = {}
    for template in ("lang_de", "lang_en_gb"):
        doc = await render_json(client, template=template, user_id="ada")
        [src] = [s for s in AMP_LIST.findall(doc["amp"]) if "/v1/feeds/cart?" in s]
        parts = urlsplit(html.unescape(src))
        r = await client.get(f"{parts.path}?{parts.query}")
        assert r.status_code == 200 and "x-kairos-fallback" not in r.headers
        prices[template] = [item["price_display"] for item in r.json()["items"]]
    assert prices == {"lang_de": ["39,00\xa0€", "24,50\xa0€"], "lang_en_gb": ["€39.00", "€24.50"]}


@pytest.mark.parametrize(
    ("template", "timezone", "shown"),
    [
        ("lang_countdown_gb", None, "Ends 24 December 2026, 23:59 UTC"),
        ("lang_countdown_gb", "Europe/London", "Ends 24 December 2026, 23:59 GMT"),
        ("lang_countdown_gb", "Asia/Tokyo", "Ends 25 December 2026, 08:59 GMT+09:00"),
        ("lang_countdown_gb", "Not/AZone", "Ends 24 December 2026, 23:59 UTC"),
        ("lang_countdown_de", "Europe/Berlin", "Ends 25. Dezember 2026, 00:59 MEZ"),
    ],
)
async def test_the_countdowns_end_is_in_the_readers_time_zone(
    client, lang_app, template, timezone, shown
):
    profile = {"first_name": "Tim"} if timezone is None else {"timezone": timezone}
    if timezone == "Not/AZone":
        # Stored data the profiles API would refuse: read as UTC, never an error.
        await lang_app.state.services.stores.profiles.put("tz-bad", {"timezone": timezone})
        doc = await render_json(client, template=template, user_id="tz-bad")
    else:
        doc = await render_json(client, template=template, user_id="tim", profile=profile)
    assert shown in doc["text"], doc["text"]
    assert shown in visible(doc["html"]) and shown in visible(doc["amp"])


# --- too-long reader fields ---------------------------------------------------------------------


async def test_a_10000_character_first_name_is_cut_not_refused(client, lang_app):
    name = "Ada" * 3333 + "X"
    doc = await render_json(
        client, template="welcome", user_id="long", profile={"first_name": name}
    )
    assert {"field": "first_name", "reason": "too-long", "action": "truncated"} in doc["fallbacks"]
    assert name not in json.dumps(doc["fallbacks"])
    kept = name[:99] + "…"
    assert kept in doc["subject"] and f"Welcome, {kept}," in doc["text"]
    assert name[:100] not in doc["text"] and name[:100] not in doc["html"]
    metrics = (await client.get("/metrics")).text
    assert 'kairos_fallbacks_total{kind="field",name="first_name",reason="too-long"}' in metrics


async def test_a_too_long_url_is_dropped_and_a_stored_long_field_is_cut(client, lang_app):
    long_url = "https://shop.example.com/p/" + "a" * 3000
    profile = {"first_name": "Ada", "cart": [{"sku": "SKU-1", "qty": 1, "url": long_url}]}
    doc = await render_json(client, template="abandoned_cart", user_id="long-url", profile=profile)
    assert {"field": "cart[0].url", "reason": "too-long", "action": "dropped"} in doc["fallbacks"]
    assert "a" * 100 not in doc["html"] and "Brass desk lamp" in doc["text"]
    # Stored before the schema said so: the same cut.
    stored = {"first_name": "Grace" * 100, "email": "g@" + "x" * 300 + ".org"}
    await lang_app.state.services.stores.profiles.put("long-stored", stored)
    doc = await render_json(client, template="welcome", user_id="long-stored")
    assert {"field": "first_name", "reason": "too-long", "action": "truncated"} in doc["fallbacks"]
    assert {"field": "email", "reason": "too-long", "action": "dropped"} in doc["fallbacks"]
    assert ("Grace" * 20)[:99] + "…" in doc["text"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"first_name": 5}, "profile.first_name"),
        ({"first_name": ["Ada"]}, "profile.first_name"),
        ({"cart": [{"sku": "SKU-1", "qty": "many"}]}, "profile.cart[0].qty"),
    ],
)
async def test_a_malformed_profile_is_still_422(client, body, field):
    request = {"template": "welcome", "user_id": "bad", "profile": body}
    r = await client.post("/v1/render", json=request, headers=AUTH)
    assert assert_error(r, 422)["field"] == field
    r = await client.post(
        "/v1/render",
        content=b'{"template": "welcome", "user_id": "bad", "profile": {"first_name": "A',
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert_error(r, 400, "invalid_json")


# --- products the catalog no longer has ------------------------------------------------------


async def test_a_vanished_product_is_left_out_and_the_subtotal_says_so(client):
    cart = [{"sku": "SKU-1", "qty": 1}, {"sku": "SKU-GONE", "title": "Old stool", "qty": 2}]
    profile = {"first_name": "Kim", "cart": cart}
    doc = await render_json(client, template="abandoned_cart", user_id="kim", profile=profile)
    assert {"field": "cart", "sku": "SKU-GONE", "reason": "missing-product"} in doc["fallbacks"]
    for part in ("html", "amp", "text"):
        assert "Old stool" not in doc[part], part
    assert "Subtotal of the item still available: €39.00" in doc["text"]
    assert "Subtotal of the item still available" in visible(doc["html"])
    assert doc["subject"] == "Kim, your Brass desk lamp is waiting"
    # Two left: the count is said.
    cart2 = [{"sku": "SKU-1"}, {"sku": "SKU-GONE"}, {"sku": "SKU-2", "qty": 2}]
    doc = await render_json(
        client, template="abandoned_cart", user_id="kim", profile={"cart": cart2}
    )
    assert "Subtotal of the 2 items still available: €88.00" in doc["text"]
    # Nothing gone: a plain subtotal.
    doc = await render_json(
        client, template="abandoned_cart", user_id="kim", profile={"cart": cart2[::2]}
    )
    assert "Subtotal: €88.00" in doc["text"] and "missing-product" not in json.dumps(doc)


async def test_a_cart_whose_products_are_all_gone_promises_no_cart(client):
    profile = {"first_name": "Kim", "cart": [{"sku": "SKU-GONE", "title": "Old stool"}]}
    doc = await render_json(client, template="abandoned_cart", user_id="kim", profile=profile)
    assert {"field": "cart", "sku": "SKU-GONE", "reason": "missing-product"} in doc["fallbacks"]
    assert {"block": "cart", "reason": "missing-data:cart"} in doc["fallbacks"]
    assert doc["subject"] == "New pieces are waiting for you"
    everything = " ".join([doc["preheader"], doc["text"], visible(doc["html"])]).lower()
    for promise in ("your cart", "we saved", "old stool", "subtotal"):
        assert promise not in everything, promise


async def test_a_cart_longer_than_shown_says_its_subtotal_is_of_the_lines_shown(client):
    cart = [{"sku": f"SKU-{i}", "qty": 1} for i in range(1, 9)]
    doc = await render_json(
        client, template="abandoned_cart", user_id="big", profile={"cart": cart}
    )
    assert "Subtotal of the 6 items above:" in doc["text"]
