"""The OpenAPI description of the public HTTP contract (v1), served at /openapi.json."""

from __future__ import annotations

from typing import Any

from app import __version__
from app.openapi.paths import paths
from app.openapi.schemas import components, error, rate_limited
from app.settings import SETTINGS, describe


def spec(public_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "Kairos", "version": __version__},
        "servers": [{"url": public_url}],
        # The server's settings as documented (names, defaults, bounds), never their values.
        "x-kairos-settings": [describe(setting) for setting in SETTINGS],
        "paths": _with_common_errors(paths()),
        "components": components(),
    }


METHODS = frozenset({"get", "put", "post", "patch", "delete", "head", "options"})


def _with_common_errors(found: dict[str, Any]) -> dict[str, Any]:
    """Every operation's answers, with those every such route gives in the same way (the
    one error path of app/errors.py) added where its own entry does not say them: a
    JSON body that is not JSON (400), too large (413) or not sent as JSON (415); a
    reader id in the path that is not one (400); a key over its rate limit (429, on
    every operation that takes a key: app/ratelimit.py)."""
    for path, item in found.items():
        for method, operation in item.items():
            if method not in METHODS:
                continue  # the path's own `parameters`
            responses = operation.setdefault("responses", {})
            body = operation.get("requestBody", {}).get("content", {})
            if "application/json" in body:
                responses.setdefault("400", error("the body is not JSON (`invalid_json`)"))
                responses.setdefault("413", error("the body is over its cap"))
                responses.setdefault("415", error("the body is not sent as application/json"))
            if "{user_id}" in path:
                responses.setdefault("400", error("not a reader id (`invalid_field`)"))
            if operation.get("security"):
                limited = rate_limited()
                # An operation's own 429 (the studio's tests a minute) gets the fields too.
                responses.setdefault("429", limited)["headers"] = limited["headers"]
    return found
