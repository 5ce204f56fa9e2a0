"""The Segment dialect's paths of /openapi.json: one per HTTP Tracking API call under
the `/segment` prefix, answered as Segment answers (200) so the SDKs count them sent."""

from __future__ import annotations

from typing import Any

from app.events.intake import WEBHOOK
from app.events.model import MAX_EVENT_ID
from app.events.segment import BATCHES, CALLS
from app.openapi.events import answer_schema, common_errors, gzip_header, nothing_valid, preflight
from app.openapi.schemas import bearer, json, reader_id
from app.routes.events import SEGMENT_CALLS, SEGMENT_PREFIX


def segment_message(typed: bool = True) -> dict[str, Any]:
    """One message; `typed`: its `type` names the call (in a batch, at the webhook), else
    the path does and `type` is ignored. A null field is as if absent."""
    ids = {"type": ["string", "number", "null"]}
    # A number is read as its text, so the pattern (for texts) is the reader id's.
    reader = {**ids, "pattern": reader_id()["pattern"]}
    time = {"type": ["string", "null"], "format": "date-time"}
    text = {"type": ["string", "null"]}
    obj = {"type": ["object", "null"]}
    kind = {"enum": [c for c in CALLS if c not in BATCHES]} if typed else {}
    return {
        "type": "object",
        "required": ["messageId"],
        "properties": {
            "type": kind,
            # A number is read as its text; a text is the event id (the same bounds).
            "messageId": {
                "type": ["string", "number"],
                "minLength": 1,
                "maxLength": MAX_EVENT_ID,
            },
            "userId": reader,
            "anonymousId": reader,
            "previousId": reader,
            "event": text,
            "name": text,
            "properties": obj,
            "traits": obj,
            "context": {"description": "the client's metadata, read when an object"},
            "timestamp": time,
            "originalTimestamp": time,
            "sentAt": time,
            "writeKey": text,
        },
    }


def segment_batch() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["batch"],
        "properties": {
            "batch": {"type": "array", "items": segment_message()},
            "sentAt": {"type": ["string", "null"], "format": "date-time"},
            "writeKey": {"type": ["string", "null"]},
        },
    }


def segment_path(call: str) -> dict[str, Any]:
    body = segment_batch() if call in BATCHES else segment_message(typed=call == WEBHOOK)
    where = (
        "For a Segment or RudderStack webhook destination: give it this URL; each message "
        "is read by its own `type`."
        if call == WEBHOOK
        else f"For Segment and RudderStack SDKs: set their host to `{{server}}{SEGMENT_PREFIX}`."
    )
    if call not in CALLS and call != WEBHOOK:
        where += f" Kairos takes no {call} calls: each is `rejected` (`unsupported_call`)."
    return {
        "post": {
            "summary": f"Segment HTTP Tracking API: {call}",
            "description": f"{where} The write key travels as the Basic-auth user name, as a "
            "Bearer key, or as `writeKey` in the body.",
            "security": [{"writeKeyBasic": []}, {"writeKey": []}, *bearer()],
            "parameters": [gzip_header()],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": body}, "text/plain": {"schema": body}},
            },
            "responses": {
                "200": json(
                    "accepted (200, not 202: SDKs take anything else for a failure)",
                    answer_schema(segment=True),
                ),
                "400": {
                    **nothing_valid("400", segment=True, or_error=True),
                    "description": "no message is valid (`no_valid_events`, with the "
                    "counts and each `rejected` entry); or the body is not JSON, not an "
                    "object, or its `batch` not a list (an Error alone)",
                },
                **common_errors(),
            },
        },
        "options": preflight(),
    }


def segment_paths() -> dict[str, Any]:
    """One path per call: `/segment/v1/batch`, `/segment/v1/track`, ..."""
    return {
        f"{SEGMENT_PREFIX}/v1/{name}": segment_path(call) for name, call in SEGMENT_CALLS.items()
    }
