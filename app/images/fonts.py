"""Fonts by name: the built-in 'sans' and 'sans-bold' (Manrope, SIL OFL, shipped in
app/images/typefaces/, so Latin, Greek and Cyrillic render the same on a machine without
system fonts), or a designer's TTF/OTF file kept with a block ('blocks/countdown/Inter.ttf').

Behind every font, the fallback fonts from Debian packages (installed by
`scripts/install`, found by their known paths): Arabic, Hebrew and CJK text is drawn
with the first of them that has its glyphs (`chain`, `pick`). A missing package is logged once;
text only it could draw counts as undrawable (`missing`).

FreeType faces are not safe to share between threads: each thread keeps its own."""

from __future__ import annotations

import logging
import threading
from io import BytesIO
from pathlib import Path
from types import MappingProxyType

from cachetools import LRUCache
from PIL import ImageFont

from app.images.assets import Assets
from app.images.base import ParamError

log = logging.getLogger("kairos.images")

TYPEFACES = Path(__file__).resolve().parent / "typefaces"
BUILTIN = MappingProxyType({"sans": "Manrope-Regular.ttf", "sans-bold": "Manrope-Bold.ttf"})
BOLD = frozenset({"sans-bold"})
SYSTEM_FONTS = Path("/usr/share/fonts/truetype")
# (Debian package, what it draws, regular file, bold file), in the order they are tried.
FALLBACKS = (
    ("fonts-kacst-one", "Arabic", "kacst-one/KacstOne.ttf", "kacst-one/KacstOne-Bold.ttf"),
    (
        "fonts-dejavu-core",
        "Hebrew, Arabic, symbols",
        "dejavu/DejaVuSans.ttf",
        "dejavu/DejaVuSans-Bold.ttf",
    ),
    ("fonts-wqy-microhei", "CJK", "wqy/wqy-microhei.ttc", "wqy/wqy-microhei.ttc"),
)
MAX_FONT_BYTES = 20 * 1024 * 1024
FONTS_PER_THREAD = 64
NOT_A_CHARACTER = "\U0010fffd"  # private use: drawn as the font's "missing glyph" box

Font = ImageFont.FreeTypeFont


def fallback_paths(root: Path = SYSTEM_FONTS) -> tuple[tuple[Path, Path], ...]:
    """The (regular, bold) fallback fonts present under `root`, in order; each absent
    package logged with what it would draw."""
    found = []
    for package, scripts, regular, bold in FALLBACKS:
        if (root / regular).is_file() and (root / bold).is_file():
            found.append((root / regular, root / bold))
        else:
            log.warning(
                "live images: %s is not installed (%s missing): text in %s that the other "
                "fonts cannot draw gets the fallback image; `bash scripts/install` installs it",
                package, root / regular, scripts,
            )  # fmt: skip
    return tuple(found)


class Fonts:
    def __init__(
        self, assets: Assets, fallbacks: tuple[tuple[Path, Path], ...] | None = None
    ) -> None:
        self._assets = assets
        self._files = {name: (TYPEFACES / file).read_bytes() for name, file in BUILTIN.items()}
        self._fallbacks = fallback_paths() if fallbacks is None else fallbacks
        self._local = threading.local()
        self._drawable: dict[tuple[str, str], bool] = {}
        self._notdef: dict[str, tuple[tuple[int, int], bytes]] = {}  # each font's box
        self._missing: LRUCache[tuple[str, str], str] = LRUCache(maxsize=4096)

    def check(self, name: str) -> None:
        """Loads font `name` once, or `ParamError` if it cannot be used."""
        if name in self._files:
            return
        path = self._assets.path(name)
        data = path.read_bytes()
        if len(data) > MAX_FONT_BYTES:
            raise ParamError(f"font {name} is larger than {MAX_FONT_BYTES} bytes")
        try:
            ImageFont.truetype(BytesIO(data), 12)
        except OSError:
            raise ParamError(f"{name} is not a font Pillow can read") from None
        self._files[name] = data

    def get(self, name: str, size: int) -> Font:
        """Font `name` at `size` pixels for this thread (`check` it first)."""
        cache: LRUCache[tuple[str, int], Font] | None = getattr(self._local, "fonts", None)
        if cache is None:
            cache = self._local.fonts = LRUCache(maxsize=FONTS_PER_THREAD)
        font = cache.get((name, size))
        if font is None:
            if name in self._files:
                font = ImageFont.truetype(BytesIO(self._files[name]), size)
            else:  # a fallback, by path: FreeType reads what it needs of a large file
                font = ImageFont.truetype(name, size)
            cache[(name, size)] = font
        return font

    def chain(self, name: str) -> tuple[str, ...]:
        """Font `name` and the fallbacks tried after it (bold ones after a bold font)."""
        side = 1 if name in BOLD else 0
        return (name, *(str(pair[side]) for pair in self._fallbacks))

    def has(self, name: str, char: str) -> bool:
        """Whether font `name` (no fallback) has a glyph for `char`."""
        known = self._drawable.get((name, char))
        if known is None:
            font = self.get(name, 24)
            box = self._notdef.get(name)
            if box is None:
                box = self._notdef[name] = _signature(font, NOT_A_CHARACTER)
            known = _signature(font, char) != box
            if len(self._drawable) < 100_000:
                self._drawable[(name, char)] = known
        return known

    def pick(self, name: str, char: str) -> int:
        """The index in `chain(name)` of the first font with a glyph for `char`, or -1."""
        for i, each in enumerate(self.chain(name)):
            if self.has(each, char):
                return i
        return -1

    def missing(self, name: str, text: str) -> str:
        """The characters of `text` that neither font `name` nor a fallback has a glyph
        for (drawn, they would show as boxes)."""
        known_text = self._missing.get((name, text))
        if known_text is not None:
            return known_text
        out = [
            char for char in dict.fromkeys(text) if not char.isspace() and self.pick(name, char) < 0
        ]
        missing = self._missing[(name, text)] = "".join(out)
        return missing


def _signature(font: Font, text: str) -> tuple[tuple[int, int], bytes]:
    mask = font.getmask(text)
    return mask.size, bytes(mask)
