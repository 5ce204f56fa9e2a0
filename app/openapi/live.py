"""The OpenAPI description of the designer's studio's live reload (app/studio/stream.py)."""

from __future__ import annotations

from typing import Any

from app.openapi.schemas import error
from app.studio.stream import KEEPALIVE_S, MAX_STREAMS


def live_paths() -> dict[str, Any]:
    return {
        "/designer/events": {
            "get": {
                "summary": "The studio's live reload: server-sent events",
                "description": (
                    'On connect `event: hello` with `data: {"version"}`, the version of '
                    "the templates served. After each save under `blocks/` or `templates/` "
                    "(or of the segment rules file), once what changed is recompiled: "
                    '`event: change` with `data: {"version", "files": ["blocks/hero/'
                    'block.mjml", ...], "templates": [the templates recompiled, or '
                    'whose samples changed], "errors": [{"file", "line", "message", '
                    '"snippet"}]}` (every error of the files as saved; paths from the '
                    f"folders' parents). A `: keepalive` comment every {KEEPALIVE_S:g} s. "
                    "A page slower than the saves gets the latest change only. Open as "
                    "the page is: with the studio's session cookie, or, outside "
                    "production, from this machine without a login."
                ),
                "responses": {
                    "200": {
                        "description": "the events, until the page leaves",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "403": error("no studio session (`studio_login`)"),
                    "404": error("the studio is off (`KAIROS_DESIGNER`)"),
                    "503": error(f"{MAX_STREAMS} pages listen already"),
                },
            }
        }
    }
