"""`banner`: a PNG with the reader's own words on it (e.g. their name and loyalty
points) over a background image from the designers' assets.

The text is written with placeholders (`Hello {first_name}`), filled from the profile
at open time; the pixels depend on the filled text and the style, not on who the
reader is, so readers with the same name and points share a render.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

from PIL import Image, ImageDraw

from app.fallbacks import Fallback, Reason
from app.images.base import (
    Asset,
    Choice,
    Color,
    Font,
    Int,
    Job,
    Limits,
    Param,
    ParamError,
    Params,
    Text,
    pixels,
)
from app.images.context import ImageRequest
from app.images.draw import cover, png
from app.images.fonts import Fonts
from app.images.kind import ImageKind
from app.images.text import MIN_TEXT_PX, draw_line, fit
from app.stores.protocols import Profile

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")
PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
FIELDS = ("first_name", "last_name", "tier", "loyalty_points")


class Banner(ImageKind):
    name = "banner"
    format = "png"
    limits = Limits(max_width=1200, max_height=800)
    not_drawn = ("headline", "text")
    params: ClassVar[Mapping[str, Param]] = {
        "width": Int(100, 10_000, 600),
        "height": Int(40, 10_000, 200),
        "background": Asset(IMAGE_SUFFIXES, "fallbacks/images/banner-background.png"),
        "headline": Text(120, "Hello {first_name}"),
        "text": Text(200, "You have {loyalty_points} points"),
        "color": Color("#ffffff"),
        "font": Font("sans-bold"),
        "text_font": Font("sans"),
        "align": Choice(("left", "center"), "left"),
    }

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Params:
        params = super().parse(raw)
        for name in ("headline", "text"):
            text = params[name]
            for field in PLACEHOLDER.findall(text):
                if field not in FIELDS:
                    raise ParamError(
                        f"{name}: unknown placeholder {{{field}}}; "
                        f"use {', '.join('{' + f + '}' for f in FIELDS)}"
                    )
            if "{" in PLACEHOLDER.sub("", text) or "}" in PLACEHOLDER.sub("", text):
                raise ParamError(f"{name}: braces are only for placeholders like {{first_name}}")
        return params

    @classmethod
    def send_time_text(cls, params: Params, profile: Any) -> dict[str, tuple[str, str]]:
        fields = profile if isinstance(profile, dict) else {}
        return {
            "headline": (params["font"], fill(params["headline"], fields, missing="")),
            "text": (params["text_font"], fill(params["text"], fields, missing="")),
        }

    def check(self, params: Params) -> None:
        self.deps.fonts.check(params["font"])
        self.deps.fonts.check(params["text_font"])
        self.deps.assets.path(params["background"])

    async def prepare(self, request: ImageRequest, params: Params, style: str) -> Job:
        deps = self.deps
        path = deps.assets.path(params["background"])
        profile = (await deps.reader(request)).profile
        assert profile is not None
        headline = fill(params["headline"], profile)
        text = fill(params["text"], profile)
        if deps.fonts.missing(params["font"], headline) or deps.fonts.missing(
            params["text_font"], text
        ):
            raise Fallback(Reason.UNSUPPORTED_TEXT, "the font cannot draw the reader's text")
        source = await deps.sources.local(path, request.deadline)
        key: Hashable = (style, source.digest, headline, text)
        return Job(key, functools.partial(render, params, source.image, headline, text, deps.fonts))


def fill(template: str, profile: Profile, missing: str | None = None) -> str:
    """`template` with its placeholders filled; `Fallback(Reason.MISSING_DATA)` when the
    profile lacks one of them (or `missing` in its place, when given)."""

    def value(match: re.Match[str]) -> str:
        field = match.group(1)
        raw = profile.get(field)
        if raw is None or raw == "":
            if missing is not None:
                return missing
            raise Fallback(Reason.MISSING_DATA, f"the profile has no {field}")
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return f"{raw:,}"
        return " ".join(str(raw).split())

    return PLACEHOLDER.sub(value, template)


def render(
    params: Params, background: Image.Image, headline: str, text: str, fonts: Fonts
) -> bytes:
    width, height = pixels(params)
    image = cover(background, (width, height))
    pad = round(min(width, height) * 0.16)
    room = width - 2 * pad
    smallest = MIN_TEXT_PX * params["density"]
    _, big = fit(fonts, params["font"], headline, round(height * 0.22), room, smallest)
    small = (
        fit(fonts, params["text_font"], text, round(height * 0.12), room, smallest)[1]
        if text
        else []
    )
    gap = round(height * 0.06)
    lines = [(each, 0) for each in big] + [
        (each, gap if i == 0 else 0) for i, each in enumerate(small)
    ]
    total = sum(each.ascent + each.descent + space for each, space in lines)
    y = max(0, (height - total) // 2)
    draw = ImageDraw.Draw(image)
    align = params["align"]
    if (
        align == "left"
        and all(each.rtl for each in big + small if each.text.strip())
        and (big or small)
    ):
        align = "right"  # a right-to-left text starts at the right
    x = {"left": pad, "center": width // 2, "right": width - pad}[align]
    for each, space in lines:
        y += space
        draw_line(draw, (x, y), each, params["color"], align)
        y += each.ascent + each.descent
    return png(image)
