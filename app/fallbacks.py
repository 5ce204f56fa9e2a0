"""Fallback content, loaded once at start-up, chosen and counted in one place."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson

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
)


class Fallbacks:
    """The files in `fallbacks/`: static JSON for each feed."""

    def __init__(self, root: Path, metrics: Metrics, feeds: list[str]) -> None:
        self._metrics = metrics
        self._feeds: dict[str, bytes] = {}
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
