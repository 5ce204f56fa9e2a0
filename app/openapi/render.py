"""The send-time paths of /openapi.json: renders, the batch, templates (previews:
`app.openapi.studio`), and the one-click unsubscribe of the readers they are sent to."""

from __future__ import annotations

from typing import Any

from app.openapi.schemas import (
    bearer,
    campaign_id,
    error,
    json,
    reader_id,
    render_request,
    render_result,
    unsubscribe_url,
)
from app.render.result import FORMATS


def render_paths() -> dict[str, Any]:
    one = f"({'|'.join(FORMATS)})"
    return {
        "/v1/render": {
            "post": {
                "summary": "Render a template for one reader (send time)",
                "security": bearer(),
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": render_request()}},
                },
                "responses": {
                    "200": {
                        "description": "the rendered email; with Accept: message/rfc822 "
                        "a MIME multipart/alternative (text/plain, text/x-amp-html, "
                        "text/html)",
                        "content": {
                            "application/json": {"schema": render_result()},
                            "message/rfc822": {"schema": {"type": "string"}},
                        },
                    },
                    "401": error("missing or invalid API key"),
                    "404": error("unknown template"),
                    "409": error("the reader unsubscribed (`unsubscribed`): nothing to send"),
                    "422": error("invalid field, or the template does not compile"),
                },
            }
        },
        "/v1/render/{template}": {
            "get": {
                "summary": "Render for one reader, for ESPs that can only GET",
                "security": bearer(),
                "parameters": [
                    {
                        "name": "template",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {"name": "user_id", "in": "query", "required": True, "schema": reader_id()},
                    {"name": "campaign", "in": "query", "schema": campaign_id()},
                    {"name": "unsubscribe_url", "in": "query", "schema": unsubscribe_url()},
                    {
                        "name": "formats",
                        "in": "query",
                        "schema": {"type": "string", "pattern": f"^{one}(,{one})*$"},
                        "description": "comma list of html, amp, text",
                    },
                ],
                "responses": {
                    "200": json("the rendered email", render_result()),
                    "401": error("missing or invalid API key"),
                    "404": error("unknown template"),
                    "409": error("the reader unsubscribed (`unsubscribed`): nothing to send"),
                    "422": error("invalid field, or the template does not compile"),
                },
            }
        },
        "/v1/render/batch": {
            "post": {
                "summary": "Render many readers: NDJSON in, NDJSON out, streamed",
                "security": bearer(),
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
                    "content": {"application/x-ndjson": {"schema": render_request()}},
                },
                "responses": {
                    "200": {
                        "description": "one line per input line, in order: the render "
                        "with `line` and `user_id`, or `line`, `user_id` and `error` (a "
                        "reader who unsubscribed: `unsubscribed`)",
                        "content": {"application/x-ndjson": {"schema": render_result()}},
                    },
                    "401": error("missing or invalid API key"),
                    "415": error("not NDJSON"),
                },
            }
        },
        "/v1/unsubscribe/{token}": unsubscribe_path(),
        "/v1/templates": {
            "get": {
                "summary": "The templates, their blocks, variants and samples",
                "security": bearer(),
                "responses": {"200": json("templates"), "401": error("no API key")},
            }
        },
    }


def unsubscribe_path() -> dict[str, Any]:
    token = {
        "name": "token",
        "in": "path",
        "required": True,
        "description": "the reader (and campaign), signed for unsubscribing",
        "schema": {"type": "string"},
    }
    page = {"text/html": {"schema": {"type": "string"}}}
    return {
        "parameters": [token],
        "get": {
            "summary": "The unsubscribe confirmation page: a button that POSTs; a GET "
            "never unsubscribes (link scanners fetch URLs)",
            "responses": {
                "200": {"description": "the page", "content": page},
                "403": {"description": "bad token: a page saying so", "content": page},
            },
        },
        "post": {
            "summary": "One-click unsubscribe (RFC 8058): sets the reader's consent.email "
            "to false; no cookie, any body (mail clients send List-Unsubscribe=One-Click)",
            "requestBody": {
                "required": False,
                "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}},
            },
            "responses": {
                "200": {
                    "description": "unsubscribed (again: nothing changes); a page when "
                    "the request accepts text/html",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"unsubscribed": {"const": True}},
                            }
                        },
                        **page,
                    },
                },
                "403": error("bad token"),
                "503": error("the profile store is unavailable: retry"),
            },
        },
    }
