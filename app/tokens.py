"""Signed tokens for open-time URLs: one salt per purpose, key rotation, optional expiry.

A token is signed, not encrypted: anyone holding it can read its payload, so it carries
an opaque user id and the resource it grants, never an email address or other PII.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import orjson
from itsdangerous import BadData, URLSafeSerializer

from app.caching import Bounded
from app.errors import Forbidden
from app.settings import Secret

PURPOSES = ("feed", "image", "click", "pixel", "reader", "unsubscribe")
# Large enough for a click token carrying the longest target a click may have (2,048
# characters, app/targets.py) with its campaign and slot, base64-encoded; small enough
# that a forged token is refused before any work.
MAX_TOKEN_LENGTH = 4096
MAX_TTL_S = 10 * 365 * 86_400  # the longest a grant may be signed for


class BadToken(Forbidden):
    code = "bad_token"


@dataclass(frozen=True, slots=True)
class Grant:
    """What a verified token allows: one resource of one purpose for one reader.

    A click link shared by every reader of a campaign has no reader (`user_id` is ""):
    the reader comes with it as a "reader" token (see `app.render.links`)."""

    purpose: str
    user_id: str
    resource: str
    campaign: str | None = None
    expires_at: int | None = None
    params: dict[str, Any] | None = None
    variant: str | None = None  # the A/B variant of the render that signed it

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (now or time.time()) >= self.expires_at


class _CompactJSON:
    """itsdangerous serializer hook: orjson, no spaces, bytes out."""

    @staticmethod
    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    @staticmethod
    def loads(data: str | bytes) -> Any:
        return orjson.loads(data)


class Tokens:
    """Signs and verifies tokens. Signs with the first key, verifies with all of them."""

    def __init__(self, keys: Sequence[Secret], *, cache_size: int = 50_000) -> None:
        if not keys:
            raise ValueError("at least one secret key is needed")
        # itsdangerous signs with the *last* key of the list and tries all to verify.
        ordered = [k.reveal() for k in reversed(keys)]
        self._serializers = {
            p: URLSafeSerializer(ordered, salt=f"kairos.{p}", serializer=_CompactJSON)
            for p in PURPOSES
        }
        # Signing is on the render path (a dozen links per email): keep one HMAC state
        # per purpose, keyed exactly as itsdangerous derives it, and copy it per token.
        # The tokens are itsdangerous tokens (uncompressed payload), verified by it.
        self._macs = {
            p: _hmac_states(serializer.make_signer().derive_key())
            for p, serializer in self._serializers.items()
        }
        # A token string that verified once will verify again: skip the HMAC on repeat
        # opens. Keyed by the full string (signature included), so tampering misses.
        self._verified: dict[str, Bounded[str, Grant]] = {
            p: Bounded(cache_size) for p in PURPOSES
        }

    def sign(
        self,
        purpose: str,
        user_id: str,
        resource: str,
        *,
        campaign: str | None = None,
        ttl_s: int | None = None,
        params: dict[str, Any] | None = None,
        variant: str | None = None,
    ) -> str:
        """A URL-safe token granting `resource` of `purpose` to `user_id` (to no reader
        in particular when `user_id` is "": click links only); `variant`: the A/B
        variant the reader was rendered, so their opens and clicks count for it."""
        payload: dict[str, Any] = {"u": user_id, "r": resource} if user_id else {"r": resource}
        if campaign:
            payload["c"] = campaign
        if ttl_s is not None:
            if ttl_s > MAX_TTL_S:
                raise ValueError(f"a token's ttl may be at most {MAX_TTL_S} seconds")
            payload["e"] = int(time.time()) + ttl_s
        if params:
            payload["p"] = params
        if variant:
            payload["v"] = variant
        states = self._macs.get(purpose)
        if states is None:
            raise ValueError(f"unknown token purpose {purpose!r}")
        body = base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=")
        inner, outer = states[0].copy(), states[1].copy()
        inner.update(body)
        outer.update(inner.digest())
        signature = base64.urlsafe_b64encode(outer.digest()).rstrip(b"=")
        return (body + b"." + signature).decode("ascii")

    def verify(self, purpose: str, token: str) -> Grant:
        """The grant inside `token`, or `BadToken` if it was not signed by us for `purpose`.

        Expiry is not checked here: an expired grant still names its resource, so the
        caller can serve that resource's fallback instead of an error.
        """
        cache = self._verified.get(purpose)
        if cache is not None:
            grant = cache.get(token)
            if grant is not None:
                return grant
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise BadToken("missing or oversized token")
        if not _canonical(token):
            # Base64 that decodes to the same bytes in other spellings (padding, unused
            # bits of a last character): one grant, one token, one cache entry.
            raise BadToken("malformed token")
        try:
            payload = self._serializer(purpose).loads(token)
        except BadData:
            raise BadToken("invalid token signature") from None
        except ValueError:
            raise BadToken("malformed token") from None
        grant = _grant(purpose, payload)
        if cache is not None:
            cache.put(token, grant)
        return grant

    def _serializer(self, purpose: str) -> URLSafeSerializer:
        try:
            return self._serializers[purpose]
        except KeyError:
            raise ValueError(f"unknown token purpose {purpose!r}") from None


# Base64url characters by value; a last character of a part must leave its unused low
# bits zero, as an encoder writes it.
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
VALUES = MappingProxyType({c: i for i, c in enumerate(ALPHABET)})
UNUSED_BITS = (0, None, 4, 2)  # by a part's length modulo 4 (1: never valid)


def _canonical(token: str) -> bool:
    """Whether `token` is spelled as Kairos signs: base64url parts without padding, each
    ending in a character whose unused bits are zero."""
    for part in token.split("."):
        if not part:
            return False
        unused = UNUSED_BITS[len(part) % 4]
        last = VALUES.get(part[-1])
        if unused is None or last is None or last & ((1 << unused) - 1):
            return False
    return True


def _hmac_states(key: bytes) -> tuple[Any, Any]:
    """HMAC-SHA1 (RFC 2104) of `key` as its inner and outer hash states, fed with the
    padded key once: a signature copies both, cheaper than copying an `hmac` object."""
    # SHA-1 because itsdangerous signs with HMAC-SHA1; HMAC does not rest on SHA-1's
    # collision resistance.
    if len(key) > 64:
        key = hashlib.sha1(key).digest()  # noqa: S324
    key = key.ljust(64, b"\0")
    inner = hashlib.sha1(bytes(b ^ 0x36 for b in key))  # noqa: S324
    outer = hashlib.sha1(bytes(b ^ 0x5C for b in key))  # noqa: S324
    return inner, outer


def _grant(purpose: str, payload: Any) -> Grant:
    if not isinstance(payload, dict):
        raise BadToken("malformed token")
    user_id, resource = payload.get("u", "" if purpose == "click" else None), payload.get("r")
    campaign, expires_at, params = payload.get("c"), payload.get("e"), payload.get("p")
    variant = payload.get("v")
    if not isinstance(user_id, str) or not isinstance(resource, str):
        raise BadToken("malformed token")
    if campaign is not None and not isinstance(campaign, str):
        raise BadToken("malformed token")
    if expires_at is not None and not isinstance(expires_at, int):
        raise BadToken("malformed token")
    if params is not None and not isinstance(params, dict):
        raise BadToken("malformed token")
    if variant is not None and not isinstance(variant, str):
        raise BadToken("malformed token")
    return Grant(purpose, user_id, resource, campaign, expires_at, params, variant)
