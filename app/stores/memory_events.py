"""Event data in this process, for the embedded backend: dedupe ids, histories,
identity links and suppressions, with the same contract as the Redis store."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import orjson

from app.stores.protocols import (
    ReaderAsk,
    ReaderDump,
    ReaderState,
    ReaderWrite,
    Retention,
    Written,
)

if TYPE_CHECKING:
    from app.stores.memory import MemoryPicks, MemoryProfiles

NAME = "embedded"

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

    def _version(self, user_id: str) -> bytes:
        return self._profiles.raw(user_id) or b""

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
            elif self._version(user_id) != write.version or (
                not write.checked
                and not self._live_seen(user_id, now_ms).keys().isdisjoint(write.event_ids)
            ):
                results.append(Written.CONFLICT)
            else:
                self._apply(write, now_ms)
                write.stored = self._profiles.raw(user_id) or b""
                write.version_after = self._version(user_id)
                results.append(Written.WRITTEN)
        return results

    def _apply(self, write: ReaderWrite, now_ms: int) -> None:
        user_id = write.user_id
        self._profiles.store_raw(user_id, orjson.dumps(write.profile))
        seen = self._live_seen(user_id, now_ms)
        seen.update(dict.fromkeys(write.event_ids, now_ms))
        self._seen[user_id] = seen
        if write.history:
            self._keep_history(user_id, write.history, now_ms)
        if write.links:
            self._links.setdefault(user_id, set()).update(write.links)
        for _, raw in write.history if write.announce else ():
            for queue in self._followers:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(raw)

    def _keep_history(
        self, user_id: str, entries: Sequence[tuple[int, bytes]], now_ms: int
    ) -> None:
        history = sorted({*self._history.get(user_id, ()), *entries}, key=lambda e: e[0])
        floor = now_ms - self.retention.history_s * 1000
        kept = [e for e in history if e[0] >= floor][-self.retention.history_events :]
        self._history[user_id] = kept

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
            history=tuple(self._history.get(user_id, ())),
            links=frozenset(self._links.get(user_id, ())),
        )

    async def drop_merged(self, user_id: str) -> None:
        for table in (self._history, self._links):
            table.pop(user_id, None)
        await self._picks.forget(user_id)
        await self._profiles.delete(user_id)

    async def add_history(self, user_id: str, entries: Sequence[tuple[int, bytes]]) -> None:
        self._keep_history(user_id, entries, int(time.time() * 1000))

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
