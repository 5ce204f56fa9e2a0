"""The base class of a live image kind: declared parameters and limits, and the data
step that turns one open into a render job."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from app.images.base import Int, Job, Limits, Param, Params, parse_params, style_key
from app.images.context import ImageDeps, ImageRequest

# Every kind's `density`: 1 or 2 pixels per display pixel (unset: 2 where the limits allow).
DENSITY = Int(1, 2)


class ImageKind:
    """One kind of live image. Subclasses declare `name`, `format`, `params`, `limits`
    (and `not_drawn`, the parameters its pixels don't depend on) and implement
    `prepare`."""

    name: ClassVar[str]
    format: ClassVar[str]  # "gif" or "png"
    params: ClassVar[Mapping[str, Param]]
    limits: ClassVar[Limits]
    not_drawn: ClassVar[tuple[str, ...]] = ()
    reads: ClassVar[tuple[str, ...]] = ()  # profile fields `reader_params` reads

    def __init__(self, deps: ImageDeps) -> None:
        self.deps = deps

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Params:
        """Checked parameters; `ParamError` when they are invalid or above the limits."""
        raw = dict(raw or {})
        density = raw.pop("density", None)
        params = parse_params(cls.params, raw)
        width, height = params["width"], params["height"]
        if density is None:
            params["density"] = cls.limits.density(width, height)
        else:
            params["density"] = DENSITY.parse("density", density)
        cls.limits.check(width, height, params.get("frames", 1), params["density"])
        return params

    @classmethod
    def reader_params(cls, reader: Mapping[str, Any]) -> dict[str, str]:
        """Parameters signed into the image at send time from the reader's profile
        (`reads` are the fields it reads), when they are valid."""
        return {}

    @classmethod
    def send_time_text(cls, params: Params, profile: Any) -> dict[str, tuple[str, str]]:
        """The text this image will draw that send time can know, by parameter: (font,
        text). `profile`: the reader's, or None."""
        return {}

    def check(self, params: Params) -> None:
        """What parsing cannot see (fonts exist and can draw the designer's words,
        files exist): `ParamError` otherwise. Once per token, before any rendering."""
        self.deps.fonts.check(params["font"])

    def style(self, params: Params) -> str:
        """Everything in `params` the pixels depend on, as one string: the cheap part
        of a cache key (a string keeps its hash), computed once per token."""
        return f"{self.name}:{style_key(params, *self.not_drawn)!r}"

    async def prepare(self, request: ImageRequest, params: Params, style: str) -> Job:
        """The data step, within the request's budget: raises `Fallback` when the
        reader must get the fallback. `style` is `self.style(params)`."""
        raise NotImplementedError
