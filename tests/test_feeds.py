"""`GET /v1/feeds/{feed}`: feed contents for the demo readers, fallbacks, limits,
single-flight, the time budget and a redis-server that goes away and comes back."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from support import (
    ADA_PROFILE_ITEM,
    AUTH,
    GRACE_PROFILE_ITEM,
    RedisServer,
    assert_error,
    click_grants,
    counting,
    fallback_body,
    feed_url,
    serve,
)

from app.app import create_app
from app.demo import load_demo
from app.settings import PROJECT_ROOT
from app.stores.bundle import embedded_stores, redis_stores

PRODUCT_KEYS = {
    "sku",
    "title",
    "price",
    "currency",
    "price_display",
    "image_url",
    "url",
    "category",
}


def skus(response: httpx.Response) -> list[str]:
    return [item["sku"] for item in response.json()["items"]]


# --- contents for the demo readers (on both backends) ------------------------------------


async def test_profile_feed(any_client):
    r = await any_client.get(feed_url("profile", "ada"))
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "private, no-store"
    assert "x-kairos-fallback" not in r.headers
    assert r.json() == {"items": [ADA_PROFILE_ITEM]}
    assert "ada@example.org" not in r.text  # contact details never leave in a feed


async def test_profile_feed_with_missing_fields(client):
    r = await client.get(feed_url("profile", "hedy"))
    assert r.json() == {
        "items": [
            {
                "first_name": "Hedy",
                "last_name": None,
                "tier": None,
                "loyalty_points": 55,
                "locale": "de-AT",
            }
        ]
    }


async def test_cart_feed(any_client):
    r = await any_client.get(feed_url("cart", "ada"))
    assert r.status_code == 200
    items = r.json()["items"]
    assert [(i["sku"], i["qty"]) for i in items] == [("SKU-1", 1), ("SKU-2", 2)]
    lamp, cushion = items
    assert lamp["title"] == "Brass desk lamp"
    assert lamp["price"] == 39.0
    assert lamp["price_display"] == "€39.00"
    assert lamp["line_total_display"] == "€39.00"
    # the second line only names a sku: the rest comes from the catalog
    assert cushion["title"] == "Linen cushion"
    assert cushion["price"] == 24.5
    assert cushion["currency"] == "EUR"
    assert cushion["price_display"] == "€24.50"
    assert cushion["line_total_display"] == "€49.00"
    assert cushion["image_url"] == "https://shop.example.com/img/sku-2.jpg"
    assert cushion["category"] == "textiles"
    assert PRODUCT_KEYS | {"qty", "line_total_display"} == set(cushion)


async def test_empty_cart(client):
    r = await client.get(feed_url("cart", "grace"))
    assert r.status_code == 200
    assert r.json() == {"items": []}
    assert "x-kairos-fallback" not in r.headers


async def test_cart_limit(client):
    r = await client.get(feed_url("cart", "ada", limit=1))
    assert skus(r) == ["SKU-1"]


async def test_recommendations_personal_then_popular(any_client):
    r = await any_client.get(feed_url("recommendations", "ada"))
    assert r.status_code == 200
    items = r.json()["items"]
    # her picks by score, then the most popular item not already shown or in her cart
    assert [(i["sku"], i["source"]) for i in items] == [
        ("SKU-9", "personal"),
        ("SKU-6", "personal"),
        ("SKU-3", "personal"),
        ("SKU-4", "popular"),
    ]
    assert items[0]["title"] == "Table lamp shade"
    assert items[0]["price_display"] == "€19.00"
    assert set(items[0]) == PRODUCT_KEYS | {"source"}


CATALOG_URLS = {
    product["sku"]: product["url"]
    for product in map(
        orjson.loads, (PROJECT_ROOT / "app/demo/catalog.jsonl").read_bytes().splitlines()
    )
    if product
}


@pytest.mark.parametrize("feed", ["cart", "recommendations"])
async def test_feed_links_are_the_readers_click_urls(client, feed):
    """Like every link of a rendered email, an item's `url` is a signed click URL for the
    token's reader and campaign, which redirects to the product; a second campaign's
    token gets its own (the built feed is kept per campaign)."""
    for campaign in ("spring", "autumn", None):
        r = await client.get(feed_url(feed, "ada", campaign=campaign))
        items = r.json()["items"]
        assert items and "x-kairos-fallback" not in r.headers
        for item in items:
            url = urlsplit(item["url"])
            assert url.path.startswith("/c/"), item["url"]
            link, reader = click_grants(item["url"])
            assert link.resource == CATALOG_URLS[item["sku"]]
            assert (link.campaign, link.user_id) == (campaign, "")
            assert reader is not None and (reader.user_id, reader.campaign) == ("ada", campaign)
            follow = await client.get(f"{url.path}?{url.query}")
            assert follow.status_code == 302
            assert follow.headers["location"] == CATALOG_URLS[item["sku"]]


async def test_feed_links_of_a_reader_who_declined_tracking_go_straight_to_the_product(client):
    r = await client.get(feed_url("recommendations", "grace", campaign="spring"))
    items = r.json()["items"]
    assert items
    assert [item["url"] for item in items] == [CATALOG_URLS[item["sku"]] for item in items]


async def test_recommendations_limit(client):
    assert skus(await client.get(feed_url("recommendations", "ada", limit=2))) == [
        "SKU-9",
        "SKU-6",
    ]


async def test_recommendations_without_personalization_consent_are_popular(any_client):
    r = await any_client.get(feed_url("recommendations", "alan"))
    items = r.json()["items"]
    # alan declined personalization: his stored pick (SKU-4) is not used as such, only
    # the popular list (minus his cart, SKU-7), in order of popularity
    assert [i["sku"] for i in items] == ["SKU-4", "SKU-10", "SKU-1", "SKU-6"]
    assert {i["source"] for i in items} == {"popular"}


async def test_popular_fill_skips_cart_and_goes_deep(client):
    r = await client.get(feed_url("recommendations", "alan", limit=20))
    assert skus(r) == [
        "SKU-4",
        "SKU-10",
        "SKU-1",
        "SKU-6",
        "SKU-2",
        "SKU-3",
        "SKU-8",
        "SKU-5",
        "SKU-9",
    ]


async def test_recommendations_never_include_cart_items(any_client):
    profile = {
        "first_name": "Cy",
        "cart": [{"sku": "SKU-4", "qty": 1}, {"sku": "SKU-10", "qty": 3}],
        "recommendations": [
            {"sku": "SKU-4", "score": 0.99},
            {"sku": "SKU-8", "score": 0.5},
            {"sku": "SKU-10", "score": 0.4},
        ],
    }
    r = await any_client.put("/v1/profiles/cy", json=profile, headers=AUTH)
    assert r.status_code == 201
    for limit in (1, 4, 20):
        got = skus(await any_client.get(feed_url("recommendations", "cy", limit=limit)))
        assert "SKU-4" not in got and "SKU-10" not in got
        assert got[0] == "SKU-8"
        assert len(got) == min(limit, 8)  # 10 products minus 2 in the cart


async def test_recommendations_skip_products_missing_from_catalog(client):
    profile = {"recommendations": [{"sku": "GONE-1", "score": 1}, {"sku": "SKU-5", "score": 0.1}]}
    assert (await client.put("/v1/profiles/dora", json=profile, headers=AUTH)).status_code == 201
    got = skus(await client.get(feed_url("recommendations", "dora", limit=2)))
    assert got == ["SKU-5", "SKU-4"]


# --- fallbacks ---------------------------------------------------------------------------


@pytest.mark.parametrize("feed", ["profile", "cart", "recommendations"])
async def test_missing_reader_gets_the_fallback(any_client, feed: str):
    r = await any_client.get(feed_url(feed, "nobody"))
    assert r.status_code == 200
    assert r.headers["x-kairos-fallback"] == "missing-profile"
    assert r.headers["cache-control"] == "private, no-store"
    assert r.headers["content-type"] == "application/json"
    assert r.json() == fallback_body(feed)


async def test_unknown_feed_signed_for_it_is_404(client):
    r = await client.get(feed_url("weather", "ada"))
    assert_error(r, 404, "not_found")


async def test_unknown_feed_with_another_feeds_token_is_403(client):
    r = await client.get(feed_url("weather", "ada", resource="profile"))
    assert_error(r, 403, "bad_token")


@pytest.mark.parametrize("limit", ["0", "21", "abc", "-1", "1.5", "", " 3", "99999999999999999999"])
async def test_bad_limit_is_400(client, limit: str):
    r = await client.get(feed_url("recommendations", "ada", limit=limit))
    error = assert_error(r, 400, "bad_request")
    assert error["field"] == "limit"


@pytest.mark.parametrize("limit", ["1", "20"])
async def test_limit_bounds_are_inclusive(client, limit: str):
    r = await client.get(feed_url("recommendations", "alan", limit=limit))
    assert r.status_code == 200
    assert len(r.json()["items"]) == min(int(limit), 9)


@pytest.mark.parametrize("limit", ["²", "٣", "１"])
async def test_non_ascii_digit_limit_is_400_not_500(app, limit: str):
    # str.isdigit() is true for these, int() rejects '²'
    async with serve(app, raise_app_exceptions=False) as client:
        r = await client.get(feed_url("recommendations", "ada", limit=limit))
        assert_error(r, 400, "bad_request")


@pytest.mark.parametrize(("user", "ttl"), [("nobody", None), ("ada", -1)])
async def test_bad_limit_is_400_whatever_the_data(client, user: str, ttl: int | None):
    # the same request is refused the same way for a missing reader or an expired token
    r = await client.get(feed_url("recommendations", user, ttl_s=ttl, limit="abc"))
    assert_error(r, 400, "bad_request")


async def test_invalid_stored_data_serves_fallback(app, client):
    # data written behind the API's back (an old import, a bug): not a 5xx
    profiles = app.state.services.stores.profiles
    await profiles.put("broken", {"cart": "not a list", "recommendations": 7})
    for feed in ("cart", "recommendations"):
        r = await client.get(feed_url(feed, "broken"))
        assert r.status_code == 200
        assert r.headers["x-kairos-fallback"] == "invalid-data"
        assert r.json() == fallback_body(feed)


async def test_stored_value_that_is_not_an_object_serves_fallback(app, client):
    await app.state.services.stores.profiles.put("listy", [1, 2, 3])  # type: ignore[arg-type]
    r = await client.get(feed_url("profile", "listy"))
    assert r.status_code == 200
    assert r.headers["x-kairos-fallback"] == "invalid-data"


# --- single-flight -----------------------------------------------------------------------


@pytest.mark.parametrize("store_kind", ["embedded", "redis"])
async def test_thundering_herd_makes_one_store_call(settings, request, store_kind: str):
    if store_kind == "embedded":
        stores, store = counting(embedded_stores(), delay=0.05)
        app = create_app(settings(KAIROS_BUDGET_MS=5000), stores=stores)
    else:
        url = request.getfixturevalue("redis_url")
        stores, store = counting(redis_stores(url), delay=0.05)
        app = create_app(settings(KAIROS_BUDGET_MS=5000, KAIROS_DEMO_DATA="true"), stores=stores)
    async with serve(app) as client:
        responses = await asyncio.gather(
            *(client.get(feed_url("profile", "ada")) for _ in range(50))
        )
    assert store.get_calls == {"ada": 1}
    for r in responses:
        assert r.status_code == 200
        assert "x-kairos-fallback" not in r.headers
        assert r.json() == {"items": [ADA_PROFILE_ITEM]}


# --- time budget -------------------------------------------------------------------------


async def test_store_slower_than_budget(settings):
    stores, store = counting(embedded_stores())
    app = create_app(settings(KAIROS_BUDGET_MS=50, KAIROS_CACHE_TTL_MS=100), stores=stores)
    async with serve(app) as client:
        r = await client.get(feed_url("profile", "ada"))  # fast store: ada is cached
        assert r.json() == {"items": [ADA_PROFILE_ITEM]}

        store.delay = 0.5
        await asyncio.sleep(0.15)  # ada's fresh copy expires; a stale copy remains

        start = time.monotonic()
        r = await client.get(feed_url("profile", "grace"))  # never cached
        elapsed = time.monotonic() - start
        assert r.status_code == 200
        assert r.headers["x-kairos-fallback"] == "budget"
        assert r.json() == fallback_body("profile")
        assert elapsed < 0.3

        start = time.monotonic()
        r = await client.get(feed_url("profile", "ada"))
        elapsed = time.monotonic() - start
        assert r.status_code == 200
        assert "x-kairos-fallback" not in r.headers
        assert r.json() == {"items": [ADA_PROFILE_ITEM]}  # the stale profile, not fallback
        assert elapsed < 0.3

        await store.drain()
        # the slow loads were not wasted: they landed in the cache
        r = await client.get(feed_url("profile", "grace"))
        assert r.json() == {"items": [GRACE_PROFILE_ITEM]}
        assert store.get_calls["grace"] == 1


# --- redis goes away and comes back ------------------------------------------------------


async def _until(check, within_s: float = 5.0, interval: float = 0.05):
    deadline = time.monotonic() + within_s
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(interval)


async def test_redis_down_then_back(settings, tmp_path):
    server = RedisServer(tmp_path / "redis-down")
    server.start()
    try:
        app = create_app(
            settings(
                REDIS_URL=server.url,
                KAIROS_DEMO_DATA="true",
                KAIROS_CACHE_TTL_MS=100,
                KAIROS_STORE_RETRY_MS=100,
                KAIROS_REDIS_TIMEOUT_MS=200,
                KAIROS_BUDGET_MS=300,
            )
        )
        async with serve(app) as client:
            # warm ada: her profile and the catalog items of her cart
            assert (await client.get(feed_url("profile", "ada"))).json()["items"] == [
                ADA_PROFILE_ITEM
            ]
            assert skus(await client.get(feed_url("cart", "ada"))) == ["SKU-1", "SKU-2"]
            assert (await client.get("/readyz")).status_code == 200

            server.stop()
            await asyncio.sleep(0.15)  # the fresh copies expire: only stale ones remain

            r = await client.get(feed_url("profile", "ada"))
            assert r.status_code == 200
            assert "x-kairos-fallback" not in r.headers
            assert r.json() == {"items": [ADA_PROFILE_ITEM]}
            r = await client.get(feed_url("cart", "ada"))
            assert r.status_code == 200
            assert skus(r) == ["SKU-1", "SKU-2"]

            for feed in ("profile", "cart", "recommendations"):
                r = await client.get(feed_url(feed, "grace"))
                assert r.status_code == 200
                assert r.headers["x-kairos-fallback"] == "store-unavailable"
                assert r.json() == fallback_body(feed)
                assert r.headers["cache-control"] == "private, no-store"

            # no feed answers 5xx, for any reader or feed, repeatedly
            for user in ("ada", "grace", "alan", "nobody"):
                for feed in ("profile", "cart", "recommendations"):
                    assert (await client.get(feed_url(feed, user))).status_code == 200

            r = await client.get("/readyz")
            assert r.status_code == 503
            store = r.json()["store"]
            assert store.pop("breaker") in ("closed", "open")  # open after five failures
            assert store == {"backend": "redis", "ok": False}

            # the server-to-server API says so plainly
            r = await client.get("/v1/profiles/ada", headers=AUTH)
            assert_error(r, 503, "store_unavailable")
            assert r.headers["retry-after"] == "1"

            server.start()  # same port, empty: put the data back
            stores = redis_stores(server.url)
            try:
                await load_demo(stores)
            finally:
                await stores.close()

            async def ready():
                return (await client.get("/readyz")).status_code == 200

            await _until(ready)

            async def grace_served():
                r = await client.get(feed_url("profile", "grace"))
                return "x-kairos-fallback" not in r.headers and r

            r = await _until(grace_served, within_s=2.0)
            assert r.json() == {"items": [GRACE_PROFILE_ITEM]}
            r = await client.get(feed_url("recommendations", "grace"))
            assert "x-kairos-fallback" not in r.headers
            assert skus(r) == ["SKU-8", "SKU-5", "SKU-4", "SKU-10"]
    finally:
        server.stop()


async def test_redis_unreachable_from_the_start(settings):
    from support import free_port

    app = create_app(
        settings(
            REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
            KAIROS_DEMO_DATA="true",
            KAIROS_REDIS_TIMEOUT_MS=200,
        )
    )
    async with serve(app) as client:  # starts anyway
        r = await client.get(feed_url("cart", "ada"))
        assert r.status_code == 200
        assert r.headers["x-kairos-fallback"] == "store-unavailable"
        assert r.json() == fallback_body("cart")
        assert (await client.get("/readyz")).status_code == 503
        assert (await client.get("/healthz")).status_code == 200


async def test_one_corrupt_value_does_not_take_other_readers_down(
    settings, redis_url, redis_client
):
    # Regression: one reader's value that is not JSON raised StoreUnavailable, and the
    # cache then marked the whole store down for KAIROS_STORE_RETRY_MS: every other
    # uncached reader got the store-unavailable fallback.
    app = create_app(
        settings(REDIS_URL=redis_url, KAIROS_DEMO_DATA="true", KAIROS_STORE_RETRY_MS=60_000)
    )
    async with serve(app) as client:
        redis_client.set("kairos:{corrupt}:profile", b"{not json")
        for feed in ("profile", "cart", "recommendations"):
            r = await client.get(feed_url(feed, "corrupt"))
            assert r.status_code == 200
            assert r.headers["x-kairos-fallback"] == "invalid-data"
            assert r.json() == fallback_body(feed)

        r = await client.get(feed_url("profile", "ada"))
        assert r.headers.get("x-kairos-fallback") is None
        assert r.json() == {"items": [ADA_PROFILE_ITEM]}
        r = await client.get(feed_url("profile", "grace"))
        assert r.headers.get("x-kairos-fallback") is None
        assert r.json() == {"items": [GRACE_PROFILE_ITEM]}
        assert (await client.get("/readyz")).status_code == 200

        # the API refuses to serve what it cannot read, and lets a PUT repair it
        r = await client.get("/v1/profiles/corrupt", headers=AUTH)
        assert_error(r, 500, "invalid_stored_data")
        r = await client.put("/v1/profiles/corrupt", json=ADA_PROFILE_ITEM, headers=AUTH)
        assert r.status_code == 201
        r = await client.get(feed_url("profile", "corrupt"))
        assert r.headers.get("x-kairos-fallback") is None
        assert r.json() == {"items": [ADA_PROFILE_ITEM]}


async def test_corrupt_catalog_value_reads_as_an_unknown_product(settings, redis_url, redis_client):
    app = create_app(
        settings(REDIS_URL=redis_url, KAIROS_DEMO_DATA="true", KAIROS_STORE_RETRY_MS=60_000)
    )
    async with serve(app) as client:
        redis_client.hset("kairos:catalog", "SKU-2", b"{not json")  # in ada's cart
        # One unreadable product must not sink the feeds that list it: ada's cart line
        # for it is left out, like a product the catalog no longer has; the rest is intact.
        r = await client.get(feed_url("cart", "ada"))
        assert r.status_code == 200
        assert r.headers.get("x-kairos-fallback") is None
        items = r.json()["items"]
        assert [i["sku"] for i in items] == ["SKU-1"]
        assert items[0]["title"] == "Brass desk lamp"

        # popular top-ups skip it; other readers and the store are unaffected
        r = await client.get(feed_url("recommendations", "grace"))
        assert r.headers.get("x-kairos-fallback") is None
        assert "SKU-2" not in skus(r) and skus(r)[:2] == ["SKU-8", "SKU-5"]
        assert (await client.get("/readyz")).status_code == 200


async def test_cart_of_a_reader_without_personalization_consent_is_not_served(any_client):
    # alan declined personalization after the email went out: his live cart (SKU-7) is
    # behavioural data, so the open-time feed answers with the generic fallback.
    r = await any_client.get(feed_url("cart", "alan"))
    assert r.status_code == 200
    assert r.headers["x-kairos-fallback"] == "no-consent"
    assert r.json() == fallback_body("cart")
    assert "SKU-7" not in r.text


async def test_smallest_redis_pool_still_serves(settings, redis_url):
    # Regression: the pub/sub follower took its connection from the store's
    # BlockingConnectionPool and held it for good, so with KAIROS_REDIS_POOL_SIZE=1 no
    # connection was ever free: every feed fell back and /readyz answered 503. It has its
    # own connection now.
    app = create_app(
        settings(REDIS_URL=redis_url, KAIROS_DEMO_DATA="true", KAIROS_REDIS_POOL_SIZE=1)
    )
    async with serve(app) as client:
        r = await client.get(feed_url("profile", "ada"))
        assert r.headers.get("x-kairos-fallback") is None
        assert r.json() == {"items": [ADA_PROFILE_ITEM]}
        assert (await client.get("/readyz")).status_code == 200
