"""One protocol per concern; each has an embedded and a Redis backend.

Over 300 lines because every concern's protocol and the records it passes are kept here,
side by side, as the one contract both backends implement.

Every method raises `app.errors.StoreUnavailable` when the backend cannot answer, and
reads raise `app.errors.CorruptData` for a stored value that cannot be read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

Profile = dict[str, Any]
Product = dict[str, Any]
Updater = Callable[[Profile | None], Profile | None]


class ProfileStore(Protocol):
    """Readers' profiles, by user id."""

    name: str

    async def get(self, user_id: str) -> Profile | None: ...

    async def put(self, user_id: str, profile: Profile) -> None: ...

    async def put_many(self, profiles: Iterable[tuple[str, Profile]]) -> int: ...

    async def update(self, user_id: str, change: Updater) -> Profile | None:
        """Apply `change` to the stored profile atomically and store what it returns.

        `change` gets the current profile (or None) and returns the new one, or None to
        leave the store untouched. Returns the profile as stored afterwards.
        """
        ...

    async def delete(self, user_id: str) -> bool:
        """Delete the profile only (erasure is `Stores.erase`); True if there was one."""
        ...


class CatalogStore(Protocol):
    """The products by sku, shared by all readers, and their popularity ranking."""

    name: str

    async def get_products(self, skus: Sequence[str]) -> dict[str, Product]:
        """The products found; an unknown or unreadable one is left out."""
        ...

    async def put_products(self, products: Iterable[Product]) -> int: ...

    async def popular(self, limit: int) -> list[str]:
        """The `limit` most popular skus, most popular first, ties in sku order."""
        ...


class Erasable(Protocol):
    """A store, besides the profiles, that holds data about readers: erasure forgets it."""

    async def forget(self, user_id: str) -> None:
        """Drop everything this store holds about the reader."""
        ...


class PickStore(Erasable, Protocol):
    """The product each reader was shown in each recommendation slot of a campaign."""

    name: str

    async def get_pick(self, user_id: str, campaign: str | None, slot: int) -> str | None: ...

    async def remember_pick(self, user_id: str, campaign: str | None, slot: int, sku: str) -> str:
        """Remember `sku` for that slot unless one is remembered already (atomically);
        returns the sku remembered, ours or the earlier one."""
        ...


@dataclass(slots=True)
class Occurrences:
    """Co-occurrence counts gathered from events, to add to the store: `pairs` by
    (sku, sku) in sku order (each pair once, both directions stored), `items` (each
    product's own weighted count, which normalizes its pairs) and `segments` by
    (segment, sku) (popularity within a segment)."""

    pairs: dict[tuple[str, str], float] = field(default_factory=dict)
    items: dict[str, float] = field(default_factory=dict)
    segments: dict[tuple[str, str], float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.pairs) + len(self.items) + len(self.segments)


class RecsStore(Protocol):
    """Item-to-item co-occurrence and popularity per segment: counts over all readers,
    naming no reader (nothing in it is erased with a reader)."""

    name: str

    async def add(self, batch: Occurrences, cap: int) -> None:
        """Add the counts; keep at most `cap` neighbours per product (the highest
        counts) and `cap` products per segment."""
        ...

    async def neighbours(
        self, skus: Sequence[str], limit: int
    ) -> dict[str, list[tuple[str, float]]]:
        """Each product's `limit` neighbours with the most co-occurrence, highest first."""
        ...

    async def counts(self, skus: Sequence[str]) -> dict[str, float]:
        """Each product's own weighted count (0 for none)."""
        ...

    async def segment_popular(self, segment: str, limit: int) -> list[str]:
        """The `limit` products with the most weight among the segment's readers."""
        ...


# What `ChangeBus.changes` yields first, once it listens: no reader id is empty.
SUBSCRIBED = ""


class ChangeBus(Protocol):
    """Tells the servers sharing the stores which readers changed."""

    name: str

    async def publish_change(self, user_id: str) -> None:
        """Tell every server sharing the stores that `user_id` changed ('*': everyone)."""
        ...

    def changes(self, stop: asyncio.Event) -> AsyncIterator[str] | None:
        """The user ids other servers changed, until `stop` is set, `SUBSCRIBED` first
        (from then on nothing is missed: what changed before is unknown); None when no
        one else shares the stores."""
        ...


@dataclass(frozen=True, slots=True)
class Retention:
    """How long event data is kept: event ids for dedupe, and each reader's history."""

    dedupe_s: int = 86_400
    history_events: int = 1_000
    history_s: int = 90 * 86_400


@dataclass(slots=True)  # not frozen: built per reader per request, and a frozen
# dataclass's __init__ sets each field through object.__setattr__
class ReaderAsk:
    """What ingest asks of a reader before applying its events: which of `event_ids`
    were applied already, and whether any of `hashes` (the reader's keyed hashes) is
    suppressed."""

    user_id: str
    event_ids: tuple[str, ...]
    hashes: tuple[str, ...]


@dataclass(slots=True)  # not frozen: built per reader per request, and a frozen
# dataclass's __init__ sets each field through object.__setattr__
class ReaderState:
    """A reader as read for ingest. `version` is an opaque compare-and-set token of the
    profile (b"" when there is none); `moved_to` is the user this reader was merged into
    (then its events go there)."""

    profile: Profile | None
    seen: frozenset[str]
    moved_to: str | None
    suppressed: bool
    version: bytes


@dataclass(slots=True)  # not frozen: built per reader per request, and a frozen
# dataclass's __init__ sets each field through object.__setattr__
class ReaderWrite:
    """One reader's change: its new profile, the event ids now applied, the events to
    keep in its history as (time in ms, event JSON), and ids merged into it (`links`)."""

    user_id: str
    version: bytes
    hashes: tuple[str, ...]
    profile: Profile
    event_ids: tuple[str, ...]
    history: tuple[tuple[int, bytes], ...]
    links: tuple[str, ...] = ()
    # False for a merge: its history was announced to `tail` when first applied.
    announce: bool = True
    # False when `profile` came from this server's copy of its own last write, not from
    # a read: the ids were not checked against those applied, so the store refuses the
    # write (CONFLICT) if any of them was applied within the dedupe window.
    checked: bool = True
    # Set by the store when the write lands: the profile as stored (JSON), and the
    # version it has now.
    stored: bytes = b""
    version_after: bytes = b""


class Written(StrEnum):
    """What became of a `ReaderWrite`."""

    WRITTEN = "written"
    CONFLICT = "conflict"  # the profile changed since it was read: read again
    MOVED = "moved"  # the reader was merged into another meanwhile
    SUPPRESSED = "suppressed"  # the reader was erased and suppressed meanwhile


@dataclass(frozen=True, slots=True)
class ReaderDump:
    """What a merge moves of a reader into another: its event ids stay where they are
    (`drop_merged`), so a merge never carries more than the history's bound."""

    profile: Profile | None
    history: tuple[tuple[int, bytes], ...]
    links: frozenset[str]


class EventStore(Erasable, Protocol):
    """Event data by reader: ids applied (dedupe), history, identity links, suppression.

    Every reader's change is atomic: one write covers the profile, the ids, the history
    and the links, and is refused when the profile changed since it was read, so
    concurrent posters never lose or double an event.
    """

    name: str
    retention: Retention

    async def read(self, asks: Sequence[ReaderAsk]) -> list[ReaderState]: ...

    async def write(self, writes: Sequence[ReaderWrite], now_ms: int) -> list[Written]:
        """Apply each write atomically, unless its reader changed, moved or was
        suppressed since it was read. Trims ids older than the dedupe window and history
        beyond the retention, and tells every server sharing the store that the reader
        changed (and `tail` followers what was applied)."""
        ...

    async def link(self, user_id: str, to: str) -> str:
        """Mark `user_id` as merged into `to`, unless it is merged already; the user it
        is merged into afterwards."""
        ...

    async def relink(self, user_ids: Iterable[str], to: str) -> None:
        """Point readers merged into one user at the user that one merged into."""
        ...

    async def resolve(self, user_ids: Sequence[str]) -> dict[str, str]:
        """Of `user_ids`, those merged into another: id -> the user it merged into."""
        ...

    async def links(self, user_id: str) -> frozenset[str]:
        """The ids merged into this user."""
        ...

    async def dump(self, user_id: str) -> ReaderDump: ...

    async def drop_merged(self, user_id: str) -> None:
        """Delete the data of a reader merged into another (profile, history, links,
        picks), keeping the link so later events go to the user, and its event ids until
        the dedupe window ends them (a retried event of the reader is found there)."""
        ...

    async def add_history(self, user_id: str, entries: Sequence[tuple[int, bytes]]) -> None:
        """Add (time in ms, event JSON) entries to a reader's history, trimmed by the
        retention; adding an entry again changes nothing."""
        ...

    async def history(self, user_id: str, since_ms: int = 0) -> list[bytes]:
        """The reader's kept events since `since_ms`, oldest first."""
        ...

    async def suppressed(self, user_id: str, hashes: Sequence[str]) -> bool: ...

    async def unsuppress(self, user_id: str, hashes: Sequence[str]) -> bool:
        """Lift the suppression of an erased reader; True if it was suppressed."""
        ...

    def tail(self, stop: asyncio.Event) -> AsyncIterator[bytes]:
        """The events applied by any server sharing the store, as JSON, until `stop`."""
        ...


class Circuit(Protocol):
    """The circuit breaker in front of a backend's server (`app/stores/redis/breaker.py`)."""

    refused: int
    opened: int

    @property
    def state(self) -> str:
        """One of "closed", "open" or "half-open"."""
        ...


class Backend(Protocol):
    """What spans the stores of one backend: its health, its end, and erasure."""

    @property
    def circuit(self) -> Circuit | None:
        """The breaker in front of the server; None without one (embedded)."""
        ...

    async def erase(self, user_id: str, suppress: Sequence[str] = ()) -> bool:
        """Remove the reader from every store holding reader data (profile, picks, event
        ids, history, links) at once, and add `suppress` (the reader's keyed hashes) to
        the suppressed in the same step; True if a profile existed."""
        ...

    async def record_erasure(self, entry: Mapping[str, str]) -> None:
        """Append an entry to the erasure audit log (capped)."""
        ...

    async def erasures(self, limit: int) -> list[dict[str, str]]:
        """The latest audit entries, newest first."""
        ...

    async def keys_of(self, user_id: str) -> list[str]:
        """Every stored key that names the reader (what `kairos erase --verify` prints)."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class Tally(StrEnum):
    """What a campaign counts, each as a set of readers per variant (so a repeat counts
    once): renders, opens by people and by machines, clicks by people and by machines."""

    SENDS = "sends"
    OPENS = "opens"
    MACHINE_OPENS = "machine_opens"
    CLICKS = "clicks"
    MACHINE_CLICKS = "machine_clicks"


@dataclass(frozen=True, slots=True)
class Mark:
    """One reader counted in one tally of one variant of a campaign."""

    campaign: str
    variant: str
    tally: Tally
    user_id: str


@dataclass(frozen=True, slots=True)
class CampaignData:
    """A campaign's counts: the variants' declared weights in the template's order (empty
    until a send is counted), and the readers in each tally, by variant (those declared
    first, in order, then any other counted)."""

    weights: dict[str, int]
    counts: dict[str, dict[Tally, int]]


class CampaignStore(Erasable, Protocol):
    """Campaign counts by variant, as sets of readers. A campaign not counted in for
    `CAMPAIGN_TTL_S` (app/stores/redis/keys.py) is forgotten."""

    name: str

    async def add(
        self, marks: Sequence[Mark], weights: Mapping[str, Mapping[str, int]], now_ms: int
    ) -> None:
        """Add each mark's reader to its set, and keep `weights` (campaign -> declared
        weights) as the campaigns' latest."""
        ...

    async def campaign(self, campaign: str) -> CampaignData | None:
        """The campaign's counts; None when nothing was ever counted for it."""
        ...


def pick_field(campaign: str | None, slot: int) -> str:
    """How a (campaign, slot) is named among a reader's picks (the slot first: a
    campaign name may contain ':')."""
    return f"{slot}:{campaign or ''}"


@dataclass(frozen=True, slots=True)
class SegmentChange:
    """A reader's segments as just evaluated: all those they are in now, and when to
    evaluate them again with no new event (None: only an event can change them)."""

    user_id: str
    segments: tuple[str, ...]
    due_ms: int | None


class RateStore(Protocol):
    """Rate limit buckets (GCRA: one theoretical arrival time per bucket), shared by
    every process on the backend. It holds keyed hashes of keys, nothing of readers."""

    name: str

    async def take(self, bucket: str, interval_us: int, capacity_us: int) -> tuple[bool, int]:
        """Count one request on `bucket`, whose requests are `interval_us` apart when
        sustained and may run `capacity_us` ahead of now: (True, how far ahead the
        bucket now runs, µs) if it fits, else (False, how far ahead it runs) uncounted."""
        ...


class SegmentStore(Erasable, Protocol):
    """Who is in which segment: each reader's recorded segments, the members per
    segment, the stream of entries and exits, and the due-time index the sweep reads."""

    name: str

    async def record(self, changes: Sequence[SegmentChange], now_ms: int) -> int:
        """Bring each reader's recorded segments to `segments`, appending an entry to
        the changes stream for each segment entered or left, and set (or clear) the
        reader's due time. Idempotent; returns the entries appended."""
        ...

    async def claim(self, now_ms: int, limit: int, lease_ms: int) -> list[str]:
        """At most `limit` readers due by `now_ms`, each leased: due again at `now_ms +
        lease_ms` unless recorded meanwhile (a sweep that dies loses no one)."""
        ...

    async def counts(self) -> dict[str, int]:
        """Members per segment (segments with none may be absent)."""
        ...

    async def segments_of(self, user_id: str) -> tuple[str, ...]:
        """The reader's recorded segments."""
        ...

    async def changes(self, after: str, limit: int) -> list[tuple[str, dict[str, str]]]:
        """Up to `limit` entries of the changes stream after entry id `after` ("0": from
        the oldest kept), oldest first: (id, {user_id, segment, change, ts})."""
        ...
