"""Blocks marked in a preview's HTML and AMP, for the studio to outline and name them:
each shown block inside one element carrying `data-kairos-block`, `data-kairos-file`
and, when it fell back, `data-kairos-fallback`. Only previews are annotated: the
markers are pieces added to a copy of the compiled template, never to the registry's."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from jinja2.sandbox import SandboxedEnvironment

from app.render.compiler import Compiled
from app.render.environments import Environments
from app.render.layout import Layout, Piece, Slot, piece
from app.render.sources import Block

SLOT = re.compile(r"<!--kairos-slot:(\d+):(\w+)-->(.*?)<!--/kairos-slot:\1-->", re.S)


def annotated(compiled: Compiled, envs: Environments) -> Compiled:
    """`compiled` with a marker before and after each block of its HTML and AMP."""
    where = compiled.source.folder / "(studio)"
    html_layout = _marked(compiled.html, envs.html, where)
    amp_layout = None if compiled.amp is None else _marked(compiled.amp, envs.amp, where)
    return replace(compiled, html=html_layout, amp=amp_layout)


def _marked(layout: Layout, env: SandboxedEnvironment, where: Path) -> Layout:
    items: list[Piece | Slot] = []
    for item in layout:
        if isinstance(item, Slot):
            i = item.index
            items.append(piece(env, f"<!--kairos-slot:{i}:{{{{ _mode[{i}] }}}}-->", where))
            items.append(item)
            items.append(piece(env, f"<!--/kairos-slot:{i}-->", where))
        else:
            items.append(item)
    return Layout(tuple(items))


def clean(text: str) -> str:
    """The render without the markers: what the email is."""
    return SLOT.sub(lambda match: match.group(3), text)


def mark(
    text: str,
    blocks: tuple[Block, ...],
    reasons: list[str],
    name: Callable[[Path], str],
    *,
    amp: bool,
) -> str:
    """The render with each shown block wrapped in its annotated element; `reasons`:
    the reasons of the blocks that fell back, in order; `name`: a block file's name for
    the page (`blocks/<b>/<f>`)."""
    pending = list(reasons)

    def wrap(match: re.Match[str]) -> str:
        i, mode, inner = int(match.group(1)), match.group(2), match.group(3)
        reason = pending.pop(0) if mode == "fallback" and pending else "fallback"
        if mode not in ("main", "fallback") or not inner.strip():
            return inner
        block = blocks[i]
        if mode == "main":
            part = block.amp if amp else block.mjml
        else:
            part = block.fallback_amp if amp else block.fallback_mjml
        path = part.path if part is not None else block.folder / "block.json"
        attrs = f' data-kairos-block="{html.escape(block.name)}"'
        attrs += f' data-kairos-file="{html.escape(name(path))}"'
        if mode == "fallback":
            attrs += f' data-kairos-fallback="{html.escape(reason)}"'
        return f"<div{attrs}>{inner}</div>"

    return SLOT.sub(wrap, text)
