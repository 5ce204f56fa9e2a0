"""Each reader's picks as one hash in the reader's slot, kept PICKS_TTL_S after a pick."""

from __future__ import annotations

from app.stores.protocols import pick_field
from app.stores.redis.connection import NAME, RedisConnection, text
from app.stores.redis.keys import PICKS_TTL_S, picks_key


class RedisPicks:
    name = NAME

    def __init__(self, connection: RedisConnection) -> None:
        self._connection = connection
        self._redis = connection.redis

    async def get_pick(self, user_id: str, campaign: str | None, slot: int) -> str | None:
        key, field = picks_key(user_id), pick_field(campaign, slot)
        raw = await self._connection.call(self._redis.hget(key, field))
        return None if raw is None else text(raw)

    async def remember_pick(self, user_id: str, campaign: str | None, slot: int, sku: str) -> str:
        key, field = picks_key(user_id), pick_field(campaign, slot)
        async with self._connection.unavailable():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hsetnx(key, field, sku)
                pipe.hget(key, field)
                pipe.expire(key, PICKS_TTL_S)
                _, remembered, _ = await pipe.execute()
        return sku if remembered is None else text(remembered)

    async def forget(self, user_id: str) -> None:
        await self._connection.call(self._redis.delete(picks_key(user_id)))
