"""What every `kairos` command shares."""

from __future__ import annotations

import httpx

from app.settings import Settings

MAX_RETRY_AFTER_S = 30.0  # a server's Retry-After is followed up to this long


def settings() -> Settings:
    """The settings, signing with the development key when no KAIROS_SECRET_KEYS is set."""
    return Settings.from_env().with_development_key()


def retry_after(response: httpx.Response, default_s: float) -> float:
    """How long the server asks to wait before trying again (`Retry-After` in whole
    seconds, at most `MAX_RETRY_AFTER_S`), else `default_s`."""
    after = response.headers.get("Retry-After", "")
    if after.isascii() and after.isdigit():
        return min(float(after), MAX_RETRY_AFTER_S)
    return default_s
