"""Changes announced on one pub/sub channel, followed on a connection of its own."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from redis.exceptions import RedisError

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
        call = self._connection.call
        client = self._connection.subscriber()
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await call(pubsub.subscribe(CHANGES_CHANNEL))
            while not stop.is_set():
                # A bounded wait: idle channels are normal and must not look like errors,
                # and the stop flag is seen within a second.
                message = await call(pubsub.get_message(timeout=1.0))
                if message is not None and message["type"] == "message":
                    yield message["data"].decode()
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()
