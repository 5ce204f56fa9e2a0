"""The rendered-bytes cache (bounded by size), single-flight (one task per key, each
caller with its own deadline) and the worker pool."""

from __future__ import annotations

import asyncio
import threading

import pytest

from app.images.cache import ByteCache, SingleFlight
from app.images.pool import Workers


def test_byte_cache_evicts_least_recently_used_by_size():
    cache = ByteCache(max_bytes=100)
    cache.put("a", b"a" * 20)
    cache.put("b", b"b" * 20)
    cache.put("c", b"c" * 20)
    assert cache.get("a") == b"a" * 20  # now the most recently used
    cache.put("d", b"d" * 25)
    cache.put("e", b"e" * 25)  # 110 bytes: "b" goes first
    assert cache.get("b") is None
    assert cache.get("a") is not None and cache.get("e") is not None
    assert cache.size <= 100 and cache.size == sum(len(cache.get(k) or b"") for k in "acde")


def test_byte_cache_replaces_and_refuses_giants():
    cache = ByteCache(max_bytes=100)
    cache.put("a", b"x" * 10)
    cache.put("a", b"y" * 20)
    assert (cache.get("a"), cache.size, len(cache)) == (b"y" * 20, 20, 1)
    cache.put("huge", b"z" * 26)  # over a quarter of the cache: not kept
    assert cache.get("huge") is None and cache.get("a") is not None
    cache.clear()
    assert (len(cache), cache.size) == (0, 0)


async def test_single_flight_runs_once_for_concurrent_callers():
    flight: SingleFlight[int] = SingleFlight()
    calls = 0

    async def work() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return 42

    deadline = asyncio.get_running_loop().time() + 5
    results = await asyncio.gather(*(flight.run("k", work, deadline) for _ in range(50)))
    assert results == [42] * 50 and calls == 1
    assert not flight.joining("k")
    assert await flight.run("k", work, deadline) == 42 and calls == 2  # a new flight


async def test_a_caller_past_its_deadline_does_not_cancel_the_work():
    flight: SingleFlight[str] = SingleFlight()
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "done"

    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        await flight.run("k", slow, loop.time() + 0.02)
    assert flight.joining("k")  # still running, for the next caller
    waiter = asyncio.ensure_future(flight.run("k", slow, loop.time() + 5))
    release.set()
    assert await waiter == "done"


async def test_single_flight_failures_reach_every_caller_and_close_cancels():
    flight: SingleFlight[int] = SingleFlight()

    async def broken() -> int:
        await asyncio.sleep(0)
        raise ValueError("no")

    deadline = asyncio.get_running_loop().time() + 5
    results = await asyncio.gather(
        *(flight.run("k", broken, deadline) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, ValueError) for r in results)

    never = asyncio.Event()

    async def stuck() -> int:
        await never.wait()
        return 1

    with pytest.raises(TimeoutError):
        await flight.run("s", stuck, asyncio.get_running_loop().time() + 0.01)
    await flight.close()
    assert not flight.joining("s")


async def test_workers_run_off_the_event_loop_and_restart_after_close():
    workers = Workers(2)
    loop_thread = threading.get_ident()
    assert await workers.run(threading.get_ident) != loop_thread
    workers.close()
    assert await workers.run(sum, [1, 2, 3]) == 6  # a fresh pool
    workers.close()
