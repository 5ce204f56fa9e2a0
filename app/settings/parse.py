"""Parsers: a variable's text (stripped, never blank unless the setting allows it) to its
value, or a ConfigError naming the variable and never echoing a secret."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from app.settings.values import ConfigError, Secret

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


class Parser(Protocol):
    def __call__(self, var: str, raw: str) -> Any: ...


@dataclass(frozen=True)
class Integer:
    """A whole number in `lo..hi`, in the variable's own unit."""

    lo: int
    hi: int

    def __call__(self, var: str, raw: str) -> int:
        if not re.fullmatch(r"-?\d+", raw):
            raise ConfigError(f"{var} must be an integer, not {raw!r}")
        value = int(raw)
        if not self.lo <= value <= self.hi:
            raise ConfigError(f"{var} must be between {self.lo} and {self.hi}, not {value}")
        return value


@dataclass(frozen=True)
class Choice:
    """One of `options`, matched without regard to case."""

    options: tuple[str, ...]

    def __call__(self, var: str, raw: str) -> str:
        for option in self.options:
            if raw.lower() == option.lower():
                return option
        listed = f"{', '.join(self.options[:-1])} or {self.options[-1]}"
        raise ConfigError(f"{var} must be {listed}, not {raw!r}")


def boolean(var: str, raw: str) -> bool:
    word = raw.lower()
    if word in TRUE:
        return True
    if word in FALSE:
        return False
    raise ConfigError(f"{var} must be true or false, not {word!r}")


def text(var: str, raw: str) -> str:
    return raw


def words(var: str, raw: str) -> tuple[str, ...]:
    """A comma list; blank entries are dropped."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def hosts(var: str, raw: str) -> tuple[str, ...]:
    return tuple(word.lower() for word in words(var, raw))


def secrets(var: str, raw: str) -> tuple[Secret, ...]:
    return tuple(Secret(word) for word in words(var, raw))


def secret(var: str, raw: str) -> Secret:
    return Secret(raw)


def senders(var: str, raw: str) -> tuple[str, ...]:
    patterns = tuple(word.lower() for word in words(var, raw))
    for pattern in patterns:
        if pattern != "*" and "@" not in pattern:
            raise ConfigError(
                f"{var} entry {pattern!r} is not an address pattern "
                "like 'news@example.com' or '*@example.com'"
            )
    return patterns


def redis_url(var: str, raw: str) -> Secret:
    # The message does not repeat the URL: it may hold a password.
    if urlsplit(raw).scheme not in ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster"):
        raise ConfigError(
            f"{var} must start with redis://, rediss://, unix:// or, for a Redis Cluster, "
            "redis+cluster:// or rediss+cluster://"
        )
    return Secret(raw)


def http_url(var: str, raw: str) -> str:
    url = raw.rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{var} must be an absolute http(s) URL")
    return url


def domain(var: str, raw: str) -> str:
    """A DNS name (letters, digits, hyphens, dots), lower-cased."""
    name = raw.lower().rstrip(".")
    label = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
    if len(name) > 253 or not re.fullmatch(rf"{label}(?:\.{label})*", name):
        raise ConfigError(f"{var} must be a domain name like news.example.com")
    return name


def path(var: str, raw: str) -> Path:
    """A file or folder that need not exist yet."""
    return Path(raw)


def folder(var: str, raw: str) -> Path:
    """A folder that must exist."""
    found = Path(raw)
    if not found.is_dir():
        raise ConfigError(f"{var} {raw!r} is not a directory")
    return found
