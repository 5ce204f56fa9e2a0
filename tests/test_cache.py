"""CachedProfiles: TTL cache, single-flight, time budget, stale copies, store outages,
unreadable stored values, invalidation by writes, following other servers' changes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import TypeVar

import pytest
from support import CountingProfiles, RedisServer, redis_of

from app.app import SHUTDOWN_WAIT_S
from app.errors import StoreUnavailable
from app.metrics import Metrics
from app.profiles.cache import BUDGET, INVALID, STORE_DOWN, CachedProfiles, Lookup
from app.stores.bundle import Stores, embedded_stores, redis_stores
from app.stores.redis.keys import CHANGES_CHANNEL

ADA = {"first_name": "Ada"}
W = TypeVar("W", bound=CountingProfiles)


def embedded(wrapper: type[W] = CountingProfiles, delay: float = 0.0) -> tuple[Stores, W]:
    """Embedded stores whose profile store is wrapped in `wrapper`, and that wrapper."""
    stores = embedded_stores()
    store = wrapper(stores.profiles, delay)
    return replace(stores, profiles=store), store


class FlakyProfiles(CountingProfiles):
    """A real profile store whose reads can be switched to fail like a down backend."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.down = False

    async def get(self, user_id: str):
        if self.down:
            self.get_calls[user_id] += 1
            raise StoreUnavailable("switched off")
        return await super().get(user_id)


def cached(
    stores: Stores, *, ttl_s: float = 5.0, retry_s: float = 0.5
) -> tuple[CachedProfiles, Metrics]:
    metrics = Metrics()
    profiles = CachedProfiles(
        stores.profiles,
        stores.bus,
        metrics,
        erase=stores.erase,
        ttl_s=ttl_s,
        size=1000,
        retry_s=retry_s,
        written_size=1000,
    )
    return profiles, metrics


def cache_count(metrics: Metrics, result: str) -> float:
    value = metrics.registry.get_sample_value("kairos_profile_cache_total", {"result": result})
    return value or 0.0


async def test_miss_then_hit():
    stores, store = embedded()
    await store.put("ada", ADA)
    profiles, metrics = cached(stores)

    assert await profiles.get("ada", 1.0) == Lookup(ADA, "store")
    assert await profiles.get("ada", 1.0) == Lookup(ADA, "cache")
    assert store.get_calls["ada"] == 1
    assert cache_count(metrics, "miss") == 1
    assert cache_count(metrics, "hit") == 1


async def test_missing_reader_is_cached_too():
    stores, store = embedded()
    profiles, _ = cached(stores)
    assert await profiles.get("nobody", 1.0) == Lookup(None, "store")
    assert await profiles.get("nobody", 1.0) == Lookup(None, "cache")
    assert store.get_calls["nobody"] == 1


async def test_the_embedded_store_is_read_at_once_and_fills_the_cache(caplog):
    # A miss on the in-process store reads it directly (no flight, no timer): the same
    # answers, the cache filled, writes still invalidating it, an unreadable value
    # invalid for that reader only.
    stores = embedded_stores()
    assert getattr(stores.profiles, "immediate", False) is True
    await stores.profiles.put("ada", ADA)
    profiles, metrics = cached(stores)
    assert await profiles.get("ada", 1.0) == Lookup(ADA, "store")
    assert await profiles.get("ada", 1.0) == Lookup(ADA, "cache")
    assert await profiles.get("nobody", 1.0) == Lookup(None, "store")
    assert await profiles.get("nobody", 1.0) == Lookup(None, "cache")
    assert cache_count(metrics, "miss") == 2 and cache_count(metrics, "hit") == 2
    await profiles.put("ada", {"first_name": "Ada L."})
    assert await profiles.get("ada", 1.0) == Lookup({"first_name": "Ada L."}, "store")
    stores.profiles._profiles["listy"] = b"[1, 2]"  # JSON, but not a profile
    assert await profiles.get("listy", 1.0) == Lookup(None, "none", INVALID)
    assert "unreadable" in caplog.text and "listy" not in caplog.text


async def test_zero_ttl_disables_the_fresh_cache():
    stores, store = embedded()
    await store.put("ada", ADA)
    profiles, _ = cached(stores, ttl_s=0)
    for _ in range(3):
        assert await profiles.get("ada", 1.0) == Lookup(ADA, "store")
    assert store.get_calls["ada"] == 3


async def test_entries_expire_after_ttl():
    stores, store = embedded()
    await store.put("ada", ADA)
    profiles, _ = cached(stores, ttl_s=0.05)
    await profiles.get("ada", 1.0)
    await asyncio.sleep(0.08)
    assert (await profiles.get("ada", 1.0)).source == "store"
    assert store.get_calls["ada"] == 2


@pytest.mark.parametrize("ttl_s", [5.0, 0.0])
async def test_single_flight(ttl_s: float):
    stores, store = embedded(delay=0.05)
    await store.put("ada", ADA)
    await store.put("grace", {"first_name": "Grace"})
    profiles, _ = cached(stores, ttl_s=ttl_s)

    lookups = await asyncio.gather(
        *(profiles.get("ada", 2.0) for _ in range(30)),
        *(profiles.get("grace", 2.0) for _ in range(5)),
    )
    assert store.get_calls == {"ada": 1, "grace": 1}
    assert all(lookup == Lookup(ADA, "store") for lookup in lookups[:30])
    assert all(lookup.profile == {"first_name": "Grace"} for lookup in lookups[30:])


async def test_budget_overrun_returns_no_profile_quickly_and_load_lands_later():
    stores, store = embedded(delay=0.3)
    await store.put("ada", ADA)
    profiles, _ = cached(stores)

    start = time.monotonic()
    lookup = await profiles.get("ada", 0.02)
    assert time.monotonic() - start < 0.15
    assert lookup == Lookup(None, "none", BUDGET)

    # the load was not cancelled by the impatient reader: it lands for the next open
    await store.drain()
    assert await profiles.get("ada", 0.02) == Lookup(ADA, "cache")
    assert store.get_calls["ada"] == 1


async def test_budget_overrun_serves_the_stale_copy():
    stores, store = embedded()
    await store.put("ada", ADA)
    profiles, metrics = cached(stores, ttl_s=0.05)
    await profiles.get("ada", 1.0)
    await asyncio.sleep(0.08)  # the fresh copy expires
    store.delay = 0.3

    start = time.monotonic()
    assert await profiles.get("ada", 0.02) == Lookup(ADA, "stale", BUDGET)
    assert time.monotonic() - start < 0.15
    assert cache_count(metrics, "stale") == 1
    await store.drain()


async def test_store_down_serves_stale_then_none_and_backs_off():
    stores, store = embedded(FlakyProfiles)
    await store.put("ada", ADA)
    profiles, metrics = cached(stores, ttl_s=0, retry_s=0.2)
    assert (await profiles.get("ada", 1.0)).profile == ADA

    store.down = True
    assert await profiles.get("ada", 1.0) == Lookup(ADA, "stale", STORE_DOWN)
    assert await profiles.get("grace", 1.0) == Lookup(None, "none", STORE_DOWN)
    # within the retry window nobody waits on the store again
    assert store.get_calls == {"ada": 2}
    errors = metrics.registry.get_sample_value("kairos_store_errors_total", {"store": "embedded"})
    assert errors == 1

    await asyncio.sleep(0.25)
    store.down = False
    assert await profiles.get("grace", 1.0) == Lookup(None, "store")
    assert await profiles.get("ada", 1.0) == Lookup(ADA, "store")


async def test_mark_up_ends_the_retry_window():
    stores, store = embedded(FlakyProfiles)
    await store.put("ada", ADA)
    profiles, _ = cached(stores, ttl_s=0, retry_s=60)
    store.down = True
    assert (await profiles.get("ada", 1.0)).reason == STORE_DOWN
    store.down = False
    assert (await profiles.get("ada", 1.0)).reason == STORE_DOWN  # still backing off
    profiles.mark_up()
    assert await profiles.get("ada", 1.0) == Lookup(ADA, "store")


async def test_writes_invalidate():
    stores, store = embedded()
    await store.put("ada", ADA)
    profiles, _ = cached(stores)
    await profiles.get("ada", 1.0)

    await profiles.put("ada", {"first_name": "Augusta"})
    assert await profiles.get("ada", 1.0) == Lookup({"first_name": "Augusta"}, "store")

    await profiles.update("ada", lambda p: {**p, "tier": "gold"})
    assert (await profiles.get("ada", 1.0)).profile == {"first_name": "Augusta", "tier": "gold"}

    assert await profiles.delete("ada") is True
    assert await profiles.get("ada", 1.0) == Lookup(None, "store")


async def test_delete_forgets_the_stale_copy_too():
    stores, store = embedded(FlakyProfiles)
    await store.put("ada", ADA)
    profiles, _ = cached(stores, ttl_s=0)
    await profiles.get("ada", 1.0)
    await profiles.delete("ada")
    store.down = True
    # an erased reader is not resurrected from the stale copy while the store is down
    assert await profiles.get("ada", 1.0) == Lookup(None, "none", STORE_DOWN)


async def test_failed_write_still_invalidates():
    stores, store = embedded()
    await store.put("ada", ADA)
    profiles, _ = cached(stores)
    await profiles.get("ada", 1.0)
    await store.put("ada", {"first_name": "Changed behind the cache"})

    def refuse(current):
        raise LookupError("no")

    with pytest.raises(LookupError):
        await profiles.update("ada", refuse)
    assert (await profiles.get("ada", 1.0)).profile == {"first_name": "Changed behind the cache"}


class ReadThenSleep(CountingProfiles):
    """Reads the value, then takes its time to deliver it (a slow network answer)."""

    async def get(self, user_id: str):
        value = await self.inner.get(user_id)
        self.get_calls[user_id] += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return value


async def test_load_started_before_a_write_does_not_fill_the_cache():
    stores, store = embedded(ReadThenSleep, delay=0.1)
    await store.put("ada", ADA)
    profiles, _ = cached(stores)

    slow_read = asyncio.create_task(profiles.get("ada", 1.0))
    await asyncio.sleep(0.02)  # the read has the old value and is on its way back
    await profiles.put("ada", {"first_name": "Augusta"})
    assert (await slow_read).profile == ADA  # that reader got the old value...

    # ...but it must not be cached over the newer write
    store.delay = 0
    assert await profiles.get("ada", 1.0) == Lookup({"first_name": "Augusta"}, "store")
    assert store.get_calls["ada"] == 2


async def test_write_to_another_reader_does_not_stop_a_load_filling_the_cache():
    # Regression: one global write epoch meant a write to *any* reader kept every load
    # in flight at that moment out of the cache; only this reader's writes matter now.
    stores, store = embedded(ReadThenSleep, delay=0.1)
    await store.put("ada", ADA)
    profiles, _ = cached(stores)

    slow_read = asyncio.create_task(profiles.get("ada", 1.0))
    await asyncio.sleep(0.02)
    await profiles.put("grace", {"first_name": "Grace"})
    assert await slow_read == Lookup(ADA, "store")

    assert await profiles.get("ada", 1.0) == Lookup(ADA, "cache")
    assert store.get_calls["ada"] == 1


@pytest.mark.parametrize("forget", ["invalidate", "clear"])
async def test_load_overtaken_by_invalidate_or_clear_does_not_fill_the_cache(forget: str):
    stores, store = embedded(ReadThenSleep, delay=0.1)
    await store.put("ada", ADA)
    profiles, _ = cached(stores)

    slow_read = asyncio.create_task(profiles.get("ada", 1.0))
    await asyncio.sleep(0.02)
    await store.put("ada", {"first_name": "Augusta"})  # changed behind the cache...
    if forget == "invalidate":
        profiles.invalidate("ada")  # ...and announced by another server
    else:
        profiles.clear()
    assert (await slow_read).profile == ADA

    store.delay = 0
    assert await profiles.get("ada", 1.0) == Lookup({"first_name": "Augusta"}, "store")
    assert await profiles.get("ada", 1.0) == Lookup({"first_name": "Augusta"}, "cache")


async def test_load_started_after_a_write_fills_the_cache_though_an_older_one_lands_later():
    stores, store = embedded(ReadThenSleep, delay=0.15)
    await store.put("ada", ADA)
    profiles, _ = cached(stores)

    old_read = asyncio.create_task(profiles.get("ada", 1.0))
    await asyncio.sleep(0.02)
    await profiles.put("ada", {"first_name": "Augusta"})
    store.delay = 0.05
    # a new load, registered after the write: it lands first and is cached
    assert await profiles.get("ada", 1.0) == Lookup({"first_name": "Augusta"}, "store")
    assert (await old_read).profile == ADA  # the older load lands afterwards...
    # ...and neither replaces the newer cached copy nor drops it
    assert await profiles.get("ada", 1.0) == Lookup({"first_name": "Augusta"}, "cache")
    assert store.get_calls["ada"] == 2


async def test_unreadable_value_is_invalid_data_for_that_reader_only(
    redis_url, redis_client, caplog
):
    # Regression: a stored value that is not JSON raised StoreUnavailable, and the cache
    # then marked the whole store down for retry_s: every other uncached reader fell back.
    stores = redis_stores(redis_url)
    await stores.profiles.put("ada", ADA)
    redis_client.set("kairos:{reader-7731}:profile", b"{not json")
    redis_client.set("kairos:{listy}:profile", b"[1, 2]")  # JSON, but not a profile
    profiles, metrics = cached(stores, retry_s=60)
    try:
        assert await profiles.get("reader-7731", 1.0) == Lookup(None, "none", INVALID)
        assert await profiles.get("listy", 1.0) == Lookup(None, "none", INVALID)
        assert "unreadable" in caplog.text
        # Reader ids never reach the logs.
        assert "reader-7731" not in caplog.text and "listy" not in caplog.text
        # the store is not marked down: other readers are read and cached as usual
        assert await profiles.get("ada", 1.0) == Lookup(ADA, "store")
        assert await profiles.get("ada", 1.0) == Lookup(ADA, "cache")
        errors = metrics.registry.get_sample_value("kairos_store_errors_total", {"store": "redis"})
        assert not errors
        # nothing was cached for the unreadable reader: once repaired, it is served
        assert await profiles.get("reader-7731", 1.0) == Lookup(None, "none", INVALID)
        await profiles.put("reader-7731", {"first_name": "Fixed"})
        assert await profiles.get("reader-7731", 1.0) == Lookup({"first_name": "Fixed"}, "store")
    finally:
        await stores.close()


async def test_read_through_bypasses_the_cache():
    stores, store = embedded()
    await store.put("ada", ADA)
    profiles, _ = cached(stores)
    await profiles.get("ada", 1.0)
    await store.put("ada", {"first_name": "Direct"})
    assert await profiles.read_through("ada") == {"first_name": "Direct"}
    assert (await profiles.get("ada", 1.0)).profile == ADA  # cached copy until TTL/invalidate
    profiles.clear()
    assert (await profiles.get("ada", 1.0)).profile == {"first_name": "Direct"}


# --- following other servers' changes (Redis pub/sub) ------------------------------------


async def _subscribed(stores: Stores, within_s: float = 3.0) -> None:
    deadline = time.monotonic() + within_s
    while True:
        [(_channel, count)] = await redis_of(stores).pubsub_numsub(CHANGES_CHANNEL)
        if count >= 1:
            await asyncio.sleep(0.01)
            return
        assert time.monotonic() < deadline, "the follower never subscribed"
        await asyncio.sleep(0.005)


# The follower sees its stop flag between two bounded 1 s waits for a message.
STOP_WITHIN_S = 2.0


async def _stop(stop: asyncio.Event, task: asyncio.Task) -> bool:
    """Set `stop`; True when that alone ended `task` within STOP_WITHIN_S, without an
    error. (Cancels it afterwards if it did not, so nothing is left running.)"""
    stop.set()
    done, _ = await asyncio.wait({task}, timeout=STOP_WITHIN_S)
    for _ in range(10):
        if task.done():
            break
        task.cancel()
        await asyncio.wait({task}, timeout=1.5)
    assert task.done()
    return bool(done) and not task.cancelled() and task.exception() is None


async def _until(check, within_s: float = 2.0):
    deadline = time.monotonic() + within_s
    while not (result := await check()):
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)
    return result


async def test_embedded_store_has_no_changes_to_follow():
    stores, store = embedded()
    stop = asyncio.Event()
    assert stores.bus.changes(stop) is None
    profiles, _ = cached(stores)
    await asyncio.wait_for(profiles.follow_changes(stop), 1.0)  # returns at once
    assert not stop.is_set()


async def test_follower_drops_what_another_server_changed(redis_url):
    ours, theirs = redis_stores(redis_url), redis_stores(redis_url)
    profiles, _ = cached(ours)
    other, _ = cached(theirs)
    await theirs.profiles.put("ada", ADA)
    await theirs.profiles.put("grace", {"first_name": "Grace"})
    stop = asyncio.Event()
    follower = asyncio.create_task(profiles.follow_changes(stop))
    try:
        await _subscribed(ours)
        assert (await profiles.get("ada", 1.0)).source == "store"
        assert await profiles.get("ada", 1.0) == Lookup(ADA, "cache")
        await profiles.get("grace", 1.0)

        await other.put("ada", {"first_name": "Augusta"})  # another server writes

        async def ada_changed():
            return (await profiles.get("ada", 1.0)).profile == {"first_name": "Augusta"}

        await _until(ada_changed)
        assert await profiles.get("grace", 1.0) == Lookup({"first_name": "Grace"}, "cache")

        # '*' (a bulk import) drops every cached copy
        await theirs.profiles.put("grace", {"first_name": "Amazing Grace"})
        assert (await profiles.get("grace", 1.0)).profile == {"first_name": "Grace"}
        await theirs.bus.publish_change("*")

        async def grace_changed():
            return (await profiles.get("grace", 1.0)).profile == {"first_name": "Amazing Grace"}

        await _until(grace_changed)

        await other.delete("ada")

        async def ada_gone():
            return (await profiles.get("ada", 1.0)).profile is None

        await _until(ada_gone)
    finally:
        stopped = await _stop(stop, follower)
        await ours.close()
        await theirs.close()
    assert stopped, "the follower did not stop when told to"


async def test_follower_keeps_going_through_a_redis_outage(tmp_path):
    server = RedisServer(tmp_path / "redis")
    server.start()
    stores = redis_stores(server.url, timeout_s=0.2)
    profiles, _ = cached(stores, ttl_s=30)
    stop = asyncio.Event()
    follower = asyncio.create_task(profiles.follow_changes(stop, retry_s=0.05))
    try:
        await stores.profiles.put("ada", ADA)
        await _subscribed(stores)
        assert (await profiles.get("ada", 1.0)).source == "store"
        grace = b'{"tier":"gold"}'
        profiles.wrote("grace", grace, grace)  # as events ingest keeps a copy

        server.stop()
        await asyncio.sleep(0.2)
        assert not follower.done()  # it did not die with the connection
        server.start()

        # The pooled connections died with the server, and the store does not retry:
        # its first call on each of them fails. (The follower has its own connection.)
        async def store_answers():
            try:
                await stores.ping()
            except StoreUnavailable:
                return False
            return True

        await _until(store_answers)
        await stores.profiles.put("ada", {"first_name": "Augusta"})
        # changes missed while not listening are unknown: fresh copies were dropped,
        # and copies of what this server wrote (an erasure may have been missed)
        assert (await profiles.get("ada", 1.0)).profile == {"first_name": "Augusta"}
        assert profiles.written("grace") is None

        await _subscribed(stores)
        await stores.profiles.put("ada", {"first_name": "Ada again"})
        # as another server announces it (a server skips its own announcements)
        theirs = redis_stores(server.url, timeout_s=0.2)
        try:
            await theirs.bus.publish_change("ada")
        finally:
            await theirs.close()

        async def changed():
            return (await profiles.get("ada", 1.0)).profile == {"first_name": "Ada again"}

        await _until(changed)
    finally:
        stopped = await _stop(stop, follower)
        await stores.close()
        server.stop()
    assert stopped, "the follower did not stop when told to"


async def test_follower_stops_while_redis_is_down(tmp_path):
    server = RedisServer(tmp_path / "redis")
    server.start()
    stores = redis_stores(server.url, timeout_s=0.2)
    profiles, _ = cached(stores)
    stop = asyncio.Event()
    # a long retry pause: only the stop flag can end it early
    follower = asyncio.create_task(profiles.follow_changes(stop, retry_s=30))
    try:
        await _subscribed(stores)
        server.stop()
        await asyncio.sleep(0.3)  # it lost its connection and waits to retry
        assert not follower.done()
    finally:
        stopped = await _stop(stop, follower)
        await stores.close()
        server.stop()
    assert stopped, "the follower did not stop while waiting to retry"


async def test_follower_stops_when_told_to_and_unsubscribes(redis_url):
    stores = redis_stores(redis_url)
    profiles, _ = cached(stores)
    stop = asyncio.Event()
    follower = asyncio.create_task(profiles.follow_changes(stop))
    try:
        await _subscribed(stores)
        start = time.monotonic()
        assert await _stop(stop, follower), "the follower did not stop when told to"
        assert time.monotonic() - start < STOP_WITHIN_S
        # its own connection is closed: no subscriber is left on the channel
        [(_channel, count)] = await redis_of(stores).pubsub_numsub(CHANGES_CHANNEL)
        assert count == 0
        await stores.ping()  # the store itself stays usable
    finally:
        follower.cancel()
        await stores.close()


async def test_follower_stops_when_told_to_soon_after_start(redis_url):
    # Regression: the follower could only be stopped by cancelling its task, and on
    # Python 3.11 redis-py can swallow a cancellation that lands while PubSub.subscribe()
    # is sending; it then polled forever and the app's shutdown hung. It now stops on an
    # event, whichever step of its start-up it is at when the event is set.
    async def start_then_stop(steps: int) -> bool:
        stores = redis_stores(redis_url)
        profiles, _ = cached(stores)
        stop = asyncio.Event()
        follower = asyncio.create_task(profiles.follow_changes(stop))
        try:
            for _ in range(steps):  # let it get that many event-loop turns into start-up
                await asyncio.sleep(0)
            return await _stop(stop, follower)
        finally:
            await stores.close()

    steps = range(40)
    stopped = await asyncio.gather(*(start_then_stop(n) for n in steps))
    stuck = [n for n, ok in zip(steps, stopped, strict=True) if not ok]
    assert not stuck, f"told to stop after these many loop turns, it kept running: {stuck}"


async def test_app_shutdown_stops_the_follower_without_cancelling_it(redis_app):
    # Regression: the lifespan cancelled the follower and awaited it, which could hang
    # forever (see above); it now sets the stop flag and cancels only after
    # SHUTDOWN_WAIT_S, as a last resort.
    lifespan = redis_app.router.lifespan_context(redis_app)
    await lifespan.__aenter__()
    stores = redis_app.state.services.stores
    try:
        await _subscribed(stores)
        [follower] = [
            t
            for t in asyncio.all_tasks()
            if t.get_coro().__qualname__.endswith("follow_changes")  # type: ignore[union-attr]
        ]
    finally:
        start = time.monotonic()
        await asyncio.wait_for(lifespan.__aexit__(None, None, None), SHUTDOWN_WAIT_S + 5)
    assert time.monotonic() - start < SHUTDOWN_WAIT_S
    assert follower.done() and not follower.cancelled()
    assert follower.exception() is None
