"""Rendered images by what their pixels depend on: a size-bounded byte cache with
single-flight, so a crowd opening the same thing at once costs one render.

Used from the event loop only; the renders themselves run in the worker pool."""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class ByteCache:
    """Least recently used bytes, at most `max_bytes` of them in all."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()

    def get(self, key: Hashable) -> bytes | None:
        body = self._items.get(key)
        if body is not None:
            self._items.move_to_end(key)
        return body

    def put(self, key: Hashable, body: bytes) -> None:
        if len(body) > self.max_bytes // 4:
            return  # one huge image must not flush everything else
        old = self._items.pop(key, None)
        if old is not None:
            self.size -= len(old)
        self._items[key] = body
        self.size += len(body)
        while self.size > self.max_bytes:
            _, evicted = self._items.popitem(last=False)
            self.size -= len(evicted)

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()
        self.size = 0


class SingleFlight(Generic[V]):
    """One task per key at a time; every caller waits on it with its own deadline.

    A caller that gives up does not cancel the task: it finishes (and fills whatever
    cache it fills) for the next caller."""

    def __init__(self) -> None:
        self._tasks: dict[Hashable, asyncio.Task[V]] = {}

    def joining(self, key: Hashable) -> bool:
        return key in self._tasks

    async def run(self, key: Hashable, make: Callable[[], Awaitable[V]], deadline: float) -> V:
        """`make()`'s result, shared with concurrent callers of the same key; raises
        `TimeoutError` at `deadline` (a `loop.time()`)."""
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(make())
            self._tasks[key] = task
            task.add_done_callback(lambda t: self._landed(key, t))
        async with asyncio.timeout_at(deadline):
            return await asyncio.shield(task)

    def _landed(self, key: Hashable, task: asyncio.Task[V]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()  # retrieved, so a failure nobody awaited is not logged

    async def close(self) -> None:
        """Cancel what is still running (at shutdown)."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
