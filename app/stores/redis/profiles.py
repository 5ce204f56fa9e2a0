"""Profiles as JSON strings, one key per reader."""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from redis.exceptions import WatchError

from app.errors import StoreUnavailable
from app.stores.protocols import Profile, Updater
from app.stores.redis.connection import NAME, RedisConnection, loads, loads_or_none
from app.stores.redis.keys import profile_key

MAX_WATCH_RETRIES = 50


class RedisProfiles:
    name = NAME

    def __init__(self, connection: RedisConnection) -> None:
        self._connection = connection
        self._redis = connection.redis

    async def get(self, user_id: str) -> Profile | None:
        raw = await self._connection.call(self._redis.get(profile_key(user_id)))
        return None if raw is None else loads(raw)

    async def put(self, user_id: str, profile: Profile) -> None:
        await self._connection.call(self._redis.set(profile_key(user_id), orjson.dumps(profile)))

    async def put_many(self, profiles: Iterable[tuple[str, Profile]]) -> int:
        count = 0
        async with self._connection.unavailable():
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id, profile in profiles:
                    pipe.set(profile_key(user_id), orjson.dumps(profile))
                    count += 1
                await pipe.execute()
        return count

    async def update(self, user_id: str, change: Updater) -> Profile | None:
        key = profile_key(user_id)
        async with self._connection.unavailable():
            async with self._redis.pipeline(transaction=True) as pipe:
                for _ in range(MAX_WATCH_RETRIES):
                    try:
                        await pipe.watch(key)
                        raw = await pipe.get(key)
                        current = None if raw is None else loads_or_none(key, raw)
                        new = change(current)
                        if new is None:
                            await pipe.unwatch()  # type: ignore[no-untyped-call]
                            return current
                        pipe.multi()  # type: ignore[no-untyped-call]
                        pipe.set(key, orjson.dumps(new))
                        await pipe.execute()
                        return new
                    except WatchError:
                        continue
        raise StoreUnavailable(f"profile {user_id} kept changing during the update")

    async def delete(self, user_id: str) -> bool:
        return bool(await self._connection.call(self._redis.delete(profile_key(user_id))))
