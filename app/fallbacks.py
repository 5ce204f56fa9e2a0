"""Fallback content, loaded once at start-up, chosen and counted in one place."""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from io import BytesIO
from pathlib import Path

import orjson
from PIL import Image

from app.errors import CorruptData, StoreUnavailable
from app.metrics import Metrics
from app.settings import ConfigError

log = logging.getLogger("kairos.fallbacks")

class Reason(enum.StrEnum):
    """Why a reader got fallback content, as named in `X-Kairos-Fallback`, a render's
    `fallbacks` and the `kairos_fallbacks_total` metric."""

    MISSING_PROFILE = "missing-profile"
    STORE_UNAVAILABLE = "store-unavailable"
    BUDGET = "budget"
    EXPIRED_TOKEN = "expired-token"  # noqa: S105 - a reason, not a secret
    INVALID_DATA = "invalid-data"  # the stored data does not have the expected shape
    NO_CONSENT = "no-consent"
    MISSING_DATA = "missing-data"  # the profile or catalog lacks what is shown
    # renders only, for one field or cart line (the block still shows):
    TOO_LONG = "too-long"  # a reader field longer than the schema allows, cut to fit
    MISSING_PRODUCT = "missing-product"  # a cart line whose product the catalog lacks
    # live images only:
    INVALID_PARAMS = "invalid-params"  # the token's parameters are invalid or above limits
    UNSUPPORTED_TEXT = "unsupported-text"  # the image's font has no glyphs for the text
    UPSTREAM = "upstream"  # a source image could not be fetched or decoded
    RENDER_ERROR = "render-error"  # drawing failed unexpectedly (logged)
    ERROR = "error"  # anything else that went wrong: a bug, logged with its traceback


class Fallback(Exception):  # noqa: N818 - it is a request for a fallback, not an error
    """Raised by any data step to ask for the fallback; `reason` names why."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason


def reason_for(exc: BaseException) -> Reason:
    """Why `exc`, raised while reading a reader's data, means the fallback: the one
    mapping every surface (feeds, live images, blocks) uses. Unexpected exceptions are
    `Reason.ERROR`: the caller logs them with their traceback."""
    if isinstance(exc, Fallback):
        return exc.reason
    if isinstance(exc, TimeoutError):
        return Reason.BUDGET
    if isinstance(exc, StoreUnavailable):
        return Reason.STORE_UNAVAILABLE
    if isinstance(exc, CorruptData):
        return Reason.INVALID_DATA
    return Reason.ERROR


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

    def feed(self, name: str, reason: Reason) -> bytes:
        """The fallback body of feed `name`, counted under `reason`."""
        self._metrics.fallbacks.labels("feed", name, reason).inc()
        log.debug("fallback for feed %s: %s", name, reason)
        return self._feeds[name]

    def image(self, name: str, reason: Reason) -> bytes:
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
