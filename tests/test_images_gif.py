"""The GIF writer: frames as regions over one palette, decoded back with Pillow."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from app.images.gif import Frame, write_gif

PALETTE = [(0, 0, 0), (255, 0, 0), (0, 0, 255)]


def indices(size: tuple[int, int], value: int) -> Image.Image:
    return Image.new("L", size, value)


def test_frames_are_regions_drawn_over_the_previous_frame():
    data = write_gif(
        (40, 20),
        PALETTE,
        [
            Frame(0, 0, indices((40, 20), 0), delay_cs=100),
            Frame(10, 5, indices((5, 5), 1), delay_cs=100),
            Frame(30, 0, indices((10, 20), 2), delay_cs=50),
        ],
    )
    image = Image.open(io.BytesIO(data))
    assert (image.format, image.size, image.n_frames) == ("GIF", (40, 20), 3)
    assert "loop" not in image.info  # played once: a countdown must not jump back
    image.seek(2)
    last = image.convert("RGB")
    assert last.getpixel((0, 0)) == (0, 0, 0)
    assert last.getpixel((12, 7)) == (255, 0, 0)  # frame 1 stays in place
    assert last.getpixel((35, 10)) == (0, 0, 255)
    assert image.info["duration"] == 500


def test_a_single_frame_and_a_palette_of_any_size():
    data = write_gif((3, 3), [(1, 2, 3)] * 5, [Frame(0, 0, indices((3, 3), 4))])
    image = Image.open(io.BytesIO(data))
    assert image.n_frames == 1 and image.convert("RGB").getpixel((1, 1)) == (1, 2, 3)


@pytest.mark.parametrize(
    ("palette", "frames"),
    [
        ([], [Frame(0, 0, indices((2, 2), 0))]),
        ([(0, 0, 0)] * 257, [Frame(0, 0, indices((2, 2), 0))]),
        (PALETTE, []),
        (PALETTE, [Frame(1, 0, indices((2, 2), 0))]),
    ],
    ids=["no colour", "too many colours", "no frame", "frame outside"],
)
def test_invalid_gifs_are_refused(palette, frames):
    with pytest.raises(ValueError):
        write_gif((2, 2), palette, frames)
