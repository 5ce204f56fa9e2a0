"""Co-occurrence and segment popularity as sorted sets: one per product (its neighbours,
in the product's own slot), one per segment, and one of every product's own count.

Every command names one key, so the layout works on Redis Cluster; a batch of counts
goes in one pipeline, one script per key touched (its increments, then a trim back to
the cap).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from app.errors import StoreUnavailable
from app.stores.protocols import Occurrences
from app.stores.redis.connection import NAME, RedisConnection, text
from app.stores.redis.keys import RECS_ITEMS_KEY, related_key, segment_popular_key

# KEYS: one sorted set. ARGV: weight, member, weight, member, ..., then the cap (0: none):
# the increments, then the lowest ranks past the cap go.
ADD = """
local cap = tonumber(ARGV[#ARGV])
for i = 1, #ARGV - 1, 2 do redis.call('ZINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
if cap > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(cap + 1)) end
return 0
"""


class RedisRecs:
    name = NAME

    def __init__(self, connection: RedisConnection) -> None:
        self._connection = connection
        self._sha = hashlib.sha1(ADD.encode(), usedforsecurity=False).hexdigest()

    async def add(self, batch: Occurrences, cap: int) -> None:
        # One script per key with all of its increments: a batch holds thousands of
        # pairs over a few hundred products, and a command per increment cost this
        # process ~1.5 µs each (packing, a reply to read).
        grouped: dict[str, list[Any]] = {}
        for (a, b), weight in batch.pairs.items():
            grouped.setdefault(related_key(a), []).extend((weight, b))
            grouped.setdefault(related_key(b), []).extend((weight, a))
        for (segment, sku), weight in batch.segments.items():
            grouped.setdefault(segment_popular_key(segment), []).extend((weight, sku))
        items = [part for sku, weight in batch.items.items() for part in (weight, sku)]
        # The items key holds every product's own count: never trimmed (cap 0).
        commands = [(key, *args, cap) for key, args in grouped.items()]
        if items:
            commands.append((RECS_ITEMS_KEY, *items, 0))
        todo = commands
        for _ in range(2):
            replies = await self._connection.pipelined(
                [("EVALSHA", self._sha, 1, *command) for command in todo]
            )
            pairs = zip(todo, replies, strict=True)
            missing = [c for c, r in pairs if isinstance(r, NoScriptError)]
            for reply in replies:
                if not isinstance(reply, NoScriptError):
                    _raise(reply)
            if not missing:
                return
            # A restarted or flushed Redis forgot the script: those did not run.
            await self._connection.call(self._connection.redis.script_load(ADD))
            todo = missing
        raise StoreUnavailable("redis: the co-occurrence script could not be loaded")

    async def neighbours(
        self, skus: Sequence[str], limit: int
    ) -> dict[str, list[tuple[str, float]]]:
        if not skus or limit <= 0:
            return {}
        replies = await self._connection.pipelined(
            [("ZREVRANGE", related_key(sku), 0, limit - 1, "WITHSCORES") for sku in skus]
        )
        found = {}
        for sku, reply in zip(skus, replies, strict=True):
            _raise(reply)
            if reply:
                found[sku] = _scored(reply)
        return found

    async def counts(self, skus: Sequence[str]) -> dict[str, float]:
        if not skus:
            return {}
        (reply,) = await self._connection.pipelined([("ZMSCORE", RECS_ITEMS_KEY, *skus)])
        _raise(reply)
        return {
            sku: 0.0 if raw is None else float(raw) for sku, raw in zip(skus, reply, strict=True)
        }

    async def segment_popular(self, segment: str, limit: int) -> list[str]:
        if limit <= 0:
            return []
        (reply,) = await self._connection.pipelined(
            [("ZREVRANGE", segment_popular_key(segment), 0, limit - 1)]
        )
        _raise(reply)
        return [text(sku) for sku in reply]


def _scored(reply: list[Any]) -> list[tuple[str, float]]:
    """A WITHSCORES reply: [member, score] pairs under RESP3, a flat list under RESP2."""
    if isinstance(reply[0], list):
        return [(text(member), float(score)) for member, score in reply]
    return [(text(reply[i]), float(reply[i + 1])) for i in range(0, len(reply), 2)]


def _raise(reply: Any) -> None:
    if isinstance(reply, Exception):
        raise StoreUnavailable(f"redis: {reply}")
