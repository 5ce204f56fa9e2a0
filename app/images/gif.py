"""A minimal GIF89a writer for frames that change in small regions.

Pillow's own `save_all` normalises every frame's palette and diffs whole frames, which
costs more than drawing them; here the caller already knows which region changed and
that every frame shares one palette, so each frame is just its region, LZW-encoded by
Pillow's C encoder."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True, slots=True)
class Frame:
    """`image` (mode "L" or "P", pixel values are palette indices) drawn at (x, y),
    shown for `delay_cs` hundredths of a second."""

    x: int
    y: int
    image: Image.Image
    delay_cs: int = 100


def write_gif(
    size: tuple[int, int], palette: Sequence[tuple[int, int, int]], frames: Sequence[Frame]
) -> bytes:
    """A GIF of `frames` over one global palette, played once (no loop extension: a
    countdown that jumps back would be wrong), each frame left in place for the next."""
    if not 1 <= len(palette) <= 256 or not frames:
        raise ValueError("a GIF needs 1 to 256 colours and at least one frame")
    bits = max(1, (len(palette) - 1).bit_length())
    table = b"".join(bytes(c) for c in palette) + bytes(3 * ((1 << bits) - len(palette)))
    width, height = size
    out = [
        b"GIF89a",
        struct.pack("<HHBBB", width, height, 0x80 | ((bits - 1) << 4) | (bits - 1), 0, 0),
        table,
    ]
    for frame in frames:
        w, h = frame.image.size
        if frame.x < 0 or frame.y < 0 or frame.x + w > width or frame.y + h > height:
            raise ValueError("a frame lies outside the image")
        # Graphic control: disposal 1 (leave in place), the delay, no transparency.
        out.append(b"\x21\xf9\x04" + struct.pack("<BHBB", 1 << 2, frame.delay_cs, 0, 0))
        out.append(b"," + struct.pack("<HHHHB", frame.x, frame.y, w, h, 0))
        # Pillow's GIF encoder always codes with 8-bit roots; any table size may follow.
        out.append(b"\x08")
        out.append(frame.image.tobytes("gif", frame.image.mode))
        out.append(b"\x00")
    out.append(b";")
    return b"".join(out)
