"""Recommendations from live events, over HTTP, on the embedded store and on a real
redis-server: co-occurrence counted on ingest and served within a second, normalized so
a best-seller does not neighbour everything, exclusions, the segment fallback for cold
readers, and the feed, the product grid and the product card agreeing on each slot."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis
from redis.crc import key_slot
from support import feed_url, image_url
from test_events_api import Kairos, ago, ev
from test_events_api import k as k  # the fixtures, used by name
from test_events_api import kairos as kairos
from test_picks import click, click_url

from app.stores.bundle import redis_stores
from app.stores.protocols import Occurrences
from app.stores.redis.keys import RECS_ITEMS_KEY, related_key, segment_popular_key

NEW = {
    "sku": "NEW-1",
    "title": "Brand-new stool",
    "price": 59.0,
    "currency": "EUR",
    "url": "https://shop.example.com/p/new-1",
    "popularity": 0,
}


def views(user: str, *skus: str, minutes: float = 30.0) -> list[dict[str, Any]]:
    """`user` viewing `skus` one minute apart, the last `minutes` ago."""
    n = len(skus)
    return [
        ev("product_view", user, ts=ago(minutes + n - i), sku=sku) for i, sku in enumerate(skus)
    ]


async def recommended(k: Kairos, user: str, limit: int = 4) -> list[tuple[str, str]]:
    """What the one recommender gives the stored reader now (no feed memo in between)."""
    services = k.app.state.services
    profile = await services.stores.profiles.get(user)
    deadline = asyncio.get_running_loop().time() + 1.0
    items = await services.reader.recommendations(profile or {}, limit, deadline)
    return [(item["sku"], item["source"]) for item in items]


async def feed(k: Kairos, user: str, **query: Any) -> list[tuple[str, str]]:
    r = await k.client.get(feed_url("recommendations", user, **query))
    assert r.status_code == 200 and "x-kairos-fallback" not in r.headers, r.headers
    return [(item["sku"], item["source"]) for item in r.json()["items"]]


async def settle(k: Kairos) -> None:
    await k.app.state.services.cooccurrence.drained()


async def test_a_brand_new_product_has_neighbours_within_a_second_of_one_cooccurrence(k):
    await k.stores.catalog.put_products([NEW])
    await k.post(views("u1", "SKU-3", "NEW-1"))  # one reader, one session: one co-view
    start = time.monotonic()
    await k.post(views("u2", "SKU-3"))
    while ("NEW-1", "related") not in await recommended(k, "u2"):
        assert time.monotonic() - start < 1.0, await recommended(k, "u2")
        await asyncio.sleep(0.02)
    # and the other way: a reader of the new product is shown what it was seen with
    await k.post(views("u3", "NEW-1"))
    await settle(k)
    assert (await feed(k, "u3"))[0] == ("SKU-3", "related")
    assert (await feed(k, "u2"))[0] == ("NEW-1", "related")


async def test_bought_and_in_cart_products_are_never_recommended(k):
    await k.post(views("u1", "SKU-3", "SKU-5", "SKU-7", "SKU-8"))
    await k.post(
        [
            *views("u2", "SKU-3", minutes=20),
            ev("add_to_cart", "u2", ts=ago(10), sku="SKU-5"),
            ev(
                "purchase",
                "u2",
                ts=ago(5),
                total=75.0,
                currency="EUR",
                items=[{"sku": "SKU-7", "qty": 1, "price": 75.0}],
            ),
        ]
    )
    await settle(k)
    got = await feed(k, "u2")
    skus = [sku for sku, _ in got]
    assert "SKU-5" not in skus and "SKU-7" not in skus, got
    assert ("SKU-8", "related") in got  # their neighbour, which is neither
    assert len(got) == 4


async def test_a_best_seller_does_not_outrank_a_true_neighbour(k):
    others = ["SKU-1", "SKU-2", "SKU-3", "SKU-5", "SKU-6", "SKU-7", "SKU-10"]
    batch = []
    for i in range(3):  # SKU-8's true neighbour: seen with it by 3 readers
        batch += views(f"pair{i}", "SKU-8", "SKU-9")
    for i in range(4):  # the best-seller is seen with it by 4: more, in raw counts
        batch += views(f"with{i}", "SKU-8", "SKU-4")
    for i in range(30):  # ...because it is seen with everything
        batch += views(f"best{i}", others[i % len(others)], "SKU-4")
    await k.post(batch)
    await k.post(views("reader", "SKU-8"))
    await settle(k)
    got = await recommended(k, "reader")
    assert got[0] == ("SKU-9", "related"), got
    assert [s for s, _ in got].index("SKU-4") > 0


async def test_a_cold_reader_gets_what_their_segment_likes_then_popular(k):
    # Known for 70 days with no email opened: `dormant` by the default rules, evaluated
    # from the profile on each event and at the read.
    dormant = {"first_seen": ago(70 * 24 * 60), "consent": {"personalization": True}}
    for i in range(3):
        await k.stores.profiles.put(f"old{i}", dict(dormant))
        await k.post(views(f"old{i}", "SKU-7", "SKU-9"))
        await k.post(views(f"old{i}", "SKU-7", minutes=5))
    await k.stores.profiles.put("cold", dict(dormant))
    await k.stores.profiles.put("plain", {"consent": {"personalization": True}})
    await settle(k)
    assert await feed(k, "cold") == [
        ("SKU-7", "segment"),
        ("SKU-9", "segment"),
        ("SKU-4", "popular"),
        ("SKU-10", "popular"),
    ]
    # a reader without a segment, or of another one, gets the popular list
    assert await feed(k, "plain") == [
        ("SKU-4", "popular"),
        ("SKU-10", "popular"),
        ("SKU-1", "popular"),
        ("SKU-6", "popular"),
    ]


async def test_the_feed_the_grid_and_the_card_agree_on_each_slot(k):
    await k.post(views("u1", "SKU-3", "SKU-5", "SKU-8", "SKU-9"))
    await k.post(views("reader", "SKU-3"))
    await settle(k)
    got = await feed(k, "reader", campaign="spring")
    assert got[0][1] == "related"
    services = k.app.state.services
    profile = await services.stores.profiles.get("reader")
    deadline = asyncio.get_running_loop().time() + 1.0
    grid = await services.renderer.data(profile, deadline)  # what the product grid reads
    assert [item["sku"] for item in grid["recommendations"][:4]] == [s for s, _ in got]
    for slot in (0, 2):
        card = await k.client.get(image_url("product", "reader", campaign="spring", slot=slot))
        assert card.status_code == 200 and "x-kairos-fallback" not in card.headers
        sku = got[slot][0]
        assert await click(k.client, click_url("reader", slot)) == (
            f"https://shop.example.com/p/{sku.lower()}"
        )


async def test_off_counts_nothing(kairos):
    async with kairos(KAIROS_RECS_COOCCURRENCE="false") as k:
        await k.post(views("u1", "SKU-3", "SKU-8"))
        await k.post(views("u2", "SKU-3"))
        await settle(k)
        assert "related" not in {source for _, source in await recommended(k, "u2")}


async def test_redis_keys_are_per_product_and_capped(kairos, backend, redis_client):
    if backend != "redis":
        return
    async with kairos(KAIROS_RECS_NEIGHBOURS="10") as k:
        skus = [f"P-{i:02d}" for i in range(15)]
        await k.stores.catalog.put_products(
            [{"sku": s, "title": s, "price": 1.0, "currency": "EUR"} for s in skus]
        )
        batch = []
        for i, sku in enumerate(skus[1:]):
            # P-00 seen with each of the others, the later ones more often
            for j in range(i + 1):
                batch += views(f"r{i}-{j}", "P-00", sku)
        await k.post(batch)
        await settle(k)
        kept = redis_client.zrevrange(related_key("P-00"), 0, -1)
        assert [s.decode() for s in kept] == skus[:0:-1][:10]
        assert redis_client.zscore(RECS_ITEMS_KEY, "P-00") == 14 * 15 / 2
        assert key_slot(related_key("P-00").encode()) != key_slot(related_key("P-01").encode())
        assert segment_popular_key("vip") == "kairos:recs:{seg=vip}:popular"


async def test_a_redis_that_forgot_the_counting_script_counts_all_the_same(redis_url: str):
    stores = redis_stores(redis_url)
    try:
        with redis.Redis.from_url(redis_url) as client:
            client.script_flush()  # as a restarted Redis
        batch = Occurrences(pairs={("A-1", "B-1"): 2.0}, items={"A-1": 1.0, "B-1": 1.0})
        await stores.recs.add(batch, cap=5)
        await stores.recs.add(batch, cap=5)  # the script is known now: counted once more
        assert await stores.recs.neighbours(["A-1", "B-1"], 5) == {
            "A-1": [("B-1", 4.0)],
            "B-1": [("A-1", 4.0)],
        }
        assert await stores.recs.counts(["A-1", "B-1"]) == {"A-1": 2.0, "B-1": 2.0}
    finally:
        await stores.close()
