"""Changes announced on one pub/sub channel, followed on a connection of its own.

A message names the readers changed, one per line, after a first line naming the
process that sent it (`@` and its origin: no reader id holds `@`). A process skips its
own messages: it forgot its copies before announcing, and a request of a hundred
events would otherwise cost it a hundred more invalidations.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

from app.stores.protocols import SUBSCRIBED
from app.stores.redis.connection import NAME, RedisConnection
from app.stores.redis.keys import CHANGES_CHANNEL

ORIGIN_MARK = "@"


def announcement(origin: str, user_ids: Iterable[str]) -> str:
    """The message announcing that `user_ids` changed, sent by `origin`."""
    return "\n".join((ORIGIN_MARK + origin, *user_ids))


class RedisBus:
    name = NAME

    def __init__(self, connection: RedisConnection) -> None:
        self._connection = connection

    async def publish_change(self, user_id: str) -> None:
        message = announcement(self._connection.origin, (user_id,))
        await self._connection.call(self._connection.redis.publish(CHANGES_CHANNEL, message))

    def changes(self, stop: asyncio.Event) -> AsyncIterator[str] | None:
        return self._follow(stop)

    async def _follow(self, stop: asyncio.Event) -> AsyncIterator[str]:
        own = ORIGIN_MARK + self._connection.origin
        async for message in self._connection.follow(CHANGES_CHANNEL, stop, opening=b""):
            if not message:
                yield SUBSCRIBED
                continue
            lines = message.decode().split("\n")
            if lines[0].startswith(ORIGIN_MARK):
                if lines[0] == own:
                    continue
                del lines[0]
            for user_id in lines:  # (a message without an origin: an older sender)
                yield user_id
