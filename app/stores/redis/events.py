"""Event data on Redis: each reader's change is one script over keys in the reader's slot
(Redis Cluster-ready), refused when the profile changed since it was read."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from operator import itemgetter
from types import MappingProxyType
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
from app.stores.redis.bus import announcement
from app.stores.redis.connection import NAME, RedisConnection, loads, text
from app.stores.redis.keys import (
    CHANGES_CHANNEL,
    EVENTS_CHANNEL,
    alias_key,
    event_keys,
    history_key,
    links_key,
    picks_key,
    profile_key,
    script_keys,
    suppressed_key,
)

# KEYS: profile, seen, history, links, alias, suppressed.
# ARGV: version (the profile as read: comparing it costs less than hashing it, here and
# in the server), profile JSON, the small values as one JSON array: now ms, dedupe ms,
# history max, history ms, event ids, links, hashes, whether to announce the
# history to `tail`, whether the ids are unread (`ReaderWrite.checked` false: one applied
# already within the window refuses the write); then the history entries, time ms and
# event JSON in turn (as arguments: no JSON escaping of JSON, here or in the script).
WRITE = f"""
if redis.call('EXISTS', KEYS[5]) == 1 then return 'moved' end
local now, dedupe, history_max, history_ms, ids, links, hashes, announce, unread =
  unpack(cjson.decode(ARGV[3]))
for _, hash in ipairs(hashes) do
  if redis.call('SISMEMBER', KEYS[6], hash) == 1 then return 'suppressed' end
end
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 'conflict' end
if unread then
  for _, id in ipairs(ids) do
    local at = redis.call('ZSCORE', KEYS[2], id)
    if at and tonumber(at) >= now - dedupe then return 'conflict' end
  end
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - dedupe))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[2], now, id) end
if #ids > 0 then redis.call('PEXPIRE', KEYS[2], dedupe) end
local lines = {{}}
for i = 4, #ARGV, 2 do
  redis.call('ZADD', KEYS[3], ARGV[i], ARGV[i + 1])
  lines[#lines + 1] = ARGV[i + 1]
end
if #lines > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (now - history_ms))
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(history_max + 1))
  redis.call('PEXPIRE', KEYS[3], history_ms)
  if announce then redis.call('PUBLISH', '{EVENTS_CHANNEL}', table.concat(lines, '\\n')) end
end
for _, id in ipairs(links) do redis.call('SADD', KEYS[4], id) end
return 'written'
"""


# KEYS: profile, alias, seen, suppressed. ARGV: dedupe floor (ms), the event ids and the
# reader's hashes as JSON arrays. Answers {profile, alias, suppressed, id seen flags...}:
# one command per reader, where four plain ones cost the server process four times
# redis-py's per-command work.
READ = """
local out = {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2]), 0}
for _, hash in ipairs(cjson.decode(ARGV[3])) do
  if redis.call('SISMEMBER', KEYS[4], hash) == 1 then out[3] = 1 end
end
local floor = tonumber(ARGV[1])
for _, id in ipairs(cjson.decode(ARGV[2])) do
  local at = redis.call('ZSCORE', KEYS[3], id)
  out[#out + 1] = (at and tonumber(at) >= floor) and 1 or 0
end
return out
"""


HISTORY_SLICE = 100
# Which of `script_keys` the read script takes, in its KEYS order (the write script
# takes them all, in their order).
READ_KEYS = (0, 4, 1, 5)
_read_keys = itemgetter(*READ_KEYS)
# The write script's answers as read (bytes), to their `Written`: an enum call per
# reader costs more than the lookup.
ANSWERS = MappingProxyType({answer.value.encode(): answer for answer in Written})
KEYS_CACHED = 4096  # readers whose keys are kept spelled (~5 MB)


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
        # A request's readers are named twice (read, then write), and an active reader
        # again within minutes: their keys are spelled once.
        self._keys = functools.lru_cache(maxsize=KEYS_CACHED)(self._spell_keys)

    def _spell_keys(self, user_id: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The read script's keys and the write script's, for `user_id`."""
        every = script_keys(user_id, self._connection.slot_tag(user_id))
        return _read_keys(every), every

    async def read(self, asks: Sequence[ReaderAsk]) -> list[ReaderState]:
        # Ids are trimmed only by writes: one older than the window may still be stored.
        floor = int(time.time() * 1000) - self.retention.dedupe_s * 1000
        commands = [
            [
                len(READ_KEYS),
                *self._keys(a.user_id)[0],
                floor,
                orjson.dumps(a.event_ids),
                orjson.dumps(a.hashes),
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
                    # The profile as stored is its own compare-and-set token.
                    version=raw or b"",
                )
            )
        return states

    async def write(self, writes: Sequence[ReaderWrite], now_ms: int) -> list[Written]:
        # The readers are announced in the same round trip, after their writes (Redis
        # runs a pipeline in order), in one message rather than one per reader: every
        # server reads every message. A reader whose write was refused is announced too;
        # that costs its warm copies a reload, where a second round trip would cost
        # every request.
        message = announcement(self._connection.origin, (w.user_id for w in writes))
        announce = ("PUBLISH", CHANGES_CHANNEL, message)
        profiles = [orjson.dumps(w.profile) for w in writes]
        commands = [self._command(w, p, now_ms) for w, p in zip(writes, profiles, strict=True)]
        replies = await self._run(WRITE, commands, announce)
        results = [ANSWERS.get(r) or Written(text(r)) for r in replies]
        for w, p, result in zip(writes, profiles, results, strict=True):
            if result is Written.WRITTEN:
                w.stored = w.version_after = p
        return results

    async def _run(
        self, script: str, commands: Sequence[Sequence[Any]], then: Sequence[Any] = ()
    ) -> list[Any]:
        """`script` run once per command (key count, keys, ARGV), in one pipeline, with
        the command `then` after them (its reply checked, not returned)."""
        sha = self._shas[script]
        replies: list[Any] = [None] * len(commands)
        todo = list(range(len(commands)))
        after = [then] if then else []
        for _ in range(2):
            answers = await self._connection.pipelined(
                [*[("EVALSHA", sha, *commands[i]) for i in todo], *after]
            )
            for i, answer in zip(todo, answers, strict=False):
                replies[i] = answer
            if after and isinstance(answers[-1], Exception):
                raise StoreUnavailable(f"redis: {answers[-1]}")
            todo = [i for i in todo if isinstance(replies[i], NoScriptError)]
            if not todo:
                break
            # A restarted or flushed Redis forgot the script: load it, run those again
            # (and `then` after them again).
            await self._connection.call(self._redis.script_load(script))
        for reply in replies:
            if isinstance(reply, Exception):
                raise StoreUnavailable(f"redis: {reply}")
        return replies

    def _command(self, w: ReaderWrite, profile: bytes, now_ms: int) -> list[Any]:
        """The EVALSHA arguments after the sha: key count, keys, then ARGV."""
        retention = self.retention
        keys = self._keys(w.user_id)[1]
        rest = [
            now_ms,
            retention.dedupe_s * 1000,
            retention.history_events,
            retention.history_s * 1000,
            w.event_ids,
            w.links,
            w.hashes,
            w.announce,
            not w.checked,
        ]
        history = [part for entry in w.history for part in entry]
        return [len(keys), *keys, w.version, profile, orjson.dumps(rest), *history]

    async def link(self, user_id: str, to: str) -> str:
        before = await self._connection.call(
            self._redis.set(alias_key(user_id), to, nx=True, get=True)
        )
        return to if before is None else text(before)

    async def relink(self, user_ids: Iterable[str], to: str) -> None:
        async with self._connection.unavailable():
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id in user_ids:
                    pipe.set(alias_key(user_id), to, xx=True)
                await pipe.execute()

    async def resolve(self, user_ids: Sequence[str]) -> dict[str, str]:
        async with self._connection.unavailable():
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id in user_ids:
                    pipe.get(alias_key(user_id))
                replies = await pipe.execute()
        return {u: text(r) for u, r in zip(user_ids, replies, strict=True) if r is not None}

    async def links(self, user_id: str) -> frozenset[str]:
        members = await self._connection.call(self._redis.smembers(links_key(user_id)))
        return frozenset(text(m) for m in members)

    async def dump(self, user_id: str) -> ReaderDump:
        async with self._connection.unavailable():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(profile_key(user_id))
                pipe.zrange(history_key(user_id), 0, -1, withscores=True)
                pipe.smembers(links_key(user_id))
                raw, history, links = await pipe.execute()
        return ReaderDump(
            profile=None if raw is None else loads(raw),
            history=tuple((int(score), event) for event, score in history),
            links=frozenset(text(m) for m in links),
        )

    async def drop_merged(self, user_id: str) -> None:
        keys = (profile_key(user_id), picks_key(user_id), history_key(user_id))
        await self._connection.call(self._redis.delete(*keys, links_key(user_id)))

    async def add_history(self, user_id: str, entries: Sequence[tuple[int, bytes]]) -> None:
        retention, key = self.retention, history_key(user_id)
        floor = int(time.time() * 1000) - retention.history_s * 1000
        async with self._connection.unavailable():
            async with self._redis.pipeline(transaction=False) as pipe:
                # In slices: one command never holds Redis for long, whatever the size.
                for start in range(0, len(entries), HISTORY_SLICE):
                    chunk = entries[start : start + HISTORY_SLICE]
                    pipe.zadd(key, {raw: ts_ms for ts_ms, raw in chunk})
                pipe.zremrangebyscore(key, "-inf", f"({floor}")
                pipe.zremrangebyrank(key, 0, -(retention.history_events + 1))
                pipe.pexpire(key, retention.history_s * 1000)
                await pipe.execute()

    async def history(self, user_id: str, since_ms: int = 0) -> list[bytes]:
        events = await self._connection.call(
            self._redis.zrangebyscore(history_key(user_id), since_ms, "+inf")
        )
        return [e if isinstance(e, bytes) else text(e).encode() for e in events]

    async def suppressed(self, user_id: str, hashes: Sequence[str]) -> bool:
        if not hashes:
            return False
        flags = await self._connection.call(
            self._redis.smismember(suppression_key(self._connection, user_id), list(hashes))
        )
        return any(flags)

    async def unsuppress(self, user_id: str, hashes: Sequence[str]) -> bool:
        if not hashes:
            return False
        removed = await self._connection.call(
            self._redis.srem(suppression_key(self._connection, user_id), *hashes)
        )
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
