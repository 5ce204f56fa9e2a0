"""The embedded backend: in-process, the default, so the server runs with no services.

It lives in one process: several workers each get their own, so use Redis for those.
Values are kept as JSON bytes, not objects, so callers can never alias stored data.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence

import orjson

from app.stores.protocols import (
    Erasable,
    Product,
    Profile,
    ReaderAsk,
    ReaderDump,
    ReaderState,
    ReaderWrite,
    Retention,
    Updater,
    Written,
    pick_field,
)

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


TAIL_QUEUE = 10_000


class MemoryEvents:
    """Event ids, histories, identity links and suppressions, in this process. A write
    never awaits between its checks and its changes: atomic on the event loop."""

    name = NAME

    def __init__(
        self, profiles: MemoryProfiles, picks: MemoryPicks, retention: Retention | None = None
    ) -> None:
        self.retention = retention or Retention()
        self._profiles = profiles
        self._picks = picks
        self._seen: dict[str, dict[str, int]] = {}
        self._history: dict[str, list[tuple[int, bytes]]] = {}
        self._links: dict[str, set[str]] = {}
        self._moved: dict[str, str] = {}
        self._suppressed: set[str] = set()
        self._followers: list[asyncio.Queue[bytes]] = []

    def _version(self, user_id: str) -> str:
        raw = self._profiles.raw(user_id)
        return "" if raw is None else str(hash(raw))

    async def read(self, asks: Sequence[ReaderAsk]) -> list[ReaderState]:
        now_ms = int(time.time() * 1000)
        states = []
        for ask in asks:
            seen = self._live_seen(ask.user_id, now_ms)
            raw = self._profiles.raw(ask.user_id)
            states.append(
                ReaderState(
                    profile=None if raw is None else orjson.loads(raw),
                    seen=frozenset(i for i in ask.event_ids if i in seen),
                    moved_to=self._moved.get(ask.user_id),
                    suppressed=not self._suppressed.isdisjoint(ask.hashes),
                    version=self._version(ask.user_id),
                )
            )
        return states

    def _live_seen(self, user_id: str, now_ms: int) -> dict[str, int]:
        seen = self._seen.get(user_id, {})
        floor = now_ms - self.retention.dedupe_s * 1000
        for event_id in [i for i, at in seen.items() if at < floor]:
            del seen[event_id]
        return seen

    async def write(self, writes: Sequence[ReaderWrite], now_ms: int) -> list[Written]:
        results = []
        for write in writes:
            user_id = write.user_id
            if user_id in self._moved:
                results.append(Written.MOVED)
            elif not self._suppressed.isdisjoint(write.hashes):
                results.append(Written.SUPPRESSED)
            elif self._version(user_id) != write.version:
                results.append(Written.CONFLICT)
            else:
                self._apply(write, now_ms)
                results.append(Written.WRITTEN)
        return results

    def _apply(self, write: ReaderWrite, now_ms: int) -> None:
        user_id = write.user_id
        self._profiles.store_raw(user_id, orjson.dumps(write.profile))
        seen = self._live_seen(user_id, now_ms)
        seen.update(dict.fromkeys(write.event_ids, now_ms))
        self._seen[user_id] = seen
        history = self._history.setdefault(user_id, [])
        history.extend(write.history)
        history.sort(key=lambda entry: entry[0])
        floor = now_ms - self.retention.history_s * 1000
        kept = [e for e in history if e[0] >= floor][-self.retention.history_events :]
        self._history[user_id] = kept
        if write.links:
            self._links.setdefault(user_id, set()).update(write.links)
        for _, raw in write.history:
            for queue in self._followers:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(raw)

    async def link(self, user_id: str, to: str) -> str:
        return self._moved.setdefault(user_id, to)

    async def relink(self, user_ids: Iterable[str], to: str) -> None:
        for user_id in user_ids:
            if user_id in self._moved:
                self._moved[user_id] = to

    async def resolve(self, user_ids: Sequence[str]) -> dict[str, str]:
        return {u: self._moved[u] for u in user_ids if u in self._moved}

    async def links(self, user_id: str) -> frozenset[str]:
        return frozenset(self._links.get(user_id, ()))

    async def dump(self, user_id: str) -> ReaderDump:
        raw = self._profiles.raw(user_id)
        return ReaderDump(
            profile=None if raw is None else orjson.loads(raw),
            seen=tuple(self._seen.get(user_id, {})),
            history=tuple(self._history.get(user_id, ())),
            links=frozenset(self._links.get(user_id, ())),
        )

    async def drop_merged(self, user_id: str) -> None:
        moved = self._moved.get(user_id)
        await self.forget(user_id)
        await self._picks.forget(user_id)
        await self._profiles.delete(user_id)
        if moved is not None:
            self._moved[user_id] = moved

    async def history(self, user_id: str, since_ms: int = 0) -> list[bytes]:
        return [raw for ts, raw in self._history.get(user_id, ()) if ts >= since_ms]

    async def suppressed(self, user_id: str, hashes: Sequence[str]) -> bool:
        return not self._suppressed.isdisjoint(hashes)

    def suppress(self, hashes: Sequence[str]) -> None:
        self._suppressed.update(hashes)

    async def unsuppress(self, user_id: str, hashes: Sequence[str]) -> bool:
        found = not self._suppressed.isdisjoint(hashes)
        self._suppressed.difference_update(hashes)
        return found

    async def forget(self, user_id: str) -> None:
        for table in (self._seen, self._history, self._links, self._moved):
            table.pop(user_id, None)

    def holds(self, user_id: str) -> list[str]:
        """What this store holds about the reader, by name."""
        tables: tuple[tuple[str, Mapping[str, object]], ...] = (
            ("seen", self._seen),
            ("history", self._history),
            ("links", self._links),
            ("alias", self._moved),
        )
        return [name for name, table in tables if user_id in table]

    async def tail(self, stop: asyncio.Event) -> AsyncIterator[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue(TAIL_QUEUE)
        self._followers.append(queue)
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    yield await asyncio.wait_for(queue.get(), 1.0)
        finally:
            self._followers.remove(queue)


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

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
