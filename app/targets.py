"""Where a click may send a reader: absolute http(s) URLs only."""

from __future__ import annotations

from urllib.parse import urlsplit


class UnsafeTarget(ValueError):
    """A click target that is not an absolute http(s) URL."""


def check_target(url: str) -> str:
    """`url` if a click may redirect there: absolute http(s) only, so never `javascript:`,
    `data:` or a scheme-relative `//host` that would borrow our scheme; at most 2,048
    characters, no whitespace, user name or backslash."""
    if not isinstance(url, str) or len(url) > 2048 or any(c in url for c in "\r\n\t "):
        raise UnsafeTarget("a click target must be one absolute http(s) URL")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise UnsafeTarget(f"refusing click target {url[:80]!r}: only absolute http(s) URLs")
    if "@" in parts.netloc or "\\" in url:
        # `https://shop.example.com@evil.example/` goes to evil.example: a reader reading
        # the link sees the shop. (A backslash is a slash to browsers, not to urlsplit.)
        raise UnsafeTarget(f"refusing click target {url[:80]!r}: no user name or backslash")
    return url
