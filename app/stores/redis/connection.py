"""The one connection pool the Redis stores share, and how Redis errors and values are
read: a client error is `StoreUnavailable`, a value that is not JSON `CorruptData`.

A `redis+cluster://` (or `rediss+cluster://`) URL names one node of a Redis Cluster:
the client learns the rest from it and sends each command to the node owning its key's
slot. The key layout (`keys.py`) keeps what must change together in one slot.

Over 300 lines because the lean pipelining (hiredis replies read straight off the
socket, connections kept aside) and the cluster path standing in for it must change
together."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import secrets
from binascii import crc_hqx
from collections.abc import AsyncIterator, Awaitable, Sequence
from types import MappingProxyType
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import orjson
from hiredis import pack_command
from redis._parsers.hiredis import NOT_ENOUGH_DATA, _AsyncHiredisParser
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import REDIS_CLUSTER_HASH_SLOTS
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from app.errors import CorruptData, StoreUnavailable
from app.stores.redis.breaker import Breaker
from app.turns import Turns

log = logging.getLogger("kairos.redis")

NAME = "redis"
T = TypeVar("T")
# Connections `pipelined` keeps between calls rather than handing back to the pool: a
# checkout and return through redis-py's blocking pool costs ~30 µs of this process's CPU
# (a lock, a condition, observability events), three or four times a request of events.
KEPT = 8
# URL schemes of a Redis Cluster, and the plain scheme the client is given for each.
CLUSTER_SCHEMES = MappingProxyType({"redis+cluster": "redis", "rediss+cluster": "rediss"})


class RedisConnection:
    """A blocking pool of `pool_size` connections and the client over it; on a Redis
    Cluster, the cluster client with up to `pool_size` connections to each node."""

    def __init__(self, url: str, *, timeout_s: float = 0.5, pool_size: int = 64) -> None:
        self.url = url
        self.timeout_s = timeout_s
        plain = cluster_node_url(url)
        self.cluster = plain is not None
        self._pool: BlockingConnectionPool | None = None
        self._turns: Turns | None = None  # (a pool of one server waits by itself)
        if plain is not None:
            client = RedisCluster.from_url(
                plain,
                max_connections=pool_size,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                health_check_interval=30,
                # One retry, at once: it is what lets a command find a slot's new owner
                # after a failover (the client refreshes its map of the slots first).
                retry=Retry(NoBackoff(), 1),
            )
            # The cluster client answers the same commands the stores send.
            self.redis = cast(Redis, client)
            # Its client fails at once past `max_connections` to a node (where the pool
            # of one server waits for a free one): a burst waits its turn here instead.
            self._turns = Turns(pool_size, timeout_s, _no_connection_free)
        else:
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
        # Names this process's announcements on the change channel (`bus.announcement`).
        self.origin = secrets.token_hex(8)
        self._slot_tags: tuple[str, ...] = ()
        self._kept: list[Connection] = []  # checked out of the pool, idle, ready to send
        self.breaker = Breaker()
        # A small pool keeps nothing aside: its other users must not wait on idle ones.
        self._keep = min(KEPT, pool_size // 8)

    def slot_tag(self, user_id: str) -> str:
        """A short hash tag that lands in the same slot as `user_id`'s keys."""
        if not self._slot_tags:
            # ~110,000 CRCs, ~30 ms, once per process.
            tags: list[str | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
            left, n = REDIS_CLUSTER_HASH_SLOTS, 0
            while left:
                slot = slot_of(str(n))
                if tags[slot] is None:
                    tags[slot], left = str(n), left - 1
                n += 1
            self._slot_tags = tuple(t or "" for t in tags)
        return self._slot_tags[slot_of(user_id)]

    async def call(self, awaitable: Awaitable[T], *, waits: bool = False) -> T:
        """The awaitable's result, a client error raised as `StoreUnavailable`; at once
        while the breaker is open. `waits`: a call that waits on purpose (a subscription
        reading its next message) takes no turn from the requests."""
        # try/except rather than `unavailable()`: this is on every open's path.
        breaker = self.breaker
        try:
            probe = breaker.admit()
        except StoreUnavailable:
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # never awaited: say so to nobody
            raise
        turns = None if waits else self._turns
        try:
            if turns is None:
                result = await awaitable
            else:
                async with turns():
                    result = await awaitable
        except ResponseError as exc:  # an answer: the server is there
            breaker.succeeded()
            raise StoreUnavailable(f"redis: {exc}") from exc
        except (RedisError, OSError) as exc:
            breaker.failed()
            raise StoreUnavailable(f"redis: {exc}") from exc
        except BaseException:  # cancelled by the caller: no verdict
            if probe:
                breaker.abandoned()
            raise
        breaker.succeeded()
        return result

    @contextlib.asynccontextmanager
    async def unavailable(self) -> AsyncIterator[None]:
        """Raise a client error inside the block as `StoreUnavailable` (for pipelines),
        at once while the breaker is open; the block's outcome tells the breaker. On a
        cluster the block waits its turn among `pool_size` (`Turns`)."""
        probe = self.breaker.admit()
        try:
            async with self._turns() if self._turns else contextlib.nullcontext():
                try:
                    yield
                except ResponseError as exc:
                    self.breaker.succeeded()
                    raise StoreUnavailable(f"redis: {exc}") from exc
                except (RedisError, OSError) as exc:
                    self.breaker.failed()
                    raise StoreUnavailable(f"redis: {exc}") from exc
        except BaseException:
            # Cancelled by the caller, in the block or waiting its turn: no verdict on
            # Redis. (After a verdict above, the probe is settled: this changes nothing.)
            if probe:
                self.breaker.abandoned()
            raise
        self.breaker.succeeded()

    def subscriber(self) -> tuple[PubSub, Redis | None]:
        """A subscription on a connection of its own, outside the pool (a subscription
        holds its connection for good, and must not starve the requests of a small
        pool), and the client to close after it (none on a cluster: the cluster
        client's own subscription takes a connection to one node, and every node of a
        cluster hears every publication)."""
        if self.cluster:
            return self.redis.pubsub(ignore_subscribe_messages=True), None
        client = Redis.from_url(
            self.url,
            socket_timeout=self.timeout_s,
            socket_connect_timeout=self.timeout_s,
            retry=_no_retry(),
        )
        return client.pubsub(ignore_subscribe_messages=True), client

    async def pipelined(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Replies to `commands` sent in one write (an error reply comes back as its
        `ResponseError`); `StoreUnavailable` past the timeout or on a client error.

        Leaner than redis-py's pipeline, which costs ~15 µs of this process's CPU per
        command (argument encoding, a timer per reply); this is ~2 µs, and the events
        path runs two commands per reader."""
        pool = self._pool
        if pool is None:
            return await self._cluster_pipelined(commands)
        async with self.unavailable():
            connection = await self._checkout()
            try:
                await connection.send_packed_command(
                    b"".join([pack_command(tuple(c)) for c in commands])
                )
                # One deadline for every reply rather than a timer each.
                async with asyncio.timeout(self.timeout_s):
                    replies = await _replies(connection, len(commands))
            except BaseException:
                # Replies may be left on the socket: it must not serve anyone else.
                await connection.disconnect(nowait=True)
                await pool.release(connection)
                raise
            if len(self._kept) < self._keep:
                self._kept.append(connection)
            else:
                await pool.release(connection)
        return replies

    async def _cluster_pipelined(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """`pipelined` on a cluster: the commands sent to their slots' nodes (one write
        to each node), the replies in the commands' order."""
        async with self.unavailable():
            pipe = self.redis.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            async with asyncio.timeout(self.timeout_s):
                replies: list[Any] = await pipe.execute(raise_on_error=False)
        for reply in replies:
            # A node that could not be reached, rather than a command's own error.
            if isinstance(reply, RedisError) and not isinstance(reply, ResponseError):
                self.breaker.failed()
                raise StoreUnavailable(f"redis: {reply}")
        return replies

    async def _checkout(self) -> Connection:
        """A kept connection that is still sound, else one from the pool (which checks
        and reconnects it); the pool's own health check runs on send."""
        pool = self._pool
        assert pool is not None  # (a cluster sends through `_cluster_pipelined`)
        kept = self._kept
        while kept:
            connection = kept.pop()
            if _sound(connection):
                return connection
            await pool.release(connection)
        fresh: Connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        return fresh

    async def follow(
        self, channel: str, stop: asyncio.Event, *, opening: bytes | None = None
    ) -> AsyncIterator[bytes]:
        """The messages published on `channel`, until `stop` is set, on a connection of
        its own (`subscriber`); `opening` first, once subscribed, when given."""
        pubsub, client = self.subscriber()
        try:
            await self.call(pubsub.subscribe(channel), waits=True)
            if opening is not None:
                yield opening
            while not stop.is_set():
                # A bounded wait: idle channels are normal and must not look like errors,
                # and the stop flag is seen within a second.
                message = await self.call(pubsub.get_message(timeout=1.0), waits=True)
                if message is not None and message["type"] == "message":
                    yield bytes(message["data"])
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()
            if client is not None:
                with contextlib.suppress(RedisError, OSError):
                    await client.aclose()

    async def ping(self) -> None:
        await self.call(self.redis.ping())

    async def close(self) -> None:
        kept, self._kept = self._kept, []
        await self.redis.aclose()
        if self._pool is not None:
            for connection in kept:
                await self._pool.release(connection)
            await self._pool.disconnect()


def _no_connection_free() -> StoreUnavailable:
    return StoreUnavailable("redis: no connection free in time")


async def _replies(connection: Connection, n: int) -> list[Any]:
    """The next `n` replies on `connection`, an error reply as its `ResponseError`.

    Straight from the connection's hiredis reader when it has one: redis-py's
    `read_response` costs ~4 µs of Python per reply, and a request of a hundred events
    reads two hundred replies. (redis-py's own parser state is used as it uses it: the
    reader and the stream it feeds from; the lock file pins the version this is checked
    against, and `tests/test_stores_redis.py` runs it.)"""
    parser = connection._parser
    if not isinstance(parser, _AsyncHiredisParser) or parser._reader is None:
        replies: list[Any] = []
        for _ in range(n):
            try:
                replies.append(await connection.read_response(timeout=math.inf))
            except ResponseError as exc:
                replies.append(exc)
        return replies
    reader, stream = parser._reader, parser._stream
    replies = []
    while len(replies) < n:
        reply = reader.gets()
        if reply is NOT_ENOUGH_DATA:
            data = await stream.read(65536)
            if not data:
                raise RedisConnectionError("Connection closed by server.")
            reader.feed(data)
        elif isinstance(reply, RedisConnectionError):
            raise reply
        else:
            replies.append(reply)
    return replies


def _sound(connection: Connection) -> bool:
    """Whether a kept connection is connected with nothing unread and no end of stream
    (the server closed it, or reset it, while it was idle): what the pool checks before it
    hands a connection out."""
    parser = connection._parser
    if not isinstance(parser, _AsyncHiredisParser) or parser._reader is None:
        return False
    if not parser._connected:
        return False
    stream = parser._stream
    return (
        stream is not None
        and not parser._reader.has_data()
        and not stream._buffer
        and not stream.at_eof()
        and stream.exception() is None
    )


def cluster_node_url(url: str) -> str | None:
    """The node URL a Redis Cluster URL names, with the plain scheme the client takes;
    None for a URL of a single server."""
    parts = urlsplit(url)
    plain = CLUSTER_SCHEMES.get(parts.scheme)
    return None if plain is None else urlunsplit(parts._replace(scheme=plain))


def slot_of(tag: str) -> int:
    """The cluster slot of keys whose hash tag is `tag` (ids and tags hold no braces, so
    this is Redis's CRC16 of the tag itself: `redis.crc.key_slot`, without its parsing,
    on every event's path)."""
    return crc_hqx(tag.encode(), 0) % REDIS_CLUSTER_HASH_SLOTS


def _no_retry() -> Retry:
    # No retries inside the client: the caller's time budget decides what happens next
    # (stale cache or fallback), and a retry loop would only spend that budget.
    return Retry(NoBackoff(), 0)


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
