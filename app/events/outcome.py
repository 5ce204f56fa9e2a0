"""What became of a request's events: counts, and each rejected one by index."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.errors import StoreUnavailable
from app.events.model import Event, EventRejected
from app.events.reduce import ACCEPTED, DROPPED, DUPLICATE, Outcome


@dataclass(slots=True)
class IngestResult:
    """What became of a request's events: counts, and each rejected one by index."""

    accepted: int = 0
    duplicates: int = 0
    dropped: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    # Events neither applied nor duplicates: an identify among them merges no one.
    skipped: set[int] = field(default_factory=set)

    def reject(self, index: int, exc: EventRejected) -> None:
        entry: dict[str, Any] = {"index": index, "code": exc.code, "message": exc.message}
        entry["field"] = exc.field
        self.rejected.append(entry)
        self.skipped.add(index)

    def body(self) -> dict[str, Any]:
        rejected = sorted(self.rejected, key=lambda r: r["index"])
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "dropped": self.dropped,
            "rejected": rejected,
        }


def count(result: IngestResult, events: list[tuple[int, Event]], outcomes: list[Outcome]) -> None:
    """Count each of a reader's `events` (index, event) by its outcome."""
    if outcomes.count(ACCEPTED) == len(events):  # the usual case, counted at once
        result.accepted += len(events)
        return
    for (index, _), outcome in zip(events, outcomes, strict=True):
        if outcome == ACCEPTED:
            result.accepted += 1
        elif outcome == DUPLICATE:
            result.duplicates += 1
        elif outcome == DROPPED:
            result.dropped += 1
            result.skipped.add(index)
        elif isinstance(outcome, EventRejected):
            result.reject(index, outcome)


def suppressed(event: Event) -> EventRejected:
    """The rejection of an event for an erased, suppressed reader."""
    field = "user_id" if event.user_id else "anonymous_id"
    return EventRejected(
        "suppressed", "this reader was erased and is suppressed: its events are refused", field
    )


def raise_busy(readers: int) -> None:
    """Give up on readers that kept changing (503: the client retries)."""
    raise StoreUnavailable(f"{readers} readers kept changing under concurrent posters")
