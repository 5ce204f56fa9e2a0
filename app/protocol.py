"""The HTTP protocol Kairos runs under uvicorn: httptools, with what it lacks for a server
on the public internet. A request head larger than `KAIROS_MAX_HEAD_BYTES` is answered
431 and the connection closed (httptools buffers a header of any size); a head not
complete within `KAIROS_HEAD_TIMEOUT_MS`, or a body not complete within
`KAIROS_BODY_TIMEOUT_MS` of its head, ends the connection (a client trickling bytes
would hold a connection, and a shutdown, for good).

`kairos serve` uses it; elsewhere: `uvicorn --factory app.app:factory --http
app.protocol:KairosProtocol`. The limits come from the app's settings, handed over in
the lifespan's state (`STATE_KEY`); without a lifespan, the defaults.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("kairos.http")

STATE_KEY = "kairos.http_limits"
TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\n"
    b"cache-control: no-store\r\n"
    b"connection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)


@dataclass(frozen=True)
class Limits:
    """What a client may send: the head's size, and how long the head and the body may
    take (the settings of the same names)."""

    max_head_bytes: int = 32 * 1024  # browsers send heads under 8 KB
    head_timeout_s: float = 10.0
    body_timeout_s: float = 60.0

    def answer(self) -> bytes:
        """The 431 answer, whole."""
        body = (
            b'{"error":{"code":"headers_too_large","message":"the request line and headers '
            b'may be at most %d bytes"}}' % self.max_head_bytes
        )
        return TOO_LARGE % (len(body), body)


DEFAULT = Limits()


class HeadTooLarge(Exception):
    """Raised inside the parser's callback to stop it at a head over the limit."""


class KairosProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a cap on the request head and deadlines for the
    head and the body (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._in_head = True  # until a request's headers are complete
        self._limits = DEFAULT
        self._read = 0  # the size of the read being parsed
        self._too_large = False
        # What the client owes and since when ("head", "body", or "" while the app has
        # the request), checked by one timer per connection: a timer per request would
        # cost every email open more than the check.
        self._owes, self._since = "head", 0.0
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Read here, not in __init__: the lifespan has run once connections come.
        self._limits = self.app_state.get(STATE_KEY, DEFAULT)
        self._since = self.loop.time()
        self._timer = self.loop.call_later(self._limits.head_timeout_s, self._check)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.parser is None:  # refused: the connection is closing
            return
        self._read = len(data)
        in_head = self._in_head
        if in_head and not self._owes:  # a kept-alive connection's next request
            self._owes, self._since = "head", self.loop.time()
        super().data_received(data)
        # Counted after the parser saw the bytes: what completed a head is not held
        # against it, and the parser holds at most one read beyond the limit.
        if in_head and self._in_head and self.parser is not None:
            self._head_bytes += len(data)
            if self._head_bytes > self._limits.max_head_bytes:
                self._refuse_head()

    def on_headers_complete(self) -> None:
        # A head that arrived whole in one read was not counted: measured here, only
        # when that read was large enough to hold one over the limit.
        if self._head_bytes + self._read > self._limits.max_head_bytes and (
            self._head_size() > self._limits.max_head_bytes
        ):
            self._too_large = True
            raise HeadTooLarge  # stops the parser, as a parser error (`send_400_response`)
        self._in_head, self._head_bytes = False, 0
        self._owes, self._since = "body", self.loop.time()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head, self._owes = True, ""
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            self._refuse_head()
        else:
            super().send_400_response(msg)

    def _head_size(self) -> int:
        """The request line's target and the headers, as parsed (names, values and their
        separators)."""
        return len(self.url) + sum([len(name) + len(value) + 4 for name, value in self.headers])

    def _refuse_head(self) -> None:
        log.warning("request head over %d bytes: answered 431", self._limits.max_head_bytes)
        if not self.transport.is_closing():
            self.transport.write(self._limits.answer())
            self.transport.close()
        self.parser = None  # type: ignore[assignment]  # nothing more is parsed

    def _check(self) -> None:
        """Close the connection if what the client owes is late; else look again when it
        would be."""
        self._timer = None
        if self.transport.is_closing():
            return
        limits = self._limits
        owes = self._owes
        allowed = limits.head_timeout_s if owes != "body" else limits.body_timeout_s
        late = self.loop.time() - self._since - allowed
        if owes and late >= 0:
            log.warning("request %s not complete in time: connection closed", owes)
            if self.cycle is not None and not self.cycle.response_complete:
                # The app may be reading the body: it sees the client gone.
                self.cycle.disconnected = True
                self.cycle.message_event.set()
            self.transport.close()
            return
        self._timer = self.loop.call_later(-late if owes else allowed, self._check)
