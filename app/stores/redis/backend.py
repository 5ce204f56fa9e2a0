"""What spans the Redis stores: the shared connection's health and end, erasure and its
audit log."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from app.stores.redis.breaker import Breaker
from app.stores.redis.connection import RedisConnection, text
from app.stores.redis.events import suppression_key
from app.stores.redis.keys import AUDIT_CAP, AUDIT_KEY, reader_keys


class RedisBackend:
    def __init__(self, connection: RedisConnection) -> None:
        self.connection = connection

    async def erase(self, user_id: str, suppress: Sequence[str] = ()) -> bool:
        # One MULTI over every key of the reader and its slot's suppression set (they
        # share a hash slot, so this holds on Redis Cluster too): a reader is never left
        # half erased, nor erased without being suppressed.
        async with self.connection.unavailable():
            async with self.connection.redis.pipeline(transaction=True) as pipe:
                for key in reader_keys(user_id):
                    pipe.delete(key)
                if suppress:
                    pipe.sadd(suppression_key(self.connection, user_id), *suppress)
                deleted = await pipe.execute()
        return bool(deleted[0])  # the profile's key comes first

    async def record_erasure(self, entry: Mapping[str, str]) -> None:
        redis = self.connection.redis
        await self.connection.call(
            redis.xadd(AUDIT_KEY, dict(entry), maxlen=AUDIT_CAP, approximate=True)  # type: ignore[arg-type]
        )

    async def erasures(self, limit: int) -> list[dict[str, str]]:
        entries = await self.connection.call(
            self.connection.redis.xrevrange(AUDIT_KEY, count=limit)
        )
        return [
            {text(k): text(v) for k, v in (fields or {}).items()} for _, fields in entries or ()
        ]

    async def keys_of(self, user_id: str) -> list[str]:
        found = []
        async with self.connection.unavailable():
            async for key in self.connection.redis.scan_iter(match=f"*{{{user_id}}}*", count=1000):
                found.append(text(key))
        return sorted(found)

    @property
    def circuit(self) -> Breaker:
        return self.connection.breaker

    async def ping(self) -> None:
        await self.connection.ping()

    async def close(self) -> None:
        await self.connection.close()
