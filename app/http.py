"""Small, fast readers of the raw request: the query and the headers on the open-time hot
path, and a JSON body."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

import orjson
from starlette.types import Scope

from app.errors import BadRequest


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


def parse_json(body: bytes) -> Any:
    """A request body as JSON, or 400 `invalid_json` (empty, or not JSON)."""
    if not body:
        raise BadRequest("the request body is empty", code="invalid_json")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", code="invalid_json") from None


def content_type(headers: Mapping[str, str]) -> str:
    """The request's media type, lower-cased, without parameters ("" when none)."""
    return headers.get("content-type", "").split(";")[0].strip().lower()
