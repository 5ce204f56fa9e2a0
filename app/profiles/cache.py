"""What stands in front of the profile store: a short-TTL cache, single-flight, the time
budget, and the change bus that keeps the caches of several servers in step.

A reader's lookup never raises: a store that is down or slower than the budget yields the
last value seen for that reader (stale), else no profile and the reason why, so the
caller serves its fallback.

Over 300 lines because the read cache, its single flight, the copies of this server's
own writes and the change bus share one invalidation: apart, each would reach into the
others' state.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from cachetools import LRUCache, TTLCache

from app.errors import CorruptData, StoreUnavailable
from app.fallbacks import Reason
from app.metrics import Metrics
from app.stores.protocols import SUBSCRIBED, ChangeBus, Profile, ProfileStore, Updater

log = logging.getLogger("kairos.profiles")

STORE_DOWN = Reason.STORE_UNAVAILABLE
BUDGET = Reason.BUDGET
INVALID = Reason.INVALID_DATA


@dataclass(frozen=True, slots=True)
class Lookup:
    """A profile (or None) and where it came from: cache, store, stale or none; `reason`
    says why the store could not answer, when it could not. `memo` is a scratch dict
    that lives exactly as long as this cached copy of the profile (None when the copy is
    not cached): callers keep what they derive from the profile there."""

    profile: Profile | None
    source: str
    reason: Reason | None = None
    memo: dict[Any, Any] | None = field(default=None, compare=False, repr=False)


class CachedProfiles:
    """Profile reads through cache and single-flight within a time budget; writes that
    invalidate here and, through `bus`, on the other servers. `erase` removes a reader
    from every store (`Stores.erase`)."""

    def __init__(
        self,
        store: ProfileStore,
        bus: ChangeBus,
        metrics: Metrics,
        *,
        erase: Callable[[str], Awaitable[bool]],
        ttl_s: float,
        size: int,
        retry_s: float,
        written_size: int = 0,
    ) -> None:
        self.store = store
        self._bus = bus
        self._erase = erase
        self._metrics = metrics
        self._fresh: TTLCache[str, Lookup] | None = (
            TTLCache(maxsize=size, ttl=ttl_s) if ttl_s > 0 else None
        )
        self._stale: LRUCache[str, Profile] = LRUCache(maxsize=size)
        self._inflight: dict[str, asyncio.Task[Lookup]] = {}
        # The profile this server last wrote for a reader (as stored: JSON) and its
        # version: ingest applies the reader's next events to it without reading the
        # store first (the store's compare-and-set refuses the write if anyone changed
        # the reader meanwhile). Bytes, not documents: tens of thousands of profiles as
        # dicts would be objects for every full garbage collection to walk. Oldest write
        # out first: a plain dict in write order, at a fraction of an LRU cache's cost.
        self._written: dict[str, tuple[bytes, bytes]] = {}
        self._written_size = written_size
        self._retry_s = retry_s
        self._down_until = 0.0
        # An in-process store answers a read at once (it never waits on I/O): a miss
        # reads it directly rather than through a shared flight and a timer.
        self._immediate = getattr(store, "immediate", False) is True
        self._hit = metrics.cache.labels("hit")
        self._miss = metrics.cache.labels("miss")
        self._stale_hit = metrics.cache.labels("stale")
        self._store_errors = metrics.store_errors.labels(store.name)
        # What a read adds to a stored profile (the reader's segments now): set once per
        # app (app/services.py), as (user id, profile, memo) -> profile.
        self.live: Callable[[str, Profile, dict[Any, Any] | None], Profile] | None = None

    def cached(self, user_id: str) -> Lookup | None:
        """The reader's fresh cached profile, without waiting, or None on a miss."""
        if self._fresh is None:
            return None
        lookup = self._fresh.get(user_id)
        if lookup is not None:
            self._hit.inc()
        return lookup

    async def get(self, user_id: str, budget_s: float) -> Lookup:
        """The reader's profile within `budget_s` seconds. Never raises."""
        lookup = self.cached(user_id)
        if lookup is not None:
            return lookup
        self._miss.inc()
        if self._down_until and time.monotonic() < self._down_until:
            # The store failed a moment ago: don't make every open wait to learn it again.
            return self._stale_or_none(user_id, STORE_DOWN)
        if self._immediate:
            return self._read_now(user_id)
        loop = asyncio.get_running_loop()
        flight = self._inflight.get(user_id)
        if flight is None:
            flight = loop.create_task(self._load(user_id))
            self._inflight[user_id] = flight
            flight.add_done_callback(functools.partial(self._landed, user_id))
        # Each reader waits on its own future with its own timer: one that gives up
        # must not cancel the load the others wait on; that load lands in the cache for
        # the next open. (Cheaper than asyncio.timeout + shield on this hot path.)
        waiter: asyncio.Future[Lookup] = loop.create_future()
        flight.add_done_callback(functools.partial(_relay, waiter))
        timer = loop.call_later(budget_s, _expire, waiter)
        try:
            return await waiter
        except TimeoutError:
            return self._stale_or_none(user_id, BUDGET)
        except StoreUnavailable:
            return self._stale_or_none(user_id, STORE_DOWN)
        except CorruptData as exc:
            # Not the reader's id: ids never reach the logs.
            log.error("a stored profile is unreadable: %s", exc)
            return Lookup(None, "none", INVALID)
        finally:
            timer.cancel()

    def _read_now(self, user_id: str) -> Lookup:
        """A miss on an in-process store (`immediate`): read at once, with no flight to
        share and no timer (~40 µs less a read: every send of a campaign is a miss)."""
        profile = self.store.get_now(user_id)  # type: ignore[attr-defined]
        if profile is not None and type(profile) is not dict:
            # Readable, but not a profile (as `_load`); never the reader's id in logs.
            log.error("a stored profile is unreadable: a %s", type(profile).__name__)
            return Lookup(None, "none", INVALID)
        return self._fill(user_id, profile)

    async def now(self, user_id: str, budget_s: float) -> Lookup:
        """`get`, the profile completed by `live` (its segments as of now). Never
        raises."""
        lookup = self.cached(user_id) or await self.get(user_id, budget_s)
        live, profile = self.live, lookup.profile
        if live is None or profile is None:
            return lookup
        shown = live(user_id, profile, lookup.memo)
        if shown is profile:
            return lookup
        return Lookup(shown, lookup.source, lookup.reason, lookup.memo)

    async def put(self, user_id: str, profile: Profile) -> None:
        try:
            await self.store.put(user_id, profile)
        finally:
            self.invalidate(user_id)
        await self._announce(user_id)

    async def update(self, user_id: str, change: Updater) -> Profile | None:
        try:
            result = await self.store.update(user_id, change)
        finally:
            self.invalidate(user_id)
        await self._announce(user_id)
        return result

    async def delete(self, user_id: str) -> bool:
        """Erase the reader (profile, picks: every store); True if a profile existed."""
        try:
            deleted = await self._erase(user_id)
        finally:
            self.invalidate(user_id)
        await self._announce(user_id)
        return deleted

    async def follow_changes(self, stop: asyncio.Event, retry_s: float = 1.0) -> None:
        """Invalidate what other servers sharing the store changed, until `stop` is set."""
        while not stop.is_set():
            changes = self._bus.changes(stop)
            if changes is None:
                return
            try:
                async for user_id in changes:
                    if user_id == "*":
                        self.clear()
                    elif user_id == SUBSCRIBED:
                        self._forget_unheard()
                    else:
                        self.invalidate(user_id)
            except StoreUnavailable:
                pass
            if stop.is_set():
                return
            self._forget_unheard()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), retry_s)

    async def changed(self, user_id: str) -> None:
        """Forget this reader here and tell the other servers to (a write made elsewhere,
        such as an event store's merge)."""
        self.invalidate(user_id)
        await self._announce(user_id)

    async def _announce(self, user_id: str) -> None:
        try:
            await self._bus.publish_change(user_id)
        except StoreUnavailable as exc:
            # The write itself landed; other servers catch up within the cache TTL.
            log.warning("could not announce a change to other servers: %s", exc)

    async def read_through(self, user_id: str) -> Profile | None:
        """The stored profile, straight from the store (raises `StoreUnavailable`)."""
        return await self.store.get(user_id)

    def invalidate(self, user_id: str) -> None:
        """Forget every cached copy of this reader, including loads still in flight."""
        self._drop_read(user_id)
        self._written.pop(user_id, None)

    def _drop_read(self, user_id: str) -> None:
        # Asked first: most readers an event changes are not cached, and a cache's `pop`
        # costs ~1 µs even for a key it does not hold (every event comes here).
        if self._fresh is not None and user_id in self._fresh:
            self._fresh.pop(user_id, None)  # (it may expire in between: not `del`)
        if user_id in self._stale:
            del self._stale[user_id]
        self._inflight.pop(user_id, None)

    def _forget_unheard(self) -> None:
        # Changes made while we were not listening are unknown: drop fresh copies and
        # written ones (stale ones stay, they are all we have while the store is down),
        # when the subscription ends and again once it is back (what was cached in
        # between may be older than a change announced in between). A written copy
        # would only cost a refused write, but a missed erasure must not leave the
        # reader's data here.
        self._inflight.clear()
        if self._fresh is not None:
            self._fresh.clear()
        self._written.clear()

    def written(self, user_id: str) -> tuple[bytes, bytes] | None:
        """The profile this server last wrote for the reader, as stored, and its
        version, if kept."""
        return self._written.get(user_id)

    def wrote(self, user_id: str, stored: bytes, version: bytes) -> None:
        """The store now holds `stored` at `version` for the reader, written here: the
        read copies are dropped, this one kept for the reader's next events (the oldest
        written goes when there are `written_size`)."""
        self._drop_read(user_id)
        written = self._written
        written.pop(user_id, None)  # put back last: the newest write
        if not version or self._written_size <= 0:
            return
        if len(written) >= self._written_size:
            del written[next(iter(written))]
        written[user_id] = (stored, version)

    def clear(self) -> None:
        self._stale.clear()
        self._forget_unheard()

    def mark_up(self) -> None:
        self._down_until = 0.0

    async def _load(self, user_id: str) -> Lookup:
        me = asyncio.current_task()
        try:
            profile = await self.store.get(user_id)
        except StoreUnavailable as exc:
            self._store_errors.inc()
            if not self._down_until:
                log.warning("profile store unavailable: %s", exc)
            self._down_until = time.monotonic() + self._retry_s
            raise
        if self._down_until:
            log.info("profile store is back")
            self._down_until = 0.0
        if profile is not None and type(profile) is not dict:
            # Readable, but not a profile: every reader of it would fail on it.
            raise CorruptData(f"the stored profile is a {type(profile).__name__}, not an object")
        if self._inflight.get(user_id) is not me:
            # A write (or a clear) came while this load ran: what it read may be older
            # than the write, so it must not fill the cache.
            return Lookup(profile, "store")
        return self._fill(user_id, profile)

    def _fill(self, user_id: str, profile: Profile | None) -> Lookup:
        """The cache filled with what the store just gave."""
        if profile is None:
            self._stale.pop(user_id, None)
        else:
            self._stale[user_id] = profile
        if self._fresh is None:
            return Lookup(profile, "store")
        memo: dict[Any, Any] = {}
        self._fresh[user_id] = Lookup(profile, "cache", memo=memo)
        return Lookup(profile, "store", memo=memo)

    def _landed(self, user_id: str, flight: asyncio.Future[Any]) -> None:
        if self._inflight.get(user_id) is flight:
            del self._inflight[user_id]
        if not flight.cancelled():
            flight.exception()  # retrieved here so an unawaited failure is not logged

    def _stale_or_none(self, user_id: str, reason: Reason) -> Lookup:
        profile = self._stale.get(user_id)
        if profile is not None:
            self._stale_hit.inc()
            return Lookup(profile, "stale", reason)
        return Lookup(None, "none", reason)


def _relay(waiter: asyncio.Future[Lookup], flight: asyncio.Future[Lookup]) -> None:
    if waiter.done():
        return
    if flight.cancelled():
        waiter.set_exception(StoreUnavailable("the profile load was cancelled"))
    elif (exc := flight.exception()) is not None:
        waiter.set_exception(exc)
    else:
        waiter.set_result(flight.result())


def _expire(waiter: asyncio.Future[Lookup]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
