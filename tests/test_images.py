"""`GET /v1/img/{image}.{gif,png}?t=` through the ASGI app: every image decoded with
Pillow (format, size, frames), countdown frames checked against a reference render,
the cache keyed by pixels (100 concurrent opens, one render), fallbacks for every way an
open can fail (unknown reader, hanging upstream, bad parameters...), and 403 for tokens
that are not ours."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageChops
from starlette.applications import Starlette
from support import (
    AUTH,
    FALLBACKS_DIR,
    OLD_SECRET,
    TOKENS,
    Upstream,
    assert_error,
    fallback_image,
    image_url,
    serve,
)

from app.app import create_app
from app.images.assets import Assets
from app.images.countdown import Countdown
from app.images.countdown_art import ended, still
from app.images.countdown_words import drawn, place, words
from app.images.fonts import Fonts
from app.settings import PROJECT_ROOT, Secret
from app.tokens import Tokens

DEADLINE = "2026-12-24T23:59:59Z"
DEADLINE_S = int(datetime(2026, 12, 24, 23, 59, 59, tzinfo=UTC).timestamp())
LEFT = 3 * 86400 + 5 * 3600 + 7 * 60 + 12  # at the pinned clock
NOW = DEADLINE_S - LEFT + 0.25
NO_STORE = "no-cache, no-store, must-revalidate, max-age=0"
FONTS = Fonts(Assets(PROJECT_ROOT / "blocks", FALLBACKS_DIR, None))


def as_drawn(raw: dict[str, Any]) -> dict[str, Any]:
    """A countdown's parameters (as signed) with its words as drawn."""
    params = Countdown.parse(raw)
    reader = {"locale": params["reader_locale"], "timezone": params["reader_timezone"]}
    where = place(reader, params["locale"], params["timezone"])
    return drawn(params, words(params, params["deadline"], where))


def pin_clock(app: Starlette, now: float) -> None:
    app.state.services.images.clock = lambda: now


@pytest.fixture
def pinned(app: Starlette) -> Callable[[float], None]:
    """The app's image clock pinned to NOW; call the fixture to move it."""
    pin_clock(app, NOW)
    return lambda now: pin_clock(app, now)


def decode(response: httpx.Response, fmt: str) -> Image.Image:
    assert response.status_code == 200, response.text
    image = Image.open(io.BytesIO(response.content))
    assert image.format == fmt.upper()
    return image


def frames(image: Image.Image) -> list[Image.Image]:
    out = []
    for i in range(getattr(image, "n_frames", 1)):
        image.seek(i)
        out.append(image.convert("RGB"))
    return out


def same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and ImageChops.difference(a, b).getbbox() is None


def renders(app: Starlette, image: str) -> float:
    return float(app.state.services.metrics.image_renders.labels(image).value)


def fallbacks(app: Starlette, image: str, reason: str) -> float:
    return float(app.state.services.metrics.fallbacks.labels("image", image, reason).value)


async def fetch(client: httpx.AsyncClient, url: str) -> httpx.Response:
    r = await client.get(url)
    assert r.status_code == 200, r.text
    return r


def assert_live_headers(r: httpx.Response, media: str) -> None:
    assert r.headers["content-type"] == media
    assert r.headers["cache-control"] == NO_STORE
    assert r.headers["expires"] == "0"
    assert int(r.headers["content-length"]) == len(r.content)


def assert_fallback(r: httpx.Response, image: str, reason: str) -> None:
    assert r.status_code == 200, r.text
    assert r.headers.get("x-kairos-fallback") == reason, r.headers
    assert r.content == fallback_image(image)
    fmt = "gif" if image == "countdown" else "png"
    assert_live_headers(r, f"image/{fmt}")
    decode(r, fmt)  # the fallback files are real images


# --- countdown ---------------------------------------------------------------------------


async def test_countdown_is_a_60_frame_gif_with_live_headers(client, pinned):
    r = await fetch(client, image_url("countdown", "ada", deadline=DEADLINE))
    assert "x-kairos-fallback" not in r.headers
    assert_live_headers(r, "image/gif")
    image = decode(r, "gif")
    assert image.size == (1200, 240)  # 600 x 120 at 2x density
    assert image.n_frames == 60
    assert len(r.content) <= 80 * 1024


async def test_countdown_frames_count_down_one_second_each(client, pinned):
    r = await fetch(client, image_url("countdown", "ada", deadline=DEADLINE))
    shown = frames(decode(r, "gif"))
    params = as_drawn({"deadline": DEADLINE})
    assert len(shown) == 60
    for i, frame in enumerate(shown):
        # Frame i shows one second less than frame i-1: the reference draws each frame
        # whole, the plain way, while the GIF pastes changed digits into regions.
        assert same(frame, still(params, FONTS, LEFT - i)), f"frame {i}"
        if i:
            assert not same(frame, shown[i - 1])
    assert not same(shown[0], still(params, FONTS, LEFT + 1))


async def test_countdown_style_and_frame_count_are_the_designers(client, pinned):
    style = {
        "deadline": DEADLINE,
        "width": 300,
        "height": 80,
        "frames": 5,
        "background": "#ffffff",
        "color": "#b4472a",
        "label_color": "#1f2933",
        "font": "sans",
        "labels": "Tage,Stunden,Minuten,Sekunden",
        "until": "",
        "density": 1,
    }
    r = await fetch(client, image_url("countdown", "ada", **style))
    shown = frames(decode(r, "gif"))
    assert [f.size for f in shown] == [(300, 80)] * 5
    params = as_drawn(style)
    for i, frame in enumerate(shown):
        assert same(frame, still(params, FONTS, LEFT - i))
    assert shown[0].getpixel((0, 0)) == (255, 255, 255)


async def test_countdown_stops_at_zero(client, pinned):
    pinned(DEADLINE_S - 4 + 0.9)
    r = await fetch(client, image_url("countdown", "ada", deadline=DEADLINE))
    shown = frames(decode(r, "gif"))
    params = as_drawn({"deadline": DEADLINE})
    assert len(shown) == 5  # 4, 3, 2, 1, 0 seconds left
    assert same(shown[-1], still(params, FONTS, 0))


async def test_after_the_deadline_the_ended_image(client, pinned):
    pinned(DEADLINE_S + 1)
    r = await fetch(client, image_url("countdown", "ada", deadline=DEADLINE))
    assert "x-kairos-fallback" not in r.headers
    assert_live_headers(r, "image/gif")
    shown = frames(decode(r, "gif"))
    params = as_drawn({"deadline": DEADLINE, "ended": "The sale is over"})
    assert len(shown) == 1
    assert not same(shown[0], ended(params, FONTS))
    r = await fetch(
        client, image_url("countdown", "ada", deadline=DEADLINE, ended="The sale is over")
    )
    assert same(frames(decode(r, "gif"))[0], ended(params, FONTS))
    assert r.content != fallback_image("countdown")


async def test_100_concurrent_opens_of_one_second_cost_one_render(client, app, pinned):
    urls = [image_url("countdown", f"reader-{i}", deadline=DEADLINE) for i in range(100)]
    answers = await asyncio.gather(*(client.get(u) for u in urls))
    assert {r.status_code for r in answers} == {200}
    assert all("x-kairos-fallback" not in r.headers for r in answers)
    assert len({r.content for r in answers}) == 1
    assert renders(app, "countdown") == 1

    # later opens in the same second: served from the cache
    await fetch(client, image_url("countdown", "someone-else", deadline=DEADLINE))
    assert renders(app, "countdown") == 1
    metrics = (await client.get("/metrics")).text
    assert 'kairos_image_renders_total{image="countdown"} 1.0' in metrics
    assert 'kairos_image_cache_total{image="countdown",result="hit"} 1.0' in metrics


async def test_the_next_second_is_the_next_render(client, app, pinned):
    first = frames(
        decode(await fetch(client, image_url("countdown", "ada", deadline=DEADLINE)), "gif")
    )
    pinned(NOW + 1)
    second = frames(
        decode(await fetch(client, image_url("countdown", "ada", deadline=DEADLINE)), "gif")
    )
    assert renders(app, "countdown") == 2
    assert same(second[0], first[1])


async def test_the_cache_key_is_what_the_pixels_depend_on(client, app, pinned):
    """Two deadlines a minute apart, opened a minute apart, without the end time: the
    same seconds left, the same pixels, one render, for readers in two time zones.
    Another colour: another render. With the end time, each deadline and each time
    zone draws its own."""
    later = "2026-12-25T00:00:59Z"
    a = await fetch(client, image_url("countdown", "ada", deadline=DEADLINE, until=""))
    pinned(NOW + 60)
    b = await fetch(client, image_url("countdown", "grace", deadline=later, until=""))
    assert a.content == b.content
    assert renders(app, "countdown") == 1
    await fetch(client, image_url("countdown", "grace", deadline=later, until="", color="#f00"))
    assert renders(app, "countdown") == 2
    london = {"deadline": later, "reader_timezone": "Europe/London"}
    ada = await fetch(client, image_url("countdown", "ada", **london))
    new_york = {"deadline": later, "reader_timezone": "America/New_York"}
    grace = await fetch(client, image_url("countdown", "grace", **new_york))
    assert ada.content != grace.content
    assert renders(app, "countdown") == 4
    await fetch(client, image_url("countdown", "alan", **london))
    assert renders(app, "countdown") == 4


# --- tokens --------------------------------------------------------------------------------


def _tampered(url: str) -> str:
    return url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")


@pytest.mark.parametrize(
    "make_url",
    [
        pytest.param(
            lambda: _tampered(image_url("countdown", "ada", deadline=DEADLINE)), id="bad signature"
        ),
        pytest.param(lambda: "/v1/img/countdown.gif", id="no token"),
        pytest.param(lambda: "/v1/img/countdown.gif?t=", id="empty token"),
        pytest.param(lambda: "/v1/img/countdown.gif?t=" + "A" * 5000, id="oversized token"),
        pytest.param(
            lambda: image_url(
                "countdown", "ada", tokens=Tokens((Secret(OLD_SECRET),)), deadline=DEADLINE
            ),
            id="another key",
        ),
        pytest.param(
            lambda: "/v1/img/countdown.gif?t=" + TOKENS.sign("feed", "ada", "countdown"),
            id="a feed token",
        ),
        pytest.param(
            lambda: image_url("countdown", "ada", resource="banner", deadline=DEADLINE),
            id="a token for another image",
        ),
        pytest.param(
            lambda: "/v1/img/countdown.gif?t=" + TOKENS.sign("click", "ada", "countdown"),
            id="a click token",
        ),
    ],
)
async def test_tokens_that_are_not_ours_are_403(client, app, make_url):
    r = await client.get(make_url())
    assert_error(r, 403)
    assert "x-kairos-fallback" not in r.headers


@pytest.mark.parametrize(
    "url",
    [
        image_url("countdown", "ada", fmt="png", deadline=DEADLINE),
        image_url("banner", "ada", fmt="gif"),
        image_url("weather", "ada"),
    ],
    ids=["countdown.png", "banner.gif", "unknown image"],
)
async def test_unknown_image_or_wrong_format_is_404(client, url):
    assert_error(await client.get(url), 404, "not_found")


# --- fallbacks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "params"),
    [
        ("countdown", {"deadline": DEADLINE, "width": 5000}),
        ("countdown", {"deadline": DEADLINE, "height": 401}),
        ("countdown", {"deadline": DEADLINE, "frames": 121}),
        ("countdown", {"deadline": DEADLINE, "frames": 0}),
        ("countdown", {}),
        ("countdown", {"deadline": "tomorrow"}),
        ("countdown", {"deadline": "2026-12-24T23:59:59+02:00"}),
        ("countdown", {"deadline": "2026-12-24T23:59:59"}),
        ("countdown", {"deadline": DEADLINE, "colour": "#ffffff"}),
        ("countdown", {"deadline": DEADLINE, "color": "red"}),
        ("countdown", {"deadline": DEADLINE, "labels": "D,H,M"}),
        ("countdown", {"deadline": DEADLINE, "font": "blocks/countdown/missing.ttf"}),
        ("countdown", {"deadline": DEADLINE, "font": "/usr/share/fonts/x.ttf"}),
        ("countdown", {"deadline": DEADLINE, "ended": "𓂀 ended"}),
        ("countdown", {"deadline": DEADLINE, "labels": "D,H,M,𓂀"}),
        ("countdown", {"deadline": DEADLINE, "locale": "xx-Nowhere"}),
        ("countdown", {"deadline": DEADLINE, "timezone": "Mars/Olympus"}),
        ("countdown", {"deadline": DEADLINE, "density": 3}),
        ("countdown", {"deadline": DEADLINE, "width": 700, "density": 2}),
        ("banner", {"background": "../../etc/passwd"}),
        ("banner", {"background": "blocks/../../../etc/hostname.png"}),
        ("banner", {"background": "blocks/countdown/block.json"}),
        ("banner", {"background": "blocks/countdown/missing.png"}),
        ("banner", {"headline": "Hi {email}"}),
        ("banner", {"headline": "Hi {first_name.__class__}"}),
        ("banner", {"width": 1201}),
        ("product", {"slot": 20}),
        ("product", {"slot": "first"}),
        ("product", {"height": 1201}),
    ],
)
async def test_parameters_refused_at_open_time_get_the_fallback(client, app, pinned, image, params):
    """Tokens signed without the send-time checks (an older release, other limits):
    checked again at each open, before any drawing."""
    r = await client.get(image_url(image, "ada", **params))
    assert_fallback(r, image, "invalid-params")
    assert fallbacks(app, image, "invalid-params") == 1
    assert renders(app, image) == 0


async def test_expired_token_gets_the_fallback(client, app, pinned):
    r = await client.get(image_url("countdown", "ada", ttl_s=-1, deadline=DEADLINE))
    assert_fallback(r, "countdown", "expired-token")
    metrics = (await client.get("/metrics")).text
    assert (
        'kairos_fallbacks_total{kind="image",name="countdown",reason="expired-token"} 1.0'
        in metrics
    )


@pytest.mark.parametrize("image", ["banner", "product"])
async def test_unknown_reader_gets_the_fallback(client, image):
    assert_fallback(await client.get(image_url(image, "nobody")), image, "missing-profile")


async def test_store_down_gets_the_fallback(settings):
    from support import free_port

    app = create_app(
        settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", KAIROS_REDIS_TIMEOUT_MS=100)
    )
    async with serve(app) as client:
        for image in ("banner", "product"):
            assert_fallback(await client.get(image_url(image, "ada")), image, "store-unavailable")


# --- banner ---------------------------------------------------------------------------------


async def test_banner_is_a_png_with_the_readers_words(client, app):
    r = await fetch(client, image_url("banner", "ada"))
    assert "x-kairos-fallback" not in r.headers
    assert_live_headers(r, "image/png")
    image = decode(r, "png")
    assert image.size == (1200, 400)  # 600 x 200 at 2x density
    grace = decode(await fetch(client, image_url("banner", "grace")), "png")
    assert not same(image.convert("RGB"), grace.convert("RGB"))
    assert renders(app, "banner") == 2


async def test_banner_size_and_background_are_the_designers(settings, sources_copy):
    blocks, templates = sources_copy(templates=False)
    Image.new("RGB", (120, 40), (10, 120, 200)).save(blocks / "hero" / "sky.png")
    app = create_app(settings(KAIROS_BLOCKS_DIR=blocks, KAIROS_TEMPLATES_DIR=templates))
    async with serve(app) as client:
        r = await fetch(
            client,
            image_url(
                "banner",
                "ada",
                background="blocks/hero/sky.png",
                width=480,
                height=160,
                align="center",
                density=1,
            ),
        )
    assert "x-kairos-fallback" not in r.headers
    image = decode(r, "png").convert("RGB")
    assert image.size == (480, 160)
    assert image.getpixel((2, 2)) == (10, 120, 200)  # scaled to cover: corners untouched


async def test_banner_shares_renders_between_readers_with_the_same_words(client, app):
    twin = {"first_name": "Lin", "loyalty_points": 40}
    for user in ("twin-1", "twin-2"):
        assert (await client.put(f"/v1/profiles/{user}", json=twin, headers=AUTH)).status_code
    one = await fetch(client, image_url("banner", "twin-1"))
    two = await fetch(client, image_url("banner", "twin-2"))
    assert one.content == two.content and "x-kairos-fallback" not in two.headers
    assert renders(app, "banner") == 1


async def test_product_title_the_font_cannot_draw_gets_the_fallback(client, app):
    await _with_product(client, app, "uma", title="𓂀 lamp")
    r = await client.get(image_url("product", "uma"))
    assert_fallback(r, "product", "unsupported-text")


@pytest.mark.parametrize(
    ("profile", "params", "reason"),
    [
        ({"first_name": "Hedy"}, {"text": "{loyalty_points} points"}, "missing-data"),
        ({"loyalty_points": 3}, {}, "missing-data"),
        ({"first_name": "", "loyalty_points": 3}, {}, "missing-data"),
        ({"first_name": "𓂀", "loyalty_points": 3}, {}, "unsupported-text"),
    ],
)
async def test_banner_without_its_data_gets_the_fallback(client, profile, params, reason):
    r = await client.put("/v1/profiles/someone", json=profile, headers=AUTH)
    assert r.status_code == 201, r.text
    assert_fallback(await client.get(image_url("banner", "someone", **params)), "banner", reason)


async def test_banner_draws_accents_and_currency_signs(client):
    profile = {"first_name": "Zoë Łucja", "loyalty_points": 12, "tier": "€ gold"}
    assert (await client.put("/v1/profiles/zoe", json=profile, headers=AUTH)).status_code == 201
    r = await fetch(client, image_url("banner", "zoe", text="{tier}: {loyalty_points}"))
    assert "x-kairos-fallback" not in r.headers


# --- product --------------------------------------------------------------------------------


async def test_product_card_is_a_png_of_the_readers_pick(client, app):
    r = await fetch(client, image_url("product", "ada", slot=0))
    assert "x-kairos-fallback" not in r.headers
    assert_live_headers(r, "image/png")
    assert decode(r, "png").size == (600, 800)  # 300 x 400 at 2x density
    other = await fetch(
        client, image_url("product", "ada", slot=1, width=240, height=320, density=1)
    )
    assert decode(other, "png").size == (240, 320)
    assert renders(app, "product") == 2


async def test_product_slot_without_a_product_gets_the_fallback(client):
    # the demo catalog has 10 products
    assert_fallback(
        await client.get(image_url("product", "ada", slot=15)), "product", "missing-data"
    )


def png(colour: tuple[int, int, int], size: tuple[int, int] = (200, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


async def _with_product(
    client: httpx.AsyncClient, app: Starlette, user: str, **product: Any
) -> None:
    """A catalog product SKU-UP as `user`'s first recommendation."""
    await app.state.services.stores.catalog.put_products(
        [
            {
                "sku": "SKU-UP",
                "title": "Red lamp",
                "price": 10.0,
                "currency": "EUR",
                "url": "https://shop.example.com/p/up",
                **product,
            }
        ]
    )
    profile = {"first_name": "Up", "recommendations": [{"sku": "SKU-UP", "score": 1.0}]}
    r = await client.put(f"/v1/profiles/{user}", json=profile, headers=AUTH)
    assert r.status_code in (200, 201), r.text


def centre_of_image_area(card: Image.Image) -> tuple[int, ...]:
    pixel = card.convert("RGB").getpixel((card.width // 2, card.width // 2))
    assert isinstance(pixel, tuple)
    return pixel


async def test_product_image_from_an_allowed_upstream(settings):
    async with Upstream() as up:
        url = up.route("/red.png", png((220, 20, 20)))
        app = create_app(settings(KAIROS_UPSTREAM_HOSTS="127.0.0.1"))
        async with serve(app) as client:
            await _with_product(client, app, "uma", image_url=url)
            r = await fetch(client, image_url("product", "uma"))
            assert "x-kairos-fallback" not in r.headers
            assert centre_of_image_area(decode(r, "png")) == (220, 20, 20)
            await fetch(client, image_url("product", "uma", width=200, height=300))
        assert up.requests["/red.png"] == 1  # fetched once, then cached


async def test_product_image_from_the_catalogs_local_assets(settings, tmp_path: Path):
    assets = tmp_path / "assets"
    (assets / "lamps").mkdir(parents=True)
    (assets / "lamps" / "blue.png").write_bytes(png((20, 40, 220)))
    app = create_app(settings(KAIROS_CATALOG_ASSETS_DIR=assets))
    async with serve(app) as client:
        await _with_product(client, app, "uma", image="lamps/blue.png")
        r = await fetch(client, image_url("product", "uma"))
    assert "x-kairos-fallback" not in r.headers
    assert centre_of_image_area(decode(r, "png")) == (20, 40, 220)


@pytest.mark.parametrize("image", ["../secret.png", "/etc/passwd", "lamps/../../secret.png"])
async def test_product_local_image_never_leaves_the_assets_folder(
    settings, tmp_path: Path, image: str
):
    assets = tmp_path / "assets"
    assets.mkdir()
    (tmp_path / "secret.png").write_bytes(png((1, 2, 3)))
    app = create_app(settings(KAIROS_CATALOG_ASSETS_DIR=assets))
    async with serve(app) as client:
        await _with_product(client, app, "uma", image=image)
        r = await fetch(client, image_url("product", "uma"))
    assert "x-kairos-fallback" not in r.headers  # the placeholder card
    assert centre_of_image_area(decode(r, "png")) != (1, 2, 3)


async def test_product_image_from_a_host_not_allowed_is_never_fetched(settings):
    async with Upstream() as up:
        url = up.route("/red.png", png((220, 20, 20)))
        app = create_app(settings(KAIROS_UPSTREAM_HOSTS="images.example.com"))
        async with serve(app) as client:
            await _with_product(client, app, "uma", image_url=url)
            r = await fetch(client, image_url("product", "uma"))
        assert "x-kairos-fallback" not in r.headers  # a placeholder, drawn
        assert centre_of_image_area(decode(r, "png")) != (220, 20, 20)
        assert up.requests["/red.png"] == 0


async def test_product_with_a_hanging_upstream_gets_the_fallback(settings):
    async with Upstream() as up:
        url = up.route("/slow.png", hang=True)
        app = create_app(settings(KAIROS_UPSTREAM_HOSTS="127.0.0.1", KAIROS_BUDGET_MS=100))
        async with serve(app) as client:
            await _with_product(client, app, "uma", image_url=url)
            r = await client.get(image_url("product", "uma"))
            assert_fallback(r, "product", "budget")
            # everyone opening meanwhile waits on the same single fetch
            answers = await asyncio.gather(
                *(client.get(image_url("product", "uma", width=280)) for _ in range(5))
            )
            assert {a.headers["x-kairos-fallback"] for a in answers} == {"budget"}
        assert up.requests["/slow.png"] == 1


def bomb() -> bytes:
    out = io.BytesIO()
    Image.new("1", (5000, 5000)).save(out, "PNG")  # 25 megapixels in a few KB
    return out.getvalue()


@pytest.mark.parametrize(
    "answer",
    [
        {"status": 500, "body": b"oops"},
        {"status": 302, "body": b"", "headers": {"Location": "http://169.254.169.254/"}},
        {"body": b"<html>not an image</html>", "headers": {"Content-Type": "text/html"}},
        {"body": png((220, 20, 20), (300, 300)) + b"\0" * 9000},  # over the byte cap
        {"body": png((220, 20, 20), (300, 300)) + b"\0" * 9000, "length": False},
        {"body": bomb()},
        {"body": b"BM" + b"\0" * 100},  # a BMP: not among the decoders we allow
    ],
    ids=[
        "500",
        "redirect",
        "not an image",
        "too large",
        "too large, no length",
        "decompression bomb",
        "bmp",
    ],
)
async def test_product_with_a_bad_upstream_answer_gets_the_fallback(settings, answer):
    assert len(bomb()) < 9000
    async with Upstream() as up:
        url = up.route("/img.png", **answer)
        app = create_app(settings(KAIROS_UPSTREAM_HOSTS="127.0.0.1", KAIROS_IMAGE_MAX_BYTES=9000))
        async with serve(app) as client:
            await _with_product(client, app, "uma", image_url=url)
            assert_fallback(await client.get(image_url("product", "uma")), "product", "upstream")
            # a failure is remembered for a moment: the next open does not refetch
            assert_fallback(
                await client.get(image_url("product", "uma", width=250)), "product", "upstream"
            )
        assert up.requests["/img.png"] == 1


# --- send time ---------------------------------------------------------------------------


async def test_a_render_asking_for_an_image_above_the_limits_is_422(settings, sources_copy):
    blocks, templates = sources_copy(templates=False)
    (blocks / "big").mkdir()
    (blocks / "big" / "block.json").write_text(json.dumps({"description": "probe"}))
    (blocks / "big" / "block.mjml").write_text(
        "<mj-section><mj-column><mj-image src=\"{{ links.image('countdown', "
        "deadline='2026-12-24T23:59:59Z', width=5000) }}\" /></mj-column></mj-section>\n"
    )
    (blocks / "big" / "block.txt").write_text("big\n")
    (templates / "big_t").mkdir()
    (templates / "big_t" / "template.json").write_text(
        json.dumps(
            {"subject": "x", "links": {"home": "https://shop.example.com/"}, "blocks": ["big"]}
        )
    )
    app = create_app(settings(KAIROS_BLOCKS_DIR=blocks, KAIROS_TEMPLATES_DIR=templates))
    async with serve(app) as client:
        r = await client.post(
            "/v1/render", json={"template": "big_t", "user_id": "ada"}, headers=AUTH
        )
    error = assert_error(r, 422, "template_error")
    assert "width 5000 is above the limit of 1200" in error["message"]
