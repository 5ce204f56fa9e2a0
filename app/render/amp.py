"""The AMP-for-Email version of a template: `<html ⚡4email data-css-strict>`.

MJML cannot produce AMP, so each block brings its own AMP markup (`block.amp.html`).
Blocks without one are left out of the AMP version. The rules of the AMP4EMAIL spec that
can be checked at compile time are checked here; the official validator runs in tests
and in `kairos check`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType

from app.render import direction
from app.render.sources import Block, SourceError, TemplateSource

MAX_CSS_BYTES = 75_000
MAX_DOCUMENT_BYTES = 200_000
# How to tell that a piece of AMP markup uses an extension: the validator refuses a
# document that loads an extension it does not use.
USES = MappingProxyType(
    {
        "amp-list": re.compile(r"<amp-list\b"),
        "amp-mustache": re.compile(r"""type=["']amp-mustache["']"""),
        "amp-carousel": re.compile(r"<amp-carousel\b"),
        "amp-bind": re.compile(r"<amp-state\b|\son=|\s\[[a-z]"),
        "amp-accordion": re.compile(r"<amp-accordion\b"),
    }
)
EXTENSIONS = MappingProxyType(
    {
        "amp-list": ("custom-element", "https://cdn.ampproject.org/v0/amp-list-0.1.js"),
        "amp-mustache": ("custom-template", "https://cdn.ampproject.org/v0/amp-mustache-0.2.js"),
        "amp-carousel": ("custom-element", "https://cdn.ampproject.org/v0/amp-carousel-0.2.js"),
        "amp-bind": ("custom-element", "https://cdn.ampproject.org/v0/amp-bind-0.1.js"),
        "amp-accordion": ("custom-element", "https://cdn.ampproject.org/v0/amp-accordion-0.1.js"),
    }
)
IMPORTANT = re.compile(r"!\s*important", re.IGNORECASE)


@dataclass(frozen=True)
class AmpSource:
    """The AMP document's Jinja: its head (the extensions its shown blocks use), each
    block's main and fallback markup, and its tail (the open pixel)."""

    head: str
    blocks: tuple[tuple[str, str], ...]
    tail: str


def document(source: TemplateSource, used: tuple[Block, ...], base_css: str) -> AmpSource | None:
    """The AMP document's Jinja source, or None when no block has an AMP part; its
    `<html>` declares the template's language and direction (app/render/direction.py)."""
    if not any(b.amp or b.fallback_amp for b in used):
        return None
    extensions: dict[str, None] = {}
    css_parts = [base_css]
    for block in {b.name: b for b in used}.values():
        for name in block.amp_extensions:
            if name not in EXTENSIONS:
                raise SourceError(
                    block.folder / "block.json",
                    f"unknown AMP extension {name!r}; known: {sorted(EXTENSIONS)}",
                )
            extensions[name] = None
        css_parts.append(block.amp_css)
    css = "\n".join(p.strip() for p in css_parts if p.strip())
    if IMPORTANT.search(css):
        raise SourceError(source.folder, "AMP CSS may not use !important")
    if len(css.encode()) > MAX_CSS_BYTES:
        raise SourceError(source.folder, f"AMP CSS is over {MAX_CSS_BYTES} bytes")
    if "</style" in css.lower():
        raise SourceError(source.folder, "AMP CSS may not contain '</style'")

    scripts = ""
    for name in sorted(extensions):
        kind, src = EXTENSIONS[name]
        # Loaded only when a block shown to this reader uses it.
        showing = [
            f'_mode[{i}] == "{mode}"'
            for i, block in enumerate(used)
            for mode, part in (("main", block.amp), ("fallback", block.fallback_amp))
            if part is not None and USES[name].search(part.text)
        ]
        if showing:
            scripts += (
                f"{{% if {' or '.join(showing)} %}}"
                f'<script async {kind}="{name}" src="{src}"></script>\n{{% endif %}}'
            )
    blocks = tuple(
        (block.amp.text if block.amp else "", block.fallback_amp.text if block.fallback_amp else "")
        for block in used
    )
    # The CSS goes in raw so that braces in it are never read as Jinja.
    head = (
        "<!doctype html>\n"
        "<html ⚡4email data-css-strict"
        + direction.html_attributes(source.language)
        + ">\n<head>\n"
        '<meta charset="utf-8">\n'
        '<script async src="https://cdn.ampproject.org/v0.js"></script>\n'
        + scripts
        + "<style amp4email-boilerplate>body{visibility:hidden}</style>\n"
        + "<style amp-custom>{% raw %}"
        + css
        + "{% endraw %}</style>\n</head>\n<body>\n"
        + '<div class="kx-wrap">\n'
    )
    tail = (
        "{% if consent.tracking %}"
        '<amp-img src="{{ links.pixel() }}" width="1" height="1" alt=""></amp-img>\n'
        "{% endif %}"
        "</div>\n</body>\n</html>\n"
    )
    return AmpSource(head, blocks, tail)
