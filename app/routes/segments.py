"""`/v1/segments`: the segment rules with their member counts, and the stream of entries
and exits (what segment-triggered sends consume), behind a Bearer API key."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.errors import BadRequest
from app.responses import JSONResponse
from app.services import Services

ENTRY_ID = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?")
MAX_ID_PART = 2**64 - 1  # what a Redis stream id holds
MAX_LIMIT = 1000


def routes(services: Services) -> list[Route]:
    segmenter, store = services.segments, services.stores.segments

    async def segments(request: Request) -> Response:
        rules = segmenter.current()
        counts = await store.counts()
        return JSONResponse(
            {
                "rules_file": rules.source,
                "segments": [
                    {
                        "name": s.name,
                        "priority": s.priority,
                        "description": s.description,
                        "members": counts.get(s.name, 0),
                    }
                    for s in rules.segments
                ],
            }
        )

    async def changes(request: Request) -> Response:
        after = request.query_params.get("after", "0")
        found = ENTRY_ID.fullmatch(after)
        if found is None or any(int(p or 0) > MAX_ID_PART for p in found.groups()):
            raise BadRequest(
                "after must be an entry id such as 1733480000000-0 (0: from the oldest kept)",
                code="invalid_after",
                field="after",
            )
        limit = request.query_params.get("limit", "100")
        if not (limit.isascii() and limit.isdigit()) or not 1 <= int(limit) <= MAX_LIMIT:
            raise BadRequest(f"limit must be 1-{MAX_LIMIT}", code="invalid_limit", field="limit")
        entries = await store.changes(after, int(limit))
        body = {
            "changes": [{"id": i, **entry} for i, entry in entries],
            # Where the next call starts: the last id read, or `after` when none was.
            "next": entries[-1][0] if entries else after,
        }
        return JSONResponse(body)

    return [
        Route("/v1/segments", segments, methods=["GET"]),
        Route("/v1/segments/changes", changes, methods=["GET"]),
    ]
