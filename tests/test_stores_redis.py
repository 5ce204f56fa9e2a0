"""What only the Redis backend has: its key layout (existing data and Redis Cluster
depend on it), values written by others, unreadable values, a server that is not there,
and the change follower's own connection."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from redis.crc import key_slot
from support import free_port, redis_of

from app.errors import CorruptData, StoreUnavailable
from app.stores.bundle import Stores, redis_stores
from app.stores.redis.keys import (
    CATALOG_KEY,
    CHANGES_CHANNEL,
    PICKS_TTL_S,
    POPULAR_KEY,
    picks_key,
    profile_key,
    reader_keys,
)

PRODUCTS = [
    {"sku": "SKU-1", "title": "Lamp", "price": 39.0, "popularity": 120},
    {"sku": "SKU-2", "title": "Cushion", "price": 24.5, "popularity": 95},
]


@pytest.fixture
async def stores(redis_url: str):
    bundle = redis_stores(redis_url)
    try:
        yield bundle
    finally:
        await bundle.close()


async def test_key_layout(stores: Stores, redis_client):
    await stores.profiles.put("u123", {"first_name": "Ada"})
    await stores.profiles.put_many([("u124", {"tier": "gold"})])
    await stores.profiles.update("u125", lambda p: {"tier": "silver"})
    await stores.picks.remember_pick("u123", "spring", 2, "SKU-1")
    await stores.catalog.put_products(PRODUCTS)

    assert profile_key("u123") == "kairos:{u123}:profile"
    assert picks_key("u123") == "kairos:{u123}:picks"
    assert set(redis_client.keys("*")) == {
        b"kairos:{u123}:profile",
        b"kairos:{u124}:profile",
        b"kairos:{u125}:profile",
        b"kairos:{u123}:picks",
        b"kairos:catalog",
        b"kairos:popular",
    }
    assert orjson.loads(redis_client.get("kairos:{u123}:profile")) == {"first_name": "Ada"}
    assert redis_client.hgetall("kairos:{u123}:picks") == {b"2:spring": b"SKU-1"}
    assert 0 < redis_client.ttl("kairos:{u123}:picks") <= PICKS_TTL_S == 90 * 86400
    assert CATALOG_KEY == "kairos:catalog" and redis_client.type(CATALOG_KEY) == b"hash"
    assert orjson.loads(redis_client.hget(CATALOG_KEY, "SKU-1")) == PRODUCTS[0]
    assert POPULAR_KEY == "kairos:popular" and redis_client.type(POPULAR_KEY) == b"zset"
    # scores are negated popularity: ZRANGE gives the most popular first, ties by sku
    assert redis_client.zscore(POPULAR_KEY, "SKU-1") == -120.0
    assert redis_client.zrange(POPULAR_KEY, 0, -1) == [b"SKU-1", b"SKU-2"]
    assert CHANGES_CHANNEL == "kairos:changes"


async def test_a_readers_keys_share_one_hash_slot_and_erasure_knows_them_all(
    stores: Stores, redis_client
):
    # The hash tag is exactly the user id: every key of a reader is in its slot, so one
    # MULTI covers them and the layout works on Redis Cluster.
    assert {key_slot(key.encode()) for key in reader_keys("u123")} == {key_slot(b"u123")}
    assert key_slot(profile_key("u123").encode()) != key_slot(profile_key("u124").encode())
    # Every key the stores write for a reader is one erasure deletes.
    await stores.profiles.put("u123", {"first_name": "Ada"})
    await stores.picks.remember_pick("u123", "c", 0, "SKU-1")
    written = set(redis_client.keys("*{u123}*"))
    assert {profile_key("u123").encode(), b"kairos:{u123}:picks"} <= written
    assert written <= {k.encode() for k in reader_keys("u123")}
    assert await stores.erase("u123") is True
    assert redis_client.keys("*{u123}*") == []


async def test_reads_what_others_wrote(stores: Stores, redis_client):
    redis_client.set("kairos:{crm-1}:profile", orjson.dumps({"tier": "gold"}))
    redis_client.hset("kairos:{crm-1}:picks", "0:c", "SKU-7")
    redis_client.hset(CATALOG_KEY, "SKU-7", orjson.dumps({"sku": "SKU-7"}))
    redis_client.zadd(POPULAR_KEY, {"SKU-7": -3})
    assert await stores.profiles.get("crm-1") == {"tier": "gold"}
    assert await stores.picks.get_pick("crm-1", "c", 0) == "SKU-7"
    assert await stores.catalog.get_products(["SKU-7"]) == {"SKU-7": {"sku": "SKU-7"}}
    assert await stores.catalog.popular(1) == ["SKU-7"]
    assert await stores.erase("crm-1") is True
    assert redis_client.exists("kairos:{crm-1}:profile", "kairos:{crm-1}:picks") == 0


async def test_a_value_that_is_not_json_is_corrupt_data(stores: Stores, redis_client):
    # Regression: an unreadable value raised StoreUnavailable, as if redis were down; it
    # is CorruptData now, for that key only.
    assert not issubclass(CorruptData, StoreUnavailable)
    redis_client.set("kairos:{bad}:profile", b"\x00not json")
    redis_client.set("kairos:{good}:profile", orjson.dumps({"tier": "gold"}))
    with pytest.raises(CorruptData, match="not JSON"):
        await stores.profiles.get("bad")
    assert await stores.profiles.get("good") == {"tier": "gold"}
    await stores.ping()
    assert await stores.erase("bad") is True  # erasure works whatever is stored


async def test_a_catalog_value_that_is_not_json_reads_as_missing(
    stores: Stores, redis_client, caplog
):
    await stores.catalog.put_products(PRODUCTS[:1])
    redis_client.hset(CATALOG_KEY, "SKU-X", b"{oops")
    assert await stores.catalog.get_products(["SKU-1", "SKU-X"]) == {"SKU-1": PRODUCTS[0]}
    assert "SKU-X is unreadable" in caplog.text


async def test_update_treats_an_unreadable_value_as_absent(stores: Stores, redis_client):
    redis_client.set("kairos:{bad}:profile", b"{not json")
    # a change that declines to write leaves the value as it is
    seen = []

    def decline(current):
        seen.append(current)

    assert await stores.profiles.update("bad", decline) is None
    assert seen == [None]
    assert redis_client.get("kairos:{bad}:profile") == b"{not json"

    # a change that writes repairs it
    assert await stores.profiles.update(
        "bad", lambda current: {"tier": "gold", "was": current}
    ) == {"tier": "gold", "was": None}
    assert await stores.profiles.get("bad") == {"tier": "gold", "was": None}


async def test_unreachable_raises_store_unavailable_from_every_store():
    stores = redis_stores(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    try:
        for call in (
            stores.ping(),
            stores.erase("ada"),
            stores.profiles.get("ada"),
            stores.profiles.put("ada", {}),
            stores.profiles.put_many([("ada", {})]),
            stores.profiles.update("ada", lambda p: {}),
            stores.profiles.delete("ada"),
            stores.catalog.get_products(["SKU-1"]),
            stores.catalog.put_products(PRODUCTS),
            stores.catalog.popular(3),
            stores.picks.get_pick("ada", "c", 0),
            stores.picks.remember_pick("ada", "c", 0, "SKU-1"),
            stores.picks.forget("ada"),
            stores.bus.publish_change("ada"),
        ):
            with pytest.raises(StoreUnavailable, match="redis"):
                await call
        changes = stores.bus.changes(asyncio.Event())
        assert changes is not None
        with pytest.raises(StoreUnavailable, match="redis"):
            await anext(changes)
    finally:
        await stores.close()


async def test_changes_are_followed_on_their_own_connection(redis_url):
    # Regression: the subscription took a connection from the stores' pool and held it
    # for good: with a pool of one, every other call waited for it and failed.
    stores = redis_stores(redis_url, pool_size=1, timeout_s=0.5)
    client = redis_of(stores)
    assert client is not None
    stop = asyncio.Event()
    changes = stores.bus.changes(stop)
    assert changes is not None
    received: list[str] = []

    async def follow() -> None:
        async for user_id in changes:
            received.append(user_id)

    follower = asyncio.create_task(follow())
    try:
        await _subscribed(stores)
        await stores.profiles.put("ada", {"tier": "gold"})  # the one pooled connection is free
        assert await stores.profiles.get("ada") == {"tier": "gold"}
        # Its own announcements are skipped (it forgot its copies before sending them);
        # another process's are followed, and so is a message from an older sender
        # (no origin line).
        other = redis_stores(redis_url)
        try:
            await stores.bus.publish_change("eve")
            await other.bus.publish_change("ada")
            await other.bus.publish_change("*")
            await client.publish(CHANGES_CHANNEL, "bob\ncy")
            await _until(lambda: len(received) == 5)
            assert received == ["", "ada", "*", "bob", "cy"]  # "": it listens from then on
        finally:
            await other.close()

        stop.set()
        await asyncio.wait_for(follower, 2.0)  # it sees the flag within a second
        [(_channel, count)] = await client.pubsub_numsub(CHANGES_CHANNEL)
        assert count == 0  # it unsubscribed and closed its connection
    finally:
        follower.cancel()
        await stores.close()


async def _subscribed(stores: Stores, within_s: float = 3.0) -> None:
    client = redis_of(stores)
    assert client is not None
    deadline = time.monotonic() + within_s
    while True:
        [(_channel, count)] = await client.pubsub_numsub(CHANGES_CHANNEL)
        if count >= 1:
            return
        assert time.monotonic() < deadline, "never subscribed"
        await asyncio.sleep(0.005)


async def _until(check, within_s: float = 2.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def test_the_scripts_keys_are_the_layouts_keys():
    from app.stores.redis.keys import (
        alias_key,
        history_key,
        links_key,
        script_keys,
        seen_key,
        suppressed_key,
    )

    for user_id in ("u1", "~anon-1", "crm:42"):
        assert script_keys(user_id, "77") == (
            profile_key(user_id),
            seen_key(user_id),
            history_key(user_id),
            links_key(user_id),
            alias_key(user_id),
            suppressed_key("77"),
        )


async def test_pipelined_replies_in_order_errors_in_place_across_many_reads(redis_url):
    """Large replies arrive over several socket reads; an error reply stays in its place
    and the connection keeps serving the next pipeline."""
    from redis.exceptions import ResponseError

    from app.stores.redis.connection import RedisConnection

    connection = RedisConnection(redis_url, pool_size=1)  # keeps none aside
    try:
        big = "x" * 70_000  # past one 64 KB read
        commands = [("SET", f"kairos:test:{i}", big if i % 2 else str(i)) for i in range(40)]
        assert await connection.pipelined(commands) == [b"OK"] * 40
        replies = await connection.pipelined(
            [("GET", f"kairos:test:{i}") for i in range(40)] + [("INCR", "kairos:test:1")]
        )
        assert replies[:40] == [(big if i % 2 else str(i)).encode() for i in range(40)]
        assert isinstance(replies[40], ResponseError)
        assert await connection.pipelined([("PING",), ("ECHO", "after")]) == [b"PONG", b"after"]
        assert await connection.redis.ping()  # the one connection went back to the pool
    finally:
        await connection.close()


async def test_pipelined_times_out_and_the_connection_is_not_reused(redis_url):
    from app.stores.redis.connection import RedisConnection

    connection = RedisConnection(redis_url, timeout_s=0.2, pool_size=1)
    try:
        with pytest.raises(StoreUnavailable):
            # The reply takes longer than the timeout: its bytes must not reach the next caller.
            await connection.pipelined([("BLPOP", "kairos:test:empty", "0.5"), ("ECHO", "late")])
        await asyncio.sleep(0.5)
        assert await connection.pipelined([("ECHO", "next")]) == [b"next"]
    finally:
        await connection.close()


async def test_pipelined_keeps_its_connections_and_drops_one_the_server_closed(tmp_path):
    """The pipelined path keeps its connections out of the pool between calls (one socket
    serves call after call); one the server closed while it was kept (a restart) is not
    used again: the next call succeeds on a new connection rather than failing."""
    from support import RedisServer

    from app.stores.redis.connection import RedisConnection

    server = RedisServer(tmp_path / "redis")
    server.start()
    connection = RedisConnection(server.url, pool_size=16)
    try:
        ids = []
        for _ in range(3):
            ids += await connection.pipelined([("CLIENT", "ID"), ("ECHO", "x")])
            # Between calls the connection is out of the pool, so the pool may open another.
            assert await connection.redis.client_id() != ids[0]
        assert ids[1::2] == [b"x"] * 3
        assert len(set(ids[0::2])) == 1, "each call checked out a new connection"
        server.stop()
        server.start()
        await asyncio.sleep(0.05)  # the loop sees the old socket's end
        assert await connection.pipelined([("ECHO", "after")]) == [b"after"]
    finally:
        await connection.close()
        server.stop()
