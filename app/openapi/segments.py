"""The OpenAPI description of `/v1/segments` (app/routes/segments.py)."""

from __future__ import annotations

from typing import Any

from app.openapi.schemas import bearer, error, json
from app.routes.segments import MAX_LIMIT


def _common() -> dict[str, Any]:
    return {
        "401": error("missing or invalid API key"),
        "403": error("a write key"),
        "503": error("the store is unavailable"),
    }


def _strings(*names: str) -> dict[str, Any]:
    return {n: {"type": "string"} for n in names}


def segments_paths() -> dict[str, Any]:
    rule = {
        "type": "object",
        "required": ["name", "priority", "description", "members"],
        "properties": {
            **_strings("name", "description"),
            "priority": {"type": "integer"},
            "members": {"type": "integer", "description": "readers recorded in it now"},
        },
    }
    change = {
        "type": "object",
        "required": ["id", "user_id", "segment", "change", "ts"],
        "properties": {
            **_strings("id", "user_id", "segment"),
            "change": {"enum": ["entered", "exited"]},
            "ts": {"type": "string", "format": "date-time"},
        },
    }
    return {
        "/v1/segments": {
            "get": {
                "summary": "The segment rules, highest priority first, with their members",
                "security": bearer(),
                "responses": {
                    "200": json(
                        "the rules of KAIROS_SEGMENTS_FILE",
                        {
                            "type": "object",
                            "properties": {
                                "rules_file": {"type": "string"},
                                "segments": {"type": "array", "items": rule},
                            },
                        },
                    ),
                    **_common(),
                },
            }
        },
        "/v1/segments/changes": {
            "get": {
                "summary": "Segment entries and exits, oldest first (a capped stream)",
                "security": bearer(),
                "parameters": [
                    {
                        "name": "after",
                        "in": "query",
                        "schema": {"type": "string", "pattern": r"^\d{1,20}(-\d{1,20})?$"},
                        "description": "the entry id to read after (default 0: the oldest kept)",
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                        "description": "default 100",
                    },
                ],
                "responses": {
                    "200": json(
                        "the entries after `after`; `next` is where the next call starts",
                        {
                            "type": "object",
                            "properties": {
                                "changes": {"type": "array", "items": change},
                                "next": {"type": "string"},
                            },
                        },
                    ),
                    "400": error("bad after or limit"),
                    **_common(),
                },
            }
        },
    }
