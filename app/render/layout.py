"""One format of a compiled template as a layout of pieces, and the per-reader render.

Most of an email is the same for every reader of a send: the header, the hero, the
editorial text, the footer. A piece whose Jinja reads nothing of the reader (only its
block's params, the template's links and theme, and per-send values such as the
campaign, variant, locale or consent) can be shared. For each combination of the
per-send values a layout's shared pieces read (and of which blocks are shown), the
layout is rendered once into a *skeleton*: the shared pieces' text, joined, with holes
where the pieces that read the reader go (a name, a cart, recommendations) and
sentinels where the reader's own URLs go (feeds, images, pixel, the reader token of
click links). A reader's render is then the skeleton, with its holes rendered by Jinja
and its URLs signed for the reader.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Set
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import orjson
from jinja2 import Template, meta, nodes, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from jinja2.visitor import NodeTransformer
from markupsafe import Markup, escape

from app.caching import Bounded
from app.links import Links, Spec, escape_str
from app.reader import DisplayItem
from app.render.fill_links import SENTINEL, FillLinks
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
    bodies: tuple[SharedBody, ...] = ()
    reads: frozenset[str] = frozenset()  # the names it reads from the render's context

    def render(self, ctx: dict[str, Any]) -> str:
        """The piece for `ctx` (which must hold the environment's globals)."""
        return self.render_in(self.context(ctx))

    def context(self, ctx: dict[str, Any]) -> Context:
        """A Jinja context over `ctx` itself (not a copy): a render is a dozen pieces."""
        return self.template.new_context(ctx, shared=True)

    def render_in(self, context: Context) -> str:
        """The piece in `context`, which another piece of the same environment may have
        used before (`reusable`): what that one set at top level is forgotten first."""
        template = self.template
        context.vars.clear()
        context.exported_vars.clear()
        try:
            return "".join(template.root_render_func(context))
        except Exception:
            _reraise(template.environment)

    @property
    def reusable(self) -> bool:
        """Whether it may render in a context made for another piece: not when it has
        `{% block %}`s, which it looks up in its own context."""
        return not self.template.blocks


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


def piece(
    env: SandboxedEnvironment,
    text: str,
    path: Path,
    params: dict[str, Any] | None = None,
    bodies: list[SharedBody] | None = None,
) -> Piece:
    """`text` compiled as a piece; a syntax error is a `SourceError` naming `path`.
    `params`: the block's params in this template, fixed for the piece (folded in).
    `bodies`: the compiled template's table of shared loop bodies, which this piece's
    are added to (without it, its loops are rendered as they are)."""
    try:
        tree = env.parse(text)
        reads = frozenset(meta.find_undeclared_variables(tree))  # globals are not in it
        keyed = _keyed(tree, env, reads)
        if params is not None:
            _fold_params(tree, env, params)
        shared = (
            _share_loop_bodies(tree, env, bodies) if keyed is None and bodies is not None else []
        )
        template = _compiled(env, tree)
    except Exception as exc:
        raise SourceError(path, f"template error: {exc}") from None
    return Piece(template, keyed, tuple(shared), reads)


def _fold_params(tree: nodes.Template, env: SandboxedEnvironment, params: dict[str, Any]) -> None:
    """Evaluate in `tree`, once, what a piece computes from its params alone: a block's
    params are the same for every reader, so `{{ params.title }}` becomes text, and an
    `{% if params.intro %}` keeps only the branch taken. What is printed is escaped by
    the render's own `_escape`, so the output is the same text, byte for byte."""
    if any(n.name == "params" and n.ctx != "load" for n in tree.find_all(nodes.Name)):
        return  # the template sets its own `params`: leave it alone
    _ParamsFolder(params, nodes.EvalContext(env), env.autoescape is True).visit(tree)
    tree.set_environment(env)


class _ParamsFolder(NodeTransformer):
    def __init__(self, params: dict[str, Any], eval_ctx: nodes.EvalContext, html: bool) -> None:
        self.params, self.eval_ctx, self.html = params, eval_ctx, html

    def visit_Getattr(self, node: nodes.Getattr) -> nodes.Node:
        return self._param(self.generic_visit(node), node.attr)

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        visited: Any = self.generic_visit(node)
        key = visited.arg.value if isinstance(visited.arg, nodes.Const) else None
        return self._param(visited, key) if isinstance(key, str) else visited

    def _param(self, node: Any, key: str) -> nodes.Node:
        target = node.node
        if not (isinstance(target, nodes.Name) and target.name == "params"):
            return node  # type: ignore[no-any-return]
        value = self.params.get(key, _ABSENT)
        if value is None or type(value) in (str, int, float, bool):
            return nodes.Const(value, lineno=node.lineno)
        return node  # type: ignore[no-any-return]

    def visit_Output(self, node: nodes.Output) -> nodes.Output:
        visited: Any = self.generic_visit(node)
        printed: list[nodes.Expr] = []
        for child in visited.nodes:
            value = _ABSENT
            if not isinstance(child, nodes.TemplateData):
                with contextlib.suppress(Exception):  # not constant: printed at render time
                    value = child.as_const(self.eval_ctx)
            if value is not _ABSENT:
                text = _escape(value) if self.html else str(value)
                child = nodes.TemplateData(text, lineno=child.lineno)
            printed.append(child)
        visited.nodes = printed
        return visited  # type: ignore[no-any-return]

    def visit_If(self, node: nodes.If) -> Any:
        """The `if` with the branches its params decide taken or dropped: the taken
        branch's body in its place, or the `if` with fewer branches."""
        branches = [(node.test, node.body), *[(e.test, e.body) for e in node.elif_]]
        kept: list[tuple[nodes.Expr, list[nodes.Node]]] = []
        otherwise = self._visit_all(node.else_)
        for test, body in branches:
            test = self.visit(test)
            body = self._visit_all(body)
            try:
                taken = bool(test.as_const(self.eval_ctx))
            except Exception:  # noqa: BLE001 - decided at render time
                kept.append((test, body))
                continue
            if taken:
                otherwise = body  # what comes after can never be reached
                break
        if not kept:
            return otherwise
        elifs = [nodes.If(t, b, [], [], lineno=node.lineno) for t, b in kept[1:]]
        return nodes.If(kept[0][0], kept[0][1], elifs, otherwise, lineno=node.lineno)

    def _visit_all(self, body: list[nodes.Node]) -> list[nodes.Node]:
        out: list[nodes.Node] = []
        for child in body:
            found = self.visit(child)
            out.extend(found if isinstance(found, list) else [found])
        return out


_ABSENT = object()
_MISSING = object()


def _compiled(env: SandboxedEnvironment, tree: nodes.Template) -> Template:
    template = env.from_string(tree)
    # The compiled template's module namespace: its autoescape calls `escape` there.
    template.root_render_func.__globals__["escape"] = _escape
    return template


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


SHARED_BODY_FILTER = "_shared_body"


def _share_loop_bodies(
    tree: nodes.Template, env: SandboxedEnvironment, table: list[SharedBody]
) -> list[SharedBody]:
    """Replace the body of each innermost, plain `for` loop of `tree` that can be
    shared by a call to it (`SHARED_BODY_FILTER` with its number in `table`, where it
    is added); returns those bodies."""
    found: list[SharedBody] = []
    for loop in list(tree.find_all(nodes.For)):
        target = loop.target
        if loop.else_ or loop.test is not None or loop.recursive:
            continue
        if not isinstance(target, nodes.Name):
            continue
        if any(isinstance(n, nodes.For) or any(n.find_all(nodes.For)) for n in loop.body):
            continue  # not innermost: its inner loops are looked at on their own
        body = nodes.Template(loop.body, lineno=loop.lineno)
        body.set_environment(env)
        names = meta.find_undeclared_variables(body) - {target.name}
        keyed = _keyed(body, env, names)
        if keyed is None:
            continue
        html = env.autoescape is True
        shared = SharedBody(Piece(_compiled(env, body), keyed), target.name, html)
        number = len(table)
        table.append(shared)
        found.append(shared)
        item = nodes.Name(target.name, "load")
        call = nodes.Filter(item, SHARED_BODY_FILTER, [nodes.Const(number)], [], None, None)
        loop.body = [nodes.Output([call], lineno=loop.lineno)]
        loop.body[0].set_environment(env)
    return found


_new_str = str.__new__


def _escape(value: Any) -> str:
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
    return _markup(escaped.encode("ascii", "xmlcharrefreplace").decode("ascii"))


def _keyed(
    tree: nodes.Template, env: SandboxedEnvironment, reads: Set[str]
) -> tuple[str, ...] | None:
    """The per-send names among `reads` (what `tree` reads of the render's context),
    or None when it reads the reader or changes at every render."""
    names = set(reads)
    if any(node.name in PER_RENDER_GLOBALS for node in tree.find_all(nodes.Name)):
        return None
    # A filter is used by name (`x | click`) or passed as a string (`map('click')`).
    used = {node.name for node in tree.find_all(nodes.Filter)}
    used.update(node.value for node in tree.find_all(nodes.Const) if isinstance(node.value, str))
    if used & PER_RENDER_FILTERS:
        return None
    names.update(CONTEXT_FILTERS[name] for name in used & CONTEXT_FILTERS.keys())
    if names - FIXED_NAMES - KEYED_NAMES - set(env.globals):
        return None
    return tuple(sorted(names & KEYED_NAMES))


def _reraise(env: Any) -> NoReturn:
    env.handle_exception()  # re-raises with the template's line in the traceback
    raise AssertionError("unreachable")


@dataclass(frozen=True, slots=True)
class Hole:
    """Where a skeleton's reader piece goes, with its block's index (None: not a block)."""

    piece: Piece
    index: int | None


@dataclass(frozen=True, slots=True)
class Url:
    """A reader URL of a skeleton: `key` names it within a render."""

    key: str
    spec: Spec


@dataclass(frozen=True, slots=True)
class Static:
    """Shared text of a skeleton, also kept as the inside of a JSON string (UTF-8): a
    reader's JSON answer reuses it instead of encoding the same text again."""

    text: str
    json: bytes

    @classmethod
    def of(cls, text: str) -> Static:
        return cls(text, orjson.dumps(text)[1:-1])


# Where a skeleton's reader URLs go, parts hold the index of the URL in `Skeleton.urls`.
Part = Static | Hole | int


class Output:
    """One format of one reader's render, in pieces: joined on demand as text, or as a
    JSON string whose shared pieces are already encoded."""

    __slots__ = ("_pieces", "_text")

    def __init__(self, pieces: list[Static | str]) -> None:
        self._pieces = pieces
        self._text: str | None = None

    def text(self) -> str:
        if self._text is None:
            self._text = "".join([p if type(p) is str else p.text for p in self._pieces])  # type: ignore[union-attr]
        return self._text

    def json(self) -> list[bytes | memoryview]:
        """The text as a JSON string (quotes included), UTF-8, in pieces to join."""
        if self._text is not None:
            return [orjson.dumps(self._text)]
        # A view drops the quotes of each piece's JSON without copying it again.
        dumps, view = orjson.dumps, memoryview
        out: list[bytes | memoryview] = [b'"']
        out += [view(dumps(p))[1:-1] if type(p) is str else p.json for p in self._pieces]  # type: ignore[union-attr]
        out.append(b'"')
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Output) and self.text() == other.text()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Output({self.text()[:60]!r}...)"


@dataclass(frozen=True, slots=True)
class Skeleton:
    """A layout rendered for readers alike: text, holes and URLs in order, and the
    unsafe link targets its shared pieces sent home (reported in each reader's render)."""

    parts: tuple[Part, ...]
    urls: tuple[Url, ...]
    unsafe: tuple[str, ...]
    # The parts as runs of text and URLs (and whether a run holds URLs), each followed
    # by a hole (or None at the end).
    runs: tuple[tuple[tuple[Static | int, ...], bool, Hole | None], ...] = ()

    def __post_init__(self) -> None:
        runs: list[tuple[tuple[Static | int, ...], bool, Hole | None]] = []
        run: list[Static | int] = []
        for part in (*self.parts, None):
            if part is None or isinstance(part, Hole):
                linked = any(type(p) is int for p in run)
                runs.append((tuple(run), linked, part))
                run = []
            else:
                run.append(part)
        object.__setattr__(self, "runs", tuple(runs))


class Fragments:
    """Renders layouts for readers through their skeletons (bounded, first in first out;
    cleared when templates are recompiled). With `share=False` every piece is rendered
    for every reader: the reference the skeletons must match byte for byte."""

    def __init__(self, size: int = FRAGMENT_CACHE_SIZE, *, share: bool = True) -> None:
        self._size = max(1, size)
        self._share = share
        self._skeletons: Bounded[tuple[Any, ...], Skeleton] = Bounded(self._size)
        self._bodies: Bounded[Any, Any] = Bounded(self._size * 8)

    def __len__(self) -> int:
        return len(self._skeletons)

    def clear(self) -> None:
        self._skeletons.clear()
        self._bodies.clear()

    def reader(
        self, ctx: dict[str, Any], keys: dict[str, Any], bodies: tuple[SharedBody, ...]
    ) -> ReaderRender:
        """The render of the reader of `ctx` (`_mode`, `_params` and the reader's `links`
        in it); `keys` holds the value of each of `KEYED_NAMES` for this reader; `bodies`
        is the template's table of shared loop bodies."""
        return ReaderRender(self, ctx, keys, bodies)

    def skeleton(self, layout: Layout, ctx: dict[str, Any], keys: dict[str, Any]) -> Skeleton:
        """The skeleton of `layout` for readers with these `keys`, made when missing."""
        key = (layout, *[keys[name] for name in layout.keyed])
        skeleton = self._skeletons.get(key)
        if skeleton is None:
            skeleton = self._skeleton(layout, ctx)
            self._skeletons.put(key, skeleton)
        return skeleton

    def _each_piece(self, layout: Layout, ctx: dict[str, Any]) -> Iterator[str]:
        modes, params = ctx["_mode"], ctx["_params"]
        for item in layout.items:
            if isinstance(item, Slot):
                found = _shown(item, modes)
                if found is not None:
                    ctx["params"] = params[item.index]
                    yield found.render(ctx)
            else:
                yield item.render(ctx)

    def _skeleton(self, layout: Layout, ctx: dict[str, Any]) -> Skeleton:
        """The skeleton of `layout` for readers like the one of `ctx`."""
        links: Links = ctx["links"]
        fill = FillLinks.like(links)
        shared = {**ctx, "links": fill}
        modes, params = ctx["_mode"], ctx["_params"]
        parts: list[str | Hole | Url] = []
        for item in layout.items:
            index = None
            if isinstance(item, Slot):
                found = _shown(item, modes)
                if found is None:
                    continue
                index = item.index
                shared["params"] = params[index]
                item = found
            if item.keyed is None:
                parts.append(Hole(item, index))
                continue
            calls = fill.calls
            split = _split(item.render(shared), fill, calls)
            if split is None:
                # A filter changed one of the reader's URLs: this piece is per reader.
                parts.append(Hole(item, index))
                continue
            parts += split
        merged, urls = _numbered(parts, Static.of)
        return Skeleton(tuple(merged), urls, tuple(fill.unsafe))


class ReaderRender:
    """One reader's render of a template through `Fragments`: its formats share the
    Jinja contexts (one per environment) and the reader's URLs, JSON-encoded once."""

    __slots__ = ("_contexts", "_ctx", "_fragments", "_keys", "_links", "_urls")

    def __init__(
        self,
        fragments: Fragments,
        ctx: dict[str, Any],
        keys: dict[str, Any],
        bodies: tuple[SharedBody, ...],
    ) -> None:
        self._fragments, self._ctx, self._keys = fragments, ctx, keys
        self._links: Links = ctx["links"]
        self._contexts: dict[Any, Context] = {}
        self._urls: tuple[dict[str, Static], dict[str, Static]] = ({}, {})
        ctx["_shared"] = SharedBodies(
            fragments._bodies, ctx, keys, bodies, share=fragments._share
        )

    def render(self, layout: Layout, *, html: bool) -> Output:
        """`layout` (a format of the template) for this reader."""
        fragments, ctx = self._fragments, self._ctx
        if not fragments._share:
            return Output(list(fragments._each_piece(layout, ctx)))
        skeleton = fragments.skeleton(layout, ctx, self._keys)
        links = self._links
        if skeleton.unsafe:
            links.unsafe.extend(skeleton.unsafe)
        memo = self._urls[html]
        urls = []
        for url in skeleton.urls:
            found = memo.get(url.key)
            if found is None:
                found = memo[url.key] = Static.of(links.url(url.key, url.spec, html))
            urls.append(found)
        params = ctx["_params"]
        contexts = self._contexts
        out: list[Static | str] = []
        for run, linked, hole in skeleton.runs:
            if linked:
                out += [urls[p] if type(p) is int else p for p in run]  # type: ignore[misc]
            else:
                out += run  # type: ignore[arg-type]
            if hole is None:
                continue
            if hole.index is not None:
                ctx["params"] = params[hole.index]
            piece = hole.piece
            if not piece.reusable:
                out.append(piece.render(ctx))
                continue
            # One context per environment and render, shared by its pieces.
            env = piece.template.environment
            context = contexts.get(env)
            if context is None:
                context = contexts[env] = piece.context(ctx)
            out.append(piece.render_in(context))
        return Output(out)


def _numbered(parts: list[Any], text: Callable[[str], Any]) -> tuple[list[Any], tuple[Url, ...]]:
    """`parts` with each run of strings joined (and made `text(run)`) and each `Url`
    replaced by its number among the distinct URLs; and those URLs."""
    out: list[Any] = []
    numbers: dict[str, int] = {}
    urls: list[Url] = []
    run: list[str] = []
    for part in parts:
        if isinstance(part, str):
            run.append(part)
            continue
        if run:
            out.append(text("".join(run)))
            run = []
        if isinstance(part, Url):
            if part.key not in numbers:
                numbers[part.key] = len(urls)
                urls.append(part)
            out.append(numbers[part.key])
        else:
            out.append(part)
    if run:
        out.append(text("".join(run)))
    return out, tuple(urls)


def _split(text: str, fill: FillLinks, calls: int) -> list[str | Url] | None:
    """`text`, rendered with `fill` (which had handed out `calls` sentinels before), as
    text and the reader URLs its sentinels stand for; None when a filter changed one."""
    pieces = SENTINEL.split(text)
    if len(pieces) // 2 != fill.calls - calls or "\x00" in "".join(pieces[::2]):
        return None
    parts: list[str | Url] = []
    for i, value in enumerate(pieces):
        if i % 2:
            spec = fill.specs[int(value)]
            parts.append(Url(repr(spec), spec))
        elif value:
            parts.append(value)
    return parts


class SharedBodies:
    """The shared loop bodies of one reader's render (`ctx["_shared"]`)."""

    __slots__ = ("_cache", "_ctx", "_keys", "_links", "_share", "_sigs", "table")

    def __init__(
        self,
        cache: Bounded[Any, Any],
        ctx: dict[str, Any],
        keys: dict[str, Any],
        table: tuple[SharedBody, ...],
        *,
        share: bool,
    ) -> None:
        self._cache, self._ctx, self._keys = cache, ctx, keys
        self.table = table  # the template's shared bodies, by the number its loops call
        self._links: Links = ctx["links"]
        self._share = share
        self._sigs: dict[SharedBody, tuple[Any, ...]] = {}

    def render(self, body: SharedBody, item: Any) -> str:
        """`body` for `item`: from its shared copy, with this reader's URLs put in, when
        `item` is a `DisplayItem` (the same for every reader shown it, as its `share_key`
        says), else by Jinja."""
        if type(item) is not DisplayItem or not self._share:
            return self._jinja(body, item)
        keyed = body.piece.keyed
        if keyed:
            sig = self._sigs.get(body)
            if sig is None:
                sig = self._sigs[body] = tuple([self._keys[name] for name in keyed])
            key: tuple[Any, ...] = (body, item.share_key, sig)
        else:
            key = (body, item.share_key)
        found = self._cache.get(key, _MISSING)
        if found is _MISSING:
            found = self._fill(body, item)
            self._cache.put(key, found)
        kind = type(found)
        if kind is Markup or kind is str:
            return found  # type: ignore[no-any-return]
        html = body.html
        if kind is _OneUrl:
            text = self._links.url(found.url.key, found.url.spec, html).join(found.texts)
        elif found is None:
            return self._jinja(body, item)
        else:
            links = self._links
            if found.unsafe:
                links.unsafe.extend(found.unsafe)
            values = [links.url(url.key, url.spec, html) for url in found.urls]
            # The URLs were escaped by `url` for HTML, like the text around them.
            text = "".join([values[p] if type(p) is int else p for p in found.parts])
        return _markup(text) if html else text

    def _jinja(self, body: SharedBody, item: Any) -> str:
        text = body.piece.render({**self._ctx, body.item: item})
        return _markup(text) if body.html else text

    def _fill(self, body: SharedBody, item: Any) -> Any:
        """The shared copy of `body` for `item`: Markup when it holds no reader URL, a
        `_OneUrl` when it holds one (a card's click links: the reader token), else a
        `_Shared`; None when it must be rendered per reader."""
        fill = FillLinks.like(self._links)
        split = _split(body.piece.render({**self._ctx, "links": fill, body.item: item}), fill, 0)
        if split is None:
            return None
        parts, urls = _numbered(split, _markup if body.html else str)
        if not fill.unsafe:
            if not urls:
                return parts[0] if parts else ""
            if len(urls) == 1:
                # The text around each use of the URL (empty between two uses).
                texts, run = [], ""
                for part in parts:
                    if type(part) is int:
                        texts.append(run)
                        run = ""
                    else:
                        run += part
                return _OneUrl((*texts, run), urls[0])
        return _Shared(tuple(parts), urls, tuple(fill.unsafe))


def _markup(text: str) -> Markup:
    """`text`, already escaped, as Markup (without Markup's Python-level constructor)."""
    return _new_str(Markup, text)


@dataclass(frozen=True, slots=True)
class _Shared:
    parts: tuple[Markup | int, ...]
    urls: tuple[Url, ...]
    unsafe: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _OneUrl:
    """A shared loop body whose only reader URL is `url`: `url.join(texts)`."""

    texts: tuple[str, ...]
    url: Url


@pass_context
def shared_body(context: Context, item: Any, number: int) -> str:
    """The filter a shared loop body's loop calls (`SHARED_BODY_FILTER`)."""
    shared: SharedBodies = context.parent["_shared"]
    return shared.render(shared.table[number], item)


def _shown(slot: Slot, modes: list[str]) -> Piece | None:
    mode = modes[slot.index]
    if mode == "main":
        return slot.main
    if mode == "fallback":
        return slot.fallback
    return None
