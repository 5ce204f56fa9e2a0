"""What every live image kind declares: typed parameters with defaults and bounds, hard
limits on size and frames, and the data step that turns one open into a render job.

Parameters travel signed inside the image token, so a reader cannot change them; they
are still checked on every open (a token signed by an older release may carry values
this one refuses), before anything is loaded or drawn.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Params = dict[str, Any]
Colour = tuple[int, int, int]


class ParamError(ValueError):
    """A parameter is unknown, missing or out of bounds; the message names it."""


@dataclass(frozen=True, slots=True)
class Limits:
    """The largest image a kind will draw, in pixels (display size times density),
    whatever its parameters say."""

    max_width: int
    max_height: int
    max_frames: int = 1

    def check(self, width: int, height: int, frames: int = 1, density: int = 1) -> None:
        """The limits hold for pixels: `width` x `density` and `height` x `density`."""
        at = f" at density {density} ({width * density} pixels)" if density > 1 else ""
        if width * density > self.max_width:
            raise ParamError(f"width {width}{at} is above the limit of {self.max_width}")
        at = f" at density {density} ({height * density} pixels)" if density > 1 else ""
        if height * density > self.max_height:
            raise ParamError(f"height {height}{at} is above the limit of {self.max_height}")
        if frames > self.max_frames:
            raise ParamError(f"frames {frames} is above the limit of {self.max_frames}")


    def density(self, width: int, height: int) -> int:
        """The density an image drawn without one gets: 2x where the limits allow."""
        fits = width * 2 <= self.max_width and height * 2 <= self.max_height
        return 2 if fits else 1


def pixels(params: Params) -> tuple[int, int]:
    """The image's size in pixels: its display size times its density."""
    density: int = params["density"]
    return params["width"] * density, params["height"] * density


@dataclass(frozen=True, slots=True)
class Job:
    """A render to run (or find in the cache): `key` is everything the pixels depend
    on, `render` a pure function of it, run in the worker pool."""

    key: Hashable
    render: Callable[[], bytes]


# --- parameter types -------------------------------------------------------------------

_REQUIRED = object()


@dataclass(frozen=True, slots=True)
class Int:
    lo: int
    hi: int
    default: Any = _REQUIRED

    def parse(self, name: str, raw: Any) -> int:
        # [0-9], not \d: \d also matches other scripts' digits, which int() accepts.
        if isinstance(raw, str) and re.fullmatch(r"-?[0-9]{1,9}", raw):
            raw = int(raw)
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ParamError(f"{name} must be an integer")
        if not self.lo <= raw <= self.hi:
            raise ParamError(f"{name} must be from {self.lo} to {self.hi}, not {raw}")
        return raw


@dataclass(frozen=True, slots=True)
class Text:
    max_len: int
    default: Any = _REQUIRED

    def parse(self, name: str, raw: Any) -> str:
        if not isinstance(raw, str):
            raise ParamError(f"{name} must be a string")
        if len(raw) > self.max_len:
            raise ParamError(f"{name} is longer than {self.max_len} characters")
        if any(ord(c) < 32 for c in raw):
            raise ParamError(f"{name} must not contain control characters")
        return raw


@dataclass(frozen=True, slots=True)
class Choice:
    options: tuple[str, ...]
    default: Any = _REQUIRED

    def parse(self, name: str, raw: Any) -> str:
        if raw not in self.options:
            raise ParamError(f"{name} must be one of {', '.join(self.options)}")
        return str(raw)


_HEX = re.compile(r"#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})")


@dataclass(frozen=True, slots=True)
class Color:
    """A '#rrggbb' or '#rgb' colour, parsed to an (r, g, b) tuple."""

    default: Any = _REQUIRED

    def parse(self, name: str, raw: Any) -> Colour:
        m = _HEX.fullmatch(raw) if isinstance(raw, str) else None
        if m is None:
            raise ParamError(f"{name} must be a colour like #1d3b36")
        digits = m.group(1)
        if len(digits) == 3:
            digits = "".join(c * 2 for c in digits)
        return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))


@dataclass(frozen=True, slots=True)
class Instant:
    """An ISO 8601 time in UTC ('2026-12-24T23:59:59Z'), parsed to epoch seconds."""

    default: Any = _REQUIRED

    def parse(self, name: str, raw: Any) -> int:
        if not isinstance(raw, str) or len(raw) > 40:
            raise ParamError(f"{name} must be an ISO 8601 time in UTC, e.g. 2026-12-24T23:59:59Z")
        text = raw.strip()
        try:
            when = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            raise ParamError(
                f"{name} must be an ISO 8601 time in UTC, e.g. 2026-12-24T23:59:59Z"
            ) from None
        if when.tzinfo is None or when.utcoffset() != UTC.utcoffset(None):
            raise ParamError(f"{name} must be in UTC (end it with Z), not {raw!r}")
        return int(when.timestamp())


# An asset: a file among the designers' blocks or the fallbacks, named from that folder.
ASSET_REF = re.compile(
    r"(blocks|fallbacks)/(?:[A-Za-z0-9_-][A-Za-z0-9_.-]*/){0,4}[A-Za-z0-9_-][A-Za-z0-9_.-]*"
)


@dataclass(frozen=True, slots=True)
class Asset:
    """'blocks/<path>' or 'fallbacks/<path>' with one of `suffixes`; whether the file
    exists is checked by the data step."""

    suffixes: tuple[str, ...]
    default: Any = _REQUIRED

    def parse(self, name: str, raw: Any) -> str:
        if (
            not isinstance(raw, str)
            or not ASSET_REF.fullmatch(raw)
            or ".." in raw
            or not raw.lower().endswith(self.suffixes)
        ):
            raise ParamError(
                f"{name} must name a file under blocks/ or fallbacks/ ending in "
                f"{', '.join(self.suffixes)}"
            )
        return raw


FONT_SUFFIXES = (".ttf", ".otf")


BUILTIN_FONTS = ("sans", "sans-bold")


@dataclass(frozen=True, slots=True)
class Font:
    """'sans' or 'sans-bold' (built in: no system fonts needed) or a TTF/OTF asset."""

    default: Any = "sans"

    def parse(self, name: str, raw: Any) -> str:
        if raw in BUILTIN_FONTS:
            return str(raw)
        try:
            return Asset(FONT_SUFFIXES).parse(name, raw)
        except ParamError:
            raise ParamError(
                f"{name} must be sans, sans-bold or a .ttf/.otf file under blocks/"
            ) from None


Param = Int | Text | Choice | Color | Instant | Asset | Font


def parse_params(spec: Mapping[str, Param], raw: Mapping[str, Any] | None) -> Params:
    """`raw` checked against `spec`, with defaults filled in; `ParamError` otherwise."""
    raw = raw or {}
    unknown = sorted(set(raw) - set(spec))
    if unknown:
        raise ParamError(f"unknown parameter(s): {', '.join(map(str, unknown))}")
    params: Params = {}
    for name, param in spec.items():
        if name in raw and raw[name] is not None:
            params[name] = param.parse(name, raw[name])
        elif param.default is _REQUIRED:
            raise ParamError(f"{name} is required")
        else:
            # Defaults are written like the values a designer signs (e.g. '#ffffff').
            params[name] = None if param.default is None else param.parse(name, param.default)
    return params


def style_key(params: Params, *leave_out: str) -> tuple[tuple[str, Any], ...]:
    """The parameters as a hashable key, without those the pixels don't use."""
    return tuple(sorted((k, v) for k, v in params.items() if k not in leave_out))
