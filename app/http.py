"""Small, fast readers of the raw ASGI request, for the open-time hot path."""

from __future__ import annotations

from urllib.parse import unquote_plus

from starlette.types import Scope


def query_dict(raw: bytes) -> dict[str, str]:
    """The query string as a dict (first value of each name wins), decoded like a form."""
    if not raw:
        return {}
    params: dict[str, str] = {}
    for part in raw.decode("latin-1").split("&"):
        name, _, value = part.partition("=")
        if "%" in part or "+" in part:
            name, value = unquote_plus(name), unquote_plus(value)
        if name and name not in params:
            params[name] = value
    return params


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header `name` (lower-case bytes), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None
