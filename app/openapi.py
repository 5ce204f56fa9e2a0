"""The OpenAPI description of the public HTTP contract (v1), served at /openapi.json."""

from __future__ import annotations

from typing import Any

from app import __version__

ERROR = {"$ref": "#/components/schemas/Error"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR}}}


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or {"type": "object"}}},
    }


USER_ID = {
    "name": "user_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"},
}
PROFILE = {"$ref": "#/components/schemas/Profile"}
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def spec(public_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    profile_body = {"required": True, "content": {"application/json": {"schema": PROFILE}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Kairos", "version": __version__},
        "servers": [{"url": public_url}],
        "paths": {
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": _json("alive")}}},
            "/readyz": {
                "get": {
                    "summary": "Readiness with store status",
                    "responses": {"200": _json("ready"), "503": _json("store unreachable")},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "metrics",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/v1/feeds/{feed}": {
                "get": {
                    "summary": "A reader's JSON feed for AMP <amp-list>",
                    "parameters": [
                        {
                            "name": "feed",
                            "in": "path",
                            "required": True,
                            "schema": {"enum": ["profile", "cart", "recommendations"]},
                        },
                        {
                            "name": "t",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 20},
                        },
                        {
                            "name": "__amp_source_origin",
                            "in": "query",
                            "schema": {"type": "string"},
                        },
                        {"name": "AMP-Email-Sender", "in": "header", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": _json(
                            "the feed, or its fallback (header X-Kairos-Fallback names why)",
                            {"$ref": "#/components/schemas/Feed"},
                        ),
                        "400": _error("bad query parameter"),
                        "403": _error("bad token or sender not allowed"),
                        "404": _error("unknown feed"),
                    },
                }
            },
            "/v1/profiles/{user_id}": {
                "parameters": [USER_ID],
                "get": {
                    "summary": "Read a profile",
                    "security": BEARER,
                    "responses": {
                        "200": _json("the profile", PROFILE),
                        "401": _error("missing or invalid API key"),
                        "404": _error("no such profile"),
                    },
                },
                "put": {
                    "summary": "Create or replace a profile",
                    "security": BEARER,
                    "requestBody": profile_body,
                    "responses": {
                        "200": _json("replaced", PROFILE),
                        "201": _json("created", PROFILE),
                        "401": _error("missing or invalid API key"),
                        "413": _error("body too large"),
                        "415": _error("not JSON"),
                        "422": _error("invalid field"),
                    },
                },
                "patch": {
                    "summary": "Update a profile (JSON merge patch, RFC 7396)",
                    "security": BEARER,
                    "requestBody": profile_body,
                    "responses": {
                        "200": _json("updated", PROFILE),
                        "401": _error("missing or invalid API key"),
                        "404": _error("no such profile"),
                        "422": _error("invalid field"),
                    },
                },
                "delete": {
                    "summary": "Erase a reader everywhere",
                    "security": BEARER,
                    "responses": {
                        "204": {"description": "erased"},
                        "401": _error("missing or invalid API key"),
                        "404": _error("no such profile"),
                    },
                },
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "field": {"type": "string"},
                            },
                        }
                    },
                },
                "Feed": {
                    "type": "object",
                    "required": ["items"],
                    "properties": {"items": {"type": "array", "items": {"type": "object"}}},
                },
                "Profile": {
                    "type": "object",
                    "properties": {
                        "first_name": {"type": "string", "maxLength": 100},
                        "last_name": {"type": "string", "maxLength": 100},
                        "email": {"type": "string", "maxLength": 254},
                        "locale": {"type": "string", "maxLength": 35},
                        "timezone": {"type": "string", "maxLength": 64},
                        "tier": {"type": "string", "maxLength": 32},
                        "loyalty_points": {"type": "integer", "minimum": 0},
                        "cart": {"type": "array", "maxItems": 100, "items": {"type": "object"}},
                        "recommendations": {
                            "type": "array",
                            "maxItems": 100,
                            "items": {"type": "object"},
                        },
                        "consent": {
                            "type": "object",
                            "properties": {
                                "personalization": {"type": "boolean"},
                                "tracking": {"type": "boolean"},
                            },
                        },
                        "attributes": {"type": "object", "maxProperties": 100},
                    },
                    "additionalProperties": False,
                },
            },
        },
    }
