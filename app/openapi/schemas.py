"""The shared parts of /openapi.json: schemas, parameters and responses. Functions, not
module-level dicts: each spec gets its own copies."""

from __future__ import annotations

from typing import Any

from app.profiles.schema import USER_ID
from app.render.headers import DELIMITER, MAX_MERGE_TAG, MAX_URL, TAG
from app.render.request import CAMPAIGN


def error_schema() -> dict[str, Any]:
    return {"$ref": "#/components/schemas/Error"}


def profile_schema() -> dict[str, Any]:
    return {"$ref": "#/components/schemas/Profile"}


def profile_answer_schema() -> dict[str, Any]:
    return {"$ref": "#/components/schemas/ProfileAnswer"}


def bearer() -> list[dict[str, list[str]]]:
    return [{"bearer": []}]


def error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": error_schema()}}}


def rate_limited() -> dict[str, Any]:
    """The 429 of a key over its rate limit, with its fields (draft-ietf-httpapi-
    ratelimit-headers-06; a counted answer of the operation carries the RateLimit-* too)."""
    whole = {"type": "integer", "minimum": 0}
    headers = {
        "Retry-After": ("seconds to wait before the next request fits", {**whole, "minimum": 1}),
        "RateLimit-Limit": ("requests a second this key may make to these routes", whole),
        "RateLimit-Remaining": ("requests left now: 0", whole),
        "RateLimit-Reset": ("seconds until the key's full quota is back", whole),
        "RateLimit-Policy": ("the quota and its window, `N;w=1`", {"type": "string"}),
    }
    return {
        **error("this key is over its rate limit (`rate_limited`): retry after `Retry-After`"),
        "headers": {
            name: {"description": text, "schema": schema}
            for name, (text, schema) in headers.items()
        },
    }


def json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or {"type": "object"}}},
    }


def reader_id() -> dict[str, Any]:
    return {"type": "string", "pattern": f"^{USER_ID.pattern}$"}


def campaign_id() -> dict[str, Any]:
    return {"type": "string", "pattern": f"^{CAMPAIGN.pattern}$"}


def unsubscribe_url() -> dict[str, Any]:
    """An absolute http(s) URL, or a merge tag: printable ASCII with one of its
    delimiters (app/render/headers.py checks more: a URL safe to follow)."""
    tag = TAG.pattern.removesuffix("+")
    return {
        "type": "string",
        "anyOf": [
            {"pattern": "^[Hh][Tt][Tt][Pp][Ss]?://.", "maxLength": MAX_URL},
            {"pattern": f"^{tag}*{DELIMITER.pattern}{tag}*$", "maxLength": MAX_MERGE_TAG},
        ],
    }


def user_id_param() -> dict[str, Any]:
    return {
        "name": "user_id",
        "in": "path",
        "required": True,
        "schema": reader_id(),
    }


def render_request() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["template", "user_id"],
        "description": "`profile`, `campaign` and `unsubscribe_url` may be null: as if absent",
        "properties": {
            "template": {"type": "string", "minLength": 1},
            "user_id": reader_id(),
            "profile": {"anyOf": [{"$ref": "#/components/schemas/Profile"}, {"type": "null"}]},
            "campaign": {**campaign_id(), "type": ["string", "null"]},
            "formats": {
                "type": "array",
                "minItems": 1,
                "items": {"enum": ["html", "amp", "text"]},
            },
            "unsubscribe_url": {
                **unsubscribe_url(),
                "type": ["string", "null"],
                "description": "the ESP's unsubscribe URL (absolute http(s)) or merge tag "
                "(`*|UNSUB|*`) for this reader: the footer link and List-Unsubscribe use "
                "it instead of Kairos's signed one-click URL",
            },
        },
    }


def render_result() -> dict[str, Any]:
    return {
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
                "description": "a block shown as its fallback ({block, reason}), a reader "
                "field cut to fit ({field, reason: too-long, action: truncated or dropped}), "
                "a cart line whose product is gone ({field: cart, sku, reason: "
                "missing-product})",
                "items": {
                    "type": "object",
                    "properties": {
                        "block": {"type": "string"},
                        "field": {"type": "string"},
                        "sku": {"type": "string"},
                        "action": {"enum": ["truncated", "dropped"]},
                        "reason": {"type": "string"},
                    },
                },
            },
            "headers": {
                "type": "object",
                "description": "the headers of the MIME answer, for an ESP that builds "
                "the message: Message-ID (new for every render), Date, and "
                "List-Unsubscribe with List-Unsubscribe-Post (RFC 8058 one-click)",
                "additionalProperties": {"type": "string"},
            },
        },
    }


def components() -> dict[str, Any]:
    profile: dict[str, Any] = {
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
                    "email": {
                        "type": "boolean",
                        "description": "false once the reader unsubscribed",
                    },
                },
            },
            "attributes": {"type": "object", "maxProperties": 100},
        },
        "additionalProperties": False,
    }
    return {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "an API key (KAIROS_API_KEYS)",
            },
            "writeKey": {
                "type": "http",
                "scheme": "bearer",
                "description": "a write key (KAIROS_WRITE_KEYS): it can only send events, "
                "and any other route answers it 403",
            },
            "writeKeyBasic": {
                "type": "http",
                "scheme": "basic",
                "description": "the write key (or an API key) as the Basic-auth user name, "
                "password empty, as the Segment and RudderStack SDKs send it",
            },
        },
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
            "Profile": profile,
            # What the profiles API answers: the document, and what Kairos keeps beside
            # it (read-only: a write that sends these has them ignored or refused).
            "ProfileAnswer": {
                "type": "object",
                "properties": {
                    **profile["properties"],
                    "user_id": {"type": "string"},
                    "anonymous_id": {"type": "string"},
                    "updated_at": {"type": "string", "format": "date-time"},
                    "segments": {
                        "type": "object",
                        "properties": {
                            "primary": {"type": ["string", "null"]},
                            "all": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                    "counters": {"type": "object"},
                    "first_seen": {"type": "string", "format": "date-time"},
                    "last_seen": {"type": "string", "format": "date-time"},
                    "recent_views": {"type": "array"},
                    "purchases": {"type": "array"},
                    "spend": {"type": "object"},
                    "engagement": {"type": "object"},
                },
                "additionalProperties": False,
            },
        },
    }
