"""Sends, opens and clicks counted without ever holding up a render, the pixel or the
redirect.

A render hands its send to `Tracker.send`, the routes each open or click to
`Tracker.open` / `Tracker.click`: they only queue it (bounded); one background task
takes the queue in batches, applies the opens and clicks through the same ingest as
every other event, then counts the sends and the opens and clicks ingest accepted in the
campaign store, one pipelined write per batch. So the reader and the ESP are answered
first, whatever the store is doing: a full queue or a store that is down loses only the
count, and that loss is itself counted (`kairos_tracking_lost`).

An open is one event per reader and campaign, a person's and a machine's apart (a
prefetch on delivery must not make the reader's own open a duplicate); a click one per
reader, campaign, link and the same split. Repeats within the dedupe window are
duplicates, and the campaign store keeps sets of readers: the counts are of unique
readers. A machine's open or click (app/campaigns/machine.py) is recorded with its
reason in `machine` and counted apart, so rates count people only. Events ingest
dropped (the reader declined tracking) or rejected (an erased reader) are not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.errors import StoreUnavailable
from app.events.ingest import Ingest
from app.metrics import Metrics
from app.stores.protocols import CampaignStore, Mark, Tally

log = logging.getLogger("kairos.tracking")

QUEUE_SIZE = 10_000
BATCH = 500
DIALECT = "tracking"
LOST_REASONS = ("queue_full", "store", "campaign_store")


@dataclass(frozen=True, slots=True)
class Send:
    """A render of a campaign: its reader counted for the variant, with the template's
    declared weights (for the sample-ratio check)."""

    campaign: str
    variant: str
    user_id: str
    weights: Mapping[str, int]


Item = dict[str, Any] | Send | None  # None only wakes the task


class Tracker:
    """The queue of sends, opens and clicks to count, and the task that counts them."""

    def __init__(
        self,
        ingest: Ingest,
        metrics: Metrics,
        campaigns: CampaignStore,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self._ingest = ingest
        self._campaigns = campaigns
        self._queue: asyncio.Queue[Item] = asyncio.Queue(queue_size)
        self._settled = asyncio.Event()
        self._settled.set()
        self._lost = {reason: metrics.tracking_lost.labels(reason) for reason in LOST_REASONS}

    def send(self, campaign: str, variant: str, user_id: str, weights: Mapping[str, int]) -> None:
        """Queue a render of `campaign` for the reader (never waits)."""
        self._put(Send(campaign, variant, user_id, weights))

    def open(
        self, user_id: str, campaign: str | None, machine: str | None, variant: str | None = None
    ) -> None:
        """Queue the reader's open of a campaign (never waits)."""
        key = _digest("open", campaign or "", *(("machine",) if machine else ()))
        properties: dict[str, Any] = {"machine": machine}
        if campaign:
            properties["campaign"] = campaign
        if variant:
            properties["variant"] = variant
        event = {"event_id": f"open:{key}", "type": "email_open", "properties": properties}
        self._put({**event, "user_id": user_id})

    def click(
        self,
        user_id: str,
        campaign: str | None,
        url: str,
        slot: int | None,
        machine: str | None,
        variant: str | None = None,
    ) -> None:
        """Queue the reader's click on a link of a campaign (never waits)."""
        parts = (campaign or "", url, "" if slot is None else str(slot))
        key = _digest("click", *parts, *(("machine",) if machine else ()))
        properties: dict[str, Any] = {"url": url, "machine": machine}
        if campaign:
            properties["campaign"] = campaign
        if variant:
            properties["variant"] = variant
        if slot is not None:
            properties["slot"] = slot
        event = {"event_id": f"click:{key}", "type": "email_click", "properties": properties}
        self._put({**event, "user_id": user_id})

    def _put(self, item: dict[str, Any] | Send) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._lost["queue_full"].inc()
            return
        self._settled.clear()

    def wake(self) -> None:
        """Wake `run` so it sees its stop flag now rather than at the next item."""
        with contextlib.suppress(asyncio.QueueFull):  # full: it is busy, it will see it
            self._queue.put_nowait(None)

    async def run(self, stop: asyncio.Event) -> None:
        """Count what is queued until `stop` is set (and `wake` called), then what is
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

    async def _record(self, batch: list[dict[str, Any] | Send]) -> None:
        events = [item for item in batch if isinstance(item, dict)]
        sends = [item for item in batch if isinstance(item, Send)]
        marks = [Mark(s.campaign, s.variant, Tally.SENDS, s.user_id) for s in sends]
        if events:
            marks += await self._ingested(events)
        if not marks:
            return
        weights = {s.campaign: s.weights for s in sends}
        try:
            await self._campaigns.add(marks, weights, int(time.time() * 1000))
        except Exception as exc:  # noqa: BLE001 - a lost count must never stop the task
            self._lost["campaign_store"].inc(len(marks))
            log.warning("campaign counts lost (%d): %r", len(marks), exc)

    async def _ingested(self, events: list[dict[str, Any]]) -> list[Mark]:
        """Apply the opens and clicks; the marks of those ingest accepted (a duplicate is
        accepted again as the same reader in the same set)."""
        try:
            result = await self._ingest.ingest(events, dialect=DIALECT, trusted=True)
        except StoreUnavailable as exc:
            self._lost["store"].inc(len(events))
            log.warning("store unavailable, %d opens and clicks lost: %s", len(events), exc)
            return []
        except Exception:
            self._lost["store"].inc(len(events))
            log.exception("recording %d opens and clicks failed", len(events))
            return []
        marks = []
        for index, event in enumerate(events):
            mark = None if index in result.skipped else _mark(event)
            if mark is not None:
                marks.append(mark)
        return marks

    async def drained(self) -> None:
        """Until everything queued so far is counted (for tests and shutdown)."""
        await self._settled.wait()


def _mark(event: dict[str, Any]) -> Mark | None:
    """What an open or click counts for: nothing without a campaign and a variant (a
    token signed outside a render, `kairos sign`)."""
    properties = event["properties"]
    campaign, variant = properties.get("campaign"), properties.get("variant")
    if not campaign or not variant:
        return None
    machine = bool(properties.get("machine"))
    if event["type"] == "email_open":
        tally = Tally.MACHINE_OPENS if machine else Tally.OPENS
    else:
        tally = Tally.MACHINE_CLICKS if machine else Tally.CLICKS
    return Mark(campaign, variant, tally, event["user_id"])


def _digest(*parts: str) -> str:
    # The event id must stay under 100 characters whatever the campaign and link are.
    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=12).hexdigest()
