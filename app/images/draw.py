"""Drawing helpers shared by the still image kinds: fitting images, PNG out (text is
app/images/text.py's)."""

from __future__ import annotations

from io import BytesIO

from PIL import Image

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
