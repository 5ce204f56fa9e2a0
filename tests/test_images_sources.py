"""Where images are drawn from: asset names that never leave their folder, the upstream
allow-list, decoding under a pixel limit with only the decoders we allow, fonts."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from app.fallbacks import Fallback
from app.images.assets import Assets
from app.images.base import ParamError
from app.images.fonts import Fonts
from app.images.pool import Workers
from app.images.sources import SourceImages, decode
from app.settings import PROJECT_ROOT


@pytest.fixture
def folders(tmp_path: Path) -> Assets:
    blocks, fallbacks, catalog = (tmp_path / n for n in ("blocks", "fallbacks", "catalog"))
    for folder in (blocks / "hero", fallbacks / "images", catalog / "lamps"):
        folder.mkdir(parents=True)
    (blocks / "hero" / "bg.png").write_bytes(b"png")
    (fallbacks / "images" / "banner.png").write_bytes(b"png")
    (catalog / "lamps" / "a.jpg").write_bytes(b"jpg")
    (tmp_path / "secret.png").write_bytes(b"secret")
    (blocks / "hero" / "link.png").symlink_to(tmp_path / "secret.png")
    (catalog / "link.png").symlink_to(tmp_path / "secret.png")
    return Assets(blocks, fallbacks, catalog)


def test_assets_resolve_inside_their_folder(folders: Assets, tmp_path: Path):
    assert folders.path("blocks/hero/bg.png") == (tmp_path / "blocks/hero/bg.png").resolve()
    assert folders.path("fallbacks/images/banner.png").is_file()
    assert folders.catalog_image("lamps/a.jpg") == (tmp_path / "catalog/lamps/a.jpg").resolve()


@pytest.mark.parametrize(
    "ref",
    [
        "blocks/hero/link.png",  # a symbolic link out of the folder
        "blocks/hero/missing.png",
        "blocks/../secret.png",
        "blocks/hero/../../secret.png",
        "/etc/passwd",
        "templates/x.png",
    ],
)
def test_asset_names_that_leave_their_folder_are_refused(folders: Assets, ref: str):
    with pytest.raises(ParamError):
        folders.path(ref)


@pytest.mark.parametrize(
    "name", ["link.png", "../secret.png", "/etc/passwd", "lamps/missing.jpg", "lamps/a.exe", ""]
)
def test_catalog_images_that_leave_the_folder_are_none(folders: Assets, name: str):
    assert folders.catalog_image(name) is None


def test_no_catalog_folder_means_no_local_product_images(tmp_path: Path):
    assert Assets(tmp_path, tmp_path, None).catalog_image("a.png") is None


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://img.example.com/a.png", True),
        ("http://IMG.example.com/a.png", True),
        ("https://cdn.example.com:8443/a.png", True),
        ("https://cdn.example.com/a.png", False),  # only on its port
        ("https://img.example.com.evil.test/a.png", False),
        ("https://evil.test/img.example.com/a.png", False),
        ("https://img.example.com@evil.test/a.png", False),
        ("https://user@img.example.com/a.png", False),
        ("ftp://img.example.com/a.png", False),
        ("file:///etc/passwd", False),
        ("//img.example.com/a.png", False),
        ("https://img.example.com:99999/a.png", False),
        ("https://[::1/a.png", False),
    ],
)
def test_upstream_allow_list(url: str, allowed: bool):
    sources = SourceImages(Workers(1), ("img.example.com", "cdn.example.com:8443"), 1000)
    assert sources.allowed(url) is allowed


def encoded(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_decode_the_allowed_formats(fmt: str):
    source = decode(encoded(Image.new("RGB", (64, 32), (200, 10, 10)), fmt))
    assert source.image.size == (64, 32) and source.image.mode in ("RGB", "RGBA")
    assert len(source.digest) == 24


def test_decode_keeps_transparency_and_shrinks_large_sources():
    source = decode(encoded(Image.new("RGBA", (2400, 600), (0, 0, 0, 0)), "PNG"))
    assert source.image.mode == "RGBA" and source.image.size == (1200, 300)


@pytest.mark.parametrize(
    "data",
    [
        encoded(Image.new("1", (5000, 5000)), "PNG"),  # 25 megapixels: refused from its header
        encoded(Image.new("RGB", (8, 8)), "BMP"),
        encoded(Image.new("RGB", (8, 8)), "TIFF"),
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        b"",
        encoded(Image.new("RGB", (8, 8)), "PNG")[:40],  # truncated
    ],
    ids=["bomb", "bmp", "tiff", "svg", "empty", "truncated"],
)
def test_decode_refuses_bombs_and_other_formats(data: bytes):
    with pytest.raises(Fallback) as info:
        decode(data)
    assert info.value.reason == "invalid-data"


def test_fonts_built_in_and_missing_glyphs(tmp_path: Path):
    fonts = Fonts(Assets(PROJECT_ROOT / "blocks", PROJECT_ROOT / "fallbacks", None))
    for name in ("sans", "sans-bold"):
        fonts.check(name)
        assert fonts.get(name, 20).getlength("Kairos") > 0
        assert fonts.missing(name, "Zoë Łucja Ωμέγα Жук €£¥ 1,234") == ""
        # Chinese from a fallback font (installed by scripts/install); hieroglyphs: none
        assert fonts.missing(name, "李雷 ok 𓂀") == "𓂀"
    with pytest.raises(ParamError):
        fonts.check("blocks/countdown/missing.ttf")


def test_a_designers_font_file(tmp_path: Path):
    (tmp_path / "b").mkdir()
    font = (PROJECT_ROOT / "app/images/typefaces/Manrope-Bold.ttf").read_bytes()
    (tmp_path / "b" / "Brand.ttf").write_bytes(font)
    (tmp_path / "b" / "Fake.ttf").write_bytes(b"not a font")
    fonts = Fonts(Assets(tmp_path, tmp_path, None))
    fonts.check("blocks/b/Brand.ttf")
    assert fonts.get("blocks/b/Brand.ttf", 30).getlength("A") > 0
    with pytest.raises(ParamError, match="not a font"):
        fonts.check("blocks/b/Fake.ttf")
