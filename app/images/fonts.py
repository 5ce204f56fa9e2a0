"""Fonts by name: the built-in 'sans' and 'sans-bold' (Manrope, SIL OFL, shipped in
app/images/typefaces/, so images render the same on a machine without system fonts),
or a designer's TTF/OTF file kept with a block ('blocks/countdown/Inter.ttf').

FreeType faces are not safe to share between threads: each thread keeps its own."""

from __future__ import annotations

import threading
from io import BytesIO
from pathlib import Path
from types import MappingProxyType

from cachetools import LRUCache
from PIL import ImageFont

from app.images.assets import Assets
from app.images.base import ParamError

TYPEFACES = Path(__file__).resolve().parent / "typefaces"
BUILTIN = MappingProxyType({"sans": "Manrope-Regular.ttf", "sans-bold": "Manrope-Bold.ttf"})
MAX_FONT_BYTES = 20 * 1024 * 1024
FONTS_PER_THREAD = 64
NOT_A_CHARACTER = "\U0010fffd"  # private use: drawn as the font's "missing glyph" box

Font = ImageFont.FreeTypeFont


class Fonts:
    def __init__(self, assets: Assets) -> None:
        self._assets = assets
        self._files = {name: (TYPEFACES / file).read_bytes() for name, file in BUILTIN.items()}
        self._local = threading.local()
        self._drawable: dict[tuple[str, str], bool] = {}
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
            font = cache[(name, size)] = ImageFont.truetype(BytesIO(self._files[name]), size)
        return font

    def missing(self, name: str, text: str) -> str:
        """The characters of `text` that font `name` has no glyph for (drawn, they
        would show as boxes)."""
        known_text = self._missing.get((name, text))
        if known_text is not None:
            return known_text
        font = None
        out = []
        for char in dict.fromkeys(text):
            if char.isspace():
                continue
            known = self._drawable.get((name, char))
            if known is None:
                font = font or self.get(name, 24)
                known = _signature(font, char) != _signature(font, NOT_A_CHARACTER)
                if len(self._drawable) < 100_000:
                    self._drawable[(name, char)] = known
            if not known:
                out.append(char)
        missing = self._missing[(name, text)] = "".join(out)
        return missing


def _signature(font: Font, text: str) -> tuple[tuple[int, int], bytes]:
    mask = font.getmask(text)
    return mask.size, bytes(mask)
