"""What a render gives: the email's parts for one reader (`RenderResult`), or the
template's error (`TemplateBroken`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from app.errors import KairosError
from app.render.headers import PER_RENDER
from app.render.layout import Output

FORMATS = ("html", "amp", "text")


class TemplateBroken(KairosError):
    """A template that does not compile or fails while rendering: 422, naming it."""

    status, code = 422, "template_error"


class Unsubscribed(KairosError):
    """A render for a reader who unsubscribed: 409, nothing to send."""

    status, code = 409, "unsubscribed"


UNSUBSCRIBED = "this reader unsubscribed: there is nothing to send them"


@dataclass
class RenderResult:
    subject: str
    preheader: str
    html_output: Output | None
    amp_output: Output | None
    text: str | None
    segments: list[str]
    variant: str
    fallbacks: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Message-ID, Date, List-Unsubscribe (app/render/headers.py): the MIME message's,
    # for an ESP to set when it builds the message itself.
    headers: dict[str, str] = field(default_factory=dict)
    # Not in the answer: what a send is counted with (app/campaigns/tracking.py), the
    # template's declared variant weights, in order, and whether the reader is tracked.
    weights: Mapping[str, int] = field(default_factory=dict)
    tracked: bool = True
    # Not in the answer either: (block, image, parameter, characters) of live image text
    # no font can draw, for `kairos check` (the answer's `warnings` say the same).
    undrawable: list[tuple[str, str, str, str]] = field(default_factory=list)

    @property
    def html(self) -> str | None:
        return None if self.html_output is None else self.html_output.text()

    @property
    def amp(self) -> str | None:
        return None if self.amp_output is None else self.amp_output.text()

    def json(self, prefix: bytes = b"", suffix: bytes = b"") -> bytes:
        """`body()` as JSON, `prefix` (members and a comma) first, `suffix` after: built
        from the outputs' pieces, whose shared text is encoded once per send."""
        dumps = orjson.dumps
        out: list[bytes | memoryview] = [b"{", prefix, b'"subject":', dumps(self.subject)]
        out += [b',"preheader":', dumps(self.preheader), b',"html":']
        out += [b"null"] if self.html_output is None else self.html_output.json()
        out.append(b',"amp":')
        out += [b"null"] if self.amp_output is None else self.amp_output.json()
        out += [b',"text":', dumps(self.text), b',"segments":', dumps(self.segments)]
        out += [b',"variant":', dumps(self.variant), b',"fallbacks":', dumps(self.fallbacks)]
        if self.warnings:
            out += [b',"warnings":', dumps(self.warnings)]
        out += [b',"headers":', dumps(self.headers)]
        out += [b"}", suffix]
        return b"".join(out)

    def difference(self, other: RenderResult) -> str | None:
        """Where `other` differs from this result (the first field, and the first
        character where it does), or None when they are the same; the Message-ID and
        Date every render stamps anew aside."""
        mine, theirs = self.unstamped().body(), other.unstamped().body()
        for key in sorted(mine.keys() | theirs.keys()):
            a, b = mine.get(key), theirs.get(key)
            if a == b:
                continue
            if isinstance(a, str) and isinstance(b, str):
                at = len(os.path.commonprefix([a, b]))
                start = max(at - 20, 0)
                return f"{key} at character {at}: {a[start : at + 40]!r} != {b[start : at + 40]!r}"
            return f"{key}: {a!r:.200} != {b!r:.200}"
        return None

    def unstamped(self) -> RenderResult:
        """This result without what every render stamps anew (Message-ID, Date): what
        two renders of one email for one reader have equal."""
        headers = {k: v for k, v in self.headers.items() if k not in PER_RENDER}
        return replace(self, headers=headers)

    def body(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "preheader": self.preheader,
            "html": self.html,
            "amp": self.amp,
            "text": self.text,
            "segments": self.segments,
            "variant": self.variant,
            "fallbacks": self.fallbacks,
            **({"warnings": self.warnings} if self.warnings else {}),
            "headers": self.headers,
        }
