"""The events paths of /openapi.json: the native API and the privacy calls that go with
it (suppressions, the erasure log), and the parts the Segment dialect shares
(`app.openapi.segment`). Schemas are built from the event model's own constants, so the
description cannot drift from the checks."""

from __future__ import annotations

from typing import Any

from app.events.model import CUSTOM_NAME, CUSTOM_PREFIX, MAX_EVENT_ID, MAX_ITEMS, TYPES
from app.openapi.schemas import bearer, error, error_schema, json, user_id_param
from app.profiles.schema import CURRENCY, SKU, USER_ID
from app.routes.events import NATIVE_PATH


def _string(pattern: str | None = None, max_length: int | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if pattern is not None:
        schema["pattern"] = f"^{pattern}$"
    if max_length is not None:
        schema["maxLength"] = max_length
    return schema


def _number() -> dict[str, Any]:
    return {"type": "number", "minimum": 0, "maximum": 1e9}


def _url() -> dict[str, Any]:
    return {"type": "string", "format": "uri", "maxLength": 2048}


def _qty() -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "maximum": 9999}


def _object(required: tuple[str, ...], **fields: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": fields}
    if required:
        schema["required"] = list(required)
    return schema


def _product() -> dict[str, Any]:
    return _object(
        ("sku",),
        sku=_string(SKU.pattern),
        qty=_qty(),
        price=_number(),
        currency=_string(CURRENCY.pattern),
        title=_string(max_length=200),
        url=_url(),
        image_url=_url(),
    )


def _properties_by_type() -> dict[str, dict[str, Any]]:
    """What `properties` must hold, by type (custom types: any object)."""
    email = _object((), campaign=_string(max_length=100), url=_url())
    item = _object(("sku",), sku=_string(SKU.pattern), qty=_qty(), price=_number())
    return {
        "page_view": _object((), title=_string(max_length=200), url=_url()),
        "product_view": _product(),
        "add_to_cart": _product(),
        "remove_from_cart": _product(),
        "purchase": _object(
            ("items", "total", "currency"),
            items={"type": "array", "minItems": 1, "maxItems": MAX_ITEMS, "items": item},
            total=_number(),
            currency=_string(CURRENCY.pattern),
            order_id=_string(max_length=100),
        ),
        "email_open": email,
        "email_click": email,
        "identify": _object(
            ("traits",),
            traits={
                "type": "object",
                "description": "profile fields (first_name, last_name, email, locale, "
                "timezone, tier, loyalty_points, consent) checked as the profile schema "
                "checks them; any other trait is kept under `attributes`",
            },
        ),
    }


def event_schema() -> dict[str, Any]:
    """One native event."""
    reader = _string(USER_ID.pattern)
    per_type = [
        {
            "if": {"properties": {"type": {"const": kind}}},
            "then": {"properties": {"properties": schema}},
        }
        for kind, schema in _properties_by_type().items()
    ]
    return {
        "type": "object",
        "required": ["event_id", "type"],
        "properties": {
            "event_id": {"type": "string", "minLength": 1, "maxLength": MAX_EVENT_ID},
            "user_id": reader,
            "anonymous_id": reader,
            "type": {
                "anyOf": [
                    {"enum": list(TYPES)},
                    {"type": "string", "pattern": f"^{CUSTOM_PREFIX}{CUSTOM_NAME.pattern}$"},
                ]
            },
            "ts": {
                "type": "string",
                "format": "date-time",
                "description": "ISO 8601, normalized to UTC (no offset: UTC); not before "
                "2000 nor more than a day ahead of the server. Absent: the time received.",
            },
            "properties": {"type": "object"},
        },
        "anyOf": [{"required": ["user_id"]}, {"required": ["anonymous_id"]}],
        "allOf": per_type,
    }


def answer_schema(*, segment: bool = False) -> dict[str, Any]:
    """What became of a request's events."""
    rejected = _object(
        ("index", "code", "message", "field"),
        index={"type": "integer", "minimum": 0},
        code={"type": "string"},
        message={"type": "string"},
        field={"type": ["string", "null"]},
    )
    schema = _object(
        ("accepted", "duplicates", "dropped", "rejected"),
        accepted={"type": "integer", "description": "applied now"},
        duplicates={"type": "integer", "description": "applied before, within the window"},
        dropped={"type": "integer", "description": "the reader declined tracking"},
        rejected={"type": "array", "items": rejected},
    )
    if segment:
        schema["properties"]["success"] = {"type": "boolean"}
    return schema


def nothing_valid(status: str, *, segment: bool = False, or_error: bool = False) -> dict[str, Any]:
    """No event was valid: an Error with the counts. `or_error`: the same status also
    answers an Error alone (a body that is not events at all)."""
    counted = {"allOf": [error_schema(), answer_schema(segment=segment)]}
    return {
        "description": f"{status}: no event in the request is valid (`no_valid_events`), "
        "with each one's `rejected` entry",
        "content": {
            "application/json": {
                "schema": {"anyOf": [counted, error_schema()]} if or_error else counted
            }
        },
    }


def common_errors() -> dict[str, Any]:
    return {
        "401": error("no key, or not a write key nor an API key"),
        "413": error("body (after gzip) or event count over the limit"),
        "415": error("Content-Encoding other than gzip"),
        "503": {
            **error(
                "the store is down or too slow (`store_unavailable`), or the request "
                "waited too long for its turn (`busy`, nothing applied): retry"
            ),
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        },
    }


def preflight() -> dict[str, Any]:
    return {
        "summary": "CORS preflight (origins in KAIROS_EVENT_ORIGINS)",
        "parameters": [{"name": "Origin", "in": "header", "schema": {"type": "string"}}],
        "responses": {
            "204": {
                "description": "allowed: POST, with Authorization, Content-Type and "
                "Content-Encoding"
            },
            "403": error("this origin may not post events"),
        },
    }


def gzip_header() -> dict[str, Any]:
    return {"name": "Content-Encoding", "in": "header", "schema": {"enum": ["gzip", "x-gzip"]}}


def native_path() -> dict[str, Any]:
    batch = _object(("events",), events={"type": "array", "items": event_schema()})
    return {
        "post": {
            "summary": 'Send events: one event, or {"events": [...]}',
            "description": "Applied exactly once per event id and reader within the dedupe "
            "window, atomically per reader; 202 only once the store has them.",
            "security": [*bearer(), {"writeKey": []}, {"writeKeyBasic": []}],
            "parameters": [gzip_header()],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"oneOf": [event_schema(), batch]}}},
            },
            "responses": {
                "202": json("what became of each event", answer_schema()),
                "400": error('not JSON, not an event nor {"events": [...]}, bad gzip'),
                **common_errors(),
                "415": error("not application/json, or Content-Encoding other than gzip"),
                "422": nothing_valid("422"),
            },
        },
        "options": preflight(),
    }


def privacy_paths() -> dict[str, Any]:
    erasure = _object(
        ("at", "reader", "ids", "profile", "suppressed"),
        at={"type": "string", "format": "date-time"},
        reader={"type": "string", "description": "keyed hash of the id erased"},
        ids={"type": "string", "description": "how many ids were erased"},
        profile={"enum": ["0", "1"]},
        suppressed={"enum": ["0", "1"]},
    )
    erasures = _object(("erasures",), erasures={"type": "array", "items": erasure})
    return {
        "/v1/suppressions/{user_id}": {
            "parameters": [user_id_param()],
            "delete": {
                "summary": "Lift the suppression of an erased id",
                "security": bearer(),
                "responses": {
                    "204": {"description": "lifted: its events are accepted again"},
                    "401": error("missing or invalid API key"),
                    "403": error("a write key"),
                    "404": error("this id is not suppressed"),
                },
            },
        },
        "/v1/erasures": {
            "get": {
                "summary": "The erasure audit log, newest first",
                "security": bearer(),
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        "description": "default 100",
                    }
                ],
                "responses": {
                    "200": json("the latest erasures", erasures),
                    "400": error("bad limit"),
                    "401": error("missing or invalid API key"),
                    "403": error("a write key"),
                },
            }
        },
    }


def event_paths() -> dict[str, Any]:
    """The native path, and the privacy calls (the Segment dialect's paths are
    `app.openapi.segment`)."""
    return {NATIVE_PATH: native_path(), **privacy_paths()}
