"""The picks store contract (app/stores/protocols.py: PickStore), run against both
backends: the embedded one and Redis on a real redis-server."""

from __future__ import annotations

import asyncio

from app.stores.bundle import Stores


async def test_the_first_pick_of_a_slot_is_remembered(stores: Stores):
    picks = stores.picks
    assert await picks.get_pick("u1", "c", 0) is None
    assert await picks.remember_pick("u1", "c", 0, "SKU-1") == "SKU-1"
    assert await picks.remember_pick("u1", "c", 0, "SKU-2") == "SKU-1"  # set if absent
    assert await picks.get_pick("u1", "c", 0) == "SKU-1"


async def test_each_reader_campaign_and_slot_is_its_own_pick(stores: Stores):
    picks = stores.picks
    assert await picks.remember_pick("u1", "c", 0, "SKU-1") == "SKU-1"
    assert await picks.remember_pick("u1", "c", 1, "SKU-2") == "SKU-2"
    assert await picks.remember_pick("u1", "c:x", 0, "SKU-3") == "SKU-3"  # ':' in a name
    assert await picks.remember_pick("u1", None, 0, "SKU-4") == "SKU-4"
    assert await picks.remember_pick("u2", "c", 0, "SKU-5") == "SKU-5"
    slots = [("c", 0), ("c", 1), ("c:x", 0), (None, 0)]
    assert [await picks.get_pick("u1", c, s) for c, s in slots] == [
        "SKU-1",
        "SKU-2",
        "SKU-3",
        "SKU-4",
    ]
    assert await picks.get_pick("u1", "c:0", 0) is None
    assert await picks.get_pick("u1", "", 0) == "SKU-4"  # no campaign and '' are one


async def test_concurrent_first_picks_agree(stores: Stores):
    racing = await asyncio.gather(
        *(stores.picks.remember_pick("u3", "c", 0, f"SKU-{i}") for i in range(10))
    )
    assert len(set(racing)) == 1
    assert await stores.picks.get_pick("u3", "c", 0) == racing[0]


async def test_forget_drops_the_readers_picks_only(stores: Stores):
    picks = stores.picks
    await picks.remember_pick("u1", "c", 0, "SKU-1")
    await picks.remember_pick("u1", "d", 3, "SKU-2")
    await picks.remember_pick("u2", "c", 0, "SKU-5")
    await picks.forget("u1")
    assert await picks.get_pick("u1", "c", 0) is None
    assert await picks.get_pick("u1", "d", 3) is None
    assert await picks.get_pick("u2", "c", 0) == "SKU-5"
    await picks.forget("u1")  # nothing left: still fine
    assert await picks.remember_pick("u1", "c", 0, "SKU-9") == "SKU-9"  # chosen afresh
