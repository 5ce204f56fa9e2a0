"""AMP-for-Email CORS: which senders may have their emails read our feeds.

Version 2: the mail client sends `AMP-Email-Sender`; we echo it in
`AMP-Email-Allow-Sender` when the sender is on the allow-list.
Version 1 (deprecated, still sent by some clients): `Origin` (the mail client's https
origin) plus the `__amp_source_origin` query parameter holding the sender; we answer with
`Access-Control-Allow-Origin`, `AMP-Access-Control-Allow-Source-Origin` and
`Access-Control-Expose-Headers` (never credentials).
A request with neither (curl, a test, a web page) gets no CORS headers: a browser will
then refuse to hand the response to another origin, and the signed token still guards
the data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from app.errors import Forbidden

SOURCE_ORIGIN_PARAM = "__amp_source_origin"
# A mail client's web origin, as a browser serializes it: https, a host name, maybe a
# port. Never `null` (a sandboxed frame, a file, a data: URL) or plain http.
CLIENT_ORIGIN = re.compile(r"https://[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?(?::[0-9]{1,5})?")


class SenderNotAllowed(Forbidden):
    code = "sender_not_allowed"


class AmpCors:
    """Checks a request's sender against the allow-list and returns the headers to add."""

    def __init__(self, senders: Iterable[str]) -> None:
        patterns = []
        for sender in senders:
            if sender == "*":
                patterns.append(".+")
            else:
                # '*' stands for any run of characters except '@', so '*@example.com'
                # matches any local part but never 'a@evil.test@example.com'.
                patterns.append("[^@]*".join(re.escape(p) for p in sender.lower().split("*")))
        self._allowed = re.compile("|".join(f"(?:{p})" for p in patterns) or "(?!)")

    def allows(self, sender: str) -> bool:
        return len(sender) <= 320 and self._allowed.fullmatch(sender.lower()) is not None

    def headers(
        self, sender: str | None, origin: str | None, query: Mapping[str, str]
    ) -> list[tuple[bytes, bytes]]:
        """Response headers for a request with these `AMP-Email-Sender` and `Origin`
        headers and query parameters, or `SenderNotAllowed`."""
        if sender is not None:
            if not self.allows(sender):
                raise SenderNotAllowed("this sender may not load Kairos content")
            return [(b"amp-email-allow-sender", sender.encode("latin-1"))]
        source = query.get(SOURCE_ORIGIN_PARAM)
        if source is None:
            return []
        if not origin or CLIENT_ORIGIN.fullmatch(origin) is None or not self.allows(source):
            raise SenderNotAllowed("this sender may not load Kairos content")
        # No Access-Control-Allow-Credentials: AMP emails fetch without cookies, and the
        # signed token in the URL is the grant.
        return [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"amp-access-control-allow-source-origin", source.encode("latin-1")),
            (b"access-control-expose-headers", b"AMP-Access-Control-Allow-Source-Origin"),
        ]
