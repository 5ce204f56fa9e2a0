"""One reader's render: a layout's skeleton with its holes rendered by Jinja for the
reader and the reader's own URLs put in; and the loop bodies readers share (a product
card), filled with the reader's URLs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup

from app.caching import Bounded
from app.links import Links
from app.reader import DisplayItem
from app.render import bounds
from app.render.fill_links import FillLinks
from app.render.layout.output import Output, Static, markup
from app.render.layout.pieces import Layout, SharedBody
from app.render.layout.skeletons import Fragments, Url, numbered, split_urls

_MISSING = object()


class ReaderRender:
    """One reader's render of a template through `Fragments`: its formats share the
    Jinja contexts (one per environment) and the reader's URLs, JSON-encoded once.
    `ctx` holds `_mode`, `_params` and the reader's `links`; `keys` the value of each
    of `pieces.KEYED_NAMES` for this reader; `bodies` is the template's table of shared
    loop bodies."""

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
        ctx["_shared"] = SharedBodies(fragments.bodies, ctx, keys, bodies, share=fragments.share)

    def render(self, layout: Layout, *, html: bool) -> Output:
        """`layout` (a format of the template) for this reader."""
        fragments, ctx = self._fragments, self._ctx
        if not fragments.share:
            pieces = list(fragments.each_piece(layout, ctx))
            if sum(map(len, pieces)) > bounds.MAX_OUTPUT:
                raise bounds.too_much_output()
            return Output(pieces)  # type: ignore[arg-type]
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
        size = skeleton.chars  # and each hole's below: URLs are bounded by their own rules
        for run, linked, hole in skeleton.runs:
            if linked:
                out += [p if type(p) is Static else urls[p] for p in run]
            else:
                out += run  # type: ignore[arg-type]  # a run without URLs is all Static
            if hole is None:
                continue
            if hole.index is not None:
                ctx["params"] = params[hole.index]
            piece = hole.piece
            if not piece.reusable:
                text = piece.render(ctx)
            else:
                # One context per environment and render, shared by its pieces.
                env = piece.template.environment
                context = contexts.get(env)
                if context is None:
                    context = contexts[env] = piece.context(ctx)
                text = piece.render_in(context)
            size += len(text)
            out.append(text)
        if size > bounds.MAX_OUTPUT:
            raise bounds.too_much_output()
        return Output(out)


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
        return markup(text) if html else text

    def _jinja(self, body: SharedBody, item: Any) -> str:
        text = body.piece.render({**self._ctx, body.item: item})
        return markup(text) if body.html else text

    def _fill(self, body: SharedBody, item: Any) -> Any:
        """The shared copy of `body` for `item`: Markup when it holds no reader URL, a
        `_OneUrl` when it holds one (a card's click links: the reader token), else a
        `_Shared`; None when it must be rendered per reader."""
        fill = FillLinks.like(self._links)
        text = body.piece.render({**self._ctx, "links": fill, body.item: item})
        split = split_urls(text, fill, 0)
        if split is None:
            return None
        parts, urls = numbered(split, markup if body.html else str)
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
    """The filter a shared loop body's loop calls (`pieces.SHARED_BODY_FILTER`)."""
    shared: SharedBodies = context.parent["_shared"]
    return shared.render(shared.table[number], item)
