"""The designer's studio page's paths of /openapi.json: the page, its files, its login."""

from __future__ import annotations

from typing import Any

from app.openapi.schemas import error, json


def designer_paths() -> dict[str, Any]:
    """`/designer` and its routes (none of them answer when KAIROS_DESIGNER is off)."""
    return {
        "/designer": {
            "get": {
                "summary": "The designer's studio page, or its login form",
                "description": (
                    "Outside production, a browser on loopback gets the page and a "
                    "session cookie at once; any other gets the login form. The page "
                    "calls the /v1 routes with its session cookie `kairos_studio` "
                    "and, for writes, the `X-Kairos-CSRF` header it embeds. 404 when "
                    "KAIROS_DESIGNER is off."
                ),
                "responses": {
                    "200": {"description": "the page or the login form", "content": _html()},
                    "404": error("the studio is off"),
                },
            }
        },
        "/designer/static/{file}": {
            "get": {
                "summary": "The page's scripts and styles",
                "parameters": [
                    {"name": "file", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {"description": "the file, with its ETag"},
                    "304": {"description": "unchanged since the ETag given"},
                    "404": error("no such file"),
                },
            }
        },
        "/designer/login": {
            "post": {
                "summary": "Sign in to the studio with an API key",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["key"],
                                "properties": {"key": {"type": "string"}},
                            }
                        }
                    },
                },
                "responses": {
                    "200": json("signed in: the session cookie is set (8 hours)"),
                    "401": error("not an API key of this server"),
                    "422": error("no key in the body"),
                },
            }
        },
        "/designer/logout": {
            "post": {
                "summary": "End the studio session (with its X-Kairos-CSRF header)",
                "responses": {
                    "200": json("signed out: the cookie is cleared"),
                    "403": error("a session without its CSRF token (csrf)"),
                },
            }
        },
    }


def _html() -> dict[str, Any]:
    return {"text/html": {"schema": {"type": "string"}}}
