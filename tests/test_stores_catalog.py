"""The catalog store contract (app/stores/protocols.py: CatalogStore), run against both
backends: the embedded one and Redis on a real redis-server."""

from __future__ import annotations

import pytest

from app.stores.bundle import Stores

PRODUCTS = [
    {"sku": "SKU-1", "title": "Lamp", "price": 39.0, "popularity": 120},
    {"sku": "SKU-2", "title": "Cushion", "price": 24.5, "popularity": 95},
    {"sku": "SKU-3", "title": "Table", "price": 149.0, "popularity": 200},
    {"sku": "SKU-4", "title": "Vase"},  # no popularity: 0
]


async def test_products(stores: Stores):
    catalog = stores.catalog
    assert await catalog.put_products(PRODUCTS) == 4
    got = await catalog.get_products(["SKU-2", "SKU-9", "SKU-1"])
    assert got == {"SKU-1": PRODUCTS[0], "SKU-2": PRODUCTS[1]}
    assert await catalog.get_products([]) == {}
    assert await catalog.put_products([]) == 0


async def test_products_are_replaced_by_sku(stores: Stores):
    catalog = stores.catalog
    await catalog.put_products(PRODUCTS)
    await catalog.put_products([{"sku": "SKU-1", "title": "New lamp", "popularity": 1}])
    assert (await catalog.get_products(["SKU-1"]))["SKU-1"]["title"] == "New lamp"
    assert await catalog.popular(4) == ["SKU-3", "SKU-2", "SKU-1", "SKU-4"]


async def test_products_are_copies(stores: Stores):
    catalog = stores.catalog
    product = {"sku": "SKU-1", "title": "Lamp"}
    await catalog.put_products([product])
    product["title"] = "changed"
    got = await catalog.get_products(["SKU-1"])
    got["SKU-1"]["title"] = "changed too"
    assert await catalog.get_products(["SKU-1"]) == {"SKU-1": {"sku": "SKU-1", "title": "Lamp"}}


async def test_popular(stores: Stores):
    await stores.catalog.put_products(PRODUCTS)
    assert await stores.catalog.popular(2) == ["SKU-3", "SKU-1"]
    assert await stores.catalog.popular(10) == ["SKU-3", "SKU-1", "SKU-2", "SKU-4"]
    assert await stores.catalog.popular(1) == ["SKU-3"]


async def test_popular_on_empty_catalog(stores: Stores):
    assert await stores.catalog.popular(5) == []


async def test_popular_ties_are_ordered_by_sku(stores: Stores):
    # Regression: on redis, ZREVRANGE ordered equal scores by sku descending, so the two
    # backends disagreed on the popular list.
    catalog = stores.catalog
    await catalog.put_products([{"sku": s, "popularity": 10} for s in ("SKU-B", "SKU-A", "SKU-C")])
    assert await catalog.popular(3) == ["SKU-A", "SKU-B", "SKU-C"]
    await catalog.put_products(
        [{"sku": "SKU-0", "popularity": 5}, {"sku": "SKU-D", "popularity": 11}]
    )
    assert await catalog.popular(5) == ["SKU-D", "SKU-A", "SKU-B", "SKU-C", "SKU-0"]
    assert await catalog.popular(2) == ["SKU-D", "SKU-A"]


@pytest.mark.parametrize("limit", [0, -1])
async def test_popular_zero_or_negative_is_empty(stores: Stores, limit: int):
    # Regression: on redis, popular(0) asked for ZREVRANGE key 0 -1: the whole catalog.
    await stores.catalog.put_products(PRODUCTS)
    assert await stores.catalog.popular(limit) == []


async def test_popular_with_fractional_and_negative_popularity(stores: Stores):
    await stores.catalog.put_products(
        [
            {"sku": "A", "popularity": -1},
            {"sku": "B", "popularity": 2.5},
            {"sku": "C", "popularity": 2},
            {"sku": "D"},
        ]
    )
    assert await stores.catalog.popular(4) == ["B", "C", "D", "A"]
