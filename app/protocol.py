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
# After a 431: how long and how much more of the client's head is read and dropped.
LINGER_S = 2.0
LINGER_BYTES = 1024 * 1024
TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\n"
    b"cache-control: no-store\r\n"
    b"connection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)

# A request the parser cannot read (a NUL or raw non-ASCII byte in its target, a broken
# request line): the JSON error every other answer has, not uvicorn's plain text.
MALFORMED = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"content-type: application/json\r\n"
    b"cache-control: no-store\r\n"
    b"connection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)
MALFORMED_BODY = b'{"error":{"code":"bad_request","message":"not a valid HTTP/1.1 request"}}'


@dataclass(frozen=True)
class Limits:
    """What a client may send: the head's size, and how long the head and the body may
    take (the settings of the same names)."""

    max_head_bytes: int = 32 * 1024  # browsers send heads under 8 KB
    head_timeout_s: float = 10.0
    body_timeout_s: float = 60.0

    @property
    def tick_s(self) -> float:
        """How often a connection's deadlines are looked at."""
        return min(self.head_timeout_s, self.body_timeout_s) / 4

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
    head and the body (see the module's docstring).

    Every email open comes through here, so a request pays two comparisons: the
    deadlines are kept by one timer per connection that ticks and looks at what the
    client owes (a head, a body, or nothing while the app has the request) and whether
    that changed since the last tick; a head or body is late once it has been owed,
    unchanged, for its timeout (give or take a tick)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = DEFAULT
        self._head_bytes = 0  # of a head not complete after the reads so far
        self._read = 0  # the size of the read being parsed
        self._dropped = 0  # bytes read after a refusal
        self._too_large = False
        self._owed: tuple[str, object] = ("head", None)  # what, and of which request
        self._since = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Read here, not in __init__: the lifespan has run once connections come.
        self._limits = self.app_state.get(STATE_KEY, DEFAULT)
        self._since = self.loop.time()
        self._timer = self.loop.call_later(self._limits.tick_s, self._check)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.parser is None:  # refused: read and dropped until the connection closes
            self._dropped += len(data)
            if self._dropped > LINGER_BYTES:
                self.transport.close()
            return
        cycle = self.cycle
        in_head = cycle is None or not cycle.more_body
        self._read = len(data)
        super().data_received(data)
        # Counted after the parser saw the bytes, only when they began in a head and
        # completed none (a whole request, its body too, may come in one read): the
        # parser holds at most one read beyond the limit.
        if self.cycle is not cycle:
            self._head_bytes = 0
        elif in_head and self.parser is not None:
            self._head_bytes += len(data)
            if self._head_bytes > self._limits.max_head_bytes:
                self._refuse_head()

    def on_headers_complete(self) -> None:
        # A head that arrived whole in one read was not counted: measured here, only
        # when that read was large enough to hold one over the limit.
        limit = self._limits.max_head_bytes
        if self._head_bytes + self._read > limit and self._head_size() > limit:
            self._too_large = True
            raise HeadTooLarge  # stops the parser, as a parser error (`send_400_response`)
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            self._refuse_head()
        else:
            self.transport.write(MALFORMED % (len(MALFORMED_BODY), MALFORMED_BODY))
            self.transport.close()

    def _head_size(self) -> int:
        """The request line's target and the headers, as parsed (names, values and their
        separators)."""
        return len(self.url) + sum([len(name) + len(value) + 4 for name, value in self.headers])

    def _refuse_head(self) -> None:
        log.warning("request head over %d bytes: answered 431", self._limits.max_head_bytes)
        if not self.transport.is_closing():
            self.transport.write(self._limits.answer())
            # A lingering close: closed at once with the client's bytes unread, the
            # socket would be reset and the client could lose the 431 before reading it.
            # So our side is shut and what still comes is dropped, for a bounded time
            # and amount.
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self._owed, self._since = ("linger", None), self.loop.time()
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_later(LINGER_S, self._check)
        self.parser = None  # type: ignore[assignment]  # nothing more is parsed

    def _check(self) -> None:
        """Close the connection if what the client owes has been owed too long."""
        self._timer = None
        if self.transport.is_closing():
            return
        now, limits, cycle = self.loop.time(), self._limits, self.cycle
        if self._owed[0] == "linger":
            owed, allowed = self._owed, LINGER_S
        elif cycle is not None and cycle.more_body:
            owed, allowed = ("body", cycle), limits.body_timeout_s
        elif cycle is None or cycle.response_complete:
            owed, allowed = ("head", cycle), limits.head_timeout_s
        else:
            owed, allowed = ("", cycle), 0.0  # the app has the request
        if owed != self._owed:
            self._owed, self._since = owed, now
        elif owed[0] and now - self._since >= allowed:
            if owed[0] != "linger":
                log.warning("request %s not complete in time: connection closed", owed[0])
            if cycle is not None and not cycle.response_complete:
                # The app may be reading the body: it sees the client gone.
                cycle.disconnected = True
                cycle.message_event.set()
            self.transport.close()
            return
        self._timer = self.loop.call_later(limits.tick_s, self._check)
