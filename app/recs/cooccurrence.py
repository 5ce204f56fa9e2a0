"""Co-occurrence kept up to date from ingest, without slowing it down.

`CoOccurrence.note` is an ingest watcher: on the event loop, right after a reader's
events are stored, it adds what they co-occur with to counts held in memory (no I/O).
A background task (`run`) sends those counts to the store every `FLUSH_S`, in one
pipelined batch, so a product has neighbours well within a second of its first
co-occurrence. What waits in memory is bounded (`MAX_PENDING` keys): past it, and when
the store fails, those counts are lost, never the events, and the loss is counted
(`kairos_recs_lost_total{reason}`).

Only products the catalog knows are counted: events may come with a public write key,
and made-up skus must not grow the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from app.errors import StoreUnavailable
from app.events.clock import Clock
from app.events.model import Event
from app.metrics import Metrics
from app.recs.signals import gather
from app.stores.protocols import CatalogStore, Occurrences, Profile, RecsStore

log = logging.getLogger("kairos.recs")

FLUSH_S = 0.2
MAX_PENDING = 200_000


class CoOccurrence:
    """The counts waiting to be stored, and the task that stores them."""

    def __init__(
        self, store: RecsStore, catalog: CatalogStore, metrics: Metrics, *, cap: int
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._cap = cap
        self._clock = Clock()
        self._pending = Occurrences()
        self._events = 0  # counted into `_pending`, for the loss metric
        self._dirty = asyncio.Event()
        self._settled = asyncio.Event()
        self._settled.set()
        self._lost = {r: metrics.recs_lost.labels(r) for r in ("queue_full", "store")}

    def note(
        self, reader: str, events: Sequence[Event], before: Profile | None, after: Profile
    ) -> None:
        """The ingest watcher: count what the reader's events co-occur with (never
        awaits)."""
        pending = self._pending
        if len(pending) >= MAX_PENDING:
            lost = sum(1 for e in events if e.type in ("product_view", "add_to_cart", "purchase"))
            if lost:
                self._lost["queue_full"].inc(lost)
            return
        counted = gather(pending, events, before, after, self._clock)
        if counted:
            self._events += counted
            self._settled.clear()
            self._dirty.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Store what is noted, every `FLUSH_S`, until `stop` is set; then what is left."""
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                dirty = asyncio.ensure_future(self._dirty.wait())
                await asyncio.wait({dirty, stopping}, return_when=asyncio.FIRST_COMPLETED)
                dirty.cancel()
                if self._dirty.is_set() and not stop.is_set():
                    # Gather a batch worth a round trip (a stop cuts it short).
                    await asyncio.wait({stopping}, timeout=FLUSH_S)
                    await self.flush()
        finally:
            stopping.cancel()
        await self.flush()

    async def flush(self) -> None:
        """Send what is pending to the store now."""
        self._dirty.clear()
        batch, events = self._pending, self._events
        self._pending, self._events = Occurrences(), 0
        if len(batch):
            try:
                await self._store.add(await self._known(batch), self._cap)
            except StoreUnavailable as exc:
                self._lost["store"].inc(events)
                log.warning("store unavailable: co-occurrence of %d events lost: %s", events, exc)
            except Exception:
                self._lost["store"].inc(events)
                log.exception("storing the co-occurrence of %d events failed", events)
        if not len(self._pending):
            self._settled.set()

    async def drained(self) -> None:
        """Until everything noted so far is stored (for tests, benches and shutdown)."""
        await self._settled.wait()

    async def _known(self, batch: Occurrences) -> Occurrences:
        """`batch` without the products the catalog does not know."""
        skus = set(batch.items)
        for a, b in batch.pairs:
            skus.update((a, b))
        known = set(await self._catalog.get_products(sorted(skus))) if skus else set()
        if known >= skus:
            return batch
        return Occurrences(
            pairs={p: w for p, w in batch.pairs.items() if p[0] in known and p[1] in known},
            items={s: w for s, w in batch.items.items() if s in known},
            segments={k: w for k, w in batch.segments.items() if k[1] in known},
        )
