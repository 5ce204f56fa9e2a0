"""The studio's API through the ASGI app: `GET /v1/blocks` and `POST /v1/preview` as the
page calls it: each kind of reader (a sample, a stored reader on the embedded store and
on a real redis-server, an inline profile), overrides that change what renders and are
never stored, a block alone and its fallback forced, the blocks annotated (in previews
only, never in renders), a designer's mistake answered with file, line and snippet, and
the official AMP validator's verdict.

The app runs on a private copy of the real blocks and templates, plus one broken block
and the template that uses it."""

from __future__ import annotations

import html as htmllib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from support import AUTH, assert_error, serve

from app.app import create_app
from app.studio.diagnostics import Sources
from app.studio.preview import Previews

PUBLIC_URL = "https://kairos.example.com"
MARK = re.compile(r"<div (data-kairos-block=[^>]*)>")
ATTR = re.compile(r'(data-kairos-[a-z]+)="([^"]*)"')
BROKEN_BLOCK = {
    "block.json": json.dumps({"description": "test: a block saved broken"}),
    "block.mjml": "<mj-section>\n<mj-column>\n<mj-text>{% if first_name %}</mj-text>\n"
    "</mj-column>\n</mj-section>\n",
}
BROKEN_TEMPLATE = {"subject": "Broken", "blocks": ["header", "broken", "footer"]}
HERO = "blocks/hero/block.mjml"


@pytest.fixture(scope="module")
def sources(module_sources_copy) -> tuple[Path, Path]:
    blocks, templates = module_sources_copy()
    (blocks / "broken").mkdir()
    for name, text in BROKEN_BLOCK.items():
        (blocks / "broken" / name).write_text(text)
    (templates / "broken_t").mkdir()
    (templates / "broken_t" / "template.json").write_text(json.dumps(BROKEN_TEMPLATE))
    return blocks, templates


@pytest.fixture(scope="module")
def studio_app(module_settings, sources, amp_validator_dir) -> Starlette:
    blocks, templates = sources
    return create_app(
        module_settings(
            KAIROS_PUBLIC_URL=PUBLIC_URL,
            KAIROS_BLOCKS_DIR=blocks,
            KAIROS_TEMPLATES_DIR=templates,
            KAIROS_AMP_VALIDATOR_DIR=amp_validator_dir,
        )
    )


@pytest.fixture
async def client(studio_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(studio_app) as c:
        yield c


async def preview(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await client.post("/v1/preview", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def marks(text: str) -> list[dict[str, str]]:
    """The attributes of each annotated block element, in order."""
    return [dict(ATTR.findall(found)) for found in MARK.findall(text)]


def visible(text: str) -> str:
    return htmllib.unescape(re.sub(r"<[^>]+>", " ", text))


# --- GET /v1/blocks ------------------------------------------------------------------


async def test_blocks_lists_every_block_with_its_files_parts_users_and_samples(client, sources):
    blocks_dir, _ = sources
    r = await client.get("/v1/blocks", headers=AUTH)
    assert r.status_code == 200
    listing = {b["name"]: b for b in r.json()["blocks"]}
    assert set(listing) == {p.name for p in blocks_dir.iterdir() if p.is_dir()}
    cart = listing["cart"]
    assert cart["has_fallback"] is True and cart["description"].startswith("Cart reminder")
    assert cart["parts"] == [
        "mjml",
        "amp",
        "text",
        "amp_css",
        "fallback",
        "fallback_amp",
        "fallback_text",
    ]
    assert cart["used_by"] == ["abandoned_cart"]
    assert "abandoned_cart/full" in cart["samples"]
    hero = listing["hero"]
    assert hero["has_fallback"] is False and "fallback" not in hero["parts"]
    assert hero["used_by"] == ["weekly_picks", "welcome"]
    for entry in listing.values():
        for name in entry["files"]:
            assert name.startswith(f"blocks/{entry['name']}/")
            assert (blocks_dir.parent / name).is_file(), name
    broken = listing["broken"]
    assert broken["used_by"] == [] and broken["samples"] == []  # its template is broken
    assert str(blocks_dir) not in r.text


async def test_every_block_renders_alone_with_each_sample_listed(client):
    listing = (await client.get("/v1/blocks", headers=AUTH)).json()["blocks"]
    for entry in listing:
        for sample in entry["samples"][:2]:
            doc = await preview(client, block=entry["name"], sample=sample, annotate=True)
            shown = {m["data-kairos-block"] for m in marks(doc["html"])}
            assert shown <= {entry["name"]}, (entry["name"], sample, shown)


async def test_the_studio_routes_need_the_api_key(client):
    assert_error(await client.get("/v1/blocks"), 401)
    assert_error(await client.post("/v1/preview", json={"template": "welcome"}), 401)


# --- the reader ----------------------------------------------------------------------


async def test_a_sample_reader(client):
    doc = await preview(client, template="welcome", sample="full")
    assert "Ada" in visible(doc["html"]) and "Ada" in doc["text"]
    assert set(doc["diagnostics"]) == {"fallbacks", "amp", "timings"}
    assert doc["diagnostics"]["amp"] == {"status": "skipped", "errors": []}


async def test_an_inline_profile(client):
    doc = await preview(
        client, template="welcome", profile={"first_name": "Ottoline", "loyalty_points": 5}
    )
    assert "Ottoline" in visible(doc["html"]) and "Ottoline" in doc["text"]


async def test_a_stored_reader_on_each_store(any_client):
    """Read through the reader layer as a real render reads it: their name, and their
    segments evaluated from their events (a purchase over 500 EUR: vip)."""
    body = {"first_name": "Quillon", "loyalty_points": 2600, "tier": "gold"}
    r = await any_client.put("/v1/profiles/studio-q", json=body, headers=AUTH)
    assert r.status_code in (200, 201), r.text
    doc = await preview(any_client, template="welcome", user_id="studio-q")
    assert "Quillon" in visible(doc["html"]) and "Quillon" in doc["text"]
    picks = await preview(any_client, template="weekly_picks", user_id="studio-q", annotate=True)
    assert picks["segments"] == [] and "loyalty" not in str(marks(picks["html"]))
    purchase = {
        "event_id": "studio-q-1",
        "user_id": "studio-q",
        "type": "purchase",
        "properties": {
            "items": [{"sku": "SKU-1", "qty": 1, "price": 600}],
            "total": 600,
            "currency": "EUR",
        },
    }
    r = await any_client.post("/v1/events", json=purchase, headers=AUTH)
    assert r.status_code == 202 and r.json()["accepted"] == 1, r.text
    picks = await preview(any_client, template="weekly_picks", user_id="studio-q", annotate=True)
    assert picks["segments"] == ["vip"]
    assert "loyalty" in [m["data-kairos-block"] for m in marks(picks["html"])]
    missing = await preview(any_client, template="welcome", user_id="nobody-here")
    assert "Quillon" not in missing["html"]
    assert {"block": "loyalty", "reason": "missing-profile"} in missing["fallbacks"]


@pytest.mark.parametrize(
    "readers",
    [
        {"sample": "full", "user_id": "ada"},
        {"sample": "full", "profile": {"first_name": "A"}},
        {"user_id": "ada", "profile": {"first_name": "A"}},
    ],
)
async def test_more_than_one_reader_is_422(client, readers):
    r = await client.post("/v1/preview", json={"template": "welcome", **readers}, headers=AUTH)
    error = assert_error(r, 422, "invalid")
    assert error["field"] == list(readers)[1]


async def test_an_unknown_sample_is_404(client):
    r = await client.post(
        "/v1/preview", json={"template": "welcome", "sample": "nope"}, headers=AUTH
    )
    assert_error(r, 404)


# --- overrides -----------------------------------------------------------------------


async def test_a_variant_override_changes_the_email(client):
    a = await preview(client, template="welcome", sample="full", overrides={"variant": "A"})
    b = await preview(client, template="welcome", sample="full", overrides={"variant": "B"})
    assert (a["variant"], b["variant"]) == ("A", "B")
    assert a["subject"] == "Welcome to Kairos Shop, Ada"
    assert b["subject"] == "Ada, here is 10% off your first order"
    assert "WELCOME10" in visible(a["html"]) and "Use my 10% off" in visible(b["html"])
    r = await client.post(
        "/v1/preview",
        json={"template": "welcome", "sample": "full", "overrides": {"variant": "Z"}},
        headers=AUTH,
    )
    assert assert_error(r, 422, "invalid")["field"] == "overrides.variant"


async def test_a_consent_override_gives_the_generic_blocks(client):
    mine = await preview(client, template="welcome", sample="full", annotate=True)
    assert mine["diagnostics"]["fallbacks"] == []
    generic = await preview(
        client,
        template="welcome",
        sample="full",
        annotate=True,
        overrides={"consent": {"personalization": False}},
    )
    assert generic["diagnostics"]["fallbacks"] == [
        {"block": "loyalty", "reason": "no-consent", "file": "blocks/loyalty/fallback.mjml"}
    ]
    loyalty = [m for m in marks(generic["html"]) if m["data-kairos-block"] == "loyalty"]
    assert loyalty[0]["data-kairos-fallback"] == "no-consent"
    assert "1,234" in visible(mine["html"]) and "1,234" not in visible(generic["html"])
    # a block shown only with the consent is hidden without it
    vip = await preview(client, template="weekly_picks", sample="vip", annotate=True)
    hidden = await preview(
        client,
        template="weekly_picks",
        sample="vip",
        annotate=True,
        overrides={"consent": {"personalization": False}},
    )
    assert "loyalty" in [m["data-kairos-block"] for m in marks(vip["html"])]
    assert "loyalty" not in [m["data-kairos-block"] for m in marks(hidden["html"])]


async def test_a_segment_override_shows_the_segments_blocks(client):
    plain = await preview(client, template="weekly_picks", sample="full", annotate=True)
    vip = await preview(
        client,
        template="weekly_picks",
        sample="full",
        annotate=True,
        overrides={"segment": "vip"},
    )
    assert vip["segments"][0] == "vip"
    assert "loyalty" not in [m["data-kairos-block"] for m in marks(plain["html"])]
    assert "loyalty" in [m["data-kairos-block"] for m in marks(vip["html"])]


async def test_overrides_are_never_stored(any_client):
    body = {"first_name": "Persis", "consent": {"personalization": True, "tracking": True}}
    await any_client.put("/v1/profiles/studio-p", json=body, headers=AUTH)
    before = (await any_client.get("/v1/profiles/studio-p", headers=AUTH)).json()
    doc = await preview(
        any_client,
        template="welcome",
        user_id="studio-p",
        overrides={"consent": {"personalization": False, "tracking": False}, "segment": "vip"},
    )
    assert {"block": "loyalty", "reason": "no-consent"} in doc["fallbacks"]
    assert "/v1/px/" not in doc["html"]  # not tracked in this preview
    after = (await any_client.get("/v1/profiles/studio-p", headers=AUTH)).json()
    assert after == before


# --- a block alone (the gallery) ------------------------------------------------------


async def test_a_block_alone_and_its_fallback_forced(client):
    alone = await preview(
        client, block="cart", sample="abandoned_cart/full", annotate=True, validate_amp=True
    )
    assert [m["data-kairos-block"] for m in marks(alone["html"])] == ["cart"]
    assert marks(alone["html"])[0]["data-kairos-file"] == "blocks/cart/block.mjml"
    assert "Brass desk lamp" in visible(alone["html"])
    assert "Kairos Shop" not in alone["text"]  # no header, no footer: the block alone
    assert alone["diagnostics"]["fallbacks"] == []
    assert alone["diagnostics"]["amp"]["status"] == "PASS"

    forced = await preview(
        client,
        block="cart",
        sample="abandoned_cart/full",
        fallback=True,
        annotate=True,
        validate_amp=True,
    )
    assert marks(forced["html"]) == [
        {
            "data-kairos-block": "cart",
            "data-kairos-file": "blocks/cart/fallback.mjml",
            "data-kairos-fallback": "forced",
        }
    ]
    assert marks(forced["amp"])[0]["data-kairos-file"] == "blocks/cart/fallback.amp.html"
    assert "FIND SOMETHING YOU" in forced["text"] and "Brass desk lamp" not in forced["text"]
    assert "Brass desk lamp" in alone["text"]
    assert forced["diagnostics"]["fallbacks"] == [
        {"block": "cart", "reason": "forced", "file": "blocks/cart/fallback.mjml"}
    ]
    assert forced["diagnostics"]["amp"]["status"] == "PASS"


async def test_a_block_alone_without_a_sample_and_without_a_fallback(client):
    doc = await preview(client, block="benefits")
    assert doc["html"] and doc["subject"] == "benefits"
    r = await client.post("/v1/preview", json={"block": "hero", "fallback": True}, headers=AUTH)
    assert_error(r, 422, "no_fallback")
    r = await client.post(
        "/v1/preview", json={"block": "hero", "sample": "abandoned_cart/full"}, headers=AUTH
    )
    assert assert_error(r, 422)["field"] == "block"  # that template does not use it


# --- annotations -----------------------------------------------------------------------


async def test_annotate_marks_every_shown_block_with_its_file_and_fallback(client, sources):
    blocks_dir, _ = sources
    doc = await preview(
        client,
        template="welcome",
        sample="no_consent",
        overrides={"variant": "A"},
        annotate=True,
    )
    shown = ["header", "hero", "greeting", "text", "benefits", "product_grid", "loyalty"]
    for part, ext in (("html", "mjml"), ("amp", "amp.html")):
        found = marks(doc[part])
        assert [m["data-kairos-block"] for m in found] == [*shown, "footer"], part
        for m in found:
            assert (blocks_dir.parent / m["data-kairos-file"]).is_file()
        by_block = {m["data-kairos-block"]: m for m in found}
        assert by_block["loyalty"]["data-kairos-fallback"] == "no-consent"
        assert by_block["loyalty"]["data-kairos-file"] == f"blocks/loyalty/fallback.{ext}"
        assert by_block["hero"]["data-kairos-file"] == f"blocks/hero/block.{ext}"
        assert "data-kairos-fallback" not in by_block["hero"]
        assert "kairos-slot" not in doc[part]
    assert "data-kairos" not in doc["text"]


async def test_renders_and_unannotated_previews_carry_no_annotation(client):
    await preview(client, template="welcome", sample="full", annotate=True)
    plain = await preview(client, template="welcome", sample="full")
    assert "data-kairos-" not in plain["html"] + plain["amp"]
    for name in ("welcome", "abandoned_cart", "weekly_picks"):
        r = await client.post("/v1/render", json={"template": name, "user_id": "ada"}, headers=AUTH)
        assert r.status_code == 200
        assert "data-kairos-" not in r.text and "kairos-slot" not in r.text
    mime = await client.post(
        "/v1/preview",
        json={"template": "welcome", "sample": "full", "annotate": True},
        headers={**AUTH, "Accept": "message/rfc822"},
    )
    assert mime.status_code == 200 and mime.headers["content-type"] == "message/rfc822"
    assert b"data-kairos-" not in mime.content and b"kairos-slot" not in mime.content


async def test_an_annotated_preview_is_the_plain_one_plus_the_block_elements(client):
    plain = await preview(client, template="abandoned_cart", sample="full")
    marked = await preview(client, template="abandoned_cart", sample="full", annotate=True)
    for part in ("html", "amp"):
        text = marked[part]
        # Each wrapper removed: its opening tag, and the closing tag just before the next
        # block's (or at the end of the last block): compare what is left, tags aside.
        assert visible(MARK.sub("", text)).split() == visible(plain[part]).split(), part


# --- a designer's mistake --------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "text", "line", "says"),
    [
        (HERO, "<mj-section>\n<mj-column>\n<mj-text>hi\n</mj-column>\n</mj-section>\n", 3, "MJML"),
        (HERO, "<mj-section>\n<mj-column>\n<mj-text>hi</mj-text>\n", 2, "MJML"),
        (HERO, "<mj-section><mj-column>\n\n<mj-text>{{ x }</mj-text>\n", 3, "syntax"),
        (HERO, "<mj-section><mj-column><mj-text>\n{{ links.__class__ }}\n", 2, "sandbox"),
        (
            HERO,
            "<mj-section><mj-column>\n<mj-text>{{ params.eyebrow }}</mj-text>\n"
            "<mj-text>{{ attributes.nickname.upper() }}</mj-text>\n</mj-column></mj-section>\n",
            3,
            "nickname",
        ),
        (
            HERO,
            "<mj-section><mj-column><mj-text>\n\n\n{{ cart.append(1) }}\n"
            "</mj-text></mj-column></mj-section>\n",
            4,
            "unsafe",
        ),
        ("blocks/hero/block.amp.html", "<div>\n{{ attributes.nickname.upper() }}\n</div>\n", 2, ""),
        ("blocks/hero/block.txt", "Hello\n\n{{ attributes.nickname.upper() }}\n", 3, ""),
    ],
    ids=[
        "mjml",
        "mjml-left-open",
        "jinja-syntax",
        "sandbox",
        "missing-field",
        "sandbox-at-render",
        "amp",
        "text",
    ],
)
async def test_a_broken_edit_is_422_with_file_line_and_snippet(
    client, sources, path, text, line, says
):
    r = await client.post(
        "/v1/preview",
        json={"template": "welcome", "sample": "full", "files": {path: text}},
        headers=AUTH,
    )
    error = assert_error(r, 422, "template_broken")
    assert error["file"] == path and error["line"] == line, error
    assert says in error["message"]
    marked = [row for row in error["snippet"].splitlines() if row.startswith(">")]
    assert marked == [f"> {line} | {text.splitlines()[line - 1]}"], error["snippet"]
    assert str(sources[0].parent) not in r.text  # never where this server keeps files


async def test_a_template_saved_broken_is_422_naming_its_block_file(client):
    r = await client.post("/v1/preview", json={"template": "broken_t"}, headers=AUTH)
    error = assert_error(r, 422, "template_broken")
    assert error["file"] == "blocks/broken/block.mjml" and error["line"] == 3
    assert "> 3 | <mj-text>{% if first_name %}</mj-text>" in error["snippet"]
    # mended in an unsaved edit, it previews
    mended = BROKEN_BLOCK["block.mjml"].replace("{% if first_name %}", "Mended")
    doc = await preview(client, template="broken_t", files={"blocks/broken/block.mjml": mended})
    assert "Mended" in doc["html"]


# --- the AMP verdict ---------------------------------------------------------------------


async def test_the_amp_verdict_on_shipped_templates_and_on_a_broken_edit(client, studio_app):
    checker = studio_app.state.services.amp_check
    if not checker.available():
        pytest.fail("run `bash .ci/amp-validator`")
    starts = checker.starts
    for name in ("welcome", "abandoned_cart", "weekly_picks"):
        doc = await preview(client, template=name, sample="full", validate_amp=True)
        assert doc["diagnostics"]["amp"] == {"status": "PASS", "errors": []}, name
        assert doc["diagnostics"]["timings"]["amp_ms"] > 0
    bad = '<div>\n<img src="https://shop.example.com/a.png">\n</div>\n'
    doc = await preview(
        client,
        template="welcome",
        sample="full",
        files={"blocks/hero/block.amp.html": bad},
        validate_amp=True,
        annotate=True,
    )
    verdict = doc["diagnostics"]["amp"]
    assert verdict["status"] == "FAIL" and verdict["errors"], verdict
    for error in verdict["errors"]:
        assert set(error) == {"line", "col", "code", "message"}
    assert any("img" in e["message"] for e in verdict["errors"]), verdict
    assert checker.starts == starts + 1  # one node process for every verdict


async def test_without_the_validator_the_verdict_is_unavailable(module_settings, tmp_path):
    app = create_app(
        module_settings(KAIROS_PUBLIC_URL=PUBLIC_URL, KAIROS_AMP_VALIDATOR_DIR=tmp_path)
    )
    async with serve(app) as c:
        doc = await preview(c, template="welcome", sample="full", validate_amp=True)
        assert doc["diagnostics"]["amp"]["status"] == "unavailable"
        doc = await preview(c, template="welcome", sample="full")
        assert doc["diagnostics"]["amp"]["status"] == "skipped"


async def test_timings(client):
    doc = await preview(client, template="welcome", sample="full", files={})
    timings = doc["diagnostics"]["timings"]
    assert set(timings) == {"compile_ms", "render_ms", "amp_ms"}
    assert timings["compile_ms"] > 0 and timings["render_ms"] > 0 and timings["amp_ms"] == 0


async def test_a_broken_subject_names_the_template_json_line(client, sources):
    doc = json.loads((sources[1] / "welcome" / "template.json").read_text())
    doc["subject"] = "Hi {{ attributes.nickname.upper() }}"
    text = json.dumps(doc, indent=2)
    r = await client.post(
        "/v1/preview",
        json={"template": "welcome", "sample": "full", "files": {"template.json": text}},
        headers=AUTH,
    )
    error = assert_error(r, 422, "template_broken")
    line = text[: text.index('"subject"')].count("\n") + 1
    assert error["file"] == "templates/welcome/template.json" and error["line"] == line
    assert f"> {line} |" in error["snippet"] and "nickname" in error["snippet"]


@pytest.mark.parametrize(
    "path",
    ["../secret.txt", "/etc/passwd", "blocks/../../etc/passwd", "blocks/hero/../../x.mjml"],
)
async def test_hostile_file_paths_are_refused_without_reading_anything(client, sources, path):
    r = await client.post(
        "/v1/preview",
        json={"template": "welcome", "files": {path: "{{ 1 }"}},
        headers=AUTH,
    )
    error = assert_error(r, 422, "template_broken")
    assert "not a file of the template or of a block" in error["message"]
    assert error["snippet"] == "" and "root:" not in r.text
    assert str(sources[0].parent) not in r.text


def test_only_files_of_the_two_folders_are_ever_read(sources, tmp_path):
    blocks_dir, templates_dir = sources
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    named = Sources(blocks_dir, templates_dir)
    assert named.text(secret) is None
    assert named.text(blocks_dir / "hero" / ".." / ".." / ".." / secret.name) is None
    assert (
        named.text(blocks_dir / "hero" / "block.txt")
        == (blocks_dir / "hero" / "block.txt").read_text()
    )
    assert named.name(secret) == "secret.txt"
    assert (
        named.name(templates_dir / "welcome" / "template.json") == "templates/welcome/template.json"
    )


async def test_what_a_preview_would_send_is_never_annotated(client, studio_app):
    """The render a test send takes (app/studio/preview.py `Previewed.result`)."""
    services = studio_app.state.services
    previews = Previews(services.renderer, services.amp_check)
    body = {"template": "welcome", "sample": "no_consent", "annotate": True}
    marked = await previews.preview(body)
    plain = await previews.preview({**body, "annotate": False})
    assert marks(marked.html or "") and marks(marked.amp or "")
    for part in ("html", "amp"):
        sent = getattr(marked.result, part)
        assert "kairos-slot" not in sent and "data-kairos-" not in sent
        assert visible(sent).split() == visible(getattr(plain.result, part)).split()


@pytest.mark.parametrize(
    "reader",
    [{"sample": []}, {"sample": {}}, {"sample": 3}, {"user_id": []}, {"profile": "ada"}],
)
async def test_a_reader_of_the_wrong_type_is_a_400_not_a_crash(client, reader):
    """(Once `"sample": []` answered 500: an unhashable value in a membership test.)"""
    r = await client.post("/v1/preview", json={"template": "welcome", **reader}, headers=AUTH)
    assert r.status_code in (400, 422), r.text
    assert r.json()["error"]["code"] and "Traceback" not in r.text
