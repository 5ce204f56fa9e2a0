"""Send-time rendering for ESPs: `POST /v1/render`, `GET /v1/render/{template}`,
`POST /v1/render/batch` (NDJSON streamed), and the designers' `GET /v1/templates` and
`POST /v1/preview`."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.errors import KairosError, NotFound, Unprocessable, UnsupportedMediaType
from app.profiles.cache import Lookup
from app.profiles.schema import USER_ID, inline_profile
from app.render.mime import mime_message
from app.render.renderer import Renderer
from app.render.result import FORMATS, RenderResult
from app.responses import JSONResponse, StreamResponse
from app.routes.profiles import _json_body
from app.services import Services

log = logging.getLogger("kairos.render")

CAMPAIGN = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
RENDER_KEYS = frozenset({"template", "user_id", "profile", "campaign", "formats"})
BATCH_CHUNK = 64
SEND_BYTES = 128 * 1024
# How much of a batch request is read before it is rendered: enough that a client which
# writes its whole request before reading any answer (httpx, requests) can finish
# writing while the answers wait for it, for batches up to this size.
READ_AHEAD_BYTES = 32 * 1024 * 1024
MAX_LINE_BYTES = 256 * 1024


class RenderRequest:
    """A validated render request; `Unprocessable` names the first bad field."""

    __slots__ = ("template", "user_id", "profile", "campaign", "formats")

    def __init__(self, doc: Any, *, template: str | None = None) -> None:
        if not isinstance(doc, dict):
            raise Unprocessable("the body must be a JSON object", code="invalid_body")
        unknown = set(doc) - RENDER_KEYS
        if unknown:
            field = sorted(unknown)[0]
            raise Unprocessable(f"{field}: is not a known field", field=field)
        name = doc.get("template", template)
        if not isinstance(name, str) or not name:
            raise Unprocessable("template: a template name is required", field="template")
        self.template: str = name
        user_id = doc.get("user_id")
        if not isinstance(user_id, str) or not USER_ID.fullmatch(user_id):
            raise Unprocessable(
                "user_id: 1-128 letters, digits and _ . : - are required", field="user_id"
            )
        self.user_id: str = user_id
        self.campaign: str | None = doc.get("campaign")
        if self.campaign is not None and (
            not isinstance(self.campaign, str) or not CAMPAIGN.fullmatch(self.campaign)
        ):
            raise Unprocessable("campaign: 1-128 letters, digits and _ . : -", field="campaign")
        formats = doc.get("formats", list(FORMATS))
        if not isinstance(formats, list) or not formats or any(f not in FORMATS for f in formats):
            raise Unprocessable(f"formats: a list drawn from {list(FORMATS)}", field="formats")
        self.formats = tuple(formats)
        profile = doc.get("profile")
        self.profile = None if profile is None else inline_profile(profile)


def routes(services: Services) -> list[Route]:
    renderer = services.renderer

    async def run(req: RenderRequest, lookup: Lookup | None = None) -> RenderResult:
        return await renderer.render(
            req.template,
            req.user_id,
            profile=req.profile,
            campaign=req.campaign,
            formats=req.formats,
            lookup=lookup,
        )

    def answer(request: Request, result: RenderResult) -> Response:
        if "message/rfc822" in request.headers.get("accept", ""):
            return Response(mime_message(result), media_type="message/rfc822")
        return Response(result.json(), media_type="application/json")

    async def render(request: Request) -> Response:
        req = RenderRequest(await _json_body(request))
        return answer(request, await run(req))

    async def render_get(request: Request) -> Response:
        query = request.query_params
        doc: dict[str, Any] = {"template": request.path_params["template"]}
        for key in ("user_id", "campaign"):
            if key in query:
                doc[key] = query[key]
        if "formats" in query:
            doc["formats"] = query["formats"].split(",")
        return answer(request, await run(RenderRequest(doc)))

    async def batch(request: Request) -> Response:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type not in ("application/x-ndjson", "application/jsonl", "application/json"):
            raise UnsupportedMediaType("send the batch as application/x-ndjson")
        default_template = request.query_params.get("template")
        return StreamResponse(
            _batch(request, default_template, renderer, run), media_type="application/x-ndjson"
        )

    async def templates(request: Request) -> Response:
        listing = []
        for name in renderer.names():
            try:
                compiled = renderer.compiled(name)
            except KairosError as exc:
                listing.append({"name": name, "ok": False, "error": exc.message})
                continue
            source = compiled.source
            listing.append(
                {
                    "name": name,
                    "ok": True,
                    "description": source.description,
                    "variants": source.variants,
                    "blocks": [use.block for use in source.blocks],
                    "samples": sorted(renderer.samples(name)),
                    "version": compiled.version,
                }
            )
        return JSONResponse({"templates": listing})

    async def preview(request: Request) -> Response:
        doc = await _json_body(request)
        if not isinstance(doc, dict):
            raise Unprocessable("the body must be a JSON object", code="invalid_body")
        sample = doc.pop("sample", None)
        doc.setdefault("user_id", "preview")
        req = RenderRequest(doc)
        if sample is not None:
            samples = renderer.samples(req.template)
            if sample not in samples:
                raise NotFound(f"template {req.template!r} has no sample {sample!r}")
            req.profile = inline_profile(samples[sample])
        return answer(request, await run(req))

    return [
        Route("/v1/render", render, methods=["POST"]),
        Route("/v1/render/batch", batch, methods=["POST"]),
        Route("/v1/render/{template}", render_get, methods=["GET"]),
        Route("/v1/templates", templates, methods=["GET"]),
        Route("/v1/preview", preview, methods=["POST"]),
    ]


async def _batch(
    request: Request, template: str | None, renderer: Renderer, run: Any
) -> AsyncIterator[bytes]:
    """Reads NDJSON lines as they arrive and answers one line per reader, in order; a
    bad line gets an error line and the batch goes on. Memory stays flat: at most one
    chunk of readers is in flight (and the answers of the one before).

    A chunk is rendered whole, then sent: renders run back to back with warm caches,
    and the answers go out in few large sends. The previous chunk's answers are let go
    only once the next chunk is rendered, so that the allocator reuses their memory
    instead of returning it to the system and faulting it in again."""
    number = 0
    chunk: list[tuple[int, bytes]] = []
    answers: list[bytes] = []
    try:
        async for line in _read_ahead(_lines(request), READ_AHEAD_BYTES):
            number += 1
            if not line.strip():
                continue
            chunk.append((number, line))
            if len(chunk) >= BATCH_CHUNK:
                answers = await _render_chunk(chunk, template, renderer, run)
                for data in _sends(answers):
                    yield data
                chunk = []
    except KairosError as exc:
        # The answer has started: the error travels as the last line.
        for data in _sends(await _render_chunk(chunk, template, renderer, run)):
            yield data
        yield orjson.dumps({"line": number + 1, "user_id": None, **exc.body()}) + b"\n"
        return
    for data in _sends(await _render_chunk(chunk, template, renderer, run)):
        yield data


def _sends(answers: list[bytes]) -> Iterator[bytes]:
    """A chunk's answer lines in sends of at least `SEND_BYTES` (the last one aside): a
    send costs a trip through the server and the kernel, and the line of a whole email
    is already tens of kilobytes; small lines (text only) are grouped more."""
    group: list[bytes] = []
    size = 0
    for answer in answers:
        group.append(answer)
        size += len(answer)
        if size >= SEND_BYTES:
            yield group[0] if len(group) == 1 else b"".join(group)
            group, size = [], 0
    if group:
        yield b"".join(group)


async def _render_chunk(
    chunk: list[tuple[int, bytes]], template: str | None, renderer: Renderer, run: Any
) -> list[bytes]:
    """A chunk of batch lines answered in order, a line each. The readers' profiles that
    must come from the store are fetched together (their waits overlap); the renders
    themselves are CPU work and run one after the other."""
    requests: list[RenderRequest | KairosError] = []
    users: list[Any] = []
    for _, line in chunk:
        user_id = None
        try:
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise Unprocessable(f"not valid JSON: {exc}", code="invalid_json") from None
            if isinstance(doc, dict):
                user_id = doc.get("user_id")
            requests.append(RenderRequest(doc, template=template))
        except KairosError as exc:
            requests.append(exc)
        users.append(user_id)
    stored = [r.user_id for r in requests if isinstance(r, RenderRequest) and r.profile is None]
    lookups = dict(zip(stored, await asyncio.gather(*map(renderer.lookup, stored)), strict=True))
    answers = []
    for (number, _), req, user_id in zip(chunk, requests, users, strict=True):
        answers.append(await _answer(number, req, user_id, lookups, run))
    return answers


async def _answer(
    number: int, req: RenderRequest | KairosError, user_id: Any, lookups: dict[str, Any], run: Any
) -> bytes:
    """One batch line's answer: its render, or its error."""
    prefix = b'"line":%d,"user_id":%s,' % (number, orjson.dumps(user_id))
    try:
        if isinstance(req, KairosError):
            raise req
        result = await run(req, lookups.get(req.user_id))
        return result.json(prefix, b"\n")  # type: ignore[no-any-return]
    except KairosError as exc:
        return b"{" + prefix + orjson.dumps(exc.body())[1:] + b"\n"
    except Exception:
        # One reader's failure must not cost the others their answer: the batch has
        # already started streaming.
        log.exception("batch line %d failed", number)
        error = {"code": "internal", "message": "this reader could not be rendered"}
        return b"{" + prefix + orjson.dumps({"error": error})[1:] + b"\n"


async def _read_ahead(lines: AsyncGenerator[bytes, None], limit: int) -> AsyncIterator[bytes]:
    """`lines`, read by a task of their own into a buffer of up to `limit` bytes: the
    request goes on being read while an answer waits for the client to take it. An
    error while reading comes out after the lines read before it."""
    buffer: collections.deque[bytes] = collections.deque()
    size = 0
    arrived, room = asyncio.Event(), asyncio.Event()
    ended: list[BaseException | None] = []

    async def read() -> None:
        nonlocal size
        try:
            count = 0
            async with contextlib.aclosing(lines):  # closed when the reading stops
                async for line in lines:
                    while size >= limit:
                        room.clear()
                        await room.wait()
                    buffer.append(line)
                    size += len(line)
                    arrived.set()
                    count += 1
                    if count % BATCH_CHUNK == 0:
                        # Let the renders start on what is there, even if the request
                        # arrives faster than they go.
                        await asyncio.sleep(0)
        except BaseException as exc:  # handed to the reader of the lines
            ended.append(exc)
            if not isinstance(exc, Exception):
                raise  # cancelled: the reader of the lines hears of it all the same
        else:
            ended.append(None)
        finally:
            arrived.set()

    reader = asyncio.create_task(read())
    try:
        while True:
            if buffer:
                line = buffer.popleft()
                size -= len(line)
                room.set()
                yield line
            elif ended:
                if ended[0] is not None:
                    raise ended[0]
                return
            else:
                arrived.clear()
                await arrived.wait()
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def _lines(request: Request) -> AsyncGenerator[bytes, None]:
    buffer = b""
    async for piece in request.stream():
        buffer += piece
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            yield buffer[start:end]
            start = end + 1
        buffer = buffer[start:]
        if len(buffer) > MAX_LINE_BYTES:
            raise Unprocessable(f"a batch line is longer than {MAX_LINE_BYTES} bytes")
    if buffer:
        yield buffer
