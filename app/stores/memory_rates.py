"""Rate limit buckets in this process (the embedded backend): the same GCRA as the Redis
script (`app/stores/redis/rates.py`), in whole microseconds, on the monotonic clock."""

from __future__ import annotations

import time
from collections.abc import Callable

from app.stores.memory import NAME


def monotonic_us() -> int:
    return time.monotonic_ns() // 1000


class MemoryRates:
    name = NAME

    def __init__(self, clock: Callable[[], int] = monotonic_us) -> None:
        self._clock = clock
        # One entry per bucket, and buckets are named by keys that passed authentication:
        # bounded by the configured keys, so nothing is ever evicted.
        self._arrivals: dict[str, int] = {}

    async def take(self, bucket: str, interval_us: int, capacity_us: int) -> tuple[bool, int]:
        """Whether a request fits `bucket` now, and how far ahead of now it stands (µs)."""
        now = self._clock()
        arrival = self._arrivals.get(bucket, now)
        if arrival < now:
            arrival = now
        ahead = arrival + interval_us - now
        if ahead > capacity_us:
            return False, arrival - now
        self._arrivals[bucket] = arrival + interval_us
        return True, ahead
