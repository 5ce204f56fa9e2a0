"""Compile once: a template and its blocks become Jinja templates for HTML, AMP and text.

MJML is compiled here, once per template version, never per reader: a per-reader render
only runs Jinja over the precompiled output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import css_inline
import mjml
from jinja2.sandbox import SandboxedEnvironment

from app.reader.formats import Formats, LanguageError
from app.render import amp, direction
from app.render.environments import Environments
from app.render.jinja import check_part, protect, restore
from app.render.layout import Layout, Piece, SharedBody, Slot, piece
from app.render.sources import Block, Part, SourceError, TemplateSource

MARKER = re.compile(r"<!--kairos:block:(\d+):(main|fallback|end)-->")
# Elements whose text is not HTML: character references are not decoded there.
RAW_TEXT = re.compile(r"(<(?:style|script)\b.*?</(?:style|script)\s*>)", re.S | re.I)
# After the preheader: invisible characters that fill the inbox preview, so that clients
# do not run the first lines of the body into it.
FILLER = "&#847;&zwnj;&nbsp;" * 90
# The email has a dark palette (theme.css): clients that honour these do not invert it.
SCHEME_META = (
    '<meta name="color-scheme" content="light dark">'
    '<meta name="supported-color-schemes" content="light dark">'
)


@dataclass(frozen=True)
class Compiled:
    """A template ready for per-reader rendering: each format as a layout of pieces."""

    source: TemplateSource
    version: str
    blocks: tuple[Block, ...]
    html: Layout
    amp: Layout | None
    text: Layout
    subject: Layout
    preheader: Layout
    # What its Jinja reads of a render's context (or its blocks need): the reader data
    # it does not read is not looked up.
    reads: frozenset[str] = frozenset()
    # The loop bodies its per-reader pieces share, by the number their loops call.
    bodies: tuple[SharedBody, ...] = ()
    # Money, numbers and dates in the template's language, built once here.
    formats: Formats = field(default_factory=Formats)


def compile_template(
    source: TemplateSource,
    blocks: dict[str, Block],
    envs: Environments,
    *,
    version: str,
    theme_css: str,
    amp_css: str,
    fold: bool = True,
) -> Compiled:
    """Compile `source`; a designer's mistake raises `SourceError` naming file and line.
    With `fold`, each block's params are evaluated into its Jinja once, here (see
    `layout.piece`); without, they are read at every render (the reference)."""
    used = tuple(blocks[use.block] for use in source.blocks)
    for block in {b.name: b for b in used}.values():
        for part in (block.mjml, block.fallback_mjml, block.amp, block.fallback_amp):
            if part is not None:
                check_part(envs.html, part)
        for part in (block.text, block.fallback_text):
            if part is not None:
                check_part(envs.text, part)
    template_json = source.folder / "template.json"
    for text in (source.subject, source.preheader):
        check_part(envs.text, Part(template_json, text))

    params = tuple(use.params if fold else None for use in source.blocks)
    bodies: list[SharedBody] = []  # the template's shared loop bodies (layout.piece)
    try:
        formats = Formats(source.language)
    except LanguageError as exc:
        raise SourceError(template_json, f'"language": {exc}') from None
    html = _html_layout(source, used, params, bodies, envs.html, theme_css)
    amp = _amp_layout(source, used, params, bodies, envs.amp, amp_css)
    plain = _text_layout(used, params, bodies, envs.text)
    subject = Layout((piece(envs.text, source.subject, template_json),))
    preheader = Layout((piece(envs.text, source.preheader, template_json),))
    reads = set().union(*(f.reads() for f in (html, amp, plain, subject, preheader) if f))
    reads.update(need for block in used for need in block.needs)
    return Compiled(
        source=source,
        version=version,
        blocks=used,
        html=html,
        amp=amp,
        text=plain,
        subject=subject,
        preheader=preheader,
        reads=frozenset(reads),
        bodies=tuple(bodies),
        formats=formats,
    )


def mjml_document(
    source: TemplateSource, used: tuple[Block, ...], theme_css: str, *, inline_style: bool = False
) -> tuple[str, list[str], list[Path]]:
    """The template's whole MJML document with Jinja swapped for placeholders, the Jinja
    tags, and the file each tag came from. With `inline_style`, the theme CSS goes in as
    `<mj-style inline="inline">` (for Node mjml, which inlines it itself)."""
    tags: list[str] = []
    owners: list[Path] = []

    def guarded(part: Part | None) -> str:
        if part is None:
            return ""
        before = len(tags)
        text = protect(part.text, tags)
        owners.extend([part.path] * (len(tags) - before))
        return text

    body = []
    for i, block in enumerate(used):
        body.append(f"<mj-raw><!--kairos:block:{i}:main--></mj-raw>")
        body.append(guarded(block.mjml))
        body.append(f"<mj-raw><!--kairos:block:{i}:fallback--></mj-raw>")
        body.append(guarded(block.fallback_mjml))
        body.append(f"<mj-raw><!--kairos:block:{i}:end--></mj-raw>")
    pixel = guarded(
        Part(
            source.folder / "(pixel)",
            '<mj-raw>{% if consent.tracking %}<img src="{{ links.pixel() }}" width="1" '
            'height="1" alt="" style="display:block;border:0;width:1px;height:1px">'
            "{% endif %}</mj-raw>",
        )
    )
    head = guarded(Part(source.folder / "(head)", "<mj-title>{{ _subject }}</mj-title>"))
    if theme_css:
        # Also as a plain style sheet: the @media rules cannot be inlined.
        head += "<mj-style>" + theme_css + "</mj-style>"
        if inline_style:
            head += '<mj-style inline="inline">' + theme_css + "</mj-style>"
    head += guarded(
        Part(source.folder / "(head)", "<mj-preview>{{ _preheader }}" + FILLER + "</mj-preview>")
    )
    head += "<mj-raw>" + SCHEME_META + "</mj-raw>"
    document = (
        direction.mjml_root(source.language)
        + "<mj-head>"
        + head
        + '<mj-attributes><mj-all font-family="Helvetica, Arial, sans-serif"/>'
        + '<mj-text font-size="16px" line-height="24px" color="#1f2933"/>'
        + direction.mjml_attributes(source.language)
        + "</mj-attributes>"
        + '</mj-head><mj-body background-color="#f4f5f7" width="600px" css-class="kx-body">'
        + "".join(body)
        + pixel
        + "</mj-body></mjml>"
    )
    return document, tags, owners


def mrml_html(document: str, theme_css: str, where: Path) -> str:
    """MJML to HTML with MRML, then the theme CSS inlined (MRML does not inline
    `mj-style inline` itself)."""
    try:
        compiled = mjml.mjml2html(document)
    except Exception as exc:  # MRML reports one message for the whole document
        raise SourceError(where, f"MJML: {exc}") from None
    if theme_css:
        compiled = css_inline.CSSInliner(
            extra_css=theme_css,
            inline_style_tags=False,
            keep_style_tags=True,
            load_remote_stylesheets=False,
        ).inline(compiled)
    return compiled


def ascii_html(html: str) -> str:
    """`html` with its non-ASCII characters written as character references (outside
    style and script elements, where they would not be decoded): the same page, which
    survives any transfer encoding and is cheaper to send (see `layout.output.html_escape`)."""
    if html.isascii():
        return html
    pieces = RAW_TEXT.split(html)
    for i in range(0, len(pieces), 2):
        pieces[i] = pieces[i].encode("ascii", "xmlcharrefreplace").decode("ascii")
    return "".join(pieces)


# Each block's params, or None for each when they are not folded in.
Params = tuple[dict[str, Any] | None, ...]


def _html_layout(
    source: TemplateSource,
    used: tuple[Block, ...],
    params: Params,
    bodies: list[SharedBody],
    env: SandboxedEnvironment,
    theme_css: str,
) -> Layout:
    document, tags, owners = mjml_document(source, used, theme_css)
    compiled = ascii_html(mrml_html(document, theme_css, source.folder))
    restored, seen = restore(compiled, tags)
    lost = [i for i in range(len(tags)) if i not in seen]
    if lost:
        raise SourceError(
            owners[lost[0]],
            f"the MJML compiler dropped {tags[lost[0]]!r}: put Jinja inside mj-text, "
            "mj-button, mj-raw or an attribute value",
        )
    # The compiled HTML, cut at the block markers: what lies between blocks, and each
    # block's main and fallback markup.
    where = source.folder / "(html)"
    items: list[Piece | Slot] = []
    expected = [(i, kind) for i in range(len(used)) for kind in ("main", "fallback", "end")]
    start, main = 0, ""
    for match, (i, kind) in zip(MARKER.finditer(restored), expected, strict=False):
        if (int(match.group(1)), match.group(2)) != (i, kind):
            raise SourceError(where, "the MJML compiler moved a block out of place")
        text = restored[start : match.start()]
        start = match.end()
        if kind == "main":
            if text:
                items.append(piece(env, text, where))
        elif kind == "fallback":
            main = text
        else:
            block = used[i]
            main_path = block.mjml.path if block.mjml else where
            fallback_path = block.fallback_mjml.path if block.fallback_mjml else where
            items.append(
                Slot(
                    i,
                    _optional(env, main, main_path, params[i], bodies),
                    _optional(env, text, fallback_path, params[i], bodies),
                )
            )
    if len(MARKER.findall(restored)) != len(expected):
        raise SourceError(where, "the MJML compiler lost a block marker")
    if restored[start:]:
        items.append(piece(env, restored[start:], where))
    return Layout(tuple(items))


def _optional(
    env: SandboxedEnvironment,
    text: str,
    path: Path,
    params: dict[str, Any] | None,
    bodies: list[SharedBody],
) -> Piece | None:
    return piece(env, text, path, params, bodies) if text.strip() else None


def _amp_layout(
    source: TemplateSource,
    used: tuple[Block, ...],
    params: Params,
    bodies: list[SharedBody],
    env: SandboxedEnvironment,
    amp_css: str,
) -> Layout | None:
    parts = amp.document(source, used, amp_css)
    if parts is None:
        return None
    where = source.folder / "(amp)"
    slots = []
    for i, block in enumerate(used):
        main, fallback = parts.blocks[i]
        main_path = block.amp.path if block.amp else where
        fallback_path = block.fallback_amp.path if block.fallback_amp else where
        slots.append(
            Slot(
                i,
                _optional(env, main + "\n", main_path, params[i], bodies),
                _optional(env, fallback + "\n", fallback_path, params[i], bodies),
            )
        )
    return Layout((piece(env, parts.head, where), *slots, piece(env, parts.tail, where)))


def block_branch(match: re.Match[str]) -> str:
    """A block marker of the compiled HTML as the Jinja that shows the block's main part,
    its fallback, or nothing, for this reader."""
    i, kind = match.group(1), match.group(2)
    if kind == "main":
        return f'{{% if _mode[{i}] == "main" %}}{{% with params = _params[{i}] %}}'
    if kind == "fallback":
        return (
            f'{{% endwith %}}{{% elif _mode[{i}] == "fallback" %}}'
            f"{{% with params = _params[{i}] %}}"
        )
    return "{% endwith %}{% endif %}"


def _text_layout(
    used: tuple[Block, ...], params: Params, bodies: list[SharedBody], env: SandboxedEnvironment
) -> Layout:
    slots = []
    for i, block in enumerate(used):
        main, fallback = (
            None
            if part is None
            else piece(env, part.text.strip("\n") + "\n\n", part.path, params[i], bodies)
            for part in (block.text, block.fallback_text)
        )
        slots.append(Slot(i, main, fallback))
    return Layout(tuple(slots))
