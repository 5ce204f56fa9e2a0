"""Text on live images, decoded with Pillow: Cyrillic, Greek, Hebrew, Arabic and CJK
drawn with the fallback fonts (real glyphs, no "missing glyph" boxes), Arabic shaped and
laid out right to left, long text in two lines then an ellipsis and never below the
minimum size, 2x density by default, the countdown in the reader's language and time
zone; and text no font can draw named by a render and by `kairos check`."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageDraw, features
from starlette.applications import Starlette
from support import AUTH, FALLBACKS_DIR, image_url, serve

from app.app import create_app
from app.images import ImageChecks
from app.images.assets import Assets
from app.images.countdown import Countdown
from app.images.countdown_art import still
from app.images.countdown_words import drawn, place, words
from app.images.fonts import NOT_A_CHARACTER, Fonts
from app.images.text import ELLIPSIS, MIN_TEXT_PX, draw_line, fit, line
from app.render.check import _one_reader_per_variant, check_all
from app.settings import PROJECT_ROOT

FONTS = Fonts(Assets(PROJECT_ROOT / "blocks", FALLBACKS_DIR, None))
DEADLINE = "2026-12-24T23:59:59Z"
DEADLINE_S = int(datetime(2026, 12, 24, 23, 59, 59, tzinfo=UTC).timestamp())
NOW = DEADLINE_S - (2 * 86400 + 3 * 3600 + 4 * 60 + 5) + 0.5
SCRIPTS = {
    "cyrillic": "Жанна Иванова",
    "greek": "Ελένη Παππά",
    "hebrew": "שלום דנה",
    "arabic": "مرحبا أحمد",
    "chinese": "李雷你好",
    "japanese": "こんにちは、さくら",
    "korean": "안녕하세요 지민",
}
UNDRAWABLE = "𓂀"  # an Egyptian hieroglyph: no font we ship or install has it
WHITE = 255


def mask_of(font: Any, text: str) -> tuple[tuple[int, int], bytes]:
    mask = font.getmask(text)
    return mask.size, bytes(mask)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
@pytest.mark.parametrize("font", ["sans", "sans-bold"])
def test_every_character_is_drawn_by_a_font_that_has_its_glyph(script: str, font: str):
    """No tofu: each character is drawn by a font whose glyph for it is not the font's
    own "missing glyph" box."""
    text = SCRIPTS[script]
    assert FONTS.missing(font, text) == ""
    shown = line(FONTS, font, 40, text)
    assert shown.text == text
    for run in shown.runs:
        notdef = mask_of(run.font, NOT_A_CHARACTER)
        for char in run.text:
            if not char.isspace():
                assert mask_of(run.font, char) != notdef, (script, char, run.font.getname())


def test_latin_stays_in_manrope_and_other_scripts_get_their_fallback():
    families = {
        script: {run.font.getname()[0] for run in line(FONTS, "sans", 40, text).runs}
        for script, text in SCRIPTS.items()
    }
    assert families["cyrillic"] == families["greek"] == {"Manrope"}
    assert families["arabic"] == {"KacstOne"}
    assert families["hebrew"] == {"DejaVu Sans"}
    assert families["chinese"] == families["korean"] == {"WenQuanYi Micro Hei"}
    mixed = line(FONTS, "sans", 40, "Hello 李雷!")
    assert [run.font.getname()[0] for run in mixed.runs] == ["Manrope", "WenQuanYi Micro Hei"]


def ink_columns(image: Image.Image) -> list[bool]:
    """For each column of an "L" image, whether anything is drawn in it."""
    width, height = image.size
    data = image.load()
    assert data is not None
    return [any(data[x, y] > 64 for y in range(height)) for x in range(width)]


def widest_gap(columns: list[bool]) -> tuple[int, int]:
    """(start, length) of the widest blank stretch between the first and last ink."""
    first = columns.index(True)
    last = len(columns) - 1 - columns[::-1].index(True)
    best, start = (0, 0), None
    for x in range(first, last + 1):
        if not columns[x]:
            start = x if start is None else start
            if x - start + 1 > best[1]:
                best = (start, x - start + 1)
        else:
            start = None
    return best


@pytest.mark.skipif(not features.check("raqm"), reason="Pillow without raqm")
def test_arabic_is_shaped_and_laid_out_right_to_left():
    # A long first word and a short second one: right to left, the first word is at the
    # right and the gap between them left of the middle.
    text = "مستشفيات كل"
    shown = line(FONTS, "sans", 48, text)
    assert shown.rtl
    image = Image.new("L", (round(shown.width) + 20, 80), 0)
    draw_line(ImageDraw.Draw(image), (10, 5), shown, WHITE)
    start, length = widest_gap(ink_columns(image))
    assert length >= 6
    assert start + length < image.width * 0.45
    # Shaped: the word drawn joined is narrower than its letters drawn apart.
    font = shown.runs[0].font
    apart = sum(font.getlength(char) for char in "مستشفيات")
    assert font.getlength("مستشفيات") < apart * 0.95


def test_a_latin_line_is_left_to_right():
    shown = line(FONTS, "sans", 48, "Hospitals all")
    image = Image.new("L", (round(shown.width) + 20, 80), 0)
    draw_line(ImageDraw.Draw(image), (10, 5), shown, WHITE)
    start, _ = widest_gap(ink_columns(image))
    assert start > image.width * 0.55


LONG = "Your winter points are waiting for you in the shop, with free delivery all month"


def test_long_text_wraps_to_two_lines_then_ellipsizes_never_below_the_minimum():
    size, lines = fit(FONTS, "sans-bold", LONG, 44, 400, 28)
    assert len(lines) == 2 and size >= 28
    assert all(each.width <= 400 for each in lines)
    assert lines[-1].text.endswith(ELLIPSIS)
    assert lines[0].text + " " + lines[1].text[: -len(ELLIPSIS)] in LONG
    # A text that fits in two lines at a larger size keeps it, without an ellipsis.
    size, lines = fit(FONTS, "sans-bold", "Your winter points are waiting", 44, 400, 28)
    assert len(lines) == 2 and size > 28 and not lines[-1].text.endswith(ELLIPSIS)
    # One line when shrinking a little is enough.
    size, lines = fit(FONTS, "sans-bold", "Hello Ada Lovelace", 44, 360, 28)
    assert len(lines) == 1 and 33 <= size <= 44 and lines[0].width <= 360
    # Chinese wraps between characters.
    size, lines = fit(
        FONTS, "sans", "这是一个很长的中文句子用来测试换行和省略号的功能" * 2, 40, 300, 28
    )
    assert len(lines) == 2 and size == 28 and lines[-1].text.endswith(ELLIPSIS)


def text_bands(image: Image.Image, colour: tuple[int, int, int]) -> list[tuple[int, int]]:
    """(top, height) of each stretch of rows holding pixels of `colour`."""
    rgb = image.convert("RGB")
    solid = Image.new("RGB", rgb.size, colour)
    red, green, blue = ImageChops.difference(rgb, solid).split()
    farthest = ImageChops.lighter(ImageChops.lighter(red, green), blue)
    ink = farthest.point(lambda v: 255 if v < 40 else 0)
    rows = [ink.crop((0, y, ink.width, y + 1)).getbbox() is not None for y in range(ink.height)]
    bands, start = [], None
    for y, on in enumerate([*rows, False]):
        if on and start is None:
            start = y
        elif not on and start is not None:
            bands.append((start, y - start))
            start = None
    return bands


@pytest.fixture
def plain_app(settings: Callable[..., Any], sources_copy: Callable[..., tuple[Path, Path]]):
    """An app whose blocks hold a plain dark background for banners."""
    blocks, templates = sources_copy(templates=False)
    Image.new("RGB", (600, 200), (20, 30, 40)).save(blocks / "hero" / "plain.png")
    return create_app(settings(KAIROS_BLOCKS_DIR=blocks, KAIROS_TEMPLATES_DIR=templates))


async def put(client: Any, user: str, profile: dict[str, Any]) -> None:
    r = await client.put(f"/v1/profiles/{user}", json=profile, headers=AUTH)
    assert r.status_code in (200, 201), r.text


def decode(body: bytes) -> Image.Image:
    return Image.open(io.BytesIO(body))


@pytest.mark.parametrize("script", sorted(SCRIPTS))
async def test_a_banner_draws_a_name_in_any_script(plain_app: Starlette, script: str):
    async with serve(plain_app) as client:
        await put(client, "reader", {"first_name": SCRIPTS[script]})
        r = await client.get(
            image_url(
                "banner",
                "reader",
                background="blocks/hero/plain.png",
                headline="{first_name}",
                text="",
            )
        )
    assert r.status_code == 200 and "x-kairos-fallback" not in r.headers, r.headers
    image = decode(r.content).convert("RGB")
    assert image.size == (1200, 400)
    bands = text_bands(image, (255, 255, 255))
    assert len(bands) == 1 and bands[0][1] >= 30  # one line of real glyphs
    box = ImageChops.difference(image, Image.new("RGB", image.size, (20, 30, 40))).getbbox()
    assert box is not None
    if script in ("arabic", "hebrew"):
        # right to left: aligned right (the padding is 16 % of the height)
        assert abs(box[2] - (1200 - 64)) <= 16 and box[0] > 300
    else:
        assert abs(box[0] - 64) <= 16  # a glyph's side bearing


async def test_a_long_headline_gets_two_lines_not_a_tiny_font(plain_app: Starlette):
    async with serve(plain_app) as client:
        await put(client, "reader", {"first_name": "Ada"})
        url = image_url(
            "banner", "reader", background="blocks/hero/plain.png", text="", headline=LONG
        )
        image = decode((await client.get(url)).content)
        one = decode(
            (
                await client.get(
                    image_url(
                        "banner",
                        "reader",
                        background="blocks/hero/plain.png",
                        text="",
                        headline="Ada",
                    )
                )
            ).content
        )
    bands = text_bands(image, (255, 255, 255))
    assert len(bands) == 2
    # At the minimum size or above: Manrope's capitals are 0.7 of its size tall.
    assert all(height >= MIN_TEXT_PX * 2 * 0.65 for _, height in bands)
    assert len(text_bands(one, (255, 255, 255))) == 1


async def test_images_are_2x_by_default_and_1x_on_request(client: Any):
    cases = [
        ("countdown", {"deadline": DEADLINE}, (1200, 240), (600, 120)),
        ("banner", {}, (1200, 400), (600, 200)),
        ("product", {}, (600, 800), (300, 400)),
    ]
    for name, params, twice, once in cases:
        two = decode((await client.get(image_url(name, "ada", **params))).content)
        one = decode((await client.get(image_url(name, "ada", density=1, **params))).content)
        assert (two.size, one.size) == (twice, once), name
    # Without `density`, a size whose double passes the limits is drawn at 1x.
    wide = decode((await client.get(image_url("banner", "ada", width=1000))).content)
    assert wide.size == (1000, 200)


async def test_a_render_asking_for_2x_beyond_the_limits_is_422(settings, sources_copy):
    blocks, templates = sources_copy()
    mjml = blocks / "countdown" / "block.mjml"
    mjml.write_text(
        mjml.read_text().replace(
            "links.image('countdown', deadline=params.deadline)",
            "links.image('countdown', deadline=params.deadline, width=800, density=2)",
        )
    )
    app = create_app(settings(KAIROS_BLOCKS_DIR=blocks, KAIROS_TEMPLATES_DIR=templates))
    reader = dict(_one_reader_per_variant({"A": 50, "B": 50}))["B"]
    async with serve(app) as client:
        r = await client.post(
            "/v1/render",
            json={"template": "weekly_picks", "user_id": reader, "campaign": "check"},
            headers=AUTH,
        )
    assert r.status_code == 422, r.text
    assert "1600 pixels" in r.json()["error"]["message"]


# --- the countdown in the reader's language and time zone ----------------------------------


def test_the_countdowns_words_follow_the_readers_locale_and_time_zone():
    params = Countdown.parse({"deadline": "2026-12-12T17:00:00Z"})
    german = words(
        params,
        params["deadline"],
        place({"locale": "de-DE", "timezone": "Europe/Berlin"}, "en", "UTC"),
    )
    assert german.labels == ("TAGE", "STUNDEN", "MINUTEN", "SEKUNDEN")
    assert german.until == "Endet Samstag, 12. Dezember, 18:00 MEZ"
    assert german.ended == "Dieses Angebot ist beendet"
    british = words(
        params,
        params["deadline"],
        place({"locale": "en-GB", "timezone": "Europe/Berlin"}, "en", "UTC"),
    )
    assert british.until == "Ends Saturday 12 December, 18:00 CET"
    american = words(
        params,
        params["deadline"],
        place({"locale": "en-US", "timezone": "America/New_York"}, "en", "UTC"),
    )
    assert american.until == "Ends Saturday, December 12, 12:00\u202fPM EST"
    # No profile, or values that are not a locale and a zone: the image's own.
    for profile in ({}, {"locale": "xx-Nowhere", "timezone": "Mars/Olympus"}):
        fallback = words(params, params["deadline"], place(profile, "fr-FR", "Europe/Paris"))
        assert fallback.labels == ("JOURS", "HEURES", "MINUTES", "SECONDES")
        assert fallback.until == "Se termine samedi 12 décembre, 18:00 UTC+01:00"
    # The designer's words win.
    given = Countdown.parse({"deadline": DEADLINE, "labels": "D,H,M,S", "until": "Until {when}!"})
    mine = words(given, given["deadline"], place({"locale": "de-DE"}, "en", "Europe/Berlin"))
    assert mine.labels == ("D", "H", "M", "S") and mine.until.startswith(
        "Until Freitag, 25. Dezember"
    )


COUNTDOWN_URL = re.compile(r'src="[^"]*(/v1/img/countdown\.gif\?t=[^"]+)"')


async def test_a_german_reader_gets_german_labels_in_their_time_zone(client: Any, app: Starlette):
    """The whole way: a render for a reader of de-DE in Europe/Berlin signs their locale
    and time zone into the countdown's URL; the image drawn at the open is in German,
    ending at 00:59 Berlin time."""
    app.state.services.images.clock = lambda: NOW
    reader = dict(_one_reader_per_variant({"A": 50, "B": 50}))["B"]  # B shows the countdown
    german = {"first_name": "Lena", "locale": "de-DE", "timezone": "Europe/Berlin"}
    r = await client.post(
        "/v1/render",
        json={
            "template": "weekly_picks",
            "user_id": reader,
            "campaign": "check",
            "profile": german,
        },
        headers=AUTH,
    )
    assert r.status_code == 200, r.text
    found = COUNTDOWN_URL.search(r.json()["html"])
    assert found is not None
    image = await client.get(found.group(1).replace("&amp;", "&"))
    assert image.status_code == 200 and "x-kairos-fallback" not in image.headers
    frames = Image.open(io.BytesIO(image.content))
    frames.seek(0)
    frame = frames.convert("RGB")
    params = Countdown.parse({"deadline": DEADLINE})
    shown = words(params, params["deadline"], place(german, "en", "UTC"))
    assert shown.labels == ("TAGE", "STUNDEN", "MINUTEN", "SEKUNDEN")
    assert shown.until == "Endet Freitag, 25. Dezember, 00:59 MEZ"
    left = DEADLINE_S - int(NOW)
    assert ImageChops.difference(frame, still(drawn(params, shown), FONTS, left)).getbbox() is None
    english = drawn(params, words(params, params["deadline"], place({}, "en", "UTC")))
    assert ImageChops.difference(frame, still(english, FONTS, left)).getbbox() is not None


async def test_a_japanese_reader_gets_japanese_labels_drawn_with_the_cjk_font(
    client: Any, app: Starlette
):
    app.state.services.images.clock = lambda: NOW
    signed = {"reader_locale": "ja-JP", "reader_timezone": "Asia/Tokyo"}
    r = await client.get(image_url("countdown", "sakura", deadline=DEADLINE, frames=1, **signed))
    assert r.status_code == 200 and "x-kairos-fallback" not in r.headers
    params = Countdown.parse({"deadline": DEADLINE, "frames": 1, **signed})
    shown = words(
        params,
        params["deadline"],
        place({"locale": "ja-JP", "timezone": "Asia/Tokyo"}, "en", "UTC"),
    )
    assert shown.labels == ("日", "時間", "分", "秒")
    assert FONTS.missing("sans-bold", "".join(shown.labels) + shown.until) == ""
    reference = still(drawn(params, shown), FONTS, DEADLINE_S - int(NOW))
    assert ImageChops.difference(decode(r.content).convert("RGB"), reference).getbbox() is None


def test_only_a_valid_locale_and_time_zone_are_signed_from_the_profile():
    checks = ImageChecks()
    assert checks.reader_params("countdown", {"locale": "de-DE", "timezone": "Europe/Berlin"}) == {
        "reader_locale": "de-DE",
        "reader_timezone": "Europe/Berlin",
    }
    assert (
        checks.reader_params("countdown", {"locale": "xx-Nowhere", "timezone": "Mars/Base"}) == {}
    )
    assert checks.reader_params("countdown", {"locale": ["de"], "timezone": None}) == {}
    assert checks.reader_params("banner", {"locale": "de-DE"}) == {}


# --- text no font can draw: named at render time and by `kairos check` -----------------------


def with_labels(blocks: Path, labels: str) -> None:
    for name in ("block.mjml", "block.amp.html"):
        path = blocks / "countdown" / name
        path.write_text(
            path.read_text().replace(
                "links.image('countdown', deadline=params.deadline)",
                f"links.image('countdown', deadline=params.deadline, labels='{labels}')",
            )
        )


def test_kairos_check_fails_on_a_glyph_no_font_has(module_settings, sources_copy):
    blocks, templates = sources_copy()
    with_labels(blocks, f"D,H,M,S{UNDRAWABLE}")
    problems = check_all(
        module_settings(KAIROS_BLOCKS_DIR=blocks, KAIROS_TEMPLATES_DIR=templates), amp=False
    )
    glyphs = [p for p in problems if UNDRAWABLE in p]
    assert len(glyphs) == 1, problems
    mjml = (blocks / "countdown" / "block.mjml").read_text().splitlines()
    line_no = next(i for i, text in enumerate(mjml, 1) if "labels=" in text)
    assert glyphs[0].startswith(f"{blocks / 'countdown' / 'block.mjml'}:{line_no}: ")
    assert "block countdown, live image countdown, parameter labels" in glyphs[0]


def test_kairos_check_passes_labels_in_other_scripts(module_settings, sources_copy):
    blocks, templates = sources_copy()
    with_labels(blocks, "日,時間,分,秒")
    problems = check_all(
        module_settings(KAIROS_BLOCKS_DIR=blocks, KAIROS_TEMPLATES_DIR=templates), amp=False
    )
    assert not [p for p in problems if "live image" in p], problems


async def test_a_render_names_the_block_and_the_glyphs_of_a_readers_name(settings, sources_copy):
    blocks, templates = sources_copy()
    (blocks / "name_banner").mkdir()
    (blocks / "name_banner" / "block.json").write_text(json.dumps({"image": "banner"}))
    (blocks / "name_banner" / "block.mjml").write_text(
        '<mj-section><mj-column><mj-image src="{{ links.image(\'banner\') }}" alt="" '
        'width="600px" /></mj-column></mj-section>\n'
    )
    (templates / "banner_t").mkdir()
    (templates / "banner_t" / "template.json").write_text(
        json.dumps(
            {
                "subject": "Hi",
                "links": {"home": "https://shop.example.com/"},
                "blocks": ["name_banner"],
            }
        )
    )
    app = create_app(settings(KAIROS_BLOCKS_DIR=blocks, KAIROS_TEMPLATES_DIR=templates))
    async with serve(app) as client:
        answers = {}
        for name in (f"Ra{UNDRAWABLE}", "أحمد", "李雷"):
            r = await client.post(
                "/v1/render",
                json={
                    "template": "banner_t",
                    "user_id": "r1",
                    "profile": {"first_name": name, "loyalty_points": 1},
                },
                headers=AUTH,
            )
            assert r.status_code == 200, r.text
            answers[name] = r.json().get("warnings", [])
    assert answers["أحمد"] == answers["李雷"] == []
    (warning,) = answers[f"Ra{UNDRAWABLE}"]
    assert "block name_banner" in warning and "banner" in warning
    assert repr(UNDRAWABLE) in warning and "(headline)" in warning


def test_a_missing_fallback_font_is_logged_and_its_text_counts_as_undrawable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    from app.images.fonts import fallback_paths

    with caplog.at_level("WARNING", logger="kairos.images"):
        bare = Fonts(Assets(PROJECT_ROOT / "blocks", FALLBACKS_DIR, None), fallback_paths(tmp_path))
    logged = caplog.text
    for package in ("fonts-kacst-one", "fonts-dejavu-core", "fonts-wqy-microhei"):
        assert package in logged
    assert "CJK" in logged and "scripts/install" in logged
    assert bare.missing("sans", "李雷 Ada") == "李雷"
    assert bare.missing("sans", "Жанна") == ""
    assert len(fallback_paths()) == 3  # all three installed here, by scripts/install


def test_without_raqm_right_to_left_text_is_drawn_reversed(monkeypatch: pytest.MonkeyPatch):
    """Pillow's basic layout draws characters in logical order, left to right: a right-
    to-left run is reversed first (its letters unjoined, but in reading order)."""
    import app.images.text as text

    monkeypatch.setattr(text, "RAQM", False)
    shown = text.line(FONTS, "sans", 40, "Hi שלום")
    assert [run.text for run in shown.runs] == ["Hi ", "םולש"]
    assert not shown.rtl
    monkeypatch.setattr(text, "RAQM", True)
    assert [run.text for run in text.line(FONTS, "sans", 40, "Hi שלום").runs] == ["Hi ", "שלום"]


def test_the_kairos_command_exits_1_on_a_glyph_no_font_has(
    clean_environ, sources_copy, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    from app.cli import main

    blocks, templates = sources_copy()
    with_labels(blocks, f"D,H,M,{UNDRAWABLE}")
    monkeypatch.setenv("KAIROS_BLOCKS_DIR", str(blocks))
    monkeypatch.setenv("KAIROS_TEMPLATES_DIR", str(templates))
    assert main(["check", "--no-amp"]) == 1
    err = capsys.readouterr().err
    assert "block countdown, live image countdown, parameter labels" in err
    assert repr(UNDRAWABLE) in err


async def test_a_product_card_draws_a_chinese_title_in_two_lines_at_most(
    client: Any, app: Starlette
):
    from test_images import _with_product

    title = "北欧风格黄铜台灯，适合书房、卧室和客厅使用的温暖灯光"
    await _with_product(client, app, "mei", title=title)
    r = await client.get(image_url("product", "mei"))
    assert r.status_code == 200 and "x-kairos-fallback" not in r.headers, r.headers
    card = decode(r.content).convert("RGB")
    assert card.size == (600, 800)
    # Below the image tile: two lines of title, then the price (in the accent colour).
    below = card.crop((0, 570, 600, 800))
    assert len(text_bands(below, (0x1F, 0x29, 0x33))) == 2
    assert len(text_bands(below, (0xB4, 0x47, 0x2A))) == 1
