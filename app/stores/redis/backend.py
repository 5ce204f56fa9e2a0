"""What spans the Redis stores: the shared connection's health and end, and erasure."""

from __future__ import annotations

from app.stores.redis.connection import RedisConnection, unavailable
from app.stores.redis.keys import reader_keys


class RedisBackend:
    def __init__(self, connection: RedisConnection) -> None:
        self.connection = connection

    async def erase(self, user_id: str) -> bool:
        # One MULTI over every key of the reader (they share a hash slot, so this holds
        # on Redis Cluster too): a reader is never left half erased.
        with unavailable():
            async with self.connection.redis.pipeline(transaction=True) as pipe:
                for key in reader_keys(user_id):
                    pipe.delete(key)
                deleted = await pipe.execute()
        return bool(deleted[0])  # the profile's key comes first

    async def ping(self) -> None:
        await self.connection.ping()

    async def close(self) -> None:
        await self.connection.close()
