"""Event data on Redis: each reader's change is one script over keys in the reader's slot
(Redis Cluster-ready), refused when the profile changed since it was read."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import orjson
from redis.exceptions import NoScriptError

from app.errors import StoreUnavailable
from app.stores.protocols import (
    ReaderAsk,
    ReaderDump,
    ReaderState,
    ReaderWrite,
    Retention,
    Written,
)
from app.stores.redis.connection import NAME, RedisConnection, loads, text, unavailable
from app.stores.redis.keys import (
    CHANGES_CHANNEL,
    EVENTS_CHANNEL,
    alias_key,
    event_keys,
    history_key,
    links_key,
    picks_key,
    profile_key,
    seen_key,
    suppressed_key,
)

# KEYS: profile, seen, history, links, alias, suppressed.
# ARGV: version, profile JSON, now ms, dedupe ms, history max, history ms, user id,
#       then counted lists: event ids; (time, event JSON) pairs; links; hashes.
WRITE = f"""
if redis.call('EXISTS', KEYS[5]) == 1 then return 'moved' end
local n = 8
local ids_n = tonumber(ARGV[n]); local ids_at = n + 1; n = n + 1 + ids_n
local hist_n = tonumber(ARGV[n]); local hist_at = n + 1; n = n + 1 + 2 * hist_n
local links_n = tonumber(ARGV[n]); local links_at = n + 1; n = n + 1 + links_n
local hashes_n = tonumber(ARGV[n]); local hashes_at = n + 1
for j = 0, hashes_n - 1 do
  if redis.call('SISMEMBER', KEYS[6], ARGV[hashes_at + j]) == 1 then return 'suppressed' end
end
local current = redis.call('GET', KEYS[1])
local version = ''
if current then version = redis.sha1hex(current) end
if version ~= ARGV[1] then return 'conflict' end
redis.call('SET', KEYS[1], ARGV[2])
local now = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - tonumber(ARGV[4])))
for j = 0, ids_n - 1 do redis.call('ZADD', KEYS[2], now, ARGV[ids_at + j]) end
if ids_n > 0 then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
local lines = {{}}
for j = 0, hist_n - 1 do
  local event = ARGV[hist_at + 2 * j + 1]
  redis.call('ZADD', KEYS[3], ARGV[hist_at + 2 * j], event)
  lines[#lines + 1] = event
end
if hist_n > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (now - tonumber(ARGV[6])))
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(tonumber(ARGV[5]) + 1))
  redis.call('PEXPIRE', KEYS[3], ARGV[6])
  redis.call('PUBLISH', '{EVENTS_CHANNEL}', table.concat(lines, '\\n'))
end
for j = 0, links_n - 1 do redis.call('SADD', KEYS[4], ARGV[links_at + j]) end
redis.call('PUBLISH', '{CHANGES_CHANNEL}', ARGV[7])
return 'written'
"""


# KEYS: profile, alias, seen, suppressed. ARGV: dedupe floor (ms), ids count, ids, hashes.
# Answers {profile, alias, suppressed, id seen flags...}: one command per reader, where
# four plain ones cost the server process four times redis-py's per-command work.
READ = """
local out = {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2]), 0}
local ids_n = tonumber(ARGV[2])
for j = 3 + ids_n, #ARGV do
  if redis.call('SISMEMBER', KEYS[4], ARGV[j]) == 1 then out[3] = 1 end
end
local floor = tonumber(ARGV[1])
for j = 3, 2 + ids_n do
  local at = redis.call('ZSCORE', KEYS[3], ARGV[j])
  out[#out + 1] = (at and tonumber(at) >= floor) and 1 or 0
end
return out
"""


def version_of(raw: bytes | None) -> str:
    """The compare-and-set token of a stored profile, as the script computes it."""
    return "" if raw is None else hashlib.sha1(raw, usedforsecurity=False).hexdigest()


class RedisEvents:
    name = NAME

    def __init__(self, connection: RedisConnection, retention: Retention | None = None) -> None:
        self.retention = retention or Retention()
        self._connection = connection
        self._redis = connection.redis
        self._shas = {
            script: hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()
            for script in (READ, WRITE)
        }

    def _suppressed(self, user_id: str) -> str:
        return suppression_key(self._connection, user_id)

    async def read(self, asks: Sequence[ReaderAsk]) -> list[ReaderState]:
        # Ids are trimmed only by writes: one older than the window may still be stored.
        floor = int(time.time() * 1000) - self.retention.dedupe_s * 1000
        commands = [
            [
                4,
                profile_key(a.user_id),
                alias_key(a.user_id),
                seen_key(a.user_id),
                self._suppressed(a.user_id),
                floor,
                len(a.event_ids),
                *a.event_ids,
                *a.hashes,
            ]
            for a in asks
        ]
        states = []
        for ask, reply in zip(asks, await self._run(READ, commands), strict=True):
            raw, moved, suppressed, *seen = reply
            states.append(
                ReaderState(
                    profile=None if raw is None else loads(raw),
                    seen=frozenset(i for i, s in zip(ask.event_ids, seen, strict=True) if s),
                    moved_to=None if moved is None else text(moved),
                    suppressed=bool(suppressed),
                    version=version_of(raw),
                )
            )
        return states

    async def write(self, writes: Sequence[ReaderWrite], now_ms: int) -> list[Written]:
        replies = await self._run(WRITE, [self._command(w, now_ms) for w in writes])
        return [Written(text(r)) for r in replies]

    async def _run(self, script: str, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """`script` run once per command (key count, keys, ARGV), in one pipeline."""
        sha = self._shas[script]
        replies: list[Any] = [None] * len(commands)
        todo = list(range(len(commands)))
        for _ in range(2):
            # EVALSHA straight, not redis-py's Script in a pipeline: that asks SCRIPT
            # EXISTS before every pipeline, one more round trip per request.
            with unavailable():
                async with self._redis.pipeline(transaction=False) as pipe:
                    for i in todo:
                        pipe.evalsha(sha, *commands[i])
                    answers = await pipe.execute(raise_on_error=False)
            for i, answer in zip(todo, answers, strict=True):
                replies[i] = answer
            todo = [i for i in todo if isinstance(replies[i], NoScriptError)]
            if not todo:
                break
            # A restarted or flushed Redis forgot the script: load it, run those again.
            await self._connection.call(self._redis.script_load(script))
        for reply in replies:
            if isinstance(reply, Exception):
                raise StoreUnavailable(f"redis: {reply}")
        return replies

    def _command(self, w: ReaderWrite, now_ms: int) -> list[Any]:
        """The EVALSHA arguments after the sha: key count, keys, then ARGV."""
        retention, u = self.retention, w.user_id
        keys = [
            profile_key(u),
            seen_key(u),
            history_key(u),
            links_key(u),
            alias_key(u),
            self._suppressed(u),
        ]
        args: list[Any] = [
            w.version,
            orjson.dumps(w.profile),
            now_ms,
            retention.dedupe_s * 1000,
            retention.history_events,
            retention.history_s * 1000,
            u,
            len(w.event_ids),
            *w.event_ids,
            len(w.history),
        ]
        for ts_ms, raw in w.history:
            args += (ts_ms, raw)
        args += (len(w.links), *w.links, len(w.hashes), *w.hashes)
        return [len(keys), *keys, *args]

    async def link(self, user_id: str, to: str) -> str:
        before = await self._connection.call(
            self._redis.set(alias_key(user_id), to, nx=True, get=True)
        )
        return to if before is None else text(before)

    async def relink(self, user_ids: Iterable[str], to: str) -> None:
        with unavailable():
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id in user_ids:
                    pipe.set(alias_key(user_id), to, xx=True)
                await pipe.execute()

    async def resolve(self, user_ids: Sequence[str]) -> dict[str, str]:
        with unavailable():
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id in user_ids:
                    pipe.get(alias_key(user_id))
                replies = await pipe.execute()
        return {u: text(r) for u, r in zip(user_ids, replies, strict=True) if r is not None}

    async def links(self, user_id: str) -> frozenset[str]:
        members = await self._connection.call(self._redis.smembers(links_key(user_id)))
        return frozenset(text(m) for m in members)

    async def dump(self, user_id: str) -> ReaderDump:
        with unavailable():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(profile_key(user_id))
                pipe.zrange(seen_key(user_id), 0, -1)
                pipe.zrange(history_key(user_id), 0, -1, withscores=True)
                pipe.smembers(links_key(user_id))
                raw, seen, history, links = await pipe.execute()
        return ReaderDump(
            profile=None if raw is None else loads(raw),
            seen=tuple(text(i) for i in seen),
            history=tuple((int(score), event) for event, score in history),
            links=frozenset(text(m) for m in links),
        )

    async def drop_merged(self, user_id: str) -> None:
        keys = [profile_key(user_id), picks_key(user_id), *event_keys(user_id)]
        keys.remove(alias_key(user_id))
        await self._connection.call(self._redis.delete(*keys))

    async def history(self, user_id: str, since_ms: int = 0) -> list[bytes]:
        events = await self._connection.call(
            self._redis.zrangebyscore(history_key(user_id), since_ms, "+inf")
        )
        return [e if isinstance(e, bytes) else text(e).encode() for e in events]

    async def suppressed(self, user_id: str, hashes: Sequence[str]) -> bool:
        if not hashes:
            return False
        flags = await self._connection.call(
            self._redis.smismember(self._suppressed(user_id), list(hashes))
        )
        return any(flags)

    async def unsuppress(self, user_id: str, hashes: Sequence[str]) -> bool:
        if not hashes:
            return False
        removed = await self._connection.call(self._redis.srem(self._suppressed(user_id), *hashes))
        return bool(removed)

    async def forget(self, user_id: str) -> None:
        await self._connection.call(self._redis.delete(*event_keys(user_id)))

    async def tail(self, stop: asyncio.Event) -> AsyncIterator[bytes]:
        async for message in self._connection.follow(EVENTS_CHANNEL, stop):
            for line in message.split(b"\n"):
                yield line


def suppression_key(connection: RedisConnection, user_id: str) -> str:
    """The suppression set a reader's hashes go in."""
    return suppressed_key(connection.slot_tag(user_id))
