"""`app.turns.Turns` on a real event loop: never more units at once than its size, turns
in arrival order, a block larger than the size alone, a wait past its limit refused and a
cancelled one gone from the queue, and every unit given back whatever happens (a random
workload of holds, timeouts and cancellations)."""

from __future__ import annotations

import asyncio
import random

import pytest

from app.turns import Turns


class Refused(Exception):
    pass


def turns(size: int, timeout_s: float = 5.0) -> tuple[Turns, list[int]]:
    waits: list[int] = []
    return Turns(size, timeout_s, Refused, lambda: waits.append(1)), waits


class Watch:
    """Units held at once, at most."""

    def __init__(self) -> None:
        self.now = self.most = 0
        self.order: list[str] = []

    async def take(self, t: Turns, units: int, name: str, hold_s: float) -> None:
        held = min(units, t.size)  # a larger block takes them all
        async with t(units):
            self.order.append(name)
            self.now += held
            self.most = max(self.most, self.now)
            try:
                await asyncio.sleep(hold_s)
            finally:  # (cancelled while holding)
                self.now -= held


async def test_never_more_units_at_once_than_its_size():
    t, waits = turns(300)
    watch = Watch()
    await asyncio.gather(*(watch.take(t, 100, str(i), 0.01) for i in range(10)))
    assert watch.most == 300
    assert len(waits) == 7  # the first three went at once
    assert t.free == 300 and t.waiting == 0


async def test_turns_go_in_arrival_order_so_a_large_block_is_not_passed_by_small_ones():
    t, _ = turns(3)
    watch = Watch()
    first = asyncio.create_task(watch.take(t, 2, "first", 0.05))
    await asyncio.sleep(0)
    large = asyncio.create_task(watch.take(t, 3, "large", 0.01))
    await asyncio.sleep(0)
    # One unit is free, but the large block came first.
    small = [asyncio.create_task(watch.take(t, 1, f"small{i}", 0.01)) for i in range(3)]
    await asyncio.gather(first, large, *small)
    assert watch.order == ["first", "large", "small0", "small1", "small2"]


@pytest.mark.parametrize("how", ["cancelled", "refused"])
async def test_a_head_that_stops_waiting_lets_the_blocks_behind_it_that_fit_go_at_once(how):
    t, _ = turns(3, timeout_s=0.05 if how == "refused" else 5.0)
    watch = Watch()
    holder = asyncio.create_task(watch.take(t, 2, "holder", 0.5))
    await asyncio.sleep(0)
    head = asyncio.create_task(watch.take(t, 3, "head", 0))
    await asyncio.sleep(0.03)  # (refused: the head's limit comes 30 ms before its own)
    behind = asyncio.create_task(watch.take(t, 1, "behind", 0))
    await asyncio.sleep(0.005)
    assert watch.order == ["holder"]
    if how == "cancelled":
        head.cancel()
    with pytest.raises(asyncio.CancelledError if how == "cancelled" else Refused):
        await head
    await asyncio.wait_for(behind, 0.2)  # not held until the holder is done
    assert watch.order == ["holder", "behind"]
    await holder
    assert t.free == 3 and t.waiting == 0


async def test_a_block_larger_than_the_size_goes_alone():
    t, _ = turns(300)
    watch = Watch()
    await asyncio.gather(
        watch.take(t, 100, "a", 0.02),
        watch.take(t, 1000, "big", 0.02),
        watch.take(t, 100, "b", 0.02),
    )
    assert watch.order == ["a", "big", "b"]
    assert watch.most == 300  # `big` counted as all 300 while it ran alone
    assert t.free == 300


async def test_a_wait_past_its_limit_is_refused_and_leaves_the_queue():
    t, waits = turns(1, timeout_s=0.05)
    watch = Watch()
    holder = asyncio.create_task(watch.take(t, 1, "holder", 0.3))
    await asyncio.sleep(0)
    with pytest.raises(Refused):
        await watch.take(t, 1, "late", 0)
    assert t.waiting == 0 and waits == [1]
    await holder
    async with t(1):  # nothing left holding a unit
        assert t.free == 0
    assert t.free == 1
    assert watch.order == ["holder"]


async def test_a_cancelled_waiter_leaves_the_queue_and_the_next_goes():
    t, _ = turns(2)
    watch = Watch()
    holder = asyncio.create_task(watch.take(t, 2, "holder", 0.05))
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(watch.take(t, 2, "cancelled", 0))
    behind = asyncio.create_task(watch.take(t, 1, "behind", 0))
    await asyncio.sleep(0.01)
    assert t.waiting == 2
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await asyncio.gather(holder, behind)
    assert watch.order == ["holder", "behind"]
    assert t.free == 2 and t.waiting == 0


async def test_a_turn_given_as_its_waiter_is_cancelled_is_given_back():
    t, _ = turns(1)
    async with t(1):
        waiter = asyncio.create_task(t(1).__aenter__())
        await asyncio.sleep(0)
        assert t.waiting == 1
    # The turn went to `waiter` on release; it is cancelled before it could run.
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert t.free == 1 and t.waiting == 0


async def test_units_are_always_given_back_under_a_random_workload():
    rng = random.Random(7)
    t = Turns(10, 0.02, Refused)
    watch = Watch()
    outcomes = {"done": 0, "refused": 0, "cancelled": 0}

    async def one(i: int) -> None:
        try:
            await watch.take(t, rng.randint(1, 14), str(i), rng.random() * 0.01)
            outcomes["done"] += 1
        except Refused:
            outcomes["refused"] += 1

    tasks = []
    for i in range(400):
        tasks.append(asyncio.create_task(one(i)))
        if rng.random() < 0.3:
            await asyncio.sleep(0)
        if rng.random() < 0.1:
            rng.choice(tasks).cancel()
    for task in tasks:
        try:
            await task
        except asyncio.CancelledError:
            outcomes["cancelled"] += 1
    assert watch.most <= 10
    assert t.free == 10 and t.waiting == 0
    assert all(outcomes.values()), outcomes  # each way out was taken
