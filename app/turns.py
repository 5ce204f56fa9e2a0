"""Turns: at most `size` units of work at once, the rest waiting in arrival order, each a
bounded time.

Used where doing everything at once costs more than taking turns: calls to a Redis
Cluster (its client fails at once past its connections, where a pool waits) and the
events a process applies (a few requests at a time keep their data in the CPU's caches,
where sixteen interleaved cost each event 10-20 % more).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from types import TracebackType


def _nothing() -> None:
    return None


class Turns:
    """`async with turns(n):` takes `n` units (a block larger than `size` takes all of
    them), waiting at most `timeout_s` behind the blocks that came first, then raises
    `refusal()`. `waited()` is called each time a block has to wait."""

    def __init__(
        self,
        size: int,
        timeout_s: float,
        refusal: Callable[[], Exception],
        waited: Callable[[], object] = _nothing,
    ) -> None:
        self.size = size
        self._free = size
        self._timeout_s = timeout_s
        self._refusal = refusal
        self._waited = waited
        self._queue: deque[tuple[int, asyncio.Future[None]]] = deque()

    def __call__(self, units: int = 1) -> _Turn:
        return _Turn(self, min(max(units, 1), self.size))

    @property
    def free(self) -> int:
        """Units no block holds."""
        return self._free

    @property
    def waiting(self) -> int:
        """Blocks waiting for their turn."""
        return sum(1 for _, f in self._queue if not f.done())

    async def acquire(self, units: int) -> None:
        """Take `units` (at most `size`), waiting in line; `refusal()` past the wait."""
        if not self._queue and self._free >= units:  # the usual case: no timer to set
            self._free -= units
            return
        self._waited()
        entry = (units, asyncio.get_running_loop().create_future())
        self._queue.append(entry)
        try:
            async with asyncio.timeout(self._timeout_s):
                await entry[1]
        except BaseException as exc:
            if entry[1].done() and not entry[1].cancelled():
                self.release(units)  # given its turn just as it stopped waiting
            else:
                entry[1].cancel()
                with contextlib.suppress(ValueError):  # (`_wake` may have dropped it)
                    self._queue.remove(entry)
                self._wake()  # a block behind it may fit now
            if isinstance(exc, TimeoutError):
                raise self._refusal() from None
            raise

    def release(self, units: int) -> None:
        """Give back `units` taken by `acquire`; the blocks in line that fit go."""
        self._free += units
        self._wake()

    def _wake(self) -> None:
        queue = self._queue
        while queue:
            units, future = queue[0]
            if future.done():  # (cancelled: its owner removes it)
                queue.popleft()
                continue
            if self._free < units:
                return
            self._free -= units
            queue.popleft()
            future.set_result(None)


class _Turn:
    __slots__ = ("_turns", "_units")

    def __init__(self, turns: Turns, units: int) -> None:
        self._turns, self._units = turns, units

    async def __aenter__(self) -> None:
        await self._turns.acquire(self._units)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._turns.release(self._units)
