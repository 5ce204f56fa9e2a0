"""The stores of one backend together (app/stores/bundle.py), on both backends: erasure
removes a reader from every store holding reader data; the settings choose the backend."""

from __future__ import annotations

import pytest

from app.stores.bundle import Stores, build_stores


async def _reader(stores: Stores, user_id: str) -> None:
    await stores.profiles.put(user_id, {"first_name": user_id})
    await stores.picks.remember_pick(user_id, "spring", 0, "SKU-1")
    await stores.picks.remember_pick(user_id, None, 3, "SKU-2")


async def test_erase_removes_the_reader_from_every_store(stores: Stores):
    await stores.catalog.put_products([{"sku": "SKU-1", "popularity": 1}])
    await _reader(stores, "ada")
    await _reader(stores, "grace")

    assert await stores.erase("ada") is True
    assert await stores.profiles.get("ada") is None
    assert await stores.picks.get_pick("ada", "spring", 0) is None
    assert await stores.picks.get_pick("ada", None, 3) is None
    # other readers, and the shared catalog, are untouched
    assert await stores.profiles.get("grace") == {"first_name": "grace"}
    assert await stores.picks.get_pick("grace", "spring", 0) == "SKU-1"
    assert await stores.catalog.popular(5) == ["SKU-1"]
    # an erased reader starts afresh
    assert await stores.picks.remember_pick("ada", "spring", 0, "SKU-9") == "SKU-9"


async def test_erase_says_whether_a_profile_existed(stores: Stores):
    assert await stores.erase("nobody") is False
    # picks without a profile (a reader only ever seen at open time) are erased too
    await stores.picks.remember_pick("anon", "c", 0, "SKU-1")
    assert await stores.erase("anon") is False
    assert await stores.picks.get_pick("anon", "c", 0) is None
    await stores.profiles.put("ada", {})
    assert await stores.erase("ada") is True
    assert await stores.erase("ada") is False


async def test_every_store_names_its_backend_and_it_answers(stores: Stores, backend: str):
    name = "embedded" if backend == "embedded" else "redis"  # a cluster is Redis too
    assert stores.name == name
    for store in (stores.profiles, stores.catalog, stores.picks, stores.bus):
        assert store.name == name
    await stores.ping()


@pytest.mark.parametrize("redis", [False, True])
async def test_the_settings_choose_the_backend(settings, redis_url, redis: bool):
    env = {"REDIS_URL": redis_url} if redis else {}
    stores = build_stores(settings(**env))
    try:
        assert stores.name == ("redis" if redis else "embedded")
        await stores.ping()
    finally:
        await stores.close()
