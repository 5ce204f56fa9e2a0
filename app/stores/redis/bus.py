"""Changes announced on one pub/sub channel, followed on a connection of its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from app.stores.redis.connection import NAME, RedisConnection
from app.stores.redis.keys import CHANGES_CHANNEL


class RedisBus:
    name = NAME

    def __init__(self, connection: RedisConnection) -> None:
        self._connection = connection

    async def publish_change(self, user_id: str) -> None:
        await self._connection.call(self._connection.redis.publish(CHANGES_CHANNEL, user_id))

    def changes(self, stop: asyncio.Event) -> AsyncIterator[str] | None:
        return self._follow(stop)

    async def _follow(self, stop: asyncio.Event) -> AsyncIterator[str]:
        async for message in self._connection.follow(CHANGES_CHANNEL, stop):
            for user_id in message.decode().split("\n"):  # several readers a message
                yield user_id
