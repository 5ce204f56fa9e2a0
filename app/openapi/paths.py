"""The paths of /openapi.json: the public HTTP contract (v1)."""

from __future__ import annotations

from typing import Any

from app.openapi.campaigns import campaign_paths
from app.openapi.designer import designer_paths
from app.openapi.events import event_paths
from app.openapi.live import live_paths
from app.openapi.mail import mail_paths
from app.openapi.render import render_paths
from app.openapi.schemas import (
    bearer,
    error,
    json,
    profile_answer_schema,
    profile_schema,
    user_id_param,
)
from app.openapi.segment import segment_paths
from app.openapi.segments import segments_paths
from app.openapi.studio import studio_paths


def paths() -> dict[str, Any]:
    """Every path; the send-time ones come from `app.openapi.render`, the events and
    privacy ones from `app.openapi.events` and `app.openapi.segment`."""
    profile_body = {"required": True, "content": {"application/json": {"schema": profile_schema()}}}
    patch_body = {
        "required": True,
        "content": {
            media: {"schema": profile_schema()}
            for media in ("application/json", "application/merge-patch+json")
        },
    }
    return {
        "/openapi.json": {
            "get": {"summary": "This description", "responses": {"200": json("OpenAPI")}}
        },
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": json("alive")}}},
        "/readyz": {
            "get": {
                "summary": "Readiness with store status",
                "description": (
                    "`store`: the backend, whether it answered, and on Redis the state "
                    "of the circuit breaker in front of it (`breaker`: closed, open, "
                    "half-open)."
                ),
                "responses": {"200": json("ready"), "503": json("store unreachable")},
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
                    "200": json(
                        "the feed, or its fallback (header X-Kairos-Fallback names why)",
                        {"$ref": "#/components/schemas/Feed"},
                    ),
                    "400": error("bad query parameter"),
                    "403": error("bad token or sender not allowed"),
                    "404": error("unknown feed"),
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
                    "403": error("bad token, or a token for another image"),
                    "404": error("unknown image or wrong format"),
                },
            }
        },
        **render_paths(),
        **studio_paths(),
        **mail_paths(),
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
                    "403": error("bad link or reader token, or one of another campaign"),
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
                    "403": error("bad token"),
                },
            }
        },
        "/v1/profiles/{user_id}": {
            "parameters": [user_id_param()],
            "get": {
                "summary": "Read a profile",
                "security": bearer(),
                "parameters": [
                    {
                        "name": "anonymous",
                        "in": "query",
                        "schema": {"type": "boolean", "default": False},
                        "description": "read the reader an anonymous id's events built "
                        "(answered with `anonymous_id`), until it is merged into a user",
                    }
                ],
                "responses": {
                    "200": json("the profile", profile_answer_schema()),
                    "401": error("missing or invalid API key"),
                    "403": error("a write key (write_key_not_allowed): this call needs an API key"),
                    "404": error("no such profile"),
                },
            },
            "put": {
                "summary": "Create or replace a profile",
                "security": bearer(),
                "requestBody": profile_body,
                "responses": {
                    "200": json("replaced", profile_answer_schema()),
                    "201": json("created", profile_answer_schema()),
                    "401": error("missing or invalid API key"),
                    "403": error("a write key (write_key_not_allowed): this call needs an API key"),
                    "413": error("body too large"),
                    "409": error("the user id was merged into another user (merged_into_another)"),
                    "415": error("not JSON"),
                    "422": error("invalid field"),
                },
            },
            "patch": {
                "summary": "Update a profile (JSON merge patch, RFC 7396)",
                "security": bearer(),
                "requestBody": patch_body,
                "responses": {
                    "200": json("updated", profile_answer_schema()),
                    "401": error("missing or invalid API key"),
                    "403": error("a write key (write_key_not_allowed): this call needs an API key"),
                    "404": error("no such profile"),
                    "409": error("the user id was merged into another user (merged_into_another)"),
                    "422": error("invalid field"),
                },
            },
            "delete": {
                "summary": "Erase a reader and every id merged with it, everywhere",
                "description": "Profile, history, dedupe ids, identity links, picks and "
                "every cached copy; an audit entry names the reader by a keyed hash.",
                "security": bearer(),
                "parameters": [
                    {
                        "name": "suppress",
                        "in": "query",
                        "schema": {"type": "boolean", "default": True},
                        "description": "refuse later events for these ids (until "
                        "DELETE /v1/suppressions/{user_id})",
                    }
                ],
                "responses": {
                    "204": {"description": "erased"},
                    "400": error("bad user id or suppress value"),
                    "401": error("missing or invalid API key"),
                    "403": error("a write key (write_key_not_allowed): this call needs an API key"),
                    "404": error("no such profile (the ids are suppressed all the same)"),
                    "503": error("the store is unavailable"),
                },
            },
        },
        **event_paths(),
        **segment_paths(),
        **segments_paths(),
        **live_paths(),
        **campaign_paths(),
        **designer_paths(),
    }
