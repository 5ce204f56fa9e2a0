"""The sweep: readers whose segments change with time alone (a cart idle 15 minutes, a
spend leaving its 90-day window) re-evaluated at their due time with no new event, and
their entries and exits recorded.

Ingest records each reader's next due time in the segment store's due-time index. Every
`every_s` seconds the sweep claims the readers due (leased: a sweep that dies leaves
them due again a minute later, so several servers and `kairos worker` can sweep one
store), evaluates each from its profile, writes the profile back (compare-and-set, as
ingest does), and records the change. Every second it also takes the readers a read
found moved, or whose changes the store refused on ingest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from app.errors import StoreUnavailable
from app.events.privacy import ReaderHashes
from app.metrics import Metrics
from app.profiles.cache import CachedProfiles
from app.segments.service import NeedsHistory, Segmenter
from app.stores.protocols import (
    EventStore,
    ReaderAsk,
    ReaderWrite,
    SegmentChange,
    SegmentStore,
    Written,
)

log = logging.getLogger("kairos.segments")

BATCH = 500
LEASE_MS = 60_000
NOTICED_EVERY_S = 1.0


class Sweep:
    """Re-evaluates due and noticed readers and records what moved."""

    def __init__(
        self,
        segments: Segmenter,
        events: EventStore,
        store: SegmentStore,
        profiles: CachedProfiles,
        hashes: ReaderHashes,
        metrics: Metrics,
        *,
        every_s: float,
    ) -> None:
        self._segments = segments
        self._events = events
        self._store = store
        self._profiles = profiles
        self._hashes = hashes
        self._every_s = every_s
        self._outcomes = {
            name: metrics.segment_sweeps.labels(name)
            for name in ("recorded", "conflict", "gone")
        }

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep until `stop` is set: due readers every `every_s`, noticed ones every
        second."""
        last_due = 0.0
        while not stop.is_set():
            now = time.monotonic()
            try:
                if self._every_s and now - last_due >= self._every_s:
                    last_due = now
                    await self.due()
                await self.noticed()
            except StoreUnavailable as exc:
                log.warning("segment sweep: store unavailable: %s", exc)
            except Exception:
                log.exception("segment sweep failed")
            pause = min(NOTICED_EVERY_S, self._every_s or NOTICED_EVERY_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)

    async def due(self, now_ms: int | None = None) -> int:
        """Claim and evaluate every reader due by now (or `now_ms`); how many."""
        done = 0
        while True:
            now = now_ms if now_ms is not None else _now_ms()
            readers = await self._store.claim(now, BATCH, LEASE_MS)
            if readers:
                await self.evaluate(readers, now)
                done += len(readers)
            if len(readers) < BATCH:
                return done

    async def noticed(self) -> int:
        """Evaluate the readers noticed since the last call."""
        readers = list(self._segments.noticed)[:BATCH]
        if not readers:
            return 0
        self._segments.noticed.difference_update(readers)
        try:
            await self.evaluate(readers, _now_ms())
        except StoreUnavailable:
            for reader in readers:
                self._segments.notice(reader)
            raise
        return len(readers)

    async def evaluate(self, readers: list[str], now_ms: int) -> None:
        """Evaluate `readers` at `now_ms`, write their profiles where their segments or
        due time moved, and record every one of them (what moves, and their next due
        time)."""
        segments = self._segments
        asks = [ReaderAsk(r, (), self._hashes.of(r)) for r in readers]
        states = await self._events.read(asks)
        changes, writes = [], []
        for ask, state in zip(asks, states, strict=True):
            reader = ask.user_id
            profile = state.profile
            if profile is None or state.suppressed or state.moved_to is not None:
                changes.append(SegmentChange(reader, (), None))
                self._outcomes["gone"].inc()
                continue
            after = dict(profile)
            # Every rule runs: the sweep's readers may have changed outside ingest.
            try:
                segments.step(reader, profile, after, (), now_ms, reuse=False)
            except NeedsHistory:  # rules changed since: rebuilt from history
                history = await self._events.history(reader)
                segments.step(reader, profile, after, (), now_ms, history, reuse=False)
            found = after["segments"]["all"]
            due = after["activity"].get("due")
            changes.append(SegmentChange(reader, tuple(found), due))
            if after != profile:
                writes.append(ReaderWrite(reader, state.version, ask.hashes, after, (), ()))
        answers = await self._events.write(writes, now_ms) if writes else []
        refused = set()
        for write, answer in zip(writes, answers, strict=True):
            if answer is Written.WRITTEN:
                self._profiles.wrote(write.user_id, write.stored, write.version_after)
            else:
                # Changed meanwhile: that change evaluated it; the lease brings it back.
                refused.add(write.user_id)
                self._profiles.invalidate(write.user_id)
        kept = [c for c in changes if c.user_id not in refused]
        await self._store.record(kept, now_ms)
        self._outcomes["recorded"].inc(len(kept))
        self._outcomes["conflict"].inc(len(refused))


def _now_ms() -> int:
    return int(time.time() * 1000)
