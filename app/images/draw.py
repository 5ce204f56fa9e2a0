"""Drawing helpers shared by the still image kinds: fitting images and text, PNG out."""

from __future__ import annotations

from io import BytesIO

from PIL import Image, ImageFont

from app.images.fonts import Fonts

# Shrink by whole factors first (box filter), then Lanczos over the last 1.5x: close to
# a full Lanczos resize, at a fraction of its time.
REDUCING_GAP = 1.5


def cover(source: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`source` scaled to fill `size`, centred, the overflow cropped; RGB."""
    width, height = size
    scale = max(width / source.width, height / source.height)
    scaled = (max(width, round(source.width * scale)), max(height, round(source.height * scale)))
    image = source if scaled == source.size else _resize(source, scaled)
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return _rgb(image.crop((left, top, left + width, top + height)))


def contain(
    source: Image.Image, size: tuple[int, int], background: tuple[int, int, int]
) -> Image.Image:
    """`source` scaled to fit inside `size`, centred on `background`; RGB."""
    width, height = size
    scale = min(width / source.width, height / source.height)
    scaled = (max(1, round(source.width * scale)), max(1, round(source.height * scale)))
    image = source if scaled == source.size else _resize(source, scaled)
    canvas = Image.new("RGB", size, background)
    offset = ((width - image.width) // 2, (height - image.height) // 2)
    if image.mode == "RGBA":
        canvas.paste(image, offset, image)
    else:
        canvas.paste(_rgb(image), offset)
    return canvas


def fitted(
    fonts: Fonts, name: str, text: str, size: int, max_width: float, smallest: int = 8
) -> ImageFont.FreeTypeFont:
    """Font `name` at `size`, or smaller until `text` fits in `max_width`."""
    font = fonts.get(name, size)
    length = font.getlength(text)
    if length > max_width and length > 0:
        font = fonts.get(name, max(smallest, int(size * max_width / length)))
    return font


def wrap(font: ImageFont.FreeTypeFont, text: str, max_width: float, max_lines: int) -> list[str]:
    """`text` in at most `max_lines` lines no wider than `max_width`; an ellipsis ends
    a text that does not fit."""
    words, lines, line = text.split(), [], ""
    for word in words:
        candidate = f"{line} {word}" if line else word
        if font.getlength(candidate) <= max_width:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = word
        if len(lines) == max_lines:
            break
    if line and len(lines) < max_lines:
        lines.append(line)
    shown = " ".join(lines)
    if shown != " ".join(words) or (lines and font.getlength(lines[-1]) > max_width):
        last = lines[-1] if lines else ""
        while last and font.getlength(last + "…") > max_width:
            last = last[:-1].rstrip()
        lines[-1:] = [last + "…"]
    return lines


def png(image: Image.Image, compress_level: int = 6) -> bytes:
    """PNG bytes; photos barely shrink past `compress_level` 4 but cost twice the time."""
    out = BytesIO()
    image.save(out, "PNG", compress_level=compress_level)
    return out.getvalue()


def _resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)


def _rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode == "RGBA":
        canvas = Image.new("RGB", image.size, (255, 255, 255))
        canvas.paste(image, (0, 0), image)
        return canvas
    return image.convert("RGB")
