"""Opens and clicks recorded as events, without ever holding up the pixel or the redirect.

The routes hand each open or click to `Tracker.open` / `Tracker.click`, which only queue
it (bounded); one background task applies the queue through the same ingest as every
other event, in batches. So the reader's mail client is answered first, whatever the
store is doing: a full queue or a store that is down loses only the count, and that loss
is itself counted (`kairos_tracking_lost`).

An open is one event per reader and campaign, a click one per reader, campaign and link
(the event id says which): repeats within the dedupe window are duplicates, so the
counts are unique opens and clicks. A machine's open or click (app/campaigns/machine.py)
is recorded with its reason in `machine`, so rates can count people only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from typing import Any

from app.errors import StoreUnavailable
from app.events.ingest import Ingest
from app.metrics import Metrics

log = logging.getLogger("kairos.tracking")

QUEUE_SIZE = 10_000
BATCH = 500
DIALECT = "tracking"


class Tracker:
    """The queue of opens and clicks to record, and the task that records them."""

    def __init__(self, ingest: Ingest, metrics: Metrics, queue_size: int = QUEUE_SIZE) -> None:
        self._ingest = ingest
        # None is `wake`'s item: it only wakes the task.
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(queue_size)
        self._settled = asyncio.Event()
        self._settled.set()
        self._lost = {
            reason: metrics.tracking_lost.labels(reason) for reason in ("queue_full", "store")
        }

    def open(self, user_id: str, campaign: str | None, machine: str | None) -> None:
        """Queue the reader's open of a campaign (never waits)."""
        key = _digest("open", campaign or "")
        properties: dict[str, Any] = {"machine": machine}
        if campaign:
            properties["campaign"] = campaign
        event = {"event_id": f"open:{key}", "type": "email_open", "properties": properties}
        self._put(event, user_id)

    def click(
        self, user_id: str, campaign: str | None, url: str, slot: int | None, machine: str | None
    ) -> None:
        """Queue the reader's click on a link of a campaign (never waits)."""
        key = _digest("click", campaign or "", url, "" if slot is None else str(slot))
        properties: dict[str, Any] = {"url": url, "machine": machine}
        if campaign:
            properties["campaign"] = campaign
        if slot is not None:
            properties["slot"] = slot
        event = {"event_id": f"click:{key}", "type": "email_click", "properties": properties}
        self._put(event, user_id)

    def _put(self, event: dict[str, Any], user_id: str) -> None:
        try:
            self._queue.put_nowait({**event, "user_id": user_id})
        except asyncio.QueueFull:
            self._lost["queue_full"].inc()
            return
        self._settled.clear()

    def wake(self) -> None:
        """Wake `run` so it sees its stop flag now rather than at the next item."""
        with contextlib.suppress(asyncio.QueueFull):  # full: it is busy, it will see it
            self._queue.put_nowait(None)

    async def run(self, stop: asyncio.Event) -> None:
        """Record what is queued until `stop` is set (and `wake` called), then what is
        left."""
        while not (stop.is_set() and self._queue.empty()):
            first = await self._queue.get()
            batch = [first] if first is not None else []
            while len(batch) < BATCH and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is not None:
                    batch.append(item)
            if batch:
                await self._record(batch)
            if self._queue.empty():
                self._settled.set()

    async def _record(self, batch: list[dict[str, Any]]) -> None:
        try:
            await self._ingest.ingest(batch, dialect=DIALECT, trusted=True)
        except StoreUnavailable as exc:
            self._lost["store"].inc(len(batch))
            log.warning("store unavailable, %d opens and clicks lost: %s", len(batch), exc)
        except Exception:
            self._lost["store"].inc(len(batch))
            log.exception("recording %d opens and clicks failed", len(batch))

    async def drained(self) -> None:
        """Until everything queued so far is recorded (for tests and shutdown)."""
        await self._settled.wait()


def _digest(*parts: str) -> str:
    # The event id must stay under 100 characters whatever the campaign and link are.
    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=12).hexdigest()
