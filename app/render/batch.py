"""The batch engine behind `POST /v1/render/batch`: NDJSON lines in as they arrive, one
answer line per reader out, in order, with flat memory; the request read ahead of its
renders so that a client which writes its whole request before reading (httpx,
requests) is answered."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any, Protocol

import orjson

from app.errors import KairosError, Unprocessable
from app.profiles.cache import Lookup
from app.render.request import RenderRequest
from app.render.result import RenderResult
from app.stores.protocols import Profile

log = logging.getLogger("kairos.render")

BATCH_CHUNK = 64
SEND_BYTES = 128 * 1024
# How much of a batch request is read before it is rendered: enough that a client which
# writes its whole request before reading any answer (httpx, requests) can finish
# writing while the answers wait for it, for batches up to this size.
READ_AHEAD_BYTES = 32 * 1024 * 1024
MAX_LINE_BYTES = 256 * 1024


class Renders(Protocol):
    """What a batch renders with (`Renderer`)."""

    async def lookup(self, user_id: str) -> Lookup: ...

    async def render(
        self,
        template: str,
        user_id: str,
        *,
        profile: Profile | None = None,
        campaign: str | None = None,
        formats: tuple[str, ...] = ...,
        lookup: Lookup | None = None,
        unsubscribe: str | None = None,
    ) -> RenderResult: ...


async def batch_answers(
    lines: AsyncGenerator[bytes, None], template: str | None, renderer: Renders
) -> AsyncIterator[bytes]:
    """Reads NDJSON `lines` as they arrive and answers one line per reader, in order
    (`template`: for the lines that name none); a bad line gets an error line and the
    batch goes on; an error while reading comes as the last line. Memory stays flat: at
    most one chunk of readers is in flight (and the answers of the one before).

    A chunk is rendered whole, then sent: renders run back to back with warm caches,
    and the answers go out in few large sends. The previous chunk's answers are let go
    only once the next chunk is rendered, so that the allocator reuses their memory
    instead of returning it to the system and faulting it in again."""
    number = 0
    chunk: list[tuple[int, bytes]] = []
    answered: list[bytes] = []  # the last chunk's, held while the next one renders
    try:
        # Closed as soon as the answer stops (a client gone), not when collected.
        async with contextlib.aclosing(read_ahead(lines, READ_AHEAD_BYTES)) as ahead:
            async for line in ahead:
                number += 1
                if not line.strip():
                    continue
                chunk.append((number, line))
                if len(chunk) >= BATCH_CHUNK:
                    answered = await _render_chunk(chunk, template, renderer)
                    for data in sends(answered):
                        yield data
                    chunk = []
    except KairosError as exc:
        # The answer has started: the error travels as the last line.
        for data in sends(await _render_chunk(chunk, template, renderer)):
            yield data
        yield orjson.dumps({"line": number + 1, "user_id": None, **exc.body()}) + b"\n"
        return
    for data in sends(await _render_chunk(chunk, template, renderer)):
        yield data


def sends(answers: list[bytes]) -> Iterator[bytes]:
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
    chunk: list[tuple[int, bytes]], template: str | None, renderer: Renders
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
        except Exception:
            # As for a render (`_answer`): the batch has started streaming, and the other
            # lines must still be answered.
            log.exception("batch line %d could not be read", chunk[len(requests)][0])
            requests.append(LineFailed("this line could not be read", code="internal"))
        users.append(user_id)
    # Every reader's stored profile: the profile itself, or, for a line carrying one,
    # an opt-out recorded here (which wins over it).
    stored = [r.user_id for r in requests if isinstance(r, RenderRequest)]
    lookups = dict(zip(stored, await asyncio.gather(*map(renderer.lookup, stored)), strict=True))
    answers = []
    for (number, _), req, user_id in zip(chunk, requests, users, strict=True):
        answers.append(await _answer(number, req, user_id, lookups, renderer))
    return answers


class LineFailed(KairosError):
    """A batch line that failed for a reason of ours, not the client's: answered in its
    place, the others going on."""

    status, code = 500, "internal"


async def _answer(
    number: int,
    req: RenderRequest | KairosError,
    user_id: Any,
    lookups: dict[str, Lookup],
    renderer: Renders,
) -> bytes:
    """One batch line's answer: its render, or its error."""
    prefix = b'"line":%d,"user_id":%s,' % (number, orjson.dumps(user_id))
    try:
        if isinstance(req, KairosError):
            raise req
        result = await renderer.render(
            req.template,
            req.user_id,
            profile=req.profile,
            campaign=req.campaign,
            formats=req.formats,
            lookup=lookups.get(req.user_id),
            unsubscribe=req.unsubscribe_url,
        )
        return result.json(prefix, b"\n")
    except KairosError as exc:
        return b"{" + prefix + orjson.dumps(exc.body())[1:] + b"\n"
    except Exception:
        # One reader's failure must not cost the others their answer: the batch has
        # already started streaming.
        log.exception("batch line %d failed", number)
        error = {"code": "internal", "message": "this reader could not be rendered"}
        return b"{" + prefix + orjson.dumps({"error": error})[1:] + b"\n"


async def read_ahead(lines: AsyncGenerator[bytes, None], limit: int) -> AsyncGenerator[bytes, None]:
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
        # Until the reading has stopped; a cancel of this task still comes through
        # (awaiting the reader itself would take its cancel for ours, and swallow ours).
        await asyncio.wait({reader})


async def request_lines(stream: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    """The lines of a request's body `stream` (without their newline), as they arrive;
    `Unprocessable` for a line over `MAX_LINE_BYTES`."""
    buffer = b""
    async for piece in stream:
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
