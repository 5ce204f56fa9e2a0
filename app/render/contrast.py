"""Colour contrast as WCAG 2.x defines it: relative luminance of sRGB colours and the
ratio between two of them. Text needs at least 4.5:1 against its background (level AA
for normal text), which is the bar every Kairos email is held to."""

from __future__ import annotations

import re
from types import MappingProxyType

MIN_RATIO = 4.5
HEX = re.compile(r"#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})\b")
RGB = re.compile(r"rgba?\(\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*(?:,\s*[\d.]+\s*)?\)")
NAMED = MappingProxyType(
    {"white": (255, 255, 255), "black": (0, 0, 0), "red": (255, 0, 0), "gray": (128, 128, 128)}
)

Colour = tuple[int, int, int]


def parse_colour(value: str) -> Colour | None:
    """The first colour written in a CSS value (`#abc`, `#aabbcc`, `rgb(…)`, a few
    names), or None when it holds none (`transparent`, `inherit`, a URL)."""
    found = HEX.search(value)
    if found:
        digits = found.group(1)
        if len(digits) == 3:
            digits = "".join(c * 2 for c in digits)
        return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)
    rgb = RGB.search(value)
    if rgb:
        r, g, b = (min(255, int(rgb.group(i))) for i in (1, 2, 3))
        return r, g, b
    for word in re.findall(r"[a-z]+", value.lower()):
        if word in NAMED:
            return NAMED[word]
    return None


def luminance(colour: Colour) -> float:
    """Relative luminance (WCAG 2.x): 0 for black, 1 for white."""

    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = colour
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def ratio(foreground: Colour, background: Colour) -> float:
    """The contrast ratio of two colours, from 1 (same) to 21 (black on white)."""
    a, b = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def hex_colour(colour: Colour) -> str:
    return "#{:02x}{:02x}{:02x}".format(*colour)
