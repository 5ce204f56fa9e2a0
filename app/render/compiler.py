"""Compile once: a template and its blocks become Jinja templates for HTML, AMP and text.

MJML is compiled here, once per template version, never per reader: a per-reader render
only runs Jinja over the precompiled output.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import css_inline
import mjml
from jinja2 import Template
from jinja2.sandbox import SandboxedEnvironment

from app.render import amp
from app.render.jinja import check_part, environment, protect, restore
from app.render.sources import Block, Part, SourceError, TemplateSource

MARKER = re.compile(r"<!--kairos:block:(\d+):(main|fallback|end)-->")


@dataclass(frozen=True)
class Compiled:
    """A template ready for per-reader rendering."""

    source: TemplateSource
    version: str
    blocks: tuple[Block, ...]
    html: Template
    amp: Template | None
    text: Template
    subject: Template
    preheader: Template
    amp_bytes: int


@dataclass(frozen=True)
class Environments:
    html: SandboxedEnvironment
    text: SandboxedEnvironment

    @classmethod
    def build(cls, filters: dict[str, Callable[..., Any]]) -> Environments:
        return cls(
            environment(html=True, filters=filters), environment(html=False, filters=filters)
        )


def compile_template(
    source: TemplateSource,
    blocks: dict[str, Block],
    envs: Environments,
    *,
    version: str,
    theme_css: str,
    amp_css: str,
) -> Compiled:
    """Compile `source`; a designer's mistake raises `SourceError` naming file and line."""
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

    html = _compile_html(source, used, envs.html, theme_css)
    amp_source = amp.document(source, used, amp_css)
    amp_template = None
    if amp_source is not None:
        amp_template = _jinja(envs.html, amp_source, source.folder / "(amp)")
    return Compiled(
        source=source,
        version=version,
        blocks=used,
        html=html,
        amp=amp_template,
        text=_jinja(envs.text, _text_source(used), source.folder / "(text)"),
        subject=_jinja(envs.text, source.subject, template_json),
        preheader=_jinja(envs.text, source.preheader, template_json),
        amp_bytes=len(amp_source.encode()) if amp_source else 0,
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
    head += guarded(Part(source.folder / "(head)", "<mj-preview>{{ _preheader }}</mj-preview>"))
    document = (
        '<mjml lang="kjxlangx"><mj-head>'
        + head
        + '<mj-attributes><mj-all font-family="Helvetica, Arial, sans-serif"/>'
        + '<mj-text font-size="16px" line-height="24px" color="#1f2933"/></mj-attributes>'
        + '</mj-head><mj-body background-color="#f4f5f7" width="600px">'
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


def _compile_html(
    source: TemplateSource, used: tuple[Block, ...], env: SandboxedEnvironment, theme_css: str
) -> Template:
    document, tags, owners = mjml_document(source, used, theme_css)
    compiled = mrml_html(document, theme_css, source.folder)
    compiled = compiled.replace("kjxlangx", "{{ locale }}")
    restored, seen = restore(compiled, tags)
    lost = [i for i in range(len(tags)) if i not in seen]
    if lost:
        raise SourceError(
            owners[lost[0]],
            f"the MJML compiler dropped {tags[lost[0]]!r}: put Jinja inside mj-text, "
            "mj-button, mj-raw or an attribute value",
        )

    return _jinja(env, MARKER.sub(block_branch, restored), source.folder / "(html)")


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


def _text_source(used: tuple[Block, ...]) -> str:
    pieces = []
    for i, block in enumerate(used):
        main = block.text.text.strip("\n") if block.text else ""
        fallback = block.fallback_text.text.strip("\n") if block.fallback_text else ""
        pieces.append(
            f'{{% if _mode[{i}] == "main" %}}{{% with params = _params[{i}] %}}{main}\n\n'
            f'{{% endwith %}}{{% elif _mode[{i}] == "fallback" %}}'
            f"{{% with params = _params[{i}] %}}{fallback}\n\n{{% endwith %}}{{% endif %}}"
        )
    return "".join(pieces)


def _jinja(env: SandboxedEnvironment, text: str, path: Path) -> Template:
    try:
        return env.from_string(text)
    except Exception as exc:
        raise SourceError(path, f"template error: {exc}") from None
