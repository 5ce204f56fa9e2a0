"""API keys and write keys, compared in constant time.

An API key (`KAIROS_API_KEYS`) opens every server-to-server route. A write key
(`KAIROS_WRITE_KEYS`) only sends events: it ships inside a site's JavaScript and is
public, so any other route answers it 403.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Sequence

from starlette.requests import Request

from app.errors import Forbidden, Unauthorized
from app.settings import Secret


class ApiKeys:
    def __init__(self, keys: Sequence[Secret], write_keys: Sequence[Secret] = ()) -> None:
        self._keys = [k.reveal().encode() for k in keys]
        self._write_keys = [k.reveal().encode() for k in write_keys]

    def check(self, request: Request) -> None:
        """Return if the request carries a valid `Authorization: Bearer` API key; 401
        otherwise, or 403 for a write key."""
        if not self._keys:
            raise Unauthorized(
                "no API keys are configured on this server: set KAIROS_API_KEYS",
                code="auth_not_configured",
            )
        candidate = bearer(request)
        if candidate is None:
            raise Unauthorized("missing 'Authorization: Bearer <api key>' header")
        if _among(candidate, self._keys):
            return
        if _among(candidate, self._write_keys):
            raise Forbidden(
                "a write key can only send events; this call needs an API key",
                code="write_key_not_allowed",
            )
        raise Unauthorized("invalid API key", code="invalid_api_key")

    def valid(self, presented: str) -> bool:
        """Whether `presented` is one of the API keys (the studio's login)."""
        return bool(presented) and _among(presented.encode(), self._keys)

    def check_writer(self, presented: str | None) -> bool:
        """Whether `presented` is an API key (True) or a write key (False); 401 if it
        is neither."""
        if not self._keys and not self._write_keys:
            raise Unauthorized(
                "no keys are configured on this server: set KAIROS_WRITE_KEYS or KAIROS_API_KEYS",
                code="auth_not_configured",
            )
        if presented is None:
            raise Unauthorized(
                "send a write key as 'Authorization: Bearer <key>', as the Basic-auth user "
                "name, or (Segment dialect) as `writeKey` in the body"
            )
        candidate = presented.encode()
        # Both lists are compared in full, so timing tells nothing of which matched.
        writer = _among(candidate, self._write_keys)
        trusted = _among(candidate, self._keys)
        if not (writer or trusted):
            raise Unauthorized("invalid write key", code="invalid_write_key")
        return trusted


def bearer(request: Request) -> bytes | None:
    """The key of an `Authorization: Bearer` header, or None."""
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return None
    return presented.strip().encode()


def presented_key(request: Request) -> str | None:
    """The key a sender presents: a Bearer key, or the user name of Basic auth (how the
    Segment SDKs send their write key)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    value = value.strip()
    if not value:
        return None
    if scheme.lower() == "bearer":
        return value
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[0] or None
    return None


def _among(candidate: bytes, keys: Sequence[bytes]) -> bool:
    # Compare against every key, without stopping early, so timing tells nothing.
    valid = False
    for key in keys:
        valid |= hmac.compare_digest(candidate, key)
    return valid
