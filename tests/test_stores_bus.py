"""The change bus contract (app/stores/protocols.py: ChangeBus), run against both
backends: the embedded one, which no one else shares, and Redis pub/sub on a real
redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from app.stores.bundle import Stores, redis_stores
from app.stores.protocols import SUBSCRIBED

READY = "(ready)"  # published until the follower hears it: it is listening then


async def test_no_one_else_shares_an_embedded_store(stores: Stores):
    if stores.name != "embedded":
        return
    assert stores.bus.changes(asyncio.Event()) is None
    await stores.bus.publish_change("ada")  # told to no one, and no error


async def test_changes_published_by_others_reach_the_follower_until_it_is_stopped(
    stores: Stores, request: pytest.FixtureRequest
):
    stop = asyncio.Event()
    changes = stores.bus.changes(stop)
    if changes is None:
        assert stores.name == "embedded"
        return
    received: list[str] = []

    async def follow() -> None:
        async for user_id in changes:
            received.append(user_id)

    follower = asyncio.create_task(follow())
    other = redis_stores(request.getfixturevalue("redis_url"))  # another server
    try:
        await _listening(other, received)
        for user_id in ("ada", "*", "grace"):
            await stores.bus.publish_change(user_id + "-mine")  # not echoed back
            await other.bus.publish_change(user_id)

        def heard() -> list[str]:
            return [user_id for user_id in received if user_id not in (READY, SUBSCRIBED)]

        await _until(lambda: len(heard()) == 3)
        assert heard() == ["ada", "*", "grace"]
        # First of all it said it listens: what changed before that is unknown.
        assert received[0] == SUBSCRIBED and received.count(SUBSCRIBED) == 1

        stop.set()
        # it sees the flag within its bounded wait of one second, without a cancel
        await asyncio.wait_for(asyncio.shield(follower), 2.0)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await other.close()


async def test_changes_not_started_need_no_cleanup(stores: Stores):
    changes = stores.bus.changes(asyncio.Event())
    if changes is not None:
        await changes.aclose()  # type: ignore[attr-defined]


async def _listening(stores: Stores, received: list[str], within_s: float = 3.0) -> None:
    deadline = time.monotonic() + within_s
    while READY not in received:
        assert time.monotonic() < deadline, "the follower never heard a change"
        await stores.bus.publish_change(READY)
        await asyncio.sleep(0.01)


async def _until(check, within_s: float = 2.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)
