"""The embedded backend: in-process, the default, so the server runs with no services.

It lives in one process: several workers each get their own, so use Redis for those.
Values are kept as JSON bytes, not objects, so callers can never alias stored data.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence

import orjson

from app.stores.protocols import Erasable, Product, Profile, Updater, pick_field

NAME = "embedded"


class MemoryProfiles:
    name = NAME

    def __init__(self) -> None:
        self._profiles: dict[str, bytes] = {}

    async def get(self, user_id: str) -> Profile | None:
        raw = self._profiles.get(user_id)
        return None if raw is None else orjson.loads(raw)

    async def put(self, user_id: str, profile: Profile) -> None:
        self._profiles[user_id] = orjson.dumps(profile)

    async def put_many(self, profiles: Iterable[tuple[str, Profile]]) -> int:
        count = 0
        for user_id, profile in profiles:
            self._profiles[user_id] = orjson.dumps(profile)
            count += 1
        return count

    async def update(self, user_id: str, change: Updater) -> Profile | None:
        # No await between read and write: atomic on the event loop.
        raw = self._profiles.get(user_id)
        current = None if raw is None else orjson.loads(raw)
        new = change(current)
        if new is None:
            return current
        self._profiles[user_id] = orjson.dumps(new)
        return new

    async def delete(self, user_id: str) -> bool:
        return self._profiles.pop(user_id, None) is not None


class MemoryCatalog:
    name = NAME

    def __init__(self) -> None:
        self._products: dict[str, bytes] = {}
        self._popularity: dict[str, float] = {}

    async def get_products(self, skus: Sequence[str]) -> dict[str, Product]:
        found = {}
        for sku in skus:
            raw = self._products.get(sku)
            if raw is not None:
                found[sku] = orjson.loads(raw)
        return found

    async def put_products(self, products: Iterable[Product]) -> int:
        count = 0
        for product in products:
            self._products[product["sku"]] = orjson.dumps(product)
            self._popularity[product["sku"]] = float(product.get("popularity", 0))
            count += 1
        return count

    async def popular(self, limit: int) -> list[str]:
        if limit <= 0:
            return []
        ranked = sorted(self._popularity.items(), key=lambda kv: (-kv[1], kv[0]))
        return [sku for sku, _ in ranked[:limit]]


class MemoryPicks:
    name = NAME

    def __init__(self) -> None:
        self._picks: dict[str, dict[str, str]] = {}

    async def get_pick(self, user_id: str, campaign: str | None, slot: int) -> str | None:
        return self._picks.get(user_id, {}).get(pick_field(campaign, slot))

    async def remember_pick(self, user_id: str, campaign: str | None, slot: int, sku: str) -> str:
        return self._picks.setdefault(user_id, {}).setdefault(pick_field(campaign, slot), sku)

    async def forget(self, user_id: str) -> None:
        self._picks.pop(user_id, None)


class LocalBus:
    """No one else shares an embedded store: there is nothing to tell or to hear."""

    name = NAME

    async def publish_change(self, user_id: str) -> None:
        return None

    def changes(self, stop: asyncio.Event) -> AsyncIterator[str] | None:
        return None


class MemoryBackend:
    """Nothing to ping or close. Erasure forgets the reader in every store holding reader
    data; none of them awaits anything, so it happens at once on the event loop."""

    def __init__(self, profiles: MemoryProfiles, *reader_data: Erasable) -> None:
        self._profiles = profiles
        self._reader_data = reader_data

    async def erase(self, user_id: str) -> bool:
        for store in self._reader_data:
            await store.forget(user_id)
        return await self._profiles.delete(user_id)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
