"""The fallback files load at start-up, or the server refuses to start naming the file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support import FALLBACKS_DIR

from app.app import create_app
from app.fallbacks import Fallbacks
from app.metrics import Metrics
from app.settings import ConfigError

IMAGES = {"countdown": "gif", "banner": "png", "product": "png"}


def test_every_live_image_has_its_fallback_file():
    fallbacks = Fallbacks(FALLBACKS_DIR, Metrics(), [], IMAGES)
    for name, fmt in IMAGES.items():
        assert (
            fallbacks.image(name, "budget")
            == (FALLBACKS_DIR / "images" / f"{name}.{fmt}").read_bytes()
        )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda images: (images / "banner.png").unlink(), "banner.png is missing"),
        (lambda images: (images / "banner.png").write_bytes(b"nope"), "is not an image"),
        (
            lambda images: shutil.copy(images / "countdown.gif", images / "product.png"),
            "product.png must be a PNG file, not GIF",
        ),
    ],
)
def test_a_missing_or_wrong_fallback_image_stops_the_start(
    settings, tmp_path: Path, change, message: str
):
    folder = tmp_path / "fallbacks"
    shutil.copytree(FALLBACKS_DIR, folder)
    change(folder / "images")
    with pytest.raises(ConfigError, match=message):
        create_app(settings(KAIROS_FALLBACKS_DIR=folder))
