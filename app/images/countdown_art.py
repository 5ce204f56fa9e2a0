"""The countdown's pixels: drawn once per style (background, labels, separators, the
ten digit glyphs, one fixed palette of anti-aliasing ramps); a frame is the previous one
with the digits that changed pasted in, and the GIF stores only that region."""

from __future__ import annotations

import threading
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache
from PIL import Image, ImageDraw

from app.images.base import Colour, Params, pixels, style_key
from app.images.fonts import Fonts
from app.images.gif import Frame, write_gif
from app.images.text import MIN_TEXT_PX, draw_line, fit, line

LEVELS = 16  # anti-aliasing steps per colour ramp
MAX_DAYS = 999
MAX_REMAINING = MAX_DAYS * 86400 + 86399
UNITS = 4


def split(remaining: int) -> tuple[int, int, int, int]:
    """(days, hours, minutes, seconds) in `remaining` seconds."""
    days, rest = divmod(remaining, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    return days, hours, minutes, seconds


def digits(remaining: int, day_digits: int) -> str:
    days, hours, minutes, seconds = split(remaining)
    return f"{days:0{day_digits}d}{hours:02d}{minutes:02d}{seconds:02d}"


def palette(params: Params) -> list[Colour]:
    """Index 0..15: background to `color`; 16..31: background to `label_color`."""
    bg: Colour = params["background"]
    out: list[Colour] = []
    for fg in (params["color"], params["label_color"]):
        for level in range(LEVELS):
            a = level / (LEVELS - 1)
            out.append((
                round(bg[0] + (fg[0] - bg[0]) * a),
                round(bg[1] + (fg[1] - bg[1]) * a),
                round(bg[2] + (fg[2] - bg[2]) * a),
            ))  # fmt: skip
    return out


# Coverage (0..255) to a palette index on the digits' ramp, and on the labels' ramp.
DIGIT_LUT = tuple(round(v * (LEVELS - 1) / 255) for v in range(256))
LABEL_LUT = tuple(LEVELS + round(v * (LEVELS - 1) / 255) for v in range(256))
OPAQUE_LUT = (0,) + (255,) * 255


@dataclass(frozen=True, slots=True)
class Layout:
    """Where everything goes, for one style, its words and one number of day digits
    (in pixels: display size times density)."""

    width: int
    height: int
    font: str
    digit_size: int
    label_size: int
    until_size: int
    cell_width: int
    digit_height: int
    glyph_top: int  # the digits' bbox top, relative to the text origin
    top: int  # y of the digit cells
    label_y: int  # the top of the labels' line
    until_y: int  # the top of the end time's line
    cells: tuple[int, ...]  # x of each digit cell, days first
    column: float  # width of one unit's column


def layout(params: Params, fonts: Fonts, day_digits: int) -> Layout:
    width, height = pixels(params)
    name = params["font"]
    smallest = MIN_TEXT_PX * params["density"]
    column = width / UNITS
    widest = max(2, day_digits)
    size = max(8, round(height * (0.4 if params["until"] else 0.5)))
    cell = _cell_width(fonts, name, size)
    if cell * widest > column * 0.7:  # shrink to leave room for the separators
        size = max(8, int(size * column * 0.7 / (cell * widest)))
        cell = _cell_width(fonts, name, size)
    _, top_f, _, bottom_f = fonts.get(name, size).getbbox("0123456789")
    top, digit_height = int(top_f), int(bottom_f - top_f)

    label_size = max(smallest, round(height * 0.11))
    label_size = min(
        fit(fonts, name, label, label_size, column * 0.9, smallest, 1)[0]
        for label in params["labels"]
    )
    label_line = line(fonts, name, label_size, "".join(params["labels"]))
    gap = max(2, round(height * 0.07))
    block = digit_height + gap + label_line.ascent + label_line.descent
    until_size = 0
    if params["until"]:
        until_size = max(smallest, round(height * 0.1))
        until_size, lines = fit(fonts, name, params["until"], until_size, width * 0.94, smallest, 1)
        block += gap + lines[0].ascent + lines[0].descent
    y = max(0, (height - block) // 2)

    cells: list[int] = []
    for unit in range(UNITS):
        count = day_digits if unit == 0 else 2
        centre = unit * column + column / 2
        x0 = round(centre - count * cell / 2)
        cells.extend(x0 + i * cell for i in range(count))
    label_y = y + digit_height + gap
    return Layout(
        width=width,
        height=height,
        font=name,
        digit_size=size,
        label_size=label_size,
        until_size=until_size,
        cell_width=cell,
        digit_height=digit_height,
        glyph_top=top,
        top=y,
        label_y=label_y,
        until_y=label_y + label_line.ascent + label_line.descent + gap,
        cells=tuple(cells),
        column=column,
    )


def _cell_width(fonts: Fonts, name: str, size: int) -> int:
    font = fonts.get(name, size)
    return int(max(font.getlength(str(d)) for d in range(10))) + 1


def _glyph_x(fonts: Fonts, lay: Layout, digit: str) -> int:
    """Where a digit sits in its cell: centred, on a whole pixel (so that drawing it in
    a tile and drawing it in place give the same pixels)."""
    advance = fonts.get(lay.font, lay.digit_size).getlength(digit)
    return int((lay.cell_width - advance) // 2)


def _static_mask(params: Params, fonts: Fonts, lay: Layout) -> tuple[Image.Image, Image.Image]:
    """Coverage masks of what never changes: the separators (digits' colour) and the
    labels and end time (labels' colour)."""
    digit_font = fonts.get(lay.font, lay.digit_size)
    separators = Image.new("L", (lay.width, lay.height), 0)
    draw = ImageDraw.Draw(separators)
    middle = lay.top + lay.digit_height // 2
    for unit in range(1, UNITS):
        draw.text((round(unit * lay.column), middle), ":", font=digit_font, fill=255, anchor="mm")
    labels = Image.new("L", (lay.width, lay.height), 0)
    draw = ImageDraw.Draw(labels)
    smallest = min(lay.label_size, MIN_TEXT_PX * params["density"])
    for unit, label in enumerate(params["labels"]):
        centre = round(unit * lay.column + lay.column / 2)
        shown = fit(fonts, lay.font, label, lay.label_size, lay.column * 0.9, smallest, 1)[1]
        draw_line(draw, (centre, lay.label_y), shown[0], 255, "center")
    if params["until"]:
        shown = fit(
            fonts, lay.font, params["until"], lay.until_size, lay.width * 0.94, lay.until_size, 1
        )[1]
        draw_line(draw, (lay.width // 2, lay.until_y), shown[0], 255, "center")
    return separators, labels


def _compose(separators: Image.Image, labels: Image.Image) -> Image.Image:
    """Palette indices ("L" image) of the static layer."""
    base = separators.point(DIGIT_LUT)
    base.paste(labels.point(LABEL_LUT), mask=labels.point(OPAQUE_LUT))
    return base


class CountdownArt:
    """The drawing, with what one style can reuse across renders memoized (thread-safe:
    renders run in the worker pool)."""

    def __init__(self, fonts: Fonts) -> None:
        self._fonts = fonts
        self._lock = threading.Lock()
        self._memo: LRUCache[Hashable, Any] = LRUCache(maxsize=256)

    def gif(self, params: Params, remaining: int) -> bytes:
        day_digits = max(2, len(str(split(remaining)[0])))
        lay, base, tiles = self._prepared(params, day_digits)
        frames: list[Frame] = []
        current = base.copy()
        previous = ""
        count = min(params["frames"], remaining + 1)
        for i in range(count):
            shown = digits(remaining - i, day_digits)
            changed = [k for k in range(len(shown)) if not previous or shown[k] != previous[k]]
            for k in changed:
                current.paste(tiles[int(shown[k])], (lay.cells[k], lay.top))
            if not previous:
                frames.append(Frame(0, 0, current.copy()))
            else:
                x0 = lay.cells[changed[0]]
                x1 = lay.cells[changed[-1]] + lay.cell_width
                box = (x0, lay.top, x1, lay.top + lay.digit_height)
                frames.append(Frame(x0, lay.top, current.crop(box)))
            previous = shown
        return write_gif((lay.width, lay.height), palette(params), frames)

    def ended(self, params: Params) -> bytes:
        image = ended_still(params, self._fonts)
        return write_gif(image.size, palette(params), [Frame(0, 0, image)])

    def _prepared(
        self, params: Params, day_digits: int
    ) -> tuple[Layout, Image.Image, list[Image.Image]]:
        key = (style_key(params, "deadline", "frames", "locale", "timezone"), day_digits)
        with self._lock:
            hit = self._memo.get(key)
        if hit is not None:
            return hit  # type: ignore[no-any-return]
        lay = layout(params, self._fonts, day_digits)
        base = _compose(*_static_mask(params, self._fonts, lay))
        font = self._fonts.get(lay.font, lay.digit_size)
        tiles = []
        for d in "0123456789":
            mask = Image.new("L", (lay.cell_width, lay.digit_height), 0)
            ImageDraw.Draw(mask).text(
                (_glyph_x(self._fonts, lay, d), -lay.glyph_top), d, font=font, fill=255
            )
            tiles.append(mask.point(DIGIT_LUT))
        prepared = (lay, base, tiles)
        with self._lock:
            self._memo[key] = prepared
        return prepared


def still(params: Params, fonts: Fonts, remaining: int) -> Image.Image:
    """The frame for `remaining` seconds left (0: all zeros), drawn in place the plain
    way (no tiles, no regions), as RGB: for previews, and the reference the animated
    path is checked against."""
    remaining = min(max(0, remaining), MAX_REMAINING)
    day_digits = max(2, len(str(split(remaining)[0])))
    lay = layout(params, fonts, day_digits)
    separators, labels = _static_mask(params, fonts, lay)
    draw = ImageDraw.Draw(separators)
    font = fonts.get(lay.font, lay.digit_size)
    for x, d in zip(lay.cells, digits(remaining, day_digits), strict=True):
        draw.text((x + _glyph_x(fonts, lay, d), lay.top - lay.glyph_top), d, font=font, fill=255)
    return _to_rgb(_compose(separators, labels), params)


def ended(params: Params, fonts: Fonts) -> Image.Image:
    """The "ended" image as RGB."""
    return _to_rgb(ended_still(params, fonts), params)


def ended_still(params: Params, fonts: Fonts) -> Image.Image:
    """The "ended" image: the `ended` text centred (on two lines if need be), in palette
    indices."""
    width, height = pixels(params)
    smallest = MIN_TEXT_PX * params["density"]
    size = max(smallest, round(height * 0.28))
    _, lines = fit(fonts, params["font"], params["ended"], size, width * 0.9, smallest)
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    y = (height - sum(each.ascent + each.descent for each in lines)) // 2
    for each in lines:
        draw_line(draw, (width // 2, y), each, 255, "center")
        y += each.ascent + each.descent
    return mask.point(DIGIT_LUT)


def _to_rgb(indices: Image.Image, params: Params) -> Image.Image:
    image = indices.copy()
    image.putpalette([v for colour in palette(params) for v in colour])
    return image.convert("RGB")
