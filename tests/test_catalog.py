"""The in-process catalog cache (app/catalog.py) over the embedded catalog store:
products and the popular list are read through it for the catalog's TTL, never longer,
and a clear drops everything at once."""

from __future__ import annotations

import asyncio

from app.reader.catalog import Catalog
from app.stores.memory import MemoryCatalog

TTL_S = 0.3
PRODUCTS = [
    {"sku": "SKU-1", "title": "Lamp", "price": 10.0, "popularity": 5},
    {"sku": "SKU-2", "title": "Throw", "price": 20.0, "popularity": 9},
    {"sku": "SKU-3", "title": "Chair", "price": 30.0, "popularity": 1},
]


def deadline() -> float:
    return asyncio.get_running_loop().time() + 5.0


def titles(products: list[dict[str, object]]) -> list[object]:
    return [p["title"] for p in products]


async def catalog_with_products() -> tuple[MemoryCatalog, Catalog]:
    store = MemoryCatalog()
    await store.put_products(PRODUCTS)
    return store, Catalog(store, ttl_s=TTL_S)


async def test_popular_products_are_served_from_the_cache_until_the_ttl():
    store, catalog = await catalog_with_products()
    first = await catalog.popular(2, deadline())
    assert titles(first) == ["Throw", "Lamp"]
    await store.put_products([{"sku": "SKU-2", "title": "New throw", "popularity": 9}])
    assert await catalog.popular(2, deadline()) is first  # cached: the same list
    await asyncio.sleep(TTL_S + 0.05)
    assert titles(await catalog.popular(2, deadline())) == ["New throw", "Lamp"]


async def test_a_popular_list_expires_with_the_oldest_product_it_holds():
    store, catalog = await catalog_with_products()
    await catalog.products(["SKU-1"], deadline())  # cached now: expires in TTL_S
    await asyncio.sleep(TTL_S * 0.6)
    assert titles(await catalog.popular(2, deadline())) == ["Throw", "Lamp"]
    await store.put_products([{"sku": "SKU-1", "title": "New lamp", "popularity": 5}])
    # Past the lamp's own TTL (not yet past the popular list's): the new lamp shows.
    await asyncio.sleep(TTL_S * 0.5)
    assert titles(await catalog.popular(2, deadline())) == ["Throw", "New lamp"]


async def test_clear_drops_products_and_popular_lists():
    store, catalog = await catalog_with_products()
    assert titles(await catalog.popular(3, deadline())) == ["Throw", "Lamp", "Chair"]
    await store.put_products([{"sku": "SKU-3", "title": "Armchair", "popularity": 50}])
    catalog.clear()
    assert titles(await catalog.popular(3, deadline())) == ["Armchair", "Throw", "Lamp"]
    assert (await catalog.products(["SKU-3"], deadline()))["SKU-3"]["title"] == "Armchair"


async def test_a_popular_list_of_another_length_is_its_own_entry():
    _, catalog = await catalog_with_products()
    assert titles(await catalog.popular(1, deadline())) == ["Throw"]
    assert titles(await catalog.popular(3, deadline())) == ["Throw", "Lamp", "Chair"]
