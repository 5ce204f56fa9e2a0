"""The one bounded in-process cache of Kairos's hot paths (signed links, skeletons,
display items, image parameters, tokens).

A `dict` that forgets its oldest entry when full (first in, first out). Lookups are the
dict's own `get`, in C: on the render path that is about three times cheaper than a
cachetools `Cache` lookup, which goes through Python-level `__getitem__` and
`__missing__` (see `bench/caching.py`). Caches that need a time to live or LRU order
(profiles) use cachetools.
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Bounded(dict[K, V]):
    """At most `size` entries; `put` makes room by dropping the oldest."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        super().__init__()
        if size < 1:
            raise ValueError("a bounded cache holds at least one entry")
        self.size = size

    def put(self, key: K, value: V) -> None:
        """Keep `value` under `key`, dropping the oldest entry when full."""
        if key not in self and len(self) >= self.size:
            del self[next(iter(self))]
        self[key] = value
