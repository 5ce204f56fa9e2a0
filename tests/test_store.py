"""The profile store protocol, on both backends: the embedded MemoryStore and the
RedisStore on a real redis-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import orjson
import pytest
from redis.crc import key_slot
from support import free_port

from app.errors import CorruptData, StoreUnavailable
from app.profiles.memory import MemoryStore
from app.profiles.redis import CATALOG_KEY, CHANGES_CHANNEL, POPULAR_KEY, RedisStore, profile_key
from app.profiles.store import ProfileStore

PRODUCTS = [
    {"sku": "SKU-1", "title": "Lamp", "price": 39.0, "popularity": 120},
    {"sku": "SKU-2", "title": "Cushion", "price": 24.5, "popularity": 95},
    {"sku": "SKU-3", "title": "Table", "price": 149.0, "popularity": 200},
    {"sku": "SKU-4", "title": "Vase"},  # no popularity: 0
]


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[ProfileStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    url = request.getfixturevalue("redis_url")  # flushed
    s = RedisStore(url)
    try:
        yield s
    finally:
        await s.close()


def is_redis(store: ProfileStore) -> bool:
    return isinstance(store, RedisStore)


# --- profiles ----------------------------------------------------------------------------


async def test_get_missing(store: ProfileStore):
    assert await store.get("nobody") is None


async def test_put_get_round_trip(store: ProfileStore):
    profile = {"first_name": "Ada", "cart": [{"sku": "SKU-1", "qty": 2}], "n": 1.5}
    await store.put("ada", profile)
    assert await store.get("ada") == profile


async def test_get_returns_a_copy(store: ProfileStore):
    await store.put("ada", {"cart": [{"sku": "SKU-1"}]})
    got = await store.get("ada")
    got["cart"].append({"sku": "SKU-2"})
    got["first_name"] = "changed"
    assert await store.get("ada") == {"cart": [{"sku": "SKU-1"}]}


async def test_put_stores_a_snapshot(store: ProfileStore):
    profile = {"tier": "gold"}
    await store.put("ada", profile)
    profile["tier"] = "silver"
    assert await store.get("ada") == {"tier": "gold"}


async def test_put_replaces(store: ProfileStore):
    await store.put("ada", {"first_name": "Ada", "tier": "gold"})
    await store.put("ada", {"first_name": "Augusta"})
    assert await store.get("ada") == {"first_name": "Augusta"}


async def test_strings_are_stored_exactly(store: ProfileStore):
    profile = {"first_name": "<script>alert(1)</script>", "last_name": "{{ 7*7 }}", "x": "é\u2028"}
    await store.put("u1", profile)
    assert await store.get("u1") == profile


async def test_put_many(store: ProfileStore):
    count = await store.put_many((f"u{i}", {"loyalty_points": i}) for i in range(250))
    assert count == 250
    assert await store.get("u0") == {"loyalty_points": 0}
    assert await store.get("u249") == {"loyalty_points": 249}
    assert await store.put_many([]) == 0


async def test_update_creates(store: ProfileStore):
    seen = []

    def change(current):
        seen.append(current)
        return {"first_name": "Ada"}

    assert await store.update("ada", change) == {"first_name": "Ada"}
    assert seen == [None]
    assert await store.get("ada") == {"first_name": "Ada"}


async def test_update_applies_change_to_current(store: ProfileStore):
    await store.put("ada", {"loyalty_points": 10, "tier": "gold"})
    new = await store.update("ada", lambda p: {**p, "loyalty_points": p["loyalty_points"] + 5})
    assert new == {"loyalty_points": 15, "tier": "gold"}
    assert await store.get("ada") == new


async def test_update_returning_none_leaves_store_untouched(store: ProfileStore):
    await store.put("ada", {"tier": "gold"})
    assert await store.update("ada", lambda p: None) == {"tier": "gold"}
    assert await store.get("ada") == {"tier": "gold"}
    assert await store.update("nobody", lambda p: None) is None
    assert await store.get("nobody") is None


async def test_update_that_raises_writes_nothing(store: ProfileStore):
    await store.put("ada", {"tier": "gold"})

    def boom(current):
        raise LookupError("refused")

    with pytest.raises(LookupError):
        await store.update("ada", boom)
    assert await store.get("ada") == {"tier": "gold"}
    # and the store still works afterwards (on redis: the connection was released)
    assert await store.update("ada", lambda p: {**p, "tier": "silver"}) == {"tier": "silver"}


async def test_concurrent_updates_are_atomic(store: ProfileStore):
    await store.put("ada", {"loyalty_points": 0, "log": []})
    n = 40

    def increment(i: int):
        def change(current):
            return {
                "loyalty_points": current["loyalty_points"] + 1,
                "log": [*current["log"], i],
            }

        return change

    results = await asyncio.gather(*(store.update("ada", increment(i)) for i in range(n)))
    final = await store.get("ada")
    assert final["loyalty_points"] == n  # no lost update
    assert sorted(final["log"]) == list(range(n))  # every writer's change is there, once
    assert sorted(r["loyalty_points"] for r in results) == list(range(1, n + 1))


async def test_delete(store: ProfileStore):
    await store.put("ada", {"tier": "gold"})
    await store.put("grace", {"tier": "silver"})
    assert await store.delete("ada") is True
    assert await store.get("ada") is None
    assert await store.delete("ada") is False
    assert await store.get("grace") == {"tier": "silver"}


async def test_ping_and_name(store: ProfileStore):
    await store.ping()
    assert store.name == ("redis" if is_redis(store) else "embedded")


# --- catalog -----------------------------------------------------------------------------


async def test_products(store: ProfileStore):
    assert await store.put_products(PRODUCTS) == 4
    got = await store.get_products(["SKU-2", "SKU-9", "SKU-1"])
    assert got == {"SKU-1": PRODUCTS[0], "SKU-2": PRODUCTS[1]}
    assert await store.get_products([]) == {}
    assert await store.put_products([]) == 0


async def test_products_are_replaced_by_sku(store: ProfileStore):
    await store.put_products(PRODUCTS)
    await store.put_products([{"sku": "SKU-1", "title": "New lamp", "popularity": 1}])
    assert (await store.get_products(["SKU-1"]))["SKU-1"]["title"] == "New lamp"
    assert await store.popular(4) == ["SKU-3", "SKU-2", "SKU-1", "SKU-4"]


async def test_popular(store: ProfileStore):
    await store.put_products(PRODUCTS)
    assert await store.popular(2) == ["SKU-3", "SKU-1"]
    assert await store.popular(10) == ["SKU-3", "SKU-1", "SKU-2", "SKU-4"]
    assert await store.popular(1) == ["SKU-3"]


async def test_popular_on_empty_catalog(store: ProfileStore):
    assert await store.popular(5) == []


async def test_popular_ties_are_ordered_by_sku(store: ProfileStore):
    # Regression: on redis, ZREVRANGE ordered equal scores by sku descending, so the two
    # backends disagreed on the popular list.
    await store.put_products([{"sku": s, "popularity": 10} for s in ("SKU-B", "SKU-A", "SKU-C")])
    assert await store.popular(3) == ["SKU-A", "SKU-B", "SKU-C"]
    await store.put_products(
        [{"sku": "SKU-0", "popularity": 5}, {"sku": "SKU-D", "popularity": 11}]
    )
    assert await store.popular(5) == ["SKU-D", "SKU-A", "SKU-B", "SKU-C", "SKU-0"]
    assert await store.popular(2) == ["SKU-D", "SKU-A"]


@pytest.mark.parametrize("limit", [0, -1])
async def test_popular_zero_or_negative_is_empty(store: ProfileStore, limit: int):
    # Regression: on redis, popular(0) asked for ZREVRANGE key 0 -1: the whole catalog.
    await store.put_products(PRODUCTS)
    assert await store.popular(limit) == []


async def test_popular_with_fractional_and_negative_popularity(store: ProfileStore):
    await store.put_products(
        [
            {"sku": "A", "popularity": -1},
            {"sku": "B", "popularity": 2.5},
            {"sku": "C", "popularity": 2},
            {"sku": "D"},
        ]
    )
    assert await store.popular(4) == ["B", "C", "D", "A"]


async def test_changes(store: ProfileStore):
    """Other servers' changes: none on the embedded store, which no one else shares (on
    redis, see test_redis_changes_*)."""
    changes = store.changes(asyncio.Event())
    assert (changes is None) is not is_redis(store)
    if changes is not None:
        await changes.aclose()  # never started: nothing to close but the generator


# --- redis specifics ---------------------------------------------------------------------


async def test_redis_key_layout(redis_url, redis_client):
    store = RedisStore(redis_url)
    try:
        await store.put("u123", {"first_name": "Ada"})
        await store.put_many([("u124", {"tier": "gold"})])
        await store.update("u125", lambda p: {"tier": "silver"})
        await store.put_products(PRODUCTS[:2])
    finally:
        await store.close()

    assert profile_key("u123") == "kairos:{u123}:profile"
    assert set(redis_client.keys("*")) == {
        b"kairos:{u123}:profile",
        b"kairos:{u124}:profile",
        b"kairos:{u125}:profile",
        CATALOG_KEY.encode(),
        POPULAR_KEY.encode(),
    }
    assert orjson.loads(redis_client.get("kairos:{u123}:profile")) == {"first_name": "Ada"}
    assert redis_client.type(CATALOG_KEY) == b"hash"
    assert orjson.loads(redis_client.hget(CATALOG_KEY, "SKU-1")) == PRODUCTS[0]
    assert redis_client.type(POPULAR_KEY) == b"zset"
    # scores are negated popularity: ZRANGE gives the most popular first, ties by sku
    assert redis_client.zscore(POPULAR_KEY, "SKU-1") == -120.0
    assert redis_client.zrange(POPULAR_KEY, 0, -1) == [b"SKU-1", b"SKU-2"]
    # the hash tag is exactly the user id: all of a reader's keys share its slot
    assert key_slot(profile_key("u123").encode()) == key_slot(b"u123")
    assert key_slot(profile_key("u123").encode()) != key_slot(profile_key("u124").encode())


async def test_redis_reads_what_others_wrote(redis_url, redis_client):
    redis_client.set("kairos:{crm-1}:profile", orjson.dumps({"tier": "gold"}))
    store = RedisStore(redis_url)
    try:
        assert await store.get("crm-1") == {"tier": "gold"}
        assert await store.delete("crm-1") is True
    finally:
        await store.close()
    assert redis_client.exists("kairos:{crm-1}:profile") == 0


async def test_redis_changes_until_stopped_on_their_own_connection(redis_url):
    # Regression: the subscription took a connection from the store's pool and held it
    # for good: with a pool of one, every other call waited for it and failed.
    store = RedisStore(redis_url, pool_size=1, timeout_s=0.5)
    stop = asyncio.Event()
    changes = store.changes(stop)
    assert changes is not None
    received: list[str] = []

    async def follow() -> None:
        async for user_id in changes:
            received.append(user_id)

    follower = asyncio.create_task(follow())
    try:
        await _subscribed(store)
        await store.put("ada", {"tier": "gold"})  # the one pooled connection is free
        assert await store.get("ada") == {"tier": "gold"}
        await store.publish_change("ada")
        await store.publish_change("*")
        await _until(lambda: len(received) == 2)
        assert received == ["ada", "*"]

        stop.set()
        await asyncio.wait_for(follower, 2.0)  # it sees the flag within a second
        [(_channel, count)] = await store.redis.pubsub_numsub(CHANGES_CHANNEL)
        assert count == 0  # it unsubscribed and closed its connection
    finally:
        follower.cancel()
        await store.close()


async def test_redis_value_that_is_not_json_is_corrupt_data(redis_url, redis_client):
    # Regression: an unreadable value raised StoreUnavailable, as if redis were down; it
    # is CorruptData now, for that key only.
    assert not issubclass(CorruptData, StoreUnavailable)
    redis_client.set("kairos:{bad}:profile", b"\x00not json")
    redis_client.set("kairos:{good}:profile", orjson.dumps({"tier": "gold"}))
    store = RedisStore(redis_url)
    try:
        with pytest.raises(CorruptData, match="not JSON"):
            await store.get("bad")
        assert await store.get("good") == {"tier": "gold"}
        await store.ping()
        assert await store.delete("bad") is True  # erasure works whatever is stored
    finally:
        await store.close()


async def test_redis_catalog_value_that_is_not_json_reads_as_missing(
    redis_url, redis_client, caplog
):
    store = RedisStore(redis_url)
    try:
        await store.put_products(PRODUCTS[:1])
        redis_client.hset(CATALOG_KEY, "SKU-X", b"{oops")
        assert await store.get_products(["SKU-1", "SKU-X"]) == {"SKU-1": PRODUCTS[0]}
        assert "SKU-X is unreadable" in caplog.text
    finally:
        await store.close()


async def test_redis_update_treats_an_unreadable_value_as_absent(redis_url, redis_client):
    redis_client.set("kairos:{bad}:profile", b"{not json")
    store = RedisStore(redis_url)
    try:
        # a change that declines to write leaves the value as it is
        seen = []

        def decline(current):
            seen.append(current)

        assert await store.update("bad", decline) is None
        assert seen == [None]
        assert redis_client.get("kairos:{bad}:profile") == b"{not json"

        # a change that writes repairs it
        assert await store.update("bad", lambda current: {"tier": "gold", "was": current}) == {
            "tier": "gold",
            "was": None,
        }
        assert await store.get("bad") == {"tier": "gold", "was": None}
    finally:
        await store.close()


async def test_redis_unreachable_raises_store_unavailable():
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    try:
        for call in (
            store.ping(),
            store.get("ada"),
            store.put("ada", {}),
            store.put_many([("ada", {})]),
            store.update("ada", lambda p: {}),
            store.delete("ada"),
            store.get_products(["SKU-1"]),
            store.put_products(PRODUCTS),
            store.popular(3),
            store.get_pick("ada", "c", 0),
            store.remember_pick("ada", "c", 0, "SKU-1"),
        ):
            with pytest.raises(StoreUnavailable, match="redis"):
                await call
    finally:
        await store.close()


# --- helpers -----------------------------------------------------------------------------


async def _subscribed(store: RedisStore, within_s: float = 3.0) -> None:
    deadline = time.monotonic() + within_s
    while True:
        [(_channel, count)] = await store.redis.pubsub_numsub(CHANGES_CHANNEL)
        if count >= 1:
            return
        assert time.monotonic() < deadline, "never subscribed"
        await asyncio.sleep(0.005)


async def _until(check, within_s: float = 2.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)
