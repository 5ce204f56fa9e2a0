"""Reading JSONL files of profiles and products, line by line, with clear errors."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from app.images.assets import CATALOG_IMAGE
from app.profiles.schema import SKU, check_user_id, validate_profile


class BadImportLine(ValueError):
    """A line of an import file is invalid; the message names the file and line."""


def read_jsonl(path: Path, errors: list[str] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line. A bad line raises `BadImportLine`,
    or, when an `errors` list is given, is reported there and skipped."""
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                problem = f"{path}:{number}: not valid JSON: {exc}"
            else:
                if isinstance(row, dict):
                    yield number, row
                    continue
                problem = f"{path}:{number}: each line must be a JSON object"
            if errors is None:
                raise BadImportLine(problem)
            errors.append(problem)


def profile_row(path: Path, number: int, row: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(user_id, clean profile) from one import line, or `BadImportLine` naming the line."""
    row = dict(row)
    user_id = row.pop("user_id", None)
    if not isinstance(user_id, str):
        raise BadImportLine(f"{path}:{number}: missing string field 'user_id'")
    try:
        check_user_id(user_id)
        return user_id, validate_profile(row)
    except Exception as exc:  # KairosError carries the field in its message
        raise BadImportLine(f"{path}:{number}: {exc}") from None


def product_row(path: Path, number: int, row: dict[str, Any]) -> dict[str, Any]:
    """A catalog product from one import line, or `BadImportLine` naming the line."""
    sku = row.get("sku")
    if not isinstance(sku, str) or not SKU.fullmatch(sku):
        raise BadImportLine(f"{path}:{number}: 'sku' must be 1-64 letters, digits or _ . : / -")
    price = row.get("price")
    if price is not None and (isinstance(price, bool) or not isinstance(price, int | float)):
        raise BadImportLine(f"{path}:{number}: 'price' must be a number")
    for key in ("url", "image_url"):
        url = row.get(key)
        if url is not None and (
            not isinstance(url, str) or not re.match(r"https?://[^\s/]", url, re.IGNORECASE)
        ):
            raise BadImportLine(f"{path}:{number}: {key!r} must be an absolute http(s) URL")
    image = row.get("image")
    if image is not None and (
        not isinstance(image, str) or not CATALOG_IMAGE.fullmatch(image) or ".." in image
    ):
        raise BadImportLine(
            f"{path}:{number}: 'image' must be a file name in KAIROS_CATALOG_ASSETS_DIR, "
            "like 'lamps/sku-1.jpg' (png, jpg, gif or webp)"
        )
    popularity = row.get("popularity", 0)
    if isinstance(popularity, bool) or not isinstance(popularity, int | float):
        raise BadImportLine(f"{path}:{number}: 'popularity' must be a number")
    return row
