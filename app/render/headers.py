"""The headers a rendered email carries: `Message-ID` (unique per render, on the
configured domain), `Date` (RFC 5322), and, when the render knows where the reader
unsubscribes, `List-Unsubscribe` with `List-Unsubscribe-Post` for one-click (RFC 8058).

Where the reader unsubscribes is Kairos's signed one-click URL by default; a template
(`links.unsubscribe`) or a render (`unsubscribe_url`) can name the ESP's instead: an
absolute http(s) URL, or the ESP's merge tag (`*|UNSUB|*`, `{{{ pm:unsubscribe }}}`),
which the ESP replaces when it sends.
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
from datetime import UTC, datetime
from email.utils import format_datetime

from app.targets import UnsafeTarget, check_target

ONE_CLICK = "List-Unsubscribe=One-Click"
# What differs between two renders of the same email for the same reader.
PER_RENDER = frozenset({"Message-ID", "Date"})
MAX_MERGE_TAG = 200
MAX_URL = 900  # a List-Unsubscribe header line stays under RFC 5322's 998 bytes
# A merge tag goes into an href and a header as it is: printable ASCII without quotes,
# angle brackets or backslash, holding one of the delimiters ESPs' tags use, and not
# starting like a URL of another scheme (`javascript:*|x|*`) or host (`//host/*|x|*`).
TAG = re.compile(r"[ !#-&(-;=?-\[\]-~]+")
DELIMITER = re.compile(r"[{}|%\[\]$*]")
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


class BadUnsubscribe(ValueError):
    """An ESP unsubscribe URL that is neither an absolute http(s) URL nor a merge tag."""


def esp_unsubscribe(value: object) -> str:
    """`value` if it may stand for the reader's unsubscribe URL: an absolute http(s)
    URL or an ESP merge tag; else `BadUnsubscribe`."""
    if not isinstance(value, str):
        raise BadUnsubscribe("must be a string")
    try:
        if len(value) <= MAX_URL:
            return check_target(value)
    except UnsafeTarget:
        pass
    if (
        len(value) > MAX_MERGE_TAG
        or value != value.strip()
        or not TAG.fullmatch(value)
        or not DELIMITER.search(value)
        or SCHEME.match(value)
        or value.startswith("/")
    ):
        raise BadUnsubscribe("must be an absolute http(s) URL or the ESP's merge tag")
    return value


def one_click(url: str, *, ours: bool, declared: bool) -> bool:
    """Whether `List-Unsubscribe-Post` goes with `url`: an https URL of ours, or an ESP
    URL the template declares one-click (RFC 8058 needs https; a merge tag becomes the
    ESP's https URL when it sends)."""
    if ours:
        return url.startswith("https://")
    return declared


def unsubscribe_headers(url: str | None, one_click_post: bool) -> dict[str, str]:
    """`List-Unsubscribe` (and `List-Unsubscribe-Post`) for `url`; none without one."""
    if url is None:
        return {}
    headers = {"List-Unsubscribe": f"<{url}>"}
    if one_click_post:
        headers["List-Unsubscribe-Post"] = ONE_CLICK
    return headers


class Stamp:
    """`Message-ID` and `Date` for each render: an id unique to the render on `domain`
    (the second, a count, and a random name for the process), the time now."""

    def __init__(self, domain: str) -> None:
        self.domain = domain
        self._second = -1
        self._date = ""
        # Unique, not secret: a random name for this process's stamps and a count, where
        # 16 random bytes per render cost a system call (~8 µs).
        self._node = secrets.token_hex(8)
        self._count = itertools.count()

    def __call__(self) -> dict[str, str]:
        second = int(time.time())
        if second != self._second:
            # One format a second: a batch renders thousands of emails in one.
            self._second = second
            self._date = format_datetime(datetime.fromtimestamp(second, UTC))
        unique = f"{second:x}.{next(self._count):x}.{self._node}"
        return {"Message-ID": f"<{unique}@{self.domain}>", "Date": self._date}
