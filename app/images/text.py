"""Text on live images: each run of a text drawn with the first font of its chain that
has the glyphs (app/images/fonts.py), right-to-left scripts shaped and laid out by
Pillow's raqm layout where it is built in, and text too long for its line wrapped to
two lines, then ended with an ellipsis, rather than shrunk below a legible size."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from PIL import ImageDraw, ImageFont, features

from app.images.fonts import Font, Fonts

# The smallest text a live image draws, in pixels at 1x: below it, text wraps to two
# lines and then ends with an ellipsis.
MIN_TEXT_PX = 14
ELLIPSIS = "…"
RAQM = features.check("raqm")
LAYOUT = ImageFont.Layout.RAQM if RAQM else ImageFont.Layout.BASIC
RTL = frozenset({"R", "AL"})
STRONG = frozenset({"L", "R", "AL"})


@dataclass(frozen=True, slots=True)
class Run:
    """A stretch of text drawn with one font; `rtl` when its first strong character is
    right-to-left."""

    text: str
    font: Font
    width: float
    rtl: bool


@dataclass(frozen=True, slots=True)
class Line:
    """One line of text as runs in logical order, its width and its ascent (the
    largest of its fonts')."""

    runs: tuple[Run, ...]
    width: float
    ascent: int
    descent: int
    rtl: bool

    @property
    def text(self) -> str:
        return "".join(run.text for run in self.runs)


def direction(text: str) -> str | None:
    """'rtl' or 'ltr' by the first strong character (the Unicode paragraph rule), None
    for text without one."""
    for char in text:
        kind = unicodedata.bidirectional(char)
        if kind in STRONG:
            return "rtl" if kind in RTL else "ltr"
    return None


def line(fonts: Fonts, name: str, size: int, text: str) -> Line:
    """`text` cut into runs of font `name` or its fallbacks, measured."""
    chain = fonts.chain(name)
    pieces: list[tuple[int, str]] = []
    for char in text:
        current = pieces[-1][0] if pieces else -1
        if current >= 0 and (char.isspace() or fonts.has(chain[current], char)):
            pieces[-1] = (current, pieces[-1][1] + char)
            continue
        index = fonts.pick(name, char)
        if index < 0:
            index = max(current, 0)  # undrawable: caught before drawing (`Fonts.missing`)
        if pieces and pieces[-1][0] == index:
            pieces[-1] = (index, pieces[-1][1] + char)
        else:
            pieces.append((index, char))
    # A fallback font is loaded only at the sizes it draws at (one is a 5 MB file).
    runs = tuple(_run(fonts.get(chain[i], size), piece) for i, piece in pieces)
    used = {id(run.font): run.font for run in runs} or {0: fonts.get(name, size)}
    ascent = max(font.getmetrics()[0] for font in used.values())
    descent = max(font.getmetrics()[1] for font in used.values())
    return Line(runs, sum(r.width for r in runs), ascent, descent, direction(text) == "rtl")


def _run(font: Font, text: str) -> Run:
    rtl = direction(text) == "rtl"
    if not RAQM and rtl:
        text = text[::-1]  # basic layout: right-to-left order at least, unshaped
    return Run(text, font, font.getlength(text) if text else 0.0, rtl)


def draw_line(
    draw: ImageDraw.ImageDraw,
    xy: tuple[float, float],
    shown: Line,
    fill: object,
    align: str = "left",
) -> None:
    """`shown` with its top at y, its left edge (`align` 'left'), centre ('center') or
    right edge ('right') at x. Runs go left to right, or right to left in a line whose
    first strong character is right-to-left."""
    x, y = xy
    if align == "center":
        x -= shown.width / 2
    elif align == "right":
        x -= shown.width
    baseline = y + shown.ascent
    runs = reversed(shown.runs) if shown.rtl else iter(shown.runs)
    for run in runs:
        if run.text.strip():
            draw.text((x, baseline), run.text, font=run.font, fill=fill, anchor="ls")  # type: ignore[arg-type]
        x += run.width


def fit(
    fonts: Fonts,
    name: str,
    text: str,
    size: int,
    max_width: float,
    smallest: int,
    max_lines: int = 2,
) -> tuple[int, list[Line]]:
    """The font size and lines for `text` in `max_width`: one line at `size`, or down to
    a quarter smaller; else up to `max_lines` lines at the largest size that holds them;
    else `max_lines` lines at `smallest`, the last ended with an ellipsis. Never smaller
    than `smallest` (unless `size` is)."""
    smallest = min(smallest, size)
    whole = line(fonts, name, size, text)
    if whole.width <= max_width or not text.strip():
        return size, [whole]
    one = max(smallest, (size * 3 + 3) // 4, int(size * max_width / whole.width))
    shrunk = line(fonts, name, one, text)
    if shrunk.width <= max_width:
        return one, [shrunk]
    step = size
    while True:
        step = max(smallest, min(step - 1, int(step * 0.92)))
        lines, cut = wrap(fonts, name, step, text, max_width, max_lines)
        if not cut or step == smallest:
            return step, lines


def wrap(
    fonts: Fonts, name: str, size: int, text: str, max_width: float, max_lines: int
) -> tuple[list[Line], bool]:
    """`text` in at most `max_lines` lines no wider than `max_width` at `size`, broken
    between words (between characters in text without spaces, such as Chinese), and
    whether it was cut: then its last line ends with an ellipsis."""
    spaced = " " in text.strip()
    units = text.split() if spaced else list(text.strip())
    joiner = " " if spaced else ""
    lines: list[str] = []
    current = ""
    used = 0
    for unit in units:
        candidate = f"{current}{joiner}{unit}" if current else unit
        if not current or line(fonts, name, size, candidate).width <= max_width:
            current = candidate
            used += 1
            continue
        lines.append(current)
        current = ""
        if len(lines) == max_lines:
            break
        current = unit
        used += 1
    if current:
        lines.append(current)
    cut = used < len(units)
    measured = []
    for i, each in enumerate(lines):
        shown = line(fonts, name, size, each)
        if shown.width > max_width or (cut and i == len(lines) - 1):
            cut = True
            while each and line(fonts, name, size, each + ELLIPSIS).width > max_width:
                each = each[:-1].rstrip()
            shown = line(fonts, name, size, each + ELLIPSIS)
        measured.append(shown)
    return measured, cut
