"""Reading an events request: the body capped before it is parsed (gzip undone within the
same cap), then JSON, then the events it carries in either dialect."""

from __future__ import annotations

import time
import zlib
from typing import Any

from starlette.requests import Request

from app.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from app.events.clock import Clock, parse_ms
from app.events.model import EventRejected
from app.events.segment import BATCHES, Millis, SegmentError, messages, translate

CHUNK = 64 * 1024
WEBHOOK = "webhook"


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, gunzipped when it says so; 413 as soon as either the body or
    what it inflates to is larger than `limit` (a gzip bomb never fills memory)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise BadRequest("Content-Length is not a number")
        if int(declared) > limit:
            raise _too_large(limit)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip"):
        raise UnsupportedMediaType(
            "Content-Encoding must be gzip or absent", code="unsupported_encoding"
        )
    inflate = zlib.decompressobj(wbits=47) if encoding != "identity" else None
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        if inflate is None:
            pieces = [chunk]
        else:
            pieces = _inflated(inflate, chunk, limit - size)
        for piece in pieces:
            size += len(piece)
            if size > limit:
                raise _too_large(limit)
            parts.append(piece)
    if inflate is not None and not inflate.eof:
        raise BadRequest("the gzip body is truncated", code="invalid_gzip")
    return b"".join(parts)


def _inflated(inflate: Any, chunk: bytes, room: int) -> list[bytes]:
    """`chunk` inflated, never more than `room` + 1 bytes at once."""
    out = []
    data = chunk
    try:
        while data:
            if inflate.eof:
                raise _trailing()
            piece = inflate.decompress(data, max(room, 0) + 1)
            out.append(piece)
            room -= len(piece)
            if room < 0:
                break
            data = inflate.unconsumed_tail
    except zlib.error:
        raise BadRequest("the body is not valid gzip", code="invalid_gzip") from None
    if inflate.unused_data:
        raise _trailing()
    return out


def _trailing() -> BadRequest:
    # Bytes after the gzip member were silently dropped: a second member (concatenated
    # gzip) would have lost its events, and its size was never checked.
    return BadRequest("the body must be one gzip member; bytes follow its end", code="invalid_gzip")


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"an events request may be at most {limit} bytes (after gzip); split it",
        code="payload_too_large",
    )


def native_events(doc: Any) -> list[Any]:
    """The events of a native body: one event object, or `{"events": [...]}`."""
    if isinstance(doc, dict) and "events" in doc:
        events = doc["events"]
        if not isinstance(events, list):
            raise BadRequest("events must be a list", code="invalid_body", field="events")
        return events
    if isinstance(doc, dict):
        return [doc]
    raise BadRequest(
        'send one event object or {"events": [...]}', code="invalid_body", field="events"
    )


def check_count(events: list[Any], limit: int) -> None:
    if len(events) > limit:
        raise PayloadTooLarge(
            f"a request may carry at most {limit} events; it has {len(events)}",
            code="too_many_events",
        )


class SegmentBody:
    """A Segment dialect body: its messages translated to native events (or the error
    each one gave), and the write key it carries, if any."""

    def __init__(self, call: str, doc: Any) -> None:
        try:
            # A webhook's body is one message carrying its own type.
            self.messages, self.write_key = messages("track" if call == WEBHOOK else call, doc)
        except SegmentError as exc:
            raise BadRequest(exc.message, code=exc.code, field=exc.field) from None
        self._call = None if call in BATCHES or call == WEBHOOK else call
        self._sent_at = doc.get("sentAt") if isinstance(doc, dict) else None

    def translated(self, clock: Clock | None = None) -> list[Any]:
        """Native event dicts, an `EventRejected` in place of a message that cannot be
        translated (ingest reports it at its index)."""
        received_ms = int(time.time() * 1000)
        sent_at = self._sent_at
        if isinstance(sent_at, str):
            try:  # once for the batch rather than once a message
                sent_at = Millis(parse_ms(sent_at) if clock is None else clock.parse_ms(sent_at))
            except (ValueError, OverflowError):
                pass  # each message names it as its own error
        out: list[Any] = []
        for message in self.messages:
            try:
                out.append(
                    translate(
                        message,
                        call=self._call,
                        received_at=received_ms,
                        sent_at=sent_at,
                        clock=clock,
                    )
                )
            except SegmentError as exc:
                out.append(EventRejected(exc.code, exc.message, exc.field))
        return out
