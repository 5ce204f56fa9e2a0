"""The OpenAPI description of the public HTTP contract (v1), served at /openapi.json."""

from __future__ import annotations

from typing import Any

from app import __version__
from app.settings import SETTINGS, describe

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
RENDER_REQUEST = {
    "type": "object",
    "required": ["template", "user_id"],
    "properties": {
        "template": {"type": "string"},
        "user_id": {"type": "string"},
        "profile": {"$ref": "#/components/schemas/Profile"},
        "campaign": {"type": "string"},
        "formats": {"type": "array", "items": {"enum": ["html", "amp", "text"]}},
    },
}
RENDER_RESULT = {
    "type": "object",
    "properties": {
        "subject": {"type": "string"},
        "preheader": {"type": "string"},
        "html": {"type": ["string", "null"]},
        "amp": {"type": ["string", "null"]},
        "text": {"type": ["string", "null"]},
        "segments": {"type": "array", "items": {"type": "string"}},
        "variant": {"type": "string"},
        "fallbacks": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"block": {"type": "string"}, "reason": {"type": "string"}},
            },
        },
    },
}


def spec(public_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    profile_body = {"required": True, "content": {"application/json": {"schema": PROFILE}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Kairos", "version": __version__},
        "servers": [{"url": public_url}],
        # The server's settings as documented (names, defaults, bounds), never their values.
        "x-kairos-settings": [describe(setting) for setting in SETTINGS],
        "paths": {
            "/openapi.json": {
                "get": {"summary": "This description", "responses": {"200": _json("OpenAPI")}}
            },
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
                    "description": (
                        "Items of the reader's profile, cart or recommendations. An item's "
                        "`url` is the reader's signed click URL (`/c/{link}?r={reader}`) "
                        "for the token's campaign; the plain target for readers who "
                        "declined tracking."
                    ),
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
            "/v1/img/{image}.{format}": {
                "get": {
                    "summary": "A live image drawn at open time for the reader of the token",
                    "parameters": [
                        {
                            "name": "image",
                            "in": "path",
                            "required": True,
                            "schema": {"enum": ["countdown", "banner", "product"]},
                        },
                        {
                            "name": "format",
                            "in": "path",
                            "required": True,
                            "schema": {"enum": ["gif", "png"]},
                            "description": "gif for countdown, png for the others",
                        },
                        {
                            "name": "t",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string"},
                            "description": "signed token; the image's parameters are in it",
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "the image, or its fallback image (header "
                            "X-Kairos-Fallback names why); never cached by proxies",
                            "content": {
                                "image/gif": {"schema": {"type": "string", "format": "binary"}},
                                "image/png": {"schema": {"type": "string", "format": "binary"}},
                            },
                        },
                        "403": _error("bad token, or a token for another image"),
                        "404": _error("unknown image or wrong format"),
                    },
                }
            },
            "/v1/render": {
                "post": {
                    "summary": "Render a template for one reader (send time)",
                    "security": BEARER,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": RENDER_REQUEST}},
                    },
                    "responses": {
                        "200": {
                            "description": "the rendered email; with Accept: message/rfc822 "
                            "a MIME multipart/alternative (text/plain, text/x-amp-html, "
                            "text/html)",
                            "content": {
                                "application/json": {"schema": RENDER_RESULT},
                                "message/rfc822": {"schema": {"type": "string"}},
                            },
                        },
                        "401": _error("missing or invalid API key"),
                        "404": _error("unknown template"),
                        "422": _error("invalid field, or the template does not compile"),
                    },
                }
            },
            "/v1/render/{template}": {
                "get": {
                    "summary": "Render for one reader, for ESPs that can only GET",
                    "security": BEARER,
                    "parameters": [
                        {
                            "name": "template",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "user_id",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {"name": "campaign", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "formats",
                            "in": "query",
                            "schema": {"type": "string"},
                            "description": "comma list of html, amp, text",
                        },
                    ],
                    "responses": {
                        "200": _json("the rendered email", RENDER_RESULT),
                        "401": _error("missing or invalid API key"),
                        "404": _error("unknown template"),
                        "422": _error("invalid field, or the template does not compile"),
                    },
                }
            },
            "/v1/render/batch": {
                "post": {
                    "summary": "Render many readers: NDJSON in, NDJSON out, streamed",
                    "security": BEARER,
                    "parameters": [
                        {
                            "name": "template",
                            "in": "query",
                            "schema": {"type": "string"},
                            "description": "default template for lines without one",
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/x-ndjson": {"schema": RENDER_REQUEST}},
                    },
                    "responses": {
                        "200": {
                            "description": "one line per input line, in order: the render "
                            "with `line` and `user_id`, or `line`, `user_id` and `error`",
                            "content": {"application/x-ndjson": {"schema": RENDER_RESULT}},
                        },
                        "401": _error("missing or invalid API key"),
                        "415": _error("not NDJSON"),
                    },
                }
            },
            "/v1/templates": {
                "get": {
                    "summary": "The templates, their blocks, variants and samples",
                    "security": BEARER,
                    "responses": {"200": _json("templates"), "401": _error("no API key")},
                }
            },
            "/v1/preview": {
                "post": {
                    "summary": "Render a template with one of its sample profiles",
                    "security": BEARER,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "responses": {
                        "200": _json("the rendered email", RENDER_RESULT),
                        "404": _error("unknown template or sample"),
                        "422": _error("invalid field or broken template"),
                    },
                }
            },
            "/c/{token}": {
                "get": {
                    "summary": "A reader's click: redirects to the signed target only",
                    "parameters": [
                        {
                            "name": "token",
                            "in": "path",
                            "required": True,
                            "description": "the link: target and campaign, signed",
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "r",
                            "in": "query",
                            "required": False,
                            "description": "the reader (and campaign), signed; without it "
                            "the click still redirects, unattributed",
                            "schema": {"type": "string"},
                        },
                    ],
                    "responses": {
                        "302": {"description": "to the target signed in the token"},
                        "403": _error("bad link or reader token, or one of another campaign"),
                    },
                }
            },
            "/v1/px/{token}.gif": {
                "get": {
                    "summary": "The open pixel: a 1x1 GIF",
                    "parameters": [
                        {
                            "name": "token",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "1x1 GIF",
                            "content": {"image/gif": {"schema": {"type": "string"}}},
                        },
                        "403": _error("bad token"),
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
