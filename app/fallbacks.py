"""Fallback content, loaded once at start-up, chosen and counted in one place."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from io import BytesIO
from pathlib import Path

import orjson
from PIL import Image

from app.metrics import Metrics
from app.settings import ConfigError

log = logging.getLogger("kairos.fallbacks")

# Why a fallback was served, as named in `X-Kairos-Fallback` and the metrics.
REASONS = (
    "missing-profile",
    "store-unavailable",
    "budget",
    "expired-token",
    "invalid-data",
    "no-consent",
    # live images only:
    "invalid-params",  # the token's parameters are invalid or above the limits
    "missing-data",  # the profile or catalog lacks what the image shows
    "unsupported-text",  # the image's font has no glyphs for the reader's text
    "upstream",  # a source image could not be fetched or decoded
    "render-error",  # drawing failed unexpectedly (logged)
)


class Fallbacks:
    """The files in `fallbacks/`: static JSON for each feed, a static image for each
    live image (`images/<name>.<gif|png>`)."""

    def __init__(
        self,
        root: Path,
        metrics: Metrics,
        feeds: list[str],
        images: Mapping[str, str] | None = None,
    ) -> None:
        self._metrics = metrics
        self._feeds: dict[str, bytes] = {}
        self._images = {
            name: _load_image(root / "images" / f"{name}.{fmt}", fmt)
            for name, fmt in (images or {}).items()
        }
        for name in feeds:
            path = root / "feeds" / f"{name}.json"
            try:
                doc = orjson.loads(path.read_bytes())
            except FileNotFoundError:
                raise ConfigError(f"feed {name!r} has no fallback file {path}") from None
            except orjson.JSONDecodeError as exc:
                raise ConfigError(f"{path} is not valid JSON: {exc}") from None
            if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
                raise ConfigError(f'{path} must be an object with an "items" list')
            self._feeds[name] = orjson.dumps(doc)

    def feed(self, name: str, reason: str) -> bytes:
        """The fallback body of feed `name`, counted under `reason`."""
        self._metrics.fallbacks.labels("feed", name, reason).inc()
        log.debug("fallback for feed %s: %s", name, reason)
        return self._feeds[name]

    def image(self, name: str, reason: str) -> bytes:
        """The fallback image of live image `name`, counted under `reason`."""
        self._metrics.fallbacks.labels("image", name, reason).inc()
        log.debug("fallback for image %s: %s", name, reason)
        return self._images[name]


def _load_image(path: Path, fmt: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"live image fallback {path} is missing") from None
    try:
        with Image.open(BytesIO(data)) as im:
            im.load()
            found = (im.format or "").lower()
    except (OSError, ValueError, SyntaxError):
        raise ConfigError(f"{path} is not an image Pillow can read") from None
    if found != fmt:
        raise ConfigError(f"{path} must be a {fmt.upper()} file, not {found.upper() or '?'}")
    return data
