"""Lookup cost of the bounded cache (app/caching.py) against cachetools' caches.

    .venv/bin/python bench/caching.py

Prints ns per hit for each, and the ratio cachetools / Bounded.
"""

from __future__ import annotations

import timeit

import common  # noqa: F401  (makes the app package importable)
from cachetools import FIFOCache, LRUCache

from app.caching import Bounded


def main() -> None:
    keys = [(f"sku-{i}", "personal", i) for i in range(1000)]
    bounded: Bounded[object, int] = Bounded(4096)
    fifo: FIFOCache[object, int] = FIFOCache(4096)
    lru: LRUCache[object, int] = LRUCache(4096)
    for i, k in enumerate(keys):
        bounded.put(k, i)
        fifo[k] = i
        lru[k] = i
    n = 200
    rows = {
        "Bounded.get": lambda: [bounded.get(k) for k in keys],
        "FIFOCache.get": lambda: [fifo.get(k) for k in keys],
        "LRUCache.get": lambda: [lru.get(k) for k in keys],
    }
    base = None
    for name, fn in rows.items():
        best = min(timeit.repeat(fn, number=n, repeat=5)) / (n * len(keys)) * 1e9
        base = base or best
        print(f"{name:15} {best:6.1f} ns/hit   x{best / base:.2f}")


if __name__ == "__main__":
    main()
