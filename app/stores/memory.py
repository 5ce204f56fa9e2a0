"""The embedded backend: in-process, the default, so the server runs with no services.

It lives in one process: several workers each get their own, so use Redis for those.
Values are kept as JSON bytes, not objects, so callers can never alias stored data.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import orjson

from app.stores.protocols import Erasable, Product, Profile, Updater, pick_field

if TYPE_CHECKING:
    from app.stores.memory_events import MemoryEvents

NAME = "embedded"


class MemoryProfiles:
    name = NAME
    # Reads never wait (`get_now`): the profile cache reads it directly on a miss.
    immediate = True

    def __init__(self) -> None:
        self._profiles: dict[str, bytes] = {}

    async def get(self, user_id: str) -> Profile | None:
        return self.get_now(user_id)

    def get_now(self, user_id: str) -> Profile | None:
        """`get`, without an await (the store is this process's memory)."""
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

    def raw(self, user_id: str) -> bytes | None:
        """The stored JSON, for the events store of the same backend."""
        return self._profiles.get(user_id)

    def store_raw(self, user_id: str, raw: bytes) -> None:
        self._profiles[user_id] = raw

    def holds(self, user_id: str) -> list[str]:
        return ["profile"] if user_id in self._profiles else []


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

    def holds(self, user_id: str) -> list[str]:
        return ["picks"] if user_id in self._picks else []


class LocalBus:
    """No one else shares an embedded store: there is nothing to tell or to hear."""

    name = NAME

    async def publish_change(self, user_id: str) -> None:
        return None

    def changes(self, stop: asyncio.Event) -> AsyncIterator[str] | None:
        return None


AUDIT_CAP = 100_000


class MemoryBackend:
    """Nothing to ping or close. Erasure forgets the reader in every store holding reader
    data; none of them awaits anything, so it happens at once on the event loop."""

    def __init__(self, profiles: MemoryProfiles, events: MemoryEvents, picks: MemoryPicks) -> None:
        self._profiles = profiles
        self._events = events
        self._reader_data: tuple[Erasable, ...] = (events, picks)
        self._holders = (profiles, events, picks)
        self._audit: deque[dict[str, str]] = deque(maxlen=AUDIT_CAP)

    async def erase(self, user_id: str, suppress: Sequence[str] = ()) -> bool:
        for store in self._reader_data:
            await store.forget(user_id)
        self._events.suppress(suppress)
        return await self._profiles.delete(user_id)

    async def record_erasure(self, entry: Mapping[str, str]) -> None:
        self._audit.append(dict(entry))

    async def erasures(self, limit: int) -> list[dict[str, str]]:
        return [dict(e) for e in reversed(self._audit)][:limit]

    async def keys_of(self, user_id: str) -> list[str]:
        return [f"{user_id}:{name}" for store in self._holders for name in store.holds(user_id)]

    @property
    def circuit(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
