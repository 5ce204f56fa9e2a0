"""A render's output: text shared by readers (`Static`, JSON-encoded once), one format of
one reader's render in pieces (`Output`), and the escaping of what templates print."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, final

import orjson
from markupsafe import Markup, escape

from app.links import escape_str


@final
@dataclass(frozen=True, slots=True)
class Static:
    """Shared text of a skeleton, also kept as the inside of a JSON string (UTF-8): a
    reader's JSON answer reuses it instead of encoding the same text again."""

    text: str
    json: bytes

    @classmethod
    def of(cls, text: str) -> Static:
        return cls(text, orjson.dumps(text)[1:-1])


class Output:
    """One format of one reader's render, in pieces: joined on demand as text, or as a
    JSON string whose shared pieces are already encoded. Equal when the texts are (and
    so not hashable)."""

    __slots__ = ("_pieces", "_text")

    def __init__(self, pieces: list[Static | str]) -> None:
        self._pieces = pieces
        self._text: str | None = None

    def text(self) -> str:
        if self._text is None:
            self._text = "".join([p.text if type(p) is Static else p for p in self._pieces])
        return self._text

    def json(self) -> list[bytes | memoryview]:
        """The text as a JSON string (quotes included), UTF-8, in pieces to join."""
        if self._text is not None:
            return [orjson.dumps(self._text)]
        # A view drops the quotes of each piece's JSON without copying it again.
        dumps, view = orjson.dumps, memoryview
        out: list[bytes | memoryview] = [b'"']
        out += [p.json if type(p) is Static else view(dumps(p))[1:-1] for p in self._pieces]
        out.append(b'"')
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Output) and self.text() == other.text()

    def __repr__(self) -> str:
        return f"Output({self.text()[:60]!r}...)"


_new_str = str.__new__


def markup(text: str) -> Markup:
    """`text`, already escaped, as Markup (without Markup's Python-level constructor)."""
    return _new_str(Markup, text)


def html_escape(value: Any) -> str:
    """markupsafe's `escape` for the HTML and AMP parts, with a fast path for plain
    strings (most of what a reader's render escapes). Jinja calls it only on what a
    `{{ }}` outputs, whose result goes straight into the output (or into a buffer that
    Jinja marks safe as a whole), so the escaped text need not be a `Markup`. Non-ASCII
    characters become character references, so that the parts stay ASCII
    (`compiler.ascii_html`), which JSON encodes four times faster."""
    if type(value) is str:
        escaped = escape_str(value)
        if escaped.isascii():
            return escaped
        # After escaping: the references added are markup, not text to escape.
        return escaped.encode("ascii", "xmlcharrefreplace").decode("ascii")
    if type(value) is Markup:
        return value
    escaped = escape(value)
    if escaped.isascii():
        return escaped
    # Already escaped: the references added are markup, not text to escape again.
    return markup(escaped.encode("ascii", "xmlcharrefreplace").decode("ascii"))
