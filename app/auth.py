"""Bearer API keys for server-to-server calls, compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from starlette.requests import Request

from app.errors import Unauthorized
from app.settings import Secret


class ApiKeys:
    def __init__(self, keys: Sequence[Secret]) -> None:
        self._keys = [k.reveal().encode() for k in keys]

    def check(self, request: Request) -> None:
        """Return if the request carries a valid `Authorization: Bearer` key, else 401."""
        if not self._keys:
            raise Unauthorized(
                "no API keys are configured on this server: set KAIROS_API_KEYS",
                code="auth_not_configured",
            )
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise Unauthorized("missing 'Authorization: Bearer <api key>' header")
        candidate = presented.strip().encode()
        # Compare against every key, without stopping early, so timing tells nothing.
        valid = False
        for key in self._keys:
            valid |= hmac.compare_digest(candidate, key)
        if not valid:
            raise Unauthorized("invalid API key", code="invalid_api_key")
