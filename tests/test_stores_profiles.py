"""The profile store contract (app/stores/protocols.py: ProfileStore), run against both
backends: the embedded one and Redis on a real redis-server."""

from __future__ import annotations

import asyncio

import pytest

from app.stores.bundle import Stores


async def test_get_missing(stores: Stores):
    assert await stores.profiles.get("nobody") is None


async def test_put_get_round_trip(stores: Stores):
    profile = {"first_name": "Ada", "cart": [{"sku": "SKU-1", "qty": 2}], "n": 1.5}
    await stores.profiles.put("ada", profile)
    assert await stores.profiles.get("ada") == profile


async def test_get_returns_a_copy(stores: Stores):
    await stores.profiles.put("ada", {"cart": [{"sku": "SKU-1"}]})
    got = await stores.profiles.get("ada")
    assert got is not None
    got["cart"].append({"sku": "SKU-2"})
    got["first_name"] = "changed"
    assert await stores.profiles.get("ada") == {"cart": [{"sku": "SKU-1"}]}


async def test_put_stores_a_snapshot(stores: Stores):
    profile = {"tier": "gold"}
    await stores.profiles.put("ada", profile)
    profile["tier"] = "silver"
    assert await stores.profiles.get("ada") == {"tier": "gold"}


async def test_put_replaces(stores: Stores):
    await stores.profiles.put("ada", {"first_name": "Ada", "tier": "gold"})
    await stores.profiles.put("ada", {"first_name": "Augusta"})
    assert await stores.profiles.get("ada") == {"first_name": "Augusta"}


async def test_strings_are_stored_exactly(stores: Stores):
    profile = {"first_name": "<script>alert(1)</script>", "last_name": "{{ 7*7 }}", "x": "é\u2028"}
    await stores.profiles.put("u1", profile)
    assert await stores.profiles.get("u1") == profile


async def test_put_many(stores: Stores):
    count = await stores.profiles.put_many((f"u{i}", {"loyalty_points": i}) for i in range(250))
    assert count == 250
    assert await stores.profiles.get("u0") == {"loyalty_points": 0}
    assert await stores.profiles.get("u249") == {"loyalty_points": 249}
    assert await stores.profiles.put_many([]) == 0


async def test_update_creates(stores: Stores):
    seen = []

    def change(current):
        seen.append(current)
        return {"first_name": "Ada"}

    assert await stores.profiles.update("ada", change) == {"first_name": "Ada"}
    assert seen == [None]
    assert await stores.profiles.get("ada") == {"first_name": "Ada"}


async def test_update_applies_change_to_current(stores: Stores):
    await stores.profiles.put("ada", {"loyalty_points": 10, "tier": "gold"})
    new = await stores.profiles.update(
        "ada", lambda p: {**p, "loyalty_points": p["loyalty_points"] + 5}
    )
    assert new == {"loyalty_points": 15, "tier": "gold"}
    assert await stores.profiles.get("ada") == new


async def test_update_returning_none_leaves_store_untouched(stores: Stores):
    await stores.profiles.put("ada", {"tier": "gold"})
    assert await stores.profiles.update("ada", lambda p: None) == {"tier": "gold"}
    assert await stores.profiles.get("ada") == {"tier": "gold"}
    assert await stores.profiles.update("nobody", lambda p: None) is None
    assert await stores.profiles.get("nobody") is None


async def test_update_that_raises_writes_nothing(stores: Stores):
    await stores.profiles.put("ada", {"tier": "gold"})

    def boom(current):
        raise LookupError("refused")

    with pytest.raises(LookupError):
        await stores.profiles.update("ada", boom)
    assert await stores.profiles.get("ada") == {"tier": "gold"}
    # and the store still works afterwards (on redis: the connection was released)
    assert await stores.profiles.update("ada", lambda p: {**p, "tier": "silver"}) == {
        "tier": "silver"
    }


async def test_concurrent_updates_are_atomic(stores: Stores):
    await stores.profiles.put("ada", {"loyalty_points": 0, "log": []})
    n = 40

    def increment(i: int):
        def change(current):
            return {
                "loyalty_points": current["loyalty_points"] + 1,
                "log": [*current["log"], i],
            }

        return change

    results = await asyncio.gather(*(stores.profiles.update("ada", increment(i)) for i in range(n)))
    final = await stores.profiles.get("ada")
    assert final is not None
    assert final["loyalty_points"] == n  # no lost update
    assert sorted(final["log"]) == list(range(n))  # every writer's change is there, once
    assert sorted(r["loyalty_points"] for r in results if r) == list(range(1, n + 1))


async def test_delete(stores: Stores):
    await stores.profiles.put("ada", {"tier": "gold"})
    await stores.profiles.put("grace", {"tier": "silver"})
    assert await stores.profiles.delete("ada") is True
    assert await stores.profiles.get("ada") is None
    assert await stores.profiles.delete("ada") is False
    assert await stores.profiles.get("grace") == {"tier": "silver"}


async def test_delete_is_the_profile_only(stores: Stores):
    # Erasing a reader is Stores.erase (tests/test_stores_erase.py); the profile store
    # answers for its own data.
    await stores.profiles.put("ada", {"tier": "gold"})
    await stores.picks.remember_pick("ada", "c", 0, "SKU-1")
    assert await stores.profiles.delete("ada") is True
    assert await stores.picks.get_pick("ada", "c", 0) == "SKU-1"
