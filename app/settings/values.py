"""What settings hand to the rest of the app besides plain values: the error and the secret."""

from __future__ import annotations

import hashlib

MIN_SECRET_LENGTH = 32
MIN_API_KEY_LENGTH = 16
MIN_DISTINCT_CHARACTERS = 10  # a random key of 32 characters has about 25


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names it and says how to fix it."""


class Secret:
    """A string that never shows itself in `repr` or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def derived(self, context: bytes) -> bytes:
        """A 32-byte key for one use (`context`), derived from this secret: the key of
        keyed BLAKE2b hashes (a MAC in one C call), so no two uses share a key."""
        return hashlib.blake2b(context + self._value.encode(), digest_size=32).digest()

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)
