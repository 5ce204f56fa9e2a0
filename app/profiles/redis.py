"""The Redis store: the production and scale-out backend.

Every key of one reader carries the reader's id as a hash tag (`kairos:{u123}:profile`),
so all of them land in one slot and the layout works unchanged on Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import orjson
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, WatchError

from app.errors import CorruptData, StoreUnavailable
from app.profiles.store import Product, Profile, Updater, pick_field

log = logging.getLogger("kairos.redis")

CATALOG_KEY = "kairos:catalog"
POPULAR_KEY = "kairos:popular"
CHANGES_CHANNEL = "kairos:changes"
MAX_WATCH_RETRIES = 50
PICKS_TTL_S = 90 * 86400  # a campaign's slot picks outlive its clicks


def profile_key(user_id: str) -> str:
    return f"kairos:{{{user_id}}}:profile"


def picks_key(user_id: str) -> str:
    return f"kairos:{{{user_id}}}:picks"


class RedisStore:
    """Profiles as JSON strings, the catalog as one hash, popularity as a sorted set."""

    name = "redis"

    def __init__(self, url: str, *, timeout_s: float = 0.5, pool_size: int = 64) -> None:
        # No retries inside the client: the caller's time budget decides what happens
        # next (stale cache or fallback), and a retry loop would only spend that budget.
        no_retry = Retry(NoBackoff(), 0)
        self._pool = BlockingConnectionPool.from_url(
            url,
            max_connections=pool_size,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=30,
            retry=no_retry,
        )
        self.redis = Redis(connection_pool=self._pool, retry=no_retry)
        self._url = url
        self._timeout_s = timeout_s

    async def get(self, user_id: str) -> Profile | None:
        raw = await self._call(self.redis.get(profile_key(user_id)))
        return None if raw is None else _loads(raw)

    async def put(self, user_id: str, profile: Profile) -> None:
        await self._call(self.redis.set(profile_key(user_id), orjson.dumps(profile)))

    async def put_many(self, profiles: Iterable[tuple[str, Profile]]) -> int:
        count = 0
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for user_id, profile in profiles:
                    pipe.set(profile_key(user_id), orjson.dumps(profile))
                    count += 1
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        return count

    async def update(self, user_id: str, change: Updater) -> Profile | None:
        key = profile_key(user_id)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                for _ in range(MAX_WATCH_RETRIES):
                    try:
                        await pipe.watch(key)
                        raw = await pipe.get(key)
                        current = None if raw is None else _loads_or_none(key, raw)
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
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        raise StoreUnavailable(f"profile {user_id} kept changing during the update")

    async def delete(self, user_id: str) -> bool:
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(profile_key(user_id))
                pipe.delete(picks_key(user_id))
                deleted, _ = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        return bool(deleted)

    async def get_pick(self, user_id: str, campaign: str | None, slot: int) -> str | None:
        raw = await self._call(self.redis.hget(picks_key(user_id), pick_field(campaign, slot)))
        return None if raw is None else raw.decode()

    async def remember_pick(self, user_id: str, campaign: str | None, slot: int, sku: str) -> str:
        key, field = picks_key(user_id), pick_field(campaign, slot)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hsetnx(key, field, sku)
                pipe.hget(key, field)
                pipe.expire(key, PICKS_TTL_S)
                _, remembered, _ = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        return str(remembered.decode()) if remembered is not None else sku

    async def get_products(self, skus: Sequence[str]) -> dict[str, Product]:
        if not skus:
            return {}
        raws = await self._call(self.redis.hmget(CATALOG_KEY, list(skus)))
        found = {}
        for sku, raw in zip(skus, raws, strict=True):
            if raw:
                try:
                    found[sku] = _loads(raw)
                except CorruptData as exc:
                    # One unreadable product must not sink every feed that lists it:
                    # it reads as unknown, like a product missing from the catalog.
                    log.error("catalog product %s is unreadable: %s", sku, exc)
        return found

    async def put_products(self, products: Iterable[Product]) -> int:
        mapping: dict[str, bytes] = {}
        scores: dict[str, float] = {}
        for product in products:
            mapping[product["sku"]] = orjson.dumps(product)
            # Stored negated so that ZRANGE gives the most popular first and ties in sku
            # order, the same order as the embedded store.
            scores[product["sku"]] = -float(product.get("popularity", 0))
        if mapping:
            try:
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.hset(CATALOG_KEY, mapping=mapping)  # type: ignore[arg-type]
                    pipe.zadd(POPULAR_KEY, scores)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                raise StoreUnavailable(f"redis: {exc}") from exc
        return len(mapping)

    async def popular(self, limit: int) -> list[str]:
        if limit <= 0:
            return []
        skus = await self._call(self.redis.zrange(POPULAR_KEY, 0, limit - 1))
        return [s.decode() for s in skus]

    async def publish_change(self, user_id: str) -> None:
        await self._call(self.redis.publish(CHANGES_CHANNEL, user_id))

    def changes(self, stop: asyncio.Event) -> AsyncIterator[str] | None:
        return self._follow_changes(stop)

    async def _follow_changes(self, stop: asyncio.Event) -> AsyncIterator[str]:
        # Its own connection, outside the pool: a subscription holds its connection for
        # good, and must not starve the requests of a small pool.
        client = Redis.from_url(
            self._url,
            socket_timeout=self._timeout_s,
            socket_connect_timeout=self._timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await self._call(pubsub.subscribe(CHANGES_CHANNEL))
            while not stop.is_set():
                # A bounded wait: idle channels are normal and must not look like errors,
                # and the stop flag is seen within a second.
                message = await self._call(pubsub.get_message(timeout=1.0))
                if message is not None and message["type"] == "message":
                    yield message["data"].decode()
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()

    async def ping(self) -> None:
        await self._call(self.redis.ping())

    async def close(self) -> None:
        await self.redis.aclose()
        await self._pool.disconnect()

    @staticmethod
    async def _call(awaitable: Any) -> Any:
        try:
            return await awaitable
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc


def _loads(raw: bytes | str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CorruptData(f"redis holds a value that is not JSON: {exc}") from None


def _loads_or_none(key: str, raw: bytes | str) -> Any:
    """For writes: an unreadable value is treated as absent, so a write can repair it."""
    try:
        return _loads(raw)
    except CorruptData as exc:
        log.warning("%s: %s; overwriting it", key, exc)
        return None
