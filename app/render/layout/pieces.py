"""Compile time: a format of a template as a layout of pieces of Jinja, each classified
by what it reads (shared by readers alike, or rendered per reader), with a block's
params folded in and the loop bodies readers can share taken out."""

from __future__ import annotations

from collections.abc import Iterator, Set
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from jinja2 import Template
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from app.render import memo
from app.render.layout import jinja_internals as jinja
from app.render.layout.output import html_escape
from app.render.sources import SourceError

# Names a piece may read and still be shared: fixed for a piece ...
FIXED_NAMES = frozenset({"params", "template_links", "theme", "language"})
# ... or the same for many readers, so they key the shared copies.
KEYED_NAMES = frozenset(
    {"variant", "campaign", "locale", "timezone", "consent", "links", "segments", "segment"}
    | {"_mode"}
)
# What makes a piece different at every render even without reader data.
PER_RENDER_FILTERS = frozenset({"random"})
PER_RENDER_GLOBALS = frozenset({"lipsum"})
# Filters that read the context, and what they read there.
# (`money`, `number` read the template's `_formats`: fixed for its pieces.)
CONTEXT_FILTERS = MappingProxyType({"click": "links", "datetime": "timezone"})
# The filter a shared loop body's loop calls (`reader.shared_body`).
SHARED_BODY_FILTER = "_shared_body"


@dataclass(eq=False, slots=True)
class Piece:
    """Jinja over the reader context. `keyed` is None when the piece reads the reader
    (rendered per reader), else the per-send names whose values key its shared copies.
    `render_in(context)` renders it in a context made by `context` for it or for
    another `reusable` piece of its environment."""

    template: Template
    keyed: tuple[str, ...] | None
    bodies: tuple[SharedBody, ...] = ()
    reads: frozenset[str] = frozenset()  # the names it reads from the render's context
    reusable: bool = field(init=False)
    render_in: jinja.RenderIn = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.reusable = jinja.reusable(self.template)
        self.render_in = jinja.render_function(self.template)

    def render(self, ctx: dict[str, Any]) -> str:
        """The piece for `ctx` (which must hold the environment's globals)."""
        return self.render_in(self.context(ctx))

    def context(self, ctx: dict[str, Any]) -> Context:
        """A Jinja context over `ctx` itself (not a copy)."""
        return jinja.shared_context(self.template, ctx)


@dataclass(eq=False, slots=True)
class Slot:
    """Block `index` of the template: its main piece, its fallback piece, or nothing."""

    index: int
    main: Piece | None
    fallback: Piece | None


@dataclass(eq=False, slots=True)
class Layout:
    """A format's pieces and slots in order; `keyed`: every per-send name its shared
    pieces read, plus `_mode` (which blocks show) when it has slots."""

    items: tuple[Piece | Slot, ...]
    keyed: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names: set[str] = set()
        for item in self.items:
            if isinstance(item, Slot):
                names.add("_mode")
                pieces = [item.main, item.fallback]
            else:
                pieces = [item]
            for found in pieces:
                if found is not None and found.keyed is not None:
                    names.update(found.keyed)
        self.keyed = tuple(sorted(names))

    def __iter__(self) -> Iterator[Piece | Slot]:
        return iter(self.items)

    def reads(self) -> set[str]:
        """Every name its pieces read from the render's context."""
        names: set[str] = set()
        for item in self.items:
            for found in (item.main, item.fallback) if isinstance(item, Slot) else (item,):
                if found is not None:
                    names.update(found.reads)
        return names


@dataclass(eq=False, slots=True)
class SharedBody:
    """The body of a `{% for item in ... %}` loop in a piece that reads the reader, when
    the body itself reads only `item` and what a shared piece may read: a product card
    of a reader's recommendations (`html`: in the HTML or AMP part, else in the text
    part). Rendered once per distinct item (and per-send values) and shared by every
    reader who shows that item."""

    piece: Piece
    item: str
    html: bool


def piece(
    env: SandboxedEnvironment,
    text: str,
    path: Path,
    params: dict[str, Any] | None = None,
    bodies: list[SharedBody] | None = None,
) -> Piece:
    """`text` compiled as a piece; a syntax error is a `SourceError` naming `path`.
    `params`: the block's params in this template, fixed for the piece: evaluated into
    its Jinja once, here, and printed escaped by the render's own escape, so the output
    is the same text, byte for byte. `bodies`: the compiled template's table of shared
    loop bodies, which this piece's are added to (without it, its loops are rendered as
    they are). Within a compile that reuses (`app/render/memo.py`), a piece made by the
    last compile of the template from the same text, at the same place, is reused."""
    found_memo = memo.current()
    key = None
    if found_memo is not None:
        shared_from = None if bodies is None else len(bodies)
        key = ("piece", id(env), text, str(path), repr(params), shared_from)
        made = found_memo.get(key)
        if made is not None:
            if bodies is not None:
                bodies.extend(made.bodies)  # at the same numbers: `shared_from` is the same
            return made  # type: ignore[no-any-return]
    made = _piece(env, text, path, params, bodies)
    if found_memo is not None:
        found_memo.put(key, made)
    return made


def _piece(
    env: SandboxedEnvironment,
    text: str,
    path: Path,
    params: dict[str, Any] | None,
    bodies: list[SharedBody] | None,
) -> Piece:
    try:
        tree = env.parse(text)
        found = jinja.reads(tree)
        keyed = _keyed(found, env)
        if params is not None:
            jinja.fold_params(tree, env, params, html_escape)
        shared = (
            _share_loop_bodies(tree, env, bodies) if keyed is None and bodies is not None else []
        )
        template = jinja.compile_tree(env, tree, html_escape)
    except Exception as exc:
        raise SourceError(path, f"template error: {exc}") from None
    return Piece(template, keyed, tuple(shared), found.context)


def _share_loop_bodies(
    tree: jinja.Tree, env: SandboxedEnvironment, table: list[SharedBody]
) -> list[SharedBody]:
    """Replace the body of each innermost, plain `for` loop of `tree` that can be
    shared by a call to it (`SHARED_BODY_FILTER` with its number in `table`, where it
    is added); returns those bodies."""
    found: list[SharedBody] = []
    for loop in jinja.loop_bodies(tree, env):
        reads = jinja.reads(loop.tree)
        keyed = _keyed(reads, env, reads.context - {loop.item})
        if keyed is None:
            continue
        template = jinja.compile_tree(env, loop.tree, html_escape)
        shared = SharedBody(Piece(template, keyed), loop.item, env.autoescape is True)
        loop.call_instead(env, SHARED_BODY_FILTER, len(table))
        table.append(shared)
        found.append(shared)
    return found


def _keyed(
    found: jinja.Reads, env: SandboxedEnvironment, context: Set[str] | None = None
) -> tuple[str, ...] | None:
    """The per-send names among what a tree reads of the render's context (`context`,
    by default all it reads there), or None when it reads the reader or changes at
    every render."""
    names = set(found.context if context is None else context)
    if found.names & PER_RENDER_GLOBALS or found.filters & PER_RENDER_FILTERS:
        return None
    names.update(CONTEXT_FILTERS[name] for name in found.filters & CONTEXT_FILTERS.keys())
    if names - FIXED_NAMES - KEYED_NAMES - set(env.globals):
        return None
    return tuple(sorted(names & KEYED_NAMES))
