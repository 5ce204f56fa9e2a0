"""Live image parameters: each type with good and hostile values, the limits, and the
send-time check in `Links.image` (a bad parameter fails the render, not the open)."""

from __future__ import annotations

from typing import Any

import pytest
from support import TOKENS, click_grants

from app import images
from app.images import ImageChecks
from app.images.banner import Banner
from app.images.base import (
    Asset,
    Choice,
    Color,
    Font,
    Instant,
    Int,
    Limits,
    ParamError,
    Text,
    parse_params,
)
from app.images.countdown import Countdown
from app.images.product import Product
from app.links import Links, LinkSigner

GOOD: list[tuple[Any, Any, Any]] = [
    (Int(0, 10), 3, 3),
    (Int(0, 10), "7", 7),
    (Int(-5, 5), "-5", -5),
    (Text(10), "hello", "hello"),
    (Text(10), "", ""),
    (Choice(("left", "center")), "center", "center"),
    (Color(), "#1d3b36", (29, 59, 54)),
    (Color(), "#FFF", (255, 255, 255)),
    (Color(), "b4472a", (180, 71, 42)),
    (Instant(), "2026-12-24T23:59:59Z", 1798156799),
    (Instant(), "2026-12-24T23:59:59+00:00", 1798156799),
    (Instant(), "2026-12-24T23:59:59.5Z", 1798156799),
    (Asset((".png",)), "blocks/hero/bg.png", "blocks/hero/bg.png"),
    (Asset((".png",)), "fallbacks/images/banner.png", "fallbacks/images/banner.png"),
    (Font(), "sans", "sans"),
    (Font(), "sans-bold", "sans-bold"),
    (Font(), "blocks/countdown/Inter-Bold.ttf", "blocks/countdown/Inter-Bold.ttf"),
]

BAD: list[tuple[Any, Any]] = [
    (Int(0, 10), 11),
    (Int(0, 10), -1),
    (Int(0, 10), True),
    (Int(0, 10), 1.5),
    (Int(0, 10), "1e3"),
    (Int(0, 10), "٣"),  # a digit, but not an ASCII one
    (Int(0, 10), "9" * 400),
    (Int(0, 10), None.__class__),
    (Text(5), "toolong"),
    (Text(50), "line\nbreak"),
    (Text(50), "nul\x00"),
    (Text(50), 42),
    (Choice(("left",)), "right"),
    (Choice(("left",)), ["left"]),
    (Color(), "red"),
    (Color(), "#12345"),
    (Color(), "#GGGGGG"),
    (Color(), "#1d3b36; background:url(x)"),
    (Color(), 0xFFFFFF),
    (Instant(), "tomorrow"),
    (Instant(), "2026-12-24"),  # no time zone: not UTC
    (Instant(), "2026-12-24T23:59:59"),
    (Instant(), "2026-12-24T23:59:59+02:00"),
    (Instant(), "2026-12-24T23:59:59-00:30"),
    (Instant(), 1798156799),
    (Instant(), "2026-12-24T23:59:59Z" + " " * 40),
    (Asset((".png",)), "../../etc/passwd.png"),
    (Asset((".png",)), "/etc/passwd.png"),
    (Asset((".png",)), "blocks/../../etc/passwd.png"),
    (Asset((".png",)), "blocks/hero/..png/../../x.png"),
    (Asset((".png",)), "blocks/hero/bg.png\n"),
    (Asset((".png",)), "blocks\\hero\\bg.png"),
    (Asset((".png",)), "templates/x.png"),
    (Asset((".png",)), "blocks/hero/bg.svg"),
    (Asset((".png",)), "blocks/.hidden/bg.png"),
    (Asset((".png",)), "blocks//bg.png"),
    (Asset((".png",)), "blocks/a/b/c/d/e/f/bg.png"),
    (Font(), "serif"),
    (Font(), "blocks/x/evil.png"),
    (Font(), "../fonts/x.ttf"),
]


@pytest.mark.parametrize(("param", "raw", "expected"), GOOD)
def test_good_values(param: Any, raw: Any, expected: Any):
    assert param.parse("p", raw) == expected


@pytest.mark.parametrize(("param", "raw"), BAD)
def test_hostile_values_are_refused_by_name(param: Any, raw: Any):
    with pytest.raises(ParamError, match=r"\bp\b"):
        param.parse("p", raw)


def test_defaults_required_and_unknown_parameters():
    spec = {"a": Int(0, 9, 4), "b": Text(5), "c": Color("#000")}
    assert parse_params(spec, {"b": "x"}) == {"a": 4, "b": "x", "c": (0, 0, 0)}
    with pytest.raises(ParamError, match="b is required"):
        parse_params(spec, {})
    with pytest.raises(ParamError, match="unknown parameter"):
        parse_params(spec, {"b": "x", "z": 1})


@pytest.mark.parametrize(
    ("limits", "size", "message"),
    [
        (Limits(100, 50, 10), (101, 50, 1), "width 101 is above the limit of 100"),
        (Limits(100, 50, 10), (100, 51, 1), "height 51 is above the limit of 50"),
        (Limits(100, 50, 10), (100, 50, 11), "frames 11 is above the limit of 10"),
    ],
)
def test_limits(limits: Limits, size: tuple[int, int, int], message: str):
    limits.check(100, 50, 10 if limits.max_frames == 10 else 1)
    with pytest.raises(ParamError, match=message):
        limits.check(*size)


@pytest.mark.parametrize(
    ("kind", "raw", "message"),
    [
        (Countdown, {"deadline": "2026-12-24T23:59:59Z", "width": 1201}, "width 1201"),
        (Countdown, {"deadline": "2026-12-24T23:59:59Z", "frames": 121}, "frames 121"),
        (Countdown, {"deadline": "2026-12-24T23:59:59Z", "height": 39}, "height must be"),
        (Countdown, {"deadline": "2026-12-24T23:59:59Z", "labels": "a,b"}, "labels"),
        (Banner, {"height": 801}, "height 801"),
        (Banner, {"text": "{first_name"}, "braces"),
        (Banner, {"text": "{0}"}, "braces"),
        (Banner, {"headline": "{email}"}, "unknown placeholder"),
        (Product, {"width": 801}, "width 801"),
        (Product, {"slot": 20}, "slot must be from 0 to 19"),
    ],
)
def test_each_kind_declares_its_limits(kind: Any, raw: dict[str, Any], message: str):
    with pytest.raises(ParamError, match=message):
        kind.parse(raw)


def test_every_kind_has_a_format_and_sane_defaults():
    for name, kind in images.KINDS.items():
        assert kind.name == name
        assert kind.format in images.FORMATS
        raw = {"deadline": "2026-12-24T23:59:59Z"} if name == "countdown" else {}
        params = kind.parse(raw)
        kind.limits.check(params["width"], params["height"], params.get("frames", 1))


def links() -> Links:
    signer = LinkSigner(TOKENS, "https://k.example.com", ImageChecks())
    return Links(signer, "https://k.example.com", "ada", "spring", "https://shop.example.com/")


def test_links_image_signs_the_parameters_and_names_the_format():
    url = links().image("countdown", deadline="2026-12-24T23:59:59Z", frames=30)
    assert url.startswith("https://k.example.com/v1/img/countdown.gif?t=")
    grant = TOKENS.verify("image", url.split("?t=", 1)[1])
    assert (grant.user_id, grant.resource, grant.campaign) == ("ada", "countdown", "spring")
    assert grant.params == {"deadline": "2026-12-24T23:59:59Z", "frames": 30}
    assert links().image("product", slot=2).startswith("https://k.example.com/v1/img/product.png")


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("countdown", {}),
        ("countdown", {"deadline": "2026-12-24T23:59:59Z", "width": 9000}),
        ("banner", {"background": "../../etc/passwd"}),
        ("weather", {}),
        ("product", {"slot": True}),
        ("product", {"slot": [1]}),
    ],
)
def test_links_image_refuses_what_the_open_would(name: str, params: dict[str, Any]):
    links().image("product", slot=1)  # remembered as valid: must not stand for slot=True
    with pytest.raises(ParamError):
        links().image(name, **params)
    with pytest.raises(ParamError):  # and again, from what was remembered
        links().image(name, **params)


def test_product_click_carries_its_slot_and_fallback_target():
    link = links()
    url = link.product_click(3, "https://shop.example.com/new")
    grant, reader = click_grants(url)
    assert (grant.resource, grant.params) == ("https://shop.example.com/new", {"slot": 3})
    assert reader is not None and (reader.user_id, reader.campaign) == ("ada", "spring")
    with pytest.raises(ValueError, match="slot"):
        link.product_click(20, "https://shop.example.com/new")
    unsafe = link.product_click(1, "javascript:alert(1)")
    assert click_grants(unsafe)[0].resource == "https://shop.example.com/"
    assert link.unsafe == ["javascript:alert(1)"]
