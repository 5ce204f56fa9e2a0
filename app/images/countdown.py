"""`countdown`: an animated GIF counting down to a deadline, one frame a second, with
its unit labels and end time in the reader's language and time zone.

The reader's locale and time zone are signed into the image at send time
(`reader_params`), so an open reads no profile. The pixels depend on the style, the
words (labels, end time) and how many seconds are left, never on who the reader is:
every reader of one language and time zone opening in the same second shares one render
(the drawing is in `countdown_art`, the words in `countdown_words`). After the
deadline: a still "ended" image.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

from app.caching import Bounded
from app.fallbacks import Fallback, Reason
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
from app.images.countdown_words import (
    Words,
    check_locale,
    check_zone,
    drawn,
    parse_locale,
    parse_zone,
    place,
    warm,
    words,
)
from app.images.kind import ImageKind

WORDS_MEMO_SIZE = 4096
# What the words depend on.
WORD_PARAMS = (
    "deadline",
    "labels",
    "until",
    "ended",
    "font",
    "locale",
    "timezone",
    "reader_locale",
    "reader_timezone",
)


class Countdown(ImageKind):
    name = "countdown"
    format = "gif"
    limits = Limits(max_width=1200, max_height=400, max_frames=120)
    # The words are in the job's key as drawn; the deadline shows only through them.
    not_drawn = (
        "deadline",
        "labels",
        "until",
        "ended",
        "locale",
        "timezone",
        "reader_locale",
        "reader_timezone",
    )
    reads = ("locale", "timezone")
    params: ClassVar[Mapping[str, Param]] = {
        "deadline": Instant(),
        "frames": Int(1, 10_000, 60),
        "width": Int(120, 10_000, 600),
        "height": Int(40, 10_000, 120),
        "background": Color("#1d3b36"),
        "color": Color("#ffffff"),
        "label_color": Color("#f2c8a0"),
        "font": Font("sans-bold"),
        "labels": Text(80, None),
        "until": Text(80, None),
        "ended": Text(80, None),
        "locale": Text(35, "en"),
        "timezone": Text(64, "UTC"),
        # Signed by Kairos at send time from the reader's profile (`reader_params`).
        "reader_locale": Text(35, None),
        "reader_timezone": Text(64, None),
    }

    def __init__(self, deps: ImageDeps) -> None:
        super().__init__(deps)
        self.art = CountdownArt(deps.fonts)
        self._words: Bounded[Hashable, Words] = Bounded(WORDS_MEMO_SIZE)
        warm()

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Params:
        params = super().parse(raw)
        if params["labels"] is not None:
            labels = tuple(label.strip() for label in params["labels"].split(","))
            if len(labels) != UNITS:
                raise ParamError("labels must be four comma-separated words (days to seconds)")
            params["labels"] = labels
        if params["until"] is not None and params["until"].count("{when}") > 1:
            raise ParamError("until may hold {when} (the end time) once")
        check_locale("locale", params["locale"])
        check_zone("timezone", params["timezone"])
        return params

    @classmethod
    def reader_params(cls, reader: Mapping[str, Any]) -> dict[str, str]:
        found = {}
        if parse_locale(reader.get("locale")) is not None:
            found["reader_locale"] = reader["locale"]
        if parse_zone(reader.get("timezone")) is not None:
            found["reader_timezone"] = reader["timezone"]
        return found

    @classmethod
    def send_time_text(cls, params: Params, profile: Any) -> dict[str, tuple[str, str]]:
        found = {}
        for name in ("labels", "until", "ended"):
            given = params[name]
            text = "".join(given) if isinstance(given, tuple) else given
            if text:
                found[name] = (params["font"], text.replace("{when}", ""))
        return found

    def check(self, params: Params) -> None:
        fonts = self.deps.fonts
        fonts.check(params["font"])
        for name, (font, text) in self.send_time_text(params, None).items():
            missing = fonts.missing(font, text)
            if missing:
                raise ParamError(f"{name}: no font has a glyph for {missing!r}")

    async def prepare(self, request: ImageRequest, params: Params, style: str) -> Job:
        shown = self._words_of(params)
        pixels_of = drawn(params, shown)
        # The pixels depend on the style, the words and the seconds left, not on the
        # deadline: two deadlines opened with the same time left share a render too.
        key = (style, shown)
        remaining = params["deadline"] - int(request.now)
        if remaining <= 0:
            return Job((key, "ended"), functools.partial(self.art.ended, pixels_of))
        remaining = min(remaining, MAX_REMAINING)
        return Job((key, remaining), functools.partial(self.art.gif, pixels_of, remaining))

    def _words_of(self, params: Params) -> Words:
        """The words in the reader's language and time zone; the image's own (the
        template's) when the reader's cannot be drawn (a fallback font missing)."""
        memo_key = tuple(params[name] for name in WORD_PARAMS)
        found = self._words.get(memo_key)
        if found is None:
            reader = {"locale": params["reader_locale"], "timezone": params["reader_timezone"]}
            found = words(
                params, params["deadline"], place(reader, params["locale"], params["timezone"])
            )
            if self._undrawable(params, found):
                found = words(
                    params, params["deadline"], place({}, params["locale"], params["timezone"])
                )
                if self._undrawable(params, found):
                    raise Fallback(
                        Reason.UNSUPPORTED_TEXT, "no font can draw the countdown's words"
                    )
            self._words.put(memo_key, found)
        return found

    def _undrawable(self, params: Params, shown: Words) -> str:
        text = "".join(shown.labels) + shown.until + shown.ended
        return self.deps.fonts.missing(params["font"], text)
