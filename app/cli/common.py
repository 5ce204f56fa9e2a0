"""What every `kairos` command shares."""

from __future__ import annotations

from app.settings import Settings


def settings() -> Settings:
    """The settings, signing with the development key when no KAIROS_SECRET_KEYS is set."""
    return Settings.from_env().with_development_key()
