"""Ingest: checked events applied to their readers exactly once, atomically per reader.

For each run of events up to a merge, every reader's events are reduced together
(`app/events/reduce.py`) and written with one compare-and-set per reader, all readers
of a request in one round trip; a reader changed meanwhile by another poster is read
and reduced again. An identify carrying both ids then merges the anonymous reader into
the user. Nothing is answered before the store has it: a store error propagates as
`StoreUnavailable` (503), and what was applied before it is deduplicated on retry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from app.errors import StoreUnavailable
from app.events.clock import Clock
from app.events.merge import merge
from app.events.model import Event, EventRejected, anonymous_reader, check_event
from app.events.outcome import IngestResult, count, raise_busy, suppressed
from app.events.privacy import ReaderHashes
from app.events.reduce import reduce
from app.metrics import Metrics
from app.profiles.cache import CachedProfiles
from app.segments.service import NeedsHistory, Segmenter
from app.stores.protocols import (
    EventStore,
    Profile,
    ReaderAsk,
    ReaderState,
    ReaderWrite,
    SegmentChange,
    SegmentStore,
    Written,
)

log = logging.getLogger("kairos.events")

# A reader written by this many concurrent posters in a row is rare; past it the
# request fails (503, retried by the client) rather than spinning.
MAX_ROUNDS = 64
MERGE_MARK = "\x00merged:"  # an id in the user's seen set: that reader is merged already
# Each merge is several store steps: a request may ask for this many, the rest rejected.
MAX_MERGES = 100
TOO_MANY_MERGES = EventRejected(
    "too_many_merges",
    f"a request may carry at most {MAX_MERGES} identifies that merge; send the rest in another",
    "anonymous_id",
)
# Told of each reader's events once stored (reader, events, profile before, after): it
# must only note or queue.
Watcher = Callable[[str, Sequence[Event], Profile | None, Profile], None]


class Ingest:
    """Applies events to the event store, keeps the profile caches in step, counts."""

    def __init__(
        self,
        events: EventStore,
        profiles: CachedProfiles,
        hashes: ReaderHashes,
        metrics: Metrics,
        *,
        max_event_bytes: int,
        segments: Segmenter,
        segment_store: SegmentStore,
    ) -> None:
        self._store = events
        self._segments = segments
        self._segment_store = segment_store
        self._profiles = profiles
        self._hashes = hashes
        self._metrics = metrics
        self._max_event_bytes = max_event_bytes
        self.clock = Clock()
        self.watchers: list[Watcher] = []
        self._copied, self._read, self._refused = (
            metrics.warm_readers.labels(result) for result in ("copy", "read", "refused")
        )

    async def ingest(
        self,
        docs: Sequence[Any],
        *,
        dialect: str = "native",
        trusted: bool = False,
        body_bytes: int | None = None,
    ) -> IngestResult:
        """Check and apply `docs` (native event objects, in order; `body_bytes`: the size
        of the request they came in, when it is theirs). An identify or alias
        merges the anonymous reader of its anonymous id into the user; sent with an API
        key (`trusted`), also the user of that id (Segment's alias of a former user id):
        a public write key never moves one user's data into another."""
        received_ms = int(time.time() * 1000)
        # No event of a body within the event limit can be over it: nothing to measure.
        small = body_bytes is not None and body_bytes <= self._max_event_bytes
        max_bytes = None if small else self._max_event_bytes
        result = IngestResult()
        run: list[tuple[int, Event]] = []
        merges = 0
        for index, doc in enumerate(docs):
            if isinstance(doc, EventRejected):  # a message the dialect could not translate
                result.reject(index, doc)
                continue
            try:
                event = check_event(
                    doc, received_ms=received_ms, max_bytes=max_bytes, clock=self.clock
                )
            except EventRejected as exc:
                result.reject(index, exc)
                continue
            if event.merges:
                merges += 1
                if merges > MAX_MERGES:
                    result.reject(index, TOO_MANY_MERGES)
                    continue
            run.append((index, event))
            if event.merges:
                await self._apply(run, result, trusted)
                run = []
                if index not in result.skipped:
                    previous = event.anonymous_id or ""
                    await self.merge(anonymous_reader(previous), event.user_id or "")
                    if trusted:
                        await self.merge(previous, event.user_id or "")
                await asyncio.sleep(0)  # merges are many steps: let others in between
        if run:
            await self._apply(run, result, trusted)
        counts = Counter({"accepted": result.accepted, "duplicate": result.duplicates})
        counts.update(dropped=result.dropped, rejected=len(result.rejected))
        for outcome, n in counts.items():
            if n:
                self._metrics.events.labels(dialect, outcome).inc(n)
        return result

    async def _apply(
        self, run: list[tuple[int, Event]], result: IngestResult, trusted: bool
    ) -> None:
        pending: dict[str, list[tuple[int, Event]]] = {}
        for index, event in run:
            pending.setdefault(event.reader, []).append((index, event))
        for _ in range(MAX_ROUNDS):
            if not pending:
                return
            pending = await self._round(pending, result, trusted)
        raise_busy(len(pending))

    async def _round(
        self, pending: dict[str, list[tuple[int, Event]]], result: IngestResult, trusted: bool
    ) -> dict[str, list[tuple[int, Event]]]:
        """One write for every pending reader, after one read for those this server has
        no copy of its own last write of; what must go again."""
        readers = list(pending)
        copies = {r: c for r in readers if (c := self._profiles.written(r)) is not None}
        asks = [
            ReaderAsk(r, tuple([e.event_id for _, e in pending[r]]), self._hashes.of(r))
            for r in readers
            if r not in copies
        ]
        self._copied.inc(len(copies))
        self._read.inc(len(asks))
        read = await self._store.read(asks) if asks else []
        states = dict(zip([a.user_id for a in asks], read, strict=True))
        segments = self._segments
        now_ms = int(time.time() * 1000)
        again: dict[str, list[tuple[int, Event]]] = {}
        writes, reduced = [], []
        for reader in readers:
            events = pending[reader]
            copy = copies.get(reader)
            if copy is not None:
                # Our own last write: the store checks the ids and the version.
                state = ReaderState(orjson.loads(copy[0]), frozenset(), None, False, copy[1])
            else:
                state = states[reader]
            if state.suppressed:
                for index, event in events:
                    result.reject(index, suppressed(event))
            elif state.moved_to is not None:
                # Until the merge has written them to the user, only the merged reader
                # knows which of its events were applied.
                fresh = [(i, e) for i, e in events if e.event_id not in state.seen]
                result.duplicates += len(events) - len(fresh)
                again.setdefault(state.moved_to, []).extend(fresh)
            else:
                outcome = reduce(state.profile, [e for _, e in events], state.seen, trusted)
                if outcome.changed and outcome.profile is not None:
                    applied = outcome.applied
                    kept = [(e.type, e.ts_ms, e.properties) for e in applied]
                    try:
                        change = segments.step(reader, state.profile, outcome.profile, kept, now_ms)
                    except NeedsHistory:  # rules changed since: rebuilt from history, once
                        history = await self._store.history(reader)
                        change = segments.step(
                            reader, state.profile, outcome.profile, kept, now_ms, history
                        )
                    writes.append(
                        ReaderWrite(
                            user_id=reader,
                            version=state.version,
                            hashes=self._hashes.of(reader),
                            profile=outcome.profile,
                            # (comprehensions: a generator per reader costs more)
                            event_ids=tuple([e.event_id for e in applied]),
                            history=tuple([(e.ts_ms, e.raw) for e in applied]),
                            checked=copy is None,
                        )
                    )
                    reduced.append((reader, events, outcome, state.profile, change))
                elif copy is not None:
                    # Nothing to write, so nothing checks the copy: read the store.
                    self._profiles.invalidate(reader)
                    self._refused.inc()
                    again[reader] = events
                else:
                    count(result, events, outcome.outcomes)
        if not writes:
            return again
        answers = await self._store.write(writes, now_ms)
        watchers, changes = self.watchers, []
        for (reader, events, outcome, before, change), write, answer in zip(
            reduced, writes, answers, strict=True
        ):
            if answer is Written.WRITTEN:
                count(result, events, outcome.outcomes)
                self._profiles.wrote(reader, write.stored, write.version_after)
                if change is not None:
                    changes.append(change)
                for watch in watchers:
                    watch(reader, outcome.applied, before, write.profile)
                continue
            self._profiles.invalidate(reader)
            if not write.checked:
                self._refused.inc()
            if answer is Written.SUPPRESSED:
                for index, event in events:
                    result.reject(index, suppressed(event))
            else:  # changed, moved or an id applied since: read again
                again.setdefault(reader, []).extend(events)
        if changes:
            await self._record(changes, now_ms)
        return again

    async def _record(self, changes: list[SegmentChange], now_ms: int) -> None:
        """Record segment entries and exits. The events are stored already: a store
        that fails now leaves the readers to the sweep (which records them from their
        profiles), and the request still succeeds."""
        try:
            await self._segment_store.record(changes, now_ms)
        except StoreUnavailable as exc:
            for change in changes:
                self._segments.notice(change.user_id)
            self._metrics.segment_record_errors.labels().inc()
            log.warning("segment changes of %d readers left to the sweep: %s", len(changes), exc)

    async def merge(self, other: str, user: str) -> None:
        """Merge reader `other` (an anonymous reader: `anonymous_reader(id)`) into
        `user`: from now on its events go to the user. Idempotent; an id merged into
        someone else already stays with them."""
        if not other or other == user:
            return
        user = (await self._store.resolve([user])).get(user, user)
        if await self._store.suppressed(other, self._hashes.of(other)):
            return  # erased: its id must not be stored again
        if await self._store.link(other, user) != user:
            return
        dump = await self._store.dump(other)
        mark = MERGE_MARK + other
        for _ in range(MAX_ROUNDS):
            hashes = self._hashes.of(user)
            (state,) = await self._store.read([ReaderAsk(user, (mark,), hashes)])
            if state.suppressed or mark in state.seen:
                break
            if state.moved_to is not None:
                user = state.moved_to
                continue
            # With nothing to move, the user still learns the id (for erasure).
            profile = (
                state.profile or {} if dump.profile is None else merge(state.profile, dump.profile)
            )
            write = ReaderWrite(
                user_id=user,
                version=state.version,
                hashes=hashes,
                profile=profile,
                event_ids=(mark,),
                history=(),
                links=(other, *dump.links),
                announce=False,
            )
            (answer,) = await self._store.write([write], int(time.time() * 1000))
            if answer is Written.WRITTEN:
                break
        else:
            raise_busy(1)
        # The history after the profile, in slices: it can be large, and adding it again
        # (a merge retried after a failure) changes nothing.
        if dump.history:
            await self._store.add_history(user, dump.history)
        await self._store.drop_merged(other)
        # The merged reader leaves its segments; the sweep evaluates the user again.
        await self._segment_store.record([SegmentChange(other, (), None)], int(time.time() * 1000))
        self._segments.notice(user)
        await self._store.relink(dump.links, user)
        for reader in (other, user, *dump.links):
            await self._profiles.changed(reader)
        self._metrics.merges.labels().inc()
