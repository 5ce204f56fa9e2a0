"""Live images drawn at open time: one module per kind, registered here."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from types import MappingProxyType
from typing import Any

from app.caching import Bounded
from app.images.banner import Banner
from app.images.base import ParamError, Params
from app.images.countdown import Countdown
from app.images.fonts import Fonts
from app.images.kind import ImageKind
from app.images.product import Product

KINDS: Mapping[str, type[ImageKind]] = MappingProxyType(
    {
        Countdown.name: Countdown,
        Banner.name: Banner,
        Product.name: Product,
    }
)

FORMATS = MappingProxyType({"gif": "image/gif", "png": "image/png"})


def parse(name: str, raw: dict[str, object] | None) -> Params:
    """The checked parameters of image `name` (as signed at send time): `ParamError`
    for an unknown image or invalid parameters."""
    kind = KINDS.get(name)
    if kind is None:
        raise ParamError(f"no live image named {name!r}; there are {', '.join(sorted(KINDS))}")
    return kind.parse(raw)


class ImageChecks:
    """Send-time checks of live image parameters (`parse` and the format): every reader
    of a template signs the same parameters, so each answer is remembered (a pure
    function of them). An `app.links.ImageCheck`."""

    def __init__(self, size: int = 1024, fonts: Fonts | None = None) -> None:
        self._answers: Bounded[Hashable, Params | ParamError] = Bounded(size)
        self._fonts = fonts
        self._readers: Bounded[Hashable, dict[str, str]] = Bounded(size)

    def reader_params(self, name: str, reader: Mapping[str, Any]) -> dict[str, str]:
        """What image `name` takes from the reader's profile (`ImageKind.reader_params`),
        remembered by the profile fields it reads."""
        kind = KINDS[name]
        if not kind.reads:
            return {}
        key = (name, *(reader.get(field) for field in kind.reads))
        try:
            found = self._readers.get(key)
        except TypeError:  # unhashable values: not a locale or a time zone
            return {}
        if found is None:
            found = kind.reader_params(reader)
            self._readers.put(key, found)
        return found

    def undrawable(self, name: str, params: dict[str, Any], profile: Any) -> list[tuple[str, str]]:
        """(parameter, characters) of the text image `name` will draw for a reader with
        `profile` (as far as send time knows it) that no font can draw: that reader would
        get the fallback image. Empty without fonts (`kairos sign`)."""
        fonts = self._fonts
        if fonts is None:
            return []
        kind = KINDS[name]
        found = []
        for param, (font, text) in kind.send_time_text(self._parsed(name, params), profile).items():
            try:
                fonts.check(font)
            except (ParamError, OSError):
                continue  # a font that cannot load fails the open's own check
            missing = fonts.missing(font, text)
            if missing:
                found.append((param, missing))
        return found

    def __call__(self, name: str, params: dict[str, Any]) -> str:
        self._parsed(name, params)
        return KINDS[name].format

    def _parsed(self, name: str, params: dict[str, Any]) -> Params:
        """`parse(name, params)`, remembered: every render of a template asks again."""
        try:
            # With the types: True == 1 and hash alike, but only one of them is a slot.
            typed = sorted((k, type(v).__name__, v) for k, v in params.items())
            key: Hashable = (name, tuple(typed))
            answer = self._answers.get(key)
        except TypeError:  # unhashable values: they will not parse anyway
            return parse(name, params)
        if answer is None:
            try:
                answer = parse(name, params)
            except ParamError as exc:
                answer = exc
            self._answers.put(key, answer)
        if isinstance(answer, ParamError):
            raise ParamError(str(answer))
        return answer


__all__ = [
    "FORMATS",
    "KINDS",
    "ImageKind",
    "ParamError",
    "Params",
    "ImageChecks",
    "parse",
]
