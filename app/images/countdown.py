"""`countdown`: an animated GIF counting down to a deadline, one frame a second.

The pixels depend on the style and on how many seconds are left, never on the reader:
every reader opening in the same second shares one render (the drawing is in
`countdown_art`). After the deadline: a still "ended" image.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, ClassVar

from app.images.base import (
    Color,
    Font,
    Instant,
    Int,
    Job,
    Limits,
    Param,
    ParamError,
    Params,
    Text,
)
from app.images.context import ImageDeps, ImageRequest
from app.images.countdown_art import MAX_REMAINING, UNITS, CountdownArt
from app.images.kind import ImageKind


class Countdown(ImageKind):
    name = "countdown"
    format = "gif"
    limits = Limits(max_width=1200, max_height=400, max_frames=120)
    not_drawn = ("deadline",)
    params: ClassVar[Mapping[str, Param]] = {
        "deadline": Instant(),
        "frames": Int(1, 10_000, 60),
        "width": Int(120, 10_000, 600),
        "height": Int(40, 10_000, 120),
        "background": Color("#1d3b36"),
        "color": Color("#ffffff"),
        "label_color": Color("#f2c8a0"),
        "font": Font("sans-bold"),
        "labels": Text(80, "DAYS,HOURS,MINUTES,SECONDS"),
        "ended": Text(80, "This offer has ended"),
    }

    def __init__(self, deps: ImageDeps) -> None:
        super().__init__(deps)
        self.art = CountdownArt(deps.fonts)

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Params:
        params = super().parse(raw)
        labels = tuple(label.strip() for label in params["labels"].split(","))
        if len(labels) != UNITS:
            raise ParamError("labels must be four comma-separated words (days to seconds)")
        params["labels"] = labels
        return params

    def check(self, params: Params) -> None:
        fonts = self.deps.fonts
        fonts.check(params["font"])
        missing = fonts.missing(params["font"], "".join(params["labels"]) + params["ended"])
        if missing:
            raise ParamError(f"the font has no glyph for {missing!r} (labels, ended)")

    async def prepare(self, request: ImageRequest, params: Params, style: str) -> Job:
        # The pixels depend on the style and the seconds left, not on the deadline: two
        # deadlines opened with the same time left share a render too.
        remaining = params["deadline"] - int(request.now)
        if remaining <= 0:
            return Job((style, "ended"), functools.partial(self.art.ended, params))
        remaining = min(remaining, MAX_REMAINING)
        return Job((style, remaining), functools.partial(self.art.gif, params, remaining))
