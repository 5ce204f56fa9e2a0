"""A small read-only DOM of an email's HTML (the standard library's parser), its inline
styles and their colours: what the review checks (tests/review_checks.py) read a render
through (the WCAG contrast arithmetic is the app's, app/render/contrast.py). Emails
carry their styles inline (MJML and the inliner put them there), so an element's colours
are found on it and its ancestors, not in a cascade."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from types import MappingProxyType

VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
     "track", "wbr"}
)  # fmt: skip
# Enough names for what emails use; anything else is reported as an unknown colour.
NAMED = MappingProxyType({
    "black": (0, 0, 0), "white": (255, 255, 255), "red": (255, 0, 0),
    "green": (0, 128, 0), "blue": (0, 0, 255), "gray": (128, 128, 128),
    "grey": (128, 128, 128), "silver": (192, 192, 192), "navy": (0, 0, 128),
    "yellow": (255, 255, 0), "orange": (255, 165, 0), "maroon": (128, 0, 0),
})  # fmt: skip
RGB = re.compile(r"rgba?\(\s*(\d+)[\s,]+(\d+)[\s,]+(\d+)(?:[\s,/]+([\d.]+%?))?\s*\)")
Colour = tuple[int, int, int]


@dataclass
class Element:
    """One element: its tag, attributes (names lower-cased), children in order (elements
    and text), and its parent."""

    tag: str
    attrs: dict[str, str]
    parent: Element | None = None
    children: list[Element | str] = field(default_factory=list)

    def iter(self) -> Iterator[Element]:
        """This element and every element under it, in document order."""
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.iter()

    def find_all(self, tag: str) -> list[Element]:
        return [e for e in self.iter() if e.tag == tag]

    def text(self) -> str:
        """The text under this element, whitespace collapsed."""
        parts: list[str] = []
        for child in self.children:
            parts.append(child if isinstance(child, str) else child.text())
        return " ".join(" ".join(parts).split())

    def own_text(self) -> str:
        return " ".join(" ".join(c for c in self.children if isinstance(c, str)).split())

    def ancestors(self) -> Iterator[Element]:
        """This element, then its parent, up to the root."""
        node: Element | None = self
        while node is not None:
            yield node
            node = node.parent

    def style(self) -> dict[str, str]:
        """The inline `style` attribute as property -> value (the last one wins)."""
        out: dict[str, str] = {}
        for declaration in self.attrs.get("style", "").split(";"):
            name, sep, value = declaration.partition(":")
            if sep:
                out[name.strip().lower()] = value.replace("!important", "").strip()
        return out


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.node = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k.lower(): v or "" for k, v in attrs}, self.node)
        self.node.children.append(element)
        if tag not in VOID:
            self.node = element

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.node.children.append(Element(tag, {k.lower(): v or "" for k, v in attrs}, self.node))

    def handle_endtag(self, tag: str) -> None:
        # Close up to the nearest open element of that name; a stray end tag is ignored.
        for open_element in self.node.ancestors():
            if open_element.tag == tag:
                self.node = open_element.parent or self.root
                return

    def handle_data(self, data: str) -> None:
        self.node.children.append(data)


def parse(html: str) -> Element:
    """The document's tree (comments, so Outlook's conditional parts, left out)."""
    builder = _Builder()
    builder.feed(html)
    builder.close()
    return builder.root


def colour(value: str) -> Colour | None:
    """`#rgb`, `#rrggbb`, `rgb()`/`rgba()` (opaque only) or a common name, else None."""
    value = value.strip().lower()
    if re.fullmatch(r"#[0-9a-f]{3}", value):
        return (int(value[1] * 2, 16), int(value[2] * 2, 16), int(value[3] * 2, 16))
    if re.fullmatch(r"#[0-9a-f]{6}", value):
        return (int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16))
    match = RGB.fullmatch(value)
    if match:
        alpha = match.group(4)
        if alpha is not None and alpha not in ("1", "1.0", "100%"):
            return None
        r, g, b = (min(255, int(match.group(i))) for i in (1, 2, 3))
        return (r, g, b)
    return NAMED.get(value)


def own_colour(element: Element) -> str | None:
    """The text colour an element sets itself (inline style, or a `<font color>`)."""
    return element.style().get("color") or (
        element.attrs.get("color") if element.tag == "font" else None
    )


def own_background(element: Element) -> str | None:
    """The background colour an element sets itself (`background-color`, a colour as
    `background`, or the `bgcolor` attribute that Outlook reads)."""
    style = element.style()
    value = style.get("background-color")
    if value is None and "background" in style:
        value = next((w for w in style["background"].split() if colour(w)), None)
    if value is None:
        value = element.attrs.get("bgcolor")
    if value is not None and value.strip().lower() in ("transparent", "none", "inherit", ""):
        return None
    return value


def hidden(element: Element) -> bool:
    """Whether the element or an ancestor is not shown (`display:none`, `hidden`, the
    preheader's `max-height:0` trick)."""
    for node in element.ancestors():
        style = node.style()
        if style.get("display", "").lower() == "none" or "hidden" in node.attrs:
            return True
        if (
            style.get("max-height", "").replace(" ", "") in ("0", "0px")
            and style.get("overflow", "").lower() == "hidden"
        ):
            return True
    return False
