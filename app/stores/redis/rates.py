"""Rate limit buckets on Redis: one GCRA script a request, on Redis's clock, so every
process (and host) sharing the Redis counts against one budget per key."""

from __future__ import annotations

import hashlib

from redis.exceptions import NoScriptError

from app.errors import StoreUnavailable
from app.stores.redis.connection import NAME, RedisConnection

# KEYS[1]: the bucket; ARGV: interval and capacity (µs). The same steps as
# app/stores/memory_rates.py. (A time in µs, ~2^51, is exact in Lua's doubles, and Redis
# writes a number argument with all its digits.)
TAKE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval, capacity = tonumber(ARGV[1]), tonumber(ARGV[2])
local arrival = tonumber(redis.call('GET', KEYS[1])) or now
if arrival < now then arrival = now end
local ahead = arrival + interval - now
if ahead > capacity then return {0, arrival - now} end
redis.call('SET', KEYS[1], arrival + interval, 'PX', math.ceil(ahead / 1000))
return {1, ahead}
"""
SHA = hashlib.sha1(TAKE.encode(), usedforsecurity=False).hexdigest()


class RedisRates:
    name = NAME

    def __init__(self, connection: RedisConnection) -> None:
        self._connection = connection

    async def take(self, bucket: str, interval_us: int, capacity_us: int) -> tuple[bool, int]:
        command = ("EVALSHA", SHA, 1, bucket, interval_us, capacity_us)
        [reply] = await self._connection.pipelined([command])
        if isinstance(reply, NoScriptError):
            # A restarted or flushed Redis forgot the script: load it, once.
            await self._connection.call(self._connection.redis.script_load(TAKE))
            [reply] = await self._connection.pipelined([command])
        if isinstance(reply, Exception):
            raise StoreUnavailable(f"redis: {reply}")
        allowed, ahead = reply
        return bool(allowed), int(ahead)
