"""The catalog as one hash of product JSON by sku, popularity as one sorted set."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import orjson

from app.errors import CorruptData
from app.stores.protocols import Product
from app.stores.redis.connection import NAME, RedisConnection, loads, text
from app.stores.redis.keys import CATALOG_KEY, POPULAR_KEY

log = logging.getLogger("kairos.redis")


class RedisCatalog:
    name = NAME

    def __init__(self, connection: RedisConnection) -> None:
        self._connection = connection
        self._redis = connection.redis

    async def get_products(self, skus: Sequence[str]) -> dict[str, Product]:
        if not skus:
            return {}
        raws = await self._connection.call(self._redis.hmget(CATALOG_KEY, list(skus)))
        found = {}
        for sku, raw in zip(skus, raws, strict=True):
            if raw:
                try:
                    found[sku] = loads(raw)
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
            async with self._connection.unavailable():
                # The two keys are in different slots: no MULTI on a cluster, where a
                # product may be listed a moment before its popularity is (harmless:
                # lists read the popularity, then the products).
                atomic = not self._connection.cluster
                async with self._redis.pipeline(transaction=atomic) as pipe:
                    pipe.hset(CATALOG_KEY, mapping=mapping)  # type: ignore[arg-type]
                    pipe.zadd(POPULAR_KEY, scores)
                    await pipe.execute()
        return len(mapping)

    async def popular(self, limit: int) -> list[str]:
        if limit <= 0:
            return []
        skus = await self._connection.call(self._redis.zrange(POPULAR_KEY, 0, limit - 1))
        return [text(sku) for sku in skus]
