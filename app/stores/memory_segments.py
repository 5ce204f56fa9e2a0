"""Segment membership in this process (the embedded backend): the same contract as
`app/stores/redis/segments.py`, one event-loop step per call."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from app.events.clock import format_ms
from app.stores.protocols import SegmentChange

NAME = "embedded"


class MemorySegments:
    name = NAME

    def __init__(self, cap: int) -> None:
        self._of: dict[str, tuple[str, ...]] = {}
        self._counts: dict[str, int] = {}
        self._due: dict[str, int] = {}
        self._stream: deque[tuple[str, dict[str, str]]] = deque(maxlen=cap)
        self._last = (0, 0)

    async def record(self, changes: Sequence[SegmentChange], now_ms: int) -> int:
        appended = 0
        for change in changes:
            before = self._of.get(change.user_id, ())
            now = change.segments
            for name, what in [
                *((n, "exited") for n in before if n not in now),
                *((n, "entered") for n in now if n not in before),
            ]:
                self._counts[name] = self._counts.get(name, 0) + (1 if what == "entered" else -1)
                self._append(change.user_id, name, what, now_ms)
                appended += 1
            if now:
                self._of[change.user_id] = now
            else:
                self._of.pop(change.user_id, None)
            if change.due_ms is None:
                self._due.pop(change.user_id, None)
            else:
                self._due[change.user_id] = change.due_ms
        return appended

    def _append(self, user_id: str, segment: str, change: str, now_ms: int) -> None:
        ms, seq = self._last
        # Ids as Redis spells them: milliseconds, then a sequence within the millisecond.
        self._last = (ms, seq + 1) if now_ms <= ms else (now_ms, 0)
        entry = {"user_id": user_id, "segment": segment, "change": change, "ts": format_ms(now_ms)}
        self._stream.append((f"{self._last[0]}-{self._last[1]}", entry))

    async def claim(self, now_ms: int, limit: int, lease_ms: int) -> list[str]:
        due = sorted((at, user) for user, at in self._due.items() if at <= now_ms)[:limit]
        for _, user in due:
            self._due[user] = now_ms + lease_ms
        return [user for _, user in due]

    async def counts(self) -> dict[str, int]:
        return {name: n for name, n in self._counts.items() if n > 0}

    async def segments_of(self, user_id: str) -> tuple[str, ...]:
        return self._of.get(user_id, ())

    async def changes(self, after: str, limit: int) -> list[tuple[str, dict[str, str]]]:
        floor = _entry_id(after)
        return [(i, dict(e)) for i, e in self._stream if _entry_id(i) > floor][:limit]

    async def forget(self, user_id: str) -> None:
        for name in self._of.pop(user_id, ()):
            self._counts[name] -= 1
        self._due.pop(user_id, None)
        kept = [(i, e) for i, e in self._stream if e["user_id"] != user_id]
        self._stream.clear()
        self._stream.extend(kept)


def _entry_id(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)
