"""Co-occurrence and segment popularity as sorted sets: one per product (its neighbours,
in the product's own slot), one per segment, and one of every product's own count.

Every command names one key, so the layout works on Redis Cluster; a batch of counts
goes in one pipeline (increments, then a trim of each key it touched back to the cap).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.errors import StoreUnavailable
from app.stores.protocols import Occurrences
from app.stores.redis.connection import NAME, RedisConnection, text
from app.stores.redis.keys import RECS_ITEMS_KEY, related_key, segment_popular_key


class RedisRecs:
    name = NAME

    def __init__(self, connection: RedisConnection) -> None:
        self._connection = connection

    async def add(self, batch: Occurrences, cap: int) -> None:
        commands: list[tuple[Any, ...]] = []
        touched: set[str] = set()
        for (a, b), weight in batch.pairs.items():
            for one, other in ((a, b), (b, a)):
                key = related_key(one)
                commands.append(("ZINCRBY", key, weight, other))
                touched.add(key)
        for sku, weight in batch.items.items():
            commands.append(("ZINCRBY", RECS_ITEMS_KEY, weight, sku))
        for (segment, sku), weight in batch.segments.items():
            key = segment_popular_key(segment)
            commands.append(("ZINCRBY", key, weight, sku))
            touched.add(key)
        # Lowest ranks go: a key at or under the cap is left as it is.
        commands.extend(("ZREMRANGEBYRANK", key, 0, -(cap + 1)) for key in touched)
        if commands:
            replies = await self._connection.pipelined(commands)
            for reply in replies:
                _raise(reply)

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
