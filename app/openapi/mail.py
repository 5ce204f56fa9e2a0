"""The studio's "Send a test" path of /openapi.json (app/studio/mail.py)."""

from __future__ import annotations

from typing import Any

from app.openapi.schemas import bearer, error, json


def mail_paths() -> dict[str, Any]:
    body = {
        "type": "object",
        "required": ["template", "to"],
        "description": "a `POST /v1/preview` body plus `to`",
        "properties": {
            "to": {"type": "string", "format": "email", "description": "one plain address"},
        },
        "additionalProperties": True,
    }
    sent = {
        "type": "object",
        "properties": {
            "sent": {"const": True},
            "to": {"type": "string"},
            "message_id": {"type": "string"},
        },
    }
    return {
        "/v1/preview/send": {
            "post": {
                "summary": "Send a test: the preview's MIME message, its subject marked "
                "[Test], to one address through KAIROS_SMTP_URL (without List-Unsubscribe)",
                "security": bearer(),
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": body}},
                },
                "responses": {
                    "200": json("sent", sent),
                    "401": error("missing or invalid API key"),
                    "404": error("unknown template or sample"),
                    "409": error(
                        "KAIROS_SMTP_URL is not set (`smtp_not_configured`), or the reader "
                        "unsubscribed (`unsubscribed`)"
                    ),
                    "422": error("a bad address (`invalid_address`), field or template"),
                    "429": error(
                        "more than 10 tests a minute, or the key over its rate limit "
                        "(`rate_limited`): see Retry-After"
                    ),
                    "502": error("the SMTP server is unreachable or refused (`smtp_failed`)"),
                },
            }
        },
    }
