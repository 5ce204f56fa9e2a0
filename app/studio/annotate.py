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

# Marker pieces kept, per format: for templates of up to this many blocks.
MAX_MARKED = 512
SLOT = re.compile(r"<!--kairos-slot:(\d+):(\w+)-->(.*?)<!--/kairos-slot:\1-->", re.S)


class Markers:
    """The marker pieces of each block index, compiled once (a preview's annotations
    then cost no Jinja compile) for the sandboxes `envs`."""

    def __init__(self, envs: Environments) -> None:
        self.envs = envs
        self._pieces: dict[tuple[bool, int], tuple[Piece, Piece]] = {}

    def annotated(self, compiled: Compiled) -> Compiled:
        """`compiled` with a marker before and after each block of its HTML and AMP."""
        html_layout = self._marked(compiled.html, amp=False)
        amp_layout = None if compiled.amp is None else self._marked(compiled.amp, amp=True)
        return replace(compiled, html=html_layout, amp=amp_layout)

    def _marked(self, layout: Layout, *, amp: bool) -> Layout:
        items: list[Piece | Slot] = []
        for item in layout:
            if isinstance(item, Slot):
                start, end = self._around(item.index, amp=amp)
                items += [start, item, end]
            else:
                items.append(item)
        return Layout(tuple(items))

    def _around(self, i: int, *, amp: bool) -> tuple[Piece, Piece]:
        found = self._pieces.get((amp, i))
        if found is None:
            env: SandboxedEnvironment = self.envs.amp if amp else self.envs.html
            where = Path("(studio)")
            found = (
                piece(env, f"<!--kairos-slot:{i}:{{{{ _mode[{i}] }}}}-->", where),
                piece(env, f"<!--/kairos-slot:{i}-->", where),
            )
            if len(self._pieces) < MAX_MARKED:
                self._pieces[(amp, i)] = found
        return found


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
