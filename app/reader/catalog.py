"""The shared product catalog, cached in-process: every reader's feed reads it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from app.caching import Bounded
from app.stores.protocols import CatalogStore, Product

_MISS: Any = object()
V = TypeVar("V")


class Expiring(Generic[V]):
    """A dict whose entries expire `ttl_s` after they were put, bounded (the oldest put
    goes first). Lighter than cachetools' TTLCache on the render path: a lookup is one
    dict get and a comparison."""

    def __init__(self, size: int, ttl_s: float) -> None:
        self._entries: Bounded[Any, tuple[float, V]] = Bounded(size)
        self._ttl_s = ttl_s

    def get(self, key: Any, now: float) -> V:
        """The value, or `_MISS` when absent or expired at `now` (`time.monotonic()`)."""
        entry = self._entries.get(key)
        if entry is None or entry[0] <= now:
            return _MISS  # type: ignore[no-any-return]
        return entry[1]

    def put(self, key: Any, value: V, now: float, *, until: float | None = None) -> None:
        """Keep `value` for `ttl_s` from `now`, or `until` (a `time.monotonic()` time)."""
        self._entries.pop(key, None)  # a new entry is the newest: last to go
        self._entries.put(key, (now + self._ttl_s if until is None else until, value))

    def until(self, key: Any) -> float:
        """When the entry for `key` expires (0.0 when there is none)."""
        entry = self._entries.get(key)
        return 0.0 if entry is None else entry[0]

    def clear(self) -> None:
        self._entries.clear()


class Catalog:
    """Products by sku and the popular list, read through a TTL cache.

    Store calls (only on a cache miss) are bounded by the caller's deadline, a
    `loop.time()` value; they raise `TimeoutError` past it and `StoreUnavailable` when
    the store is down.
    """

    def __init__(self, store: CatalogStore, *, ttl_s: float = 60.0, size: int = 100_000):
        self._store = store
        self.ttl_s = ttl_s
        self._products: Expiring[Product | None] = Expiring(size, ttl_s)
        self._popular: Expiring[list[str]] = Expiring(16, ttl_s)
        self._popular_products: Expiring[list[Product]] = Expiring(16, ttl_s)
        self._cleared = 0

    def version(self, sku: str) -> float:
        """The version of the catalog's copy of product `sku`: it changes whenever the
        product is loaded again, so what is derived from the product can be shared
        under (sku, version)."""
        return self._products.until(sku)

    def generation(self) -> tuple[int, int]:
        """Changes at least every `ttl_s` and on `clear()`: what is derived from the
        catalog stays valid while this stays the same."""
        return self._cleared, int(time.monotonic() // self.ttl_s)

    async def products(self, skus: Sequence[str], deadline: float) -> dict[str, Product]:
        found: dict[str, Product] = {}
        missing = []
        now = time.monotonic()
        cache = self._products
        for sku in skus:
            cached = cache.get(sku, now)
            if cached is _MISS:
                missing.append(sku)
            elif cached is not None:
                found[sku] = cached
        if missing:
            async with asyncio.timeout_at(deadline):
                loaded = await self._store.get_products(missing)
            now = time.monotonic()
            for sku in missing:
                product = loaded.get(sku)
                cache.put(sku, product, now)
                if product is not None:
                    found[sku] = product
        return found

    async def popular(self, limit: int, deadline: float) -> list[Product]:
        """The `limit` most popular products (a list shared by callers: read-only)."""
        now = time.monotonic()
        found = self._popular_products.get(limit, now)
        if found is not _MISS:
            return found
        skus = self._popular.get(limit, now)
        if skus is _MISS:
            async with asyncio.timeout_at(deadline):
                skus = await self._store.popular(limit)
            self._popular.put(limit, skus, time.monotonic())
        products = await self.products(skus, deadline)
        found = [products[s] for s in skus if s in products]
        # Kept no longer than the list and each product it holds are.
        until = min([self._popular.until(limit), *map(self._products.until, skus)])
        self._popular_products.put(limit, found, now, until=until)
        return found

    def clear(self) -> None:
        self._cleared += 1
        self._products.clear()
        self._popular.clear()
        self._popular_products.clear()
