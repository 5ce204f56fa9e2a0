"""The rate limit buckets' contract (app/stores/protocols.py: RateStore), run against both
backends: the embedded one and Redis on a real redis-server (its own clock)."""

from __future__ import annotations

import asyncio

from app.stores.bundle import Stores
from app.stores.memory_rates import MemoryRates

SECOND = 1_000_000  # µs
# 4 a second, up to 4 at once: each request 250 ms apart, 1 s ahead at most.
INTERVAL, CAPACITY = SECOND // 4, SECOND


async def test_a_full_bucket_takes_its_capacity_then_refuses(stores: Stores):
    rates = stores.rates
    answers = [await rates.take("kairos:rate:test:a", INTERVAL, CAPACITY) for _ in range(5)]
    assert [fits for fits, _ in answers] == [True, True, True, True, False]
    # How far ahead each leaves the bucket: one interval more each (less the few µs
    # between calls on Redis's clock), and unchanged by the refusal.
    aheads = [ahead for _, ahead in answers]
    for n, ahead in enumerate(aheads[:4], start=1):
        assert n * INTERVAL - 50_000 < ahead <= n * INTERVAL
    assert CAPACITY - 50_000 < aheads[4] <= CAPACITY


async def test_buckets_are_apart(stores: Stores):
    rates = stores.rates
    for _ in range(4):
        assert (await rates.take("kairos:rate:test:a", INTERVAL, CAPACITY))[0]
    assert not (await rates.take("kairos:rate:test:a", INTERVAL, CAPACITY))[0]
    assert (await rates.take("kairos:rate:test:b", INTERVAL, CAPACITY))[0]


async def test_concurrent_takes_never_pass_the_capacity(stores: Stores):
    rates = stores.rates
    answers = await asyncio.gather(
        *(rates.take("kairos:rate:test:c", INTERVAL, CAPACITY) for _ in range(40))
    )
    # All within one interval (250 ms): only the capacity fits, never one more.
    assert sum(fits for fits, _ in answers) == 4


async def test_a_bucket_refills_one_interval_at_a_time():
    now = [0]
    rates = MemoryRates(lambda: now[0])
    for _ in range(4):
        assert (await rates.take("b", INTERVAL, CAPACITY))[0]
    assert await rates.take("b", INTERVAL, CAPACITY) == (False, CAPACITY)
    now[0] += INTERVAL - 1
    assert await rates.take("b", INTERVAL, CAPACITY) == (False, CAPACITY - INTERVAL + 1)
    now[0] += 1
    assert await rates.take("b", INTERVAL, CAPACITY) == (True, CAPACITY)
    now[0] += 10 * SECOND  # idle: full, and no fuller
    assert await rates.take("b", INTERVAL, CAPACITY) == (True, INTERVAL)
