"""The OpenAPI description of the public HTTP contract (v1), served at /openapi.json."""

from __future__ import annotations

from typing import Any

from app import __version__
from app.openapi.paths import paths
from app.openapi.schemas import components
from app.settings import SETTINGS, describe


def spec(public_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "Kairos", "version": __version__},
        "servers": [{"url": public_url}],
        # The server's settings as documented (names, defaults, bounds), never their values.
        "x-kairos-settings": [describe(setting) for setting in SETTINGS],
        "paths": paths(),
        "components": components(),
    }
