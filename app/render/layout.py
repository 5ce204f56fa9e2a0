"""One format of a compiled template as a sequence of pieces, and the per-reader render.

Most of an email is the same for every reader of a send: the header, the hero, the
editorial text, the footer. A piece whose Jinja reads nothing of the reader (only its
block's params, the template's links and theme, and per-send values such as the
campaign, variant, locale or consent) is rendered once per distinct value of what it
reads and reused; the reader's own URLs inside it (feeds, images, pixel, click reader
token) are sentinels that each render fills with the reader's signed URLs. The pieces
that do read the reader (a name, a cart, recommendations) run their Jinja per reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from jinja2 import Template, meta, nodes
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import escape

from app.render.links import SENTINEL, Links, Spec
from app.render.sources import SourceError

# Names a piece may read and still be shared: fixed for a piece ...
FIXED_NAMES = frozenset({"params", "template_links", "theme"})
# ... or the same for many readers, so they key the shared copies.
KEYED_NAMES = frozenset({"variant", "campaign", "locale", "consent", "links", "segments", "_mode"})
# What makes a piece different at every render even without reader data.
PER_RENDER_FILTERS = frozenset({"random"})
PER_RENDER_GLOBALS = frozenset({"lipsum"})
# Filters that read the context, and what they read there.
CONTEXT_FILTERS = {"click": "links"}
FRAGMENT_CACHE_SIZE = 4096


@dataclass(eq=False, slots=True)
class Piece:
    """Jinja over the reader context. `keyed` is None when the piece reads the reader
    (rendered per reader), else the per-send names whose values key its shared copies."""

    template: Template
    keyed: tuple[str, ...] | None

    def render(self, ctx: dict[str, Any]) -> str:
        """The piece for `ctx` (which must hold the environment's globals)."""
        template = self.template
        try:
            # The context shares `ctx` instead of copying it: a render is a dozen pieces.
            return "".join(template.root_render_func(template.new_context(ctx, shared=True)))
        except Exception:
            _reraise(template.environment)


@dataclass(eq=False, slots=True)
class Slot:
    """Block `index` of the template: its main piece, its fallback piece, or nothing."""

    index: int
    main: Piece | None
    fallback: Piece | None


Layout = tuple[Piece | Slot, ...]


def piece(env: SandboxedEnvironment, text: str, path: Path) -> Piece:
    """`text` compiled as a piece; a syntax error is a `SourceError` naming `path`."""
    try:
        tree = env.parse(text)
        template = env.from_string(tree)
    except Exception as exc:
        raise SourceError(path, f"template error: {exc}") from None
    return Piece(template, _keyed(tree, env))


def _keyed(tree: nodes.Template, env: SandboxedEnvironment) -> tuple[str, ...] | None:
    names = set(meta.find_undeclared_variables(tree))
    if names & PER_RENDER_GLOBALS:
        return None
    for node in tree.find_all(nodes.Filter):
        if node.name in PER_RENDER_FILTERS:
            return None
        if node.name in CONTEXT_FILTERS:
            names.add(CONTEXT_FILTERS[node.name])
    if names - FIXED_NAMES - KEYED_NAMES - set(env.globals):
        return None
    return tuple(sorted(names & KEYED_NAMES))


def _reraise(env: Any) -> NoReturn:
    env.handle_exception()  # re-raises with the template's line in the traceback
    raise AssertionError("unreachable")


@dataclass(frozen=True, slots=True)
class Fragment:
    """A shared piece as rendered: text with the reader's URLs left out. `parts` holds
    strings and, where a reader URL goes, the index of its spec in `specs`."""

    parts: tuple[str | int, ...]
    specs: tuple[Spec, ...]
    unsafe: tuple[str, ...]


class Fragments:
    """Renders layouts for readers, sharing what can be shared (bounded, first in first
    out; cleared when templates are recompiled)."""

    def __init__(self, size: int = FRAGMENT_CACHE_SIZE, *, share: bool = True) -> None:
        self._size = max(1, size)
        self._share = share
        self._cache: dict[tuple[Any, ...], Fragment] = {}
        self._per_reader: set[Piece] = set()

    def __len__(self) -> int:
        return len(self._cache)

    def clear(self) -> None:
        self._cache.clear()
        self._per_reader.clear()

    def render(
        self,
        layout: Layout,
        ctx: dict[str, Any],
        keys: dict[str, Any],
        *,
        html: bool,
    ) -> str:
        """`layout` for the reader of `ctx` (`_mode`, `_params` and the reader's `links`
        in it); `keys` holds the value of each of `KEYED_NAMES` for this reader."""
        out: list[str] = []
        append = out.append
        modes, params = ctx["_mode"], ctx["_params"]
        links: Links = ctx["links"]
        for item in layout:
            if isinstance(item, Slot):
                mode = modes[item.index]
                if mode == "main":
                    found = item.main
                elif mode == "fallback":
                    found = item.fallback
                else:
                    continue
                if found is None:
                    continue
                ctx["params"] = params[item.index]
                item = found
            if item.keyed is None or not self._share or item in self._per_reader:
                append(item.render(ctx))
                continue
            key = (item, *[keys[name] for name in item.keyed])
            fragment = self._cache.get(key)
            if fragment is None:
                fragment = self._fill(item, ctx, links)
                if fragment is None:
                    append(item.render(ctx))
                    continue
                if len(self._cache) >= self._size:
                    del self._cache[next(iter(self._cache))]
                self._cache[key] = fragment
            if fragment.unsafe:
                links.unsafe.extend(fragment.unsafe)
            if not fragment.specs:
                append(fragment.parts[0])  # type: ignore[arg-type]
                continue
            specs = fragment.specs
            for part in fragment.parts:
                if type(part) is str:
                    append(part)
                else:
                    url = links.resolve(specs[part])  # type: ignore[index]
                    append(str(escape(url)) if html else url)
        return "".join(out)

    def _fill(self, item: Piece, ctx: dict[str, Any], links: Links) -> Fragment | None:
        """The shared copy of `item`, or None when its reader URLs did not come through
        intact (a filter changed a sentinel): then it is rendered per reader."""
        fill = links.fill()
        text = item.render({**ctx, "links": fill})
        pieces = SENTINEL.split(text)
        parts: list[str | int] = []
        for i, value in enumerate(pieces):
            if i % 2:
                parts.append(int(value))
            elif value:
                parts.append(value)
        found = {p for p in parts if type(p) is int}
        if found != set(range(len(fill.specs))) or "\x00" in "".join(pieces[::2]):
            self._per_reader.add(item)
            return None
        if not fill.specs:
            parts = ["".join(str(p) for p in parts)]
        return Fragment(tuple(parts), tuple(fill.specs), tuple(fill.unsafe))
