"""Warm readers, over HTTP: a server applies a reader's next events to the profile it last
wrote for that reader, without reading the store first (`KAIROS_EVENTS_WARM_READERS`).
The outcome must be exactly what a read would have given: retries are duplicates, and a
change made meanwhile — on another server sharing the Redis, through the profiles API, by
a merge or an erasure, or by consent given or withdrawn — is never lost nor overwritten.
A copy that outlived such a change (its message late or lost) is refused by the store's
write, which these tests force by putting the stale copy back."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest
from support import AUTH, redis_of
from test_events_api import Json, Kairos, Opener, ago, counts, ev
from test_events_api import k as k  # the fixtures, used by name
from test_events_api import kairos as kairos

from app.events.model import anonymous_reader
from app.profiles.cache import CachedProfiles
from app.stores.protocols import ReaderAsk, ReaderState
from app.stores.redis.keys import CHANGES_CHANNEL

on_redis = pytest.mark.parametrize("backend", ["redis"])
WITHIN_S = 5.0  # how long a change message may take to reach another server


# --- helpers ---------------------------------------------------------------------------------


def uid(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:8]}"


def profiles(k: Kairos) -> CachedProfiles:
    cached: CachedProfiles = k.app.state.services.profiles
    return cached


def copy_of(k: Kairos, reader: str) -> tuple[bytes, str] | None:
    """The profile (as stored, and its version) the server keeps of its own last write
    for `reader`."""
    return profiles(k).written(reader)


def count_reads(k: Kairos, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """From now on, how many times the server's event store was read for each reader."""
    store = k.stores.events
    read = store.read
    asked: Counter[str] = Counter()

    async def counting(asks: Sequence[ReaderAsk]) -> list[ReaderState]:
        asked.update(a.user_id for a in asks)
        return await read(asks)

    monkeypatch.setattr(store, "read", counting)
    return asked


async def until(check: Callable[[], bool], what: str, within_s: float = WITHIN_S) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, f"not within {within_s} s: {what}"
        await asyncio.sleep(0.005)


async def outlive(k: Kairos, reader: str, change: Awaitable[Any]) -> None:
    """Run `change`, then give the server back the copy it held before it: as if the
    change had been made elsewhere and its message had not arrived yet."""
    stale = copy_of(k, reader)
    assert stale is not None, "no copy to outlive the change"
    await change
    profiles(k).wrote(reader, *stale)


async def patch(k: Kairos, user: str, doc: Json) -> None:
    r = await k.client.patch(f"/v1/profiles/{user}", json=doc, headers=AUTH)
    assert r.status_code == 200, r.text


async def erase(k: Kairos, user: str, *, suppress: bool = True) -> None:
    query = "" if suppress else "?suppress=false"
    r = await k.client.delete(f"/v1/profiles/{user}{query}", headers=AUTH)
    assert r.status_code == 204, r.text


async def event_ids(k: Kairos, user: str) -> list[str]:
    return [e["event_id"] for e in await k.history(user)]


@pytest.fixture
async def servers(kairos: Opener) -> AsyncIterator[tuple[Kairos, Kairos]]:
    """Two servers on the one redis-server, each following the other's changes."""
    async with kairos() as a, kairos() as b:
        client = redis_of(a.stores)
        assert client is not None

        async def subscribers() -> int:
            [(_channel, count)] = await client.pubsub_numsub(CHANGES_CHANNEL)
            return int(count)

        deadline = time.monotonic() + WITHIN_S
        while await subscribers() < 2:
            assert time.monotonic() < deadline, "the second server never subscribed"
            await asyncio.sleep(0.005)
        # Past whatever the start-ups announced: once B's change to a reader A has
        # cached reaches A, so did everything B sent before it.
        marker = uid("marker")
        await profiles(a).get(marker, 1.0)
        await b.put_profile(marker, {"first_name": "Marker"})
        await until(lambda: profiles(a).cached(marker) is None, "A heard B's change")
        yield a, b


# --- one server ------------------------------------------------------------------------------


def session(user: str, times: list[str]) -> list[list[Json]]:
    """Three requests of one reader's browsing, at the given times."""
    return [
        [ev("page_view", user, ts=times[0]), ev("add_to_cart", user, ts=times[1], sku="SKU-1")],
        [
            ev("product_view", user, ts=times[2], sku="SKU-2"),
            ev("add_to_cart", user, ts=times[3], sku="SKU-1", qty=2),
        ],
        [ev("purchase", user, ts=times[4], items=[{"sku": "SKU-1"}], total=12, currency="EUR")],
    ]


def warm_counts(k: Kairos) -> dict[str, float]:
    """`kairos_events_warm_readers_total` by result, those above zero."""
    registry = k.app.state.services.metrics.registry
    found = {
        result: registry.get_sample_value("kairos_events_warm_readers_total", {"result": result})
        for result in ("copy", "read", "refused")
    }
    return {result: n for result, n in found.items() if n}


@pytest.mark.parametrize("warm", [20000, 0])
async def test_the_next_request_skips_the_read_and_lands_the_same(
    kairos: Opener, monkeypatch: pytest.MonkeyPatch, warm: int
) -> None:
    times = [ago(30 - i) for i in range(5)]
    user = uid("warm")
    async with kairos(KAIROS_EVENTS_WARM_READERS=warm) as k:
        asked = count_reads(k, monkeypatch)
        for batch in session(user, times):
            assert counts(await k.post(batch)) == (len(batch), 0, 0, [])
        assert asked[user] == (1 if warm else 3)
        assert warm_counts(k) == ({"copy": 2, "read": 1} if warm else {"read": 3})
        profile = await k.profile(user)
        history = await k.history(user)
    assert profile is not None
    assert profile["counters"] == {
        "page_view": 1,
        "add_to_cart": 2,
        "product_view": 1,
        "purchase": 1,
    }
    assert (profile["first_seen"], profile["last_seen"]) == (times[0], times[4])
    assert profile["cart"] == []
    assert profile["spend"] == {"EUR": 12}
    assert [v["sku"] for v in profile["recent_views"]] == ["SKU-2"]
    assert sorted(e["ts"] for e in history) == times


async def test_a_retry_after_a_warm_write_is_all_duplicates(k: Kairos) -> None:
    user = uid("retry")
    await k.post([ev("page_view", user)])
    batch = [ev("add_to_cart", user, sku="SKU-1", qty=2), ev("page_view", user)]
    assert counts(await k.post(batch)) == (2, 0, 0, [])  # applied to the copy
    assert copy_of(k, user) is not None
    assert counts(await k.post(batch)) == (0, 2, 0, [])
    assert warm_counts(k) == {"copy": 2, "read": 2, "refused": 1}  # then read again
    # Half a retry: the old event is a duplicate, the new one applied.
    assert counts(await k.post([batch[0], ev("page_view", user)])) == (1, 1, 0, [])
    profile = await k.profile(user)
    assert profile is not None
    assert profile["counters"] == {"page_view": 3, "add_to_cart": 1}
    assert profile["cart"] == [{"sku": "SKU-1", "qty": 2}]
    ids = await event_ids(k, user)
    assert len(ids) == len(set(ids)) == 4


async def test_a_copy_outlived_by_a_profile_write_is_refused(k: Kairos) -> None:
    user = uid("put")
    await k.post([ev("page_view", user)])
    await outlive(k, user, patch(k, user, {"tier": "gold"}))
    assert counts(await k.post([ev("page_view", user)])) == (1, 0, 0, [])
    profile = await k.profile(user)
    assert profile is not None
    assert (profile["tier"], profile["counters"]) == ("gold", {"page_view": 2})


async def test_a_copy_outlived_by_consent_withdrawn_drops_the_events(k: Kairos) -> None:
    user = uid("shy")
    await k.post([ev("page_view", user)])
    await outlive(k, user, patch(k, user, {"consent": {"tracking": False}}))
    body = await k.post([ev("page_view", user), ev("add_to_cart", user, sku="SKU-1")])
    assert counts(body) == (0, 0, 2, [])
    profile = await k.profile(user)
    assert profile is not None
    assert profile["counters"] == {"page_view": 1}
    assert "cart" not in profile
    assert len(await k.history(user)) == 1


async def test_a_copy_outlived_by_consent_given_applies_the_events(k: Kairos) -> None:
    """The copy says the reader declined, so its events need no write; the store says
    otherwise, and must be asked."""
    user = uid("back")
    withdraw = ev("identify", user, traits={"consent": {"tracking": False}})
    assert counts(await k.post([withdraw])) == (1, 0, 0, [])
    await outlive(k, user, patch(k, user, {"consent": {"tracking": True}}))
    assert counts(await k.post([ev("page_view", user)])) == (1, 0, 0, [])
    assert await k.counters(user) == {"identify": 1, "page_view": 1}
    assert copy_of(k, user) is not None  # written after a read: warm again


async def test_a_copy_outlived_by_an_erasure_is_suppressed(k: Kairos) -> None:
    user, other = uid("gone"), uid("other")
    await k.post([ev("page_view", user)])
    await outlive(k, user, erase(k, user))
    body = await k.post([ev("page_view", user), ev("page_view", other)])
    assert counts(body) == (1, 0, 0, [(0, "suppressed")])
    assert await k.profile(user) is None
    assert copy_of(k, user) is None


async def test_a_copy_outlived_by_an_erasure_without_suppression_brings_nothing_back(
    k: Kairos,
) -> None:
    user = uid("fresh")
    await k.post([ev("page_view", user), ev("add_to_cart", user, sku="SKU-1")])
    await outlive(k, user, erase(k, user, suppress=False))
    assert counts(await k.post([ev("email_open", user)])) == (1, 0, 0, [])
    profile = await k.profile(user)
    assert profile is not None
    assert profile["counters"] == {"email_open": 1}
    assert "cart" not in profile
    assert len(await k.history(user)) == 1


async def test_an_erasure_drops_the_copy_at_once(k: Kairos) -> None:
    user, other = uid("erased"), uid("other")
    await k.post([ev("page_view", user)])
    assert copy_of(k, user) is not None
    await erase(k, user)
    assert copy_of(k, user) is None
    body = await k.post([ev("page_view", user), ev("page_view", other)])
    assert counts(body) == (1, 0, 0, [(0, "suppressed")])
    assert await k.profile(user) is None


async def test_the_copies_are_bounded(kairos: Opener, monkeypatch: pytest.MonkeyPatch) -> None:
    readers = [uid("r1"), uid("r2"), uid("r3")]
    async with kairos(KAIROS_EVENTS_WARM_READERS=2) as k:
        for reader in readers:
            await k.post([ev("page_view", reader)])
        assert [copy_of(k, r) is not None for r in readers] == [False, True, True]
        asked = count_reads(k, monkeypatch)
        await k.post([ev("page_view", r) for r in readers])
        assert asked == {readers[0]: 1}
        assert sum(copy_of(k, r) is not None for r in readers) == 2
        for reader in readers:
            assert await k.counters(reader) == {"page_view": 2}


async def test_a_merge_into_a_warm_user_keeps_everything(k: Kairos) -> None:
    user, anon = uid("user"), uid("anon")
    await k.post([ev("page_view", user)])
    await k.post(
        [
            ev("product_view", None, anon=anon, sku="SKU-2"),
            ev("add_to_cart", None, anon=anon, sku="SKU-2"),
        ]
    )
    assert copy_of(k, user) is not None
    assert copy_of(k, anonymous_reader(anon)) is not None
    # The copy from before the merge: the merge must refuse it whatever its message does.
    await outlive(k, user, k.post([ev("identify", user, anon=anon, traits={"first_name": "Ada"})]))
    body = await k.post([ev("add_to_cart", user, sku="SKU-1"), ev("page_view", None, anon=anon)])
    assert counts(body) == (2, 0, 0, [])
    profile = await k.profile(user)
    assert profile is not None
    assert profile["first_name"] == "Ada"
    assert profile["counters"] == {
        "page_view": 2,
        "product_view": 1,
        "add_to_cart": 2,
        "identify": 1,
    }
    assert sorted(line["sku"] for line in profile["cart"]) == ["SKU-1", "SKU-2"]
    assert [v["sku"] for v in profile["recent_views"]] == ["SKU-2"]
    assert await k.profile(anon, anonymous=True) is None
    ids = await event_ids(k, user)
    assert len(ids) == len(set(ids)) == 6


# --- two servers on one Redis ----------------------------------------------------------------


@on_redis
async def test_only_another_servers_change_drops_a_copy(
    servers: tuple[Kairos, Kairos], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = servers
    mine, shared = uid("mine"), uid("shared")
    await a.post([ev("page_view", mine), ev("page_view", shared)])
    # A's write announced both; that message may reach A's follower before A keeps its
    # copies or after: A announces `mine` again, now that it holds the copy.
    await a.stores.bus.publish_change(mine)
    await b.post([ev("page_view", shared)])
    await until(lambda: copy_of(a, shared) is None, "A dropped the reader B changed")
    assert copy_of(a, mine) is not None  # its own announcement was on the channel first
    asked = count_reads(a, monkeypatch)
    await a.post([ev("page_view", mine), ev("page_view", shared)])
    assert asked == {shared: 1}
    assert await a.counters(mine) == {"page_view": 2}
    assert await a.counters(shared) == {"page_view": 3}


@on_redis
async def test_changes_on_another_server_are_kept(servers: tuple[Kairos, Kairos]) -> None:
    a, b = servers
    user = uid("both")
    await a.post([ev("page_view", user), ev("add_to_cart", user, sku="SKU-1")])
    assert copy_of(a, user) is not None
    await b.post([ev("product_view", user, sku="SKU-2"), ev("page_view", user)])
    await patch(b, user, {"tier": "gold"})
    await a.post([ev("email_open", user), ev("add_to_cart", user, sku="SKU-1")])
    await b.post([ev("page_view", user)])
    await a.post([ev("page_view", user)])
    profile = await a.profile(user)
    assert profile is not None
    assert profile["tier"] == "gold"
    assert profile["counters"] == {
        "page_view": 4,
        "add_to_cart": 2,
        "product_view": 1,
        "email_open": 1,
    }
    assert profile["cart"] == [{"sku": "SKU-1", "qty": 2}]
    assert await b.profile(user) == profile
    ids = await event_ids(a, user)
    assert len(ids) == len(set(ids)) == 8


@on_redis
@pytest.mark.parametrize("how", ["patch", "identify"])
async def test_consent_withdrawn_on_another_server_drops_the_next_events(
    servers: tuple[Kairos, Kairos], how: str
) -> None:
    a, b = servers
    user = uid("shy")
    await a.post([ev("page_view", user)])
    assert copy_of(a, user) is not None
    if how == "patch":
        await patch(b, user, {"consent": {"tracking": False}})
    else:  # a write key may withdraw consent
        withdraw = ev("identify", user, traits={"consent": {"tracking": False}})
        assert counts(await b.post([withdraw])) == (1, 0, 0, [])
    body = await a.post([ev("page_view", user), ev("add_to_cart", user, sku="SKU-1")])
    assert counts(body) == (0, 0, 2, [])
    profile = await a.profile(user)
    assert profile is not None
    assert profile["consent"]["tracking"] is False
    assert profile["counters"].get("page_view") == 1
    assert "cart" not in profile
    assert len(await a.history(user)) == (1 if how == "patch" else 2)


@on_redis
async def test_consent_given_on_another_server_applies_the_next_events(
    servers: tuple[Kairos, Kairos],
) -> None:
    a, b = servers
    user = uid("back")
    withdraw = ev("identify", user, traits={"consent": {"tracking": False}})
    await a.post([withdraw])
    assert counts(await a.post([ev("page_view", user)])) == (0, 0, 1, [])
    await patch(b, user, {"consent": {"tracking": True}})
    assert counts(await a.post([ev("page_view", user)])) == (1, 0, 0, [])
    assert await a.counters(user) == {"identify": 1, "page_view": 1}


@on_redis
async def test_an_erasure_on_another_server_drops_the_copy_and_suppresses(
    servers: tuple[Kairos, Kairos],
) -> None:
    a, b = servers
    user, other = uid("erased"), uid("other")
    await a.post([ev("page_view", user)])
    assert copy_of(a, user) is not None
    await erase(b, user)
    await until(lambda: copy_of(a, user) is None, "A dropped the reader B erased")
    body = await a.post([ev("page_view", user), ev("page_view", other)])
    assert counts(body) == (1, 0, 0, [(0, "suppressed")])
    assert await a.profile(user) is None
    assert await a.history(user) == []


@on_redis
async def test_a_merge_on_another_server_is_kept(servers: tuple[Kairos, Kairos]) -> None:
    a, b = servers
    user, anon = uid("user"), uid("anon")
    await a.post([ev("page_view", user)])
    assert copy_of(a, user) is not None
    await b.post([ev("add_to_cart", None, anon=anon, sku="SKU-2")])
    await b.post([ev("identify", user, anon=anon, traits={})])
    await a.post([ev("add_to_cart", user, sku="SKU-1")])
    profile = await a.profile(user)
    assert profile is not None
    assert profile["counters"] == {"page_view": 1, "add_to_cart": 2, "identify": 1}
    assert sorted(line["sku"] for line in profile["cart"]) == ["SKU-1", "SKU-2"]
