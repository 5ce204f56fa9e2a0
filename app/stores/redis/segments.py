"""Segment membership on Redis: each reader's recorded segments, members per segment,
the stream of entries and exits and the due-time index, under one hash tag so one script
changes them together."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from redis.exceptions import NoScriptError

from app.errors import StoreUnavailable
from app.events.clock import format_ms
from app.stores.protocols import SegmentChange
from app.stores.redis.connection import NAME, RedisConnection, text
from app.stores.redis.keys import (
    SEGMENT_CHANGES_KEY,
    SEGMENT_COUNTS_KEY,
    SEGMENT_DUE_KEY,
    SEGMENT_OF_KEY,
)

FORGET_SLICE = 2_000
LAST_ID = f"{2**64 - 1}-{2**64 - 1}"
KEYS = (SEGMENT_OF_KEY, SEGMENT_COUNTS_KEY, SEGMENT_DUE_KEY, SEGMENT_CHANGES_KEY)

# KEYS: of, counts, due, changes. ARGV: stream cap, time (ISO), then per reader: id,
# JSON list of segments, due ms ('' for none).
RECORD = """
local cap, ts, appended = ARGV[1], ARGV[2], 0
for i = 3, #ARGV, 3 do
  local user, now, due = ARGV[i], cjson.decode(ARGV[i + 1]), ARGV[i + 2]
  local before = cjson.decode(redis.call('HGET', KEYS[1], user) or '[]')
  local was, is = {}, {}
  for _, name in ipairs(before) do was[name] = true end
  for _, name in ipairs(now) do is[name] = true end
  for _, name in ipairs(before) do
    if not is[name] then
      redis.call('HINCRBY', KEYS[2], name, -1)
      redis.call('XADD', KEYS[4], 'MAXLEN', '~', cap, '*',
        'user_id', user, 'segment', name, 'change', 'exited', 'ts', ts)
      appended = appended + 1
    end
  end
  for _, name in ipairs(now) do
    if not was[name] then
      redis.call('HINCRBY', KEYS[2], name, 1)
      redis.call('XADD', KEYS[4], 'MAXLEN', '~', cap, '*',
        'user_id', user, 'segment', name, 'change', 'entered', 'ts', ts)
      appended = appended + 1
    end
  end
  if #now > 0 then redis.call('HSET', KEYS[1], user, ARGV[i + 1])
  else redis.call('HDEL', KEYS[1], user) end
  if due == '' then redis.call('ZREM', KEYS[3], user)
  else redis.call('ZADD', KEYS[3], due, user) end
end
return appended
"""

# KEYS: due. ARGV: now ms, limit, lease ms.
CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, user in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[1] + ARGV[3], user) end
return due
"""

# KEYS: of, counts, due.
FORGET = """
local before = cjson.decode(redis.call('HGET', KEYS[1], ARGV[1]) or '[]')
for _, name in ipairs(before) do redis.call('HINCRBY', KEYS[2], name, -1) end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
"""


class RedisSegments:
    name = NAME

    def __init__(self, connection: RedisConnection, cap: int) -> None:
        self._connection = connection
        self._redis = connection.redis
        self._cap = cap
        self._record = self._redis.register_script(RECORD)
        self._claim = self._redis.register_script(CLAIM)
        self._forget = self._redis.register_script(FORGET)

    async def record(self, changes: Sequence[SegmentChange], now_ms: int) -> int:
        if not changes:
            return 0
        args: list[str | int | bytes] = [self._cap, format_ms(now_ms)]
        for change in changes:
            due = "" if change.due_ms is None else change.due_ms
            args += [change.user_id, orjson.dumps(change.segments), due]
        # On every events request with a change: packed leanly (redis-py's own packing
        # costs several µs per argument, three arguments a reader).
        command = ("EVALSHA", self._record.sha, len(KEYS), *KEYS, *args)
        for _ in range(2):
            (reply,) = await self._connection.pipelined([command])
            if not isinstance(reply, NoScriptError):
                break
            # A restarted or flushed Redis forgot the script: load it, run it again.
            await self._connection.call(self._redis.script_load(RECORD))
        if isinstance(reply, Exception):
            raise StoreUnavailable(f"redis: {reply}")
        return int(reply)

    async def claim(self, now_ms: int, limit: int, lease_ms: int) -> list[str]:
        due = await self._connection.call(
            self._claim(keys=[SEGMENT_DUE_KEY], args=[now_ms, limit, lease_ms])
        )
        return [text(user) for user in due]

    async def counts(self) -> dict[str, int]:
        found = await self._connection.call(self._redis.hgetall(SEGMENT_COUNTS_KEY))
        counts = {text(name): int(n) for name, n in found.items()}
        return {name: n for name, n in counts.items() if n > 0}

    async def segments_of(self, user_id: str) -> tuple[str, ...]:
        raw = await self._connection.call(self._redis.hget(SEGMENT_OF_KEY, user_id))
        return tuple(orjson.loads(raw)) if raw else ()

    async def changes(self, after: str, limit: int) -> list[tuple[str, dict[str, str]]]:
        if after == LAST_ID:
            return []  # nothing can follow it (and Redis refuses a range past it)
        entries = await self._connection.call(
            self._redis.xrange(SEGMENT_CHANGES_KEY, min=f"({after}", count=limit)
        )
        return [
            (text(i), {text(k): text(v) for k, v in (fields or {}).items()})
            for i, fields in entries or ()
        ]

    async def forget(self, user_id: str) -> None:
        await self._connection.call(self._forget(keys=KEYS[:3], args=[user_id]))
        # The stream names readers by id (what a send triggered by it needs): their
        # entries go too, found by a scan in slices (erasures are rare; the stream is
        # capped).
        after, name = "-", user_id.encode()
        while True:
            entries = await self._connection.call(
                self._redis.xrange(SEGMENT_CHANGES_KEY, min=after, count=FORGET_SLICE)
            )
            if not entries:
                return
            mine = [
                i for i, fields in entries if i and (fields or {}).get(b"user_id") == name
            ]
            if mine:
                await self._connection.call(self._redis.xdel(SEGMENT_CHANGES_KEY, *mine))
            after = f"({text(entries[-1][0])}"
