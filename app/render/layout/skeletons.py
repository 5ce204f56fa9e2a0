"""Skeletons: a layout rendered once for the readers alike (same per-send values, same
blocks shown), with holes where the pieces that read the reader go and numbered URLs
where each reader's own go; kept in a bounded cache (`Fragments`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from app.caching import Bounded
from app.links import Links, Spec
from app.render.fill_links import SENTINEL, FillLinks
from app.render.layout.output import Static
from app.render.layout.pieces import Layout, Piece, Slot

FRAGMENT_CACHE_SIZE = 4096


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


# Where a skeleton's reader URLs go, parts hold the index of the URL in `Skeleton.urls`.
Part = Static | Hole | int


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
    chars: int = 0  # of its text (URLs left out): a render's output is bounded (bounds.py)

    def __post_init__(self) -> None:
        chars = sum(len(part.text) for part in self.parts if type(part) is Static)
        object.__setattr__(self, "chars", chars)
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
    """The skeletons of layouts for readers (bounded, first in first out; cleared when
    templates are recompiled) and the shared copies of loop bodies (`reader.
    SharedBodies`). With `share=False` every piece is rendered for every reader: the
    reference the skeletons must match byte for byte."""

    def __init__(self, size: int = FRAGMENT_CACHE_SIZE, *, share: bool = True) -> None:
        self._size = max(1, size)
        self.share = share
        self.skeletons: Bounded[tuple[Any, ...], Skeleton] = Bounded(self._size)
        self.bodies: Bounded[Any, Any] = Bounded(self._size * 8)

    def __len__(self) -> int:
        return len(self.skeletons)

    def clear(self) -> None:
        self.skeletons.clear()
        self.bodies.clear()

    def skeleton(self, layout: Layout, ctx: dict[str, Any], keys: dict[str, Any]) -> Skeleton:
        """The skeleton of `layout` for readers with these `keys`, made when missing."""
        key = (layout, *[keys[name] for name in layout.keyed])
        skeleton = self.skeletons.get(key)
        if skeleton is None:
            skeleton = self._skeleton(layout, ctx)
            self.skeletons.put(key, skeleton)
        return skeleton

    def each_piece(self, layout: Layout, ctx: dict[str, Any]) -> Iterator[str]:
        """Every piece of `layout` shown to the reader of `ctx`, rendered by Jinja."""
        modes, params = ctx["_mode"], ctx["_params"]
        for item in layout.items:
            if isinstance(item, Slot):
                found = shown(item, modes)
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
                found = shown(item, modes)
                if found is None:
                    continue
                index = item.index
                shared["params"] = params[index]
                item = found
            if item.keyed is None:
                parts.append(Hole(item, index))
                continue
            calls = fill.calls
            split = split_urls(item.render(shared), fill, calls)
            if split is None:
                # A filter changed one of the reader's URLs: this piece is per reader.
                parts.append(Hole(item, index))
                continue
            parts += split
        merged, urls = numbered(parts, Static.of)
        return Skeleton(tuple(merged), urls, tuple(fill.unsafe))


def numbered(parts: list[Any], text: Callable[[str], Any]) -> tuple[list[Any], tuple[Url, ...]]:
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


def split_urls(text: str, fill: FillLinks, calls: int) -> list[str | Url] | None:
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


def shown(slot: Slot, modes: list[str]) -> Piece | None:
    """The piece of `slot` a reader with these `modes` is shown, if any."""
    mode = modes[slot.index]
    if mode == "main":
        return slot.main
    if mode == "fallback":
        return slot.fallback
    return None
