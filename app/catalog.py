"""The shared product catalog, cached in-process: every reader's feed reads it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from cachetools import TTLCache

from app.profiles.store import Product, ProfileStore

_MISS = object()


class Catalog:
    """Products by sku and the popular list, read through a TTL cache.

    Store calls (only on a cache miss) are bounded by the caller's deadline, a
    `loop.time()` value; they raise `TimeoutError` past it and `StoreUnavailable` when
    the store is down.
    """

    def __init__(self, store: ProfileStore, *, ttl_s: float = 60.0, size: int = 100_000):
        self._store = store
        self.ttl_s = ttl_s
        self._products: TTLCache[str, Product | None] = TTLCache(maxsize=size, ttl=ttl_s)
        self._popular: TTLCache[int, list[str]] = TTLCache(maxsize=16, ttl=ttl_s)
        self._cleared = 0

    def generation(self) -> tuple[int, int]:
        """Changes at least every `ttl_s` and on `clear()`: what is derived from the
        catalog stays valid while this stays the same."""
        return self._cleared, int(time.monotonic() // self.ttl_s)

    async def products(self, skus: Sequence[str], deadline: float) -> dict[str, Product]:
        found: dict[str, Product] = {}
        missing = []
        for sku in skus:
            cached = self._products.get(sku, _MISS)
            if cached is _MISS:
                missing.append(sku)
            elif cached is not None:
                found[sku] = cached  # type: ignore[assignment]
        if missing:
            async with asyncio.timeout_at(deadline):
                loaded = await self._store.get_products(missing)
            for sku in missing:
                product = loaded.get(sku)
                self._products[sku] = product
                if product is not None:
                    found[sku] = product
        return found

    async def popular(self, limit: int, deadline: float) -> list[Product]:
        skus = self._popular.get(limit)
        if skus is None:
            async with asyncio.timeout_at(deadline):
                skus = await self._store.popular(limit)
            self._popular[limit] = skus
        products = await self.products(skus, deadline)
        return [products[s] for s in skus if s in products]

    def clear(self) -> None:
        self._cleared += 1
        self._products.clear()
        self._popular.clear()
