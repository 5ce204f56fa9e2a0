"""The one connection pool the Redis stores share, and how Redis errors and values are
read: a client error is `StoreUnavailable`, a value that is not JSON `CorruptData`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

import orjson
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from app.errors import CorruptData, StoreUnavailable

log = logging.getLogger("kairos.redis")

NAME = "redis"
T = TypeVar("T")


class RedisConnection:
    """A blocking pool of `pool_size` connections and the client over it."""

    def __init__(self, url: str, *, timeout_s: float = 0.5, pool_size: int = 64) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._pool = BlockingConnectionPool.from_url(
            url,
            max_connections=pool_size,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=30,
            retry=_no_retry(),
        )
        self.redis = Redis(connection_pool=self._pool, retry=_no_retry())

    async def call(self, awaitable: Awaitable[T]) -> T:
        """The awaitable's result, a client error raised as `StoreUnavailable`."""
        # try/except rather than `unavailable()`: this is on every open's path.
        try:
            return await awaitable
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc

    def subscriber(self) -> Redis:
        """A client on a connection of its own, outside the pool: a subscription holds
        its connection for good, and must not starve the requests of a small pool."""
        return Redis.from_url(
            self.url,
            socket_timeout=self.timeout_s,
            socket_connect_timeout=self.timeout_s,
            retry=_no_retry(),
        )

    async def ping(self) -> None:
        await self.call(self.redis.ping())

    async def close(self) -> None:
        await self.redis.aclose()
        await self._pool.disconnect()


def _no_retry() -> Retry:
    # No retries inside the client: the caller's time budget decides what happens next
    # (stale cache or fallback), and a retry loop would only spend that budget.
    return Retry(NoBackoff(), 0)


@contextlib.contextmanager
def unavailable() -> Iterator[None]:
    """Raise a client error inside the block as `StoreUnavailable` (for pipelines)."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreUnavailable(f"redis: {exc}") from exc


def text(raw: Any) -> str:
    """A value as read (bytes: the client does not decode) as a string."""
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def loads(raw: bytes | str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CorruptData(f"redis holds a value that is not JSON: {exc}") from None


def loads_or_none(key: str, raw: bytes | str) -> Any:
    """For writes: an unreadable value is treated as absent, so a write can repair it."""
    try:
        return loads(raw)
    except CorruptData as exc:
        log.warning("%s: %s; overwriting it", key, exc)
        return None
