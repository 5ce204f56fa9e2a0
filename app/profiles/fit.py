"""A reader's text fields cut to the schema's sizes at render time, so a field too long
(sent with the render, or stored before the schema said so) never costs the reader their
email: text meant to be read (a name, a product title) is shortened at a character
boundary; a value that means nothing once cut (an email address, a URL, a time zone, a
sku) is dropped, and the block that needs it falls back. What was cut is reported by
field path, never by value."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any, NamedTuple

from app.profiles.schema import CART_MAX_CHARS, MAX_CHARS

# Fields shortened; every other sized field is dropped when too long.
SHORTENED = frozenset({"first_name", "last_name", "tier", "title"})
ELLIPSIS = "…"
ZWJ = "\u200d"
# Characters that never begin a user-perceived character: they join the one before.
_JOINERS = frozenset({ZWJ, "\ufe0e", "\ufe0f"})
_MARKS = frozenset({"Mn", "Mc", "Me"})


class Cut(NamedTuple):
    """A field cut to fit: its path (`first_name`, `cart[2].url`) and what was done
    (`truncated` or `dropped`)."""

    field: str
    action: str


def fit(profile: Mapping[str, Any]) -> tuple[Mapping[str, Any], tuple[Cut, ...]]:
    """`profile` with its too-long fields cut, and the cuts; the same object when none
    was (profiles may be shared by renders: never changed in place)."""
    cuts: list[Cut] = []
    out: dict[str, Any] | None = None
    for key, limit in MAX_CHARS.items():
        value = profile.get(key)
        if type(value) is str and len(value) > limit:
            out = dict(profile) if out is None else out
            _cut(out, key, limit, key, cuts)
    cart = profile.get("cart")
    if type(cart) is list and any(_too_long_line(line) for line in cart):
        out = dict(profile) if out is None else out
        out["cart"] = _fit_cart(cart, cuts)
    return (profile if out is None else out), tuple(cuts)


def shorten(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, ending in an ellipsis, never split inside
    a user-perceived character (a letter and its combining marks, an emoji sequence
    joined by ZWJ, a flag, a skin tone)."""
    if len(text) <= limit:
        return text
    cut = max(limit - len(ELLIPSIS), 0)
    while 0 < cut < len(text) and _joins_previous(text, cut):
        cut -= 1
    return text[:cut].rstrip() + ELLIPSIS


def _joins_previous(text: str, at: int) -> bool:
    """Whether the character at `at` belongs with the one before it."""
    ch, before = text[at], text[at - 1]
    if ch in _JOINERS or before == ZWJ or unicodedata.category(ch) in _MARKS:
        return True
    code = ord(ch)
    if 0x1F3FB <= code <= 0x1F3FF or 0xE0020 <= code <= 0xE007F or 0xE0100 <= code <= 0xE01EF:
        return True  # a skin tone, a tag (subdivision flags), a variation selector
    if 0x1160 <= code <= 0x11FF:
        return True  # a Hangul vowel or final consonant jamo
    if _regional(ch) and _regional(before):
        # Flags are pairs of regional indicators: cut between pairs only.
        start = at
        while start > 0 and _regional(text[start - 1]):
            start -= 1
        return (at - start) % 2 == 1
    return False


def _regional(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def _cut(doc: dict[str, Any], key: str, limit: int, path: str, cuts: list[Cut]) -> None:
    if key in SHORTENED:
        doc[key] = shorten(doc[key], limit)
        cuts.append(Cut(path, "truncated"))
    else:
        del doc[key]
        cuts.append(Cut(path, "dropped"))


def _too_long_line(line: Any) -> bool:
    if type(line) is not dict:
        return False
    for key, limit in CART_MAX_CHARS.items():
        value = line.get(key)
        if type(value) is str and len(value) > limit:
            return True
    return False


def _fit_cart(cart: list[Any], cuts: list[Cut]) -> list[Any]:
    """The cart with its too-long fields cut; a line whose sku is too long is dropped
    (it names no product)."""
    out = []
    for i, line in enumerate(cart):
        if not _too_long_line(line):
            out.append(line)
            continue
        line = dict(line)
        sku = line.get("sku")
        if type(sku) is str and len(sku) > CART_MAX_CHARS["sku"]:
            cuts.append(Cut(f"cart[{i}]", "dropped"))
            continue
        for key, limit in CART_MAX_CHARS.items():
            value = line.get(key)
            if type(value) is str and len(value) > limit:
                _cut(line, key, limit, f"cart[{i}].{key}", cuts)
        out.append(line)
    return out
