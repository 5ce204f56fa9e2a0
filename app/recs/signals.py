"""What one reader's applied events add to co-occurrence: pure, no I/O.

A product viewed, carted or bought co-occurs with the products the reader viewed in the
same session (the last `PARTNERS` distinct ones within `SESSION_MS` before it, its start
rounded down to the minute); the items
of one purchase co-occur with each other. Each pair and each product's own count is
weighted by how strong a sign of taste the event is: a purchase outweighs a view.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from types import MappingProxyType

from app.events.clock import Clock
from app.events.model import Event
from app.stores.protocols import Occurrences, Profile

SESSION_MS = 3_600_000
PARTNERS = 5
MAX_ORDER_ITEMS = 20  # bounds a purchase's pairs (n·(n-1)/2)
# A product's own count per event, and the weight of the pairs it makes with the views
# before it.
OWN = MappingProxyType({"product_view": 1.0, "add_to_cart": 2.0, "purchase": 3.0})
WITH_VIEWS = MappingProxyType({"product_view": 1.0, "add_to_cart": 2.0, "purchase": 2.0})
CO_BOUGHT = 3.0
BY_TIME = attrgetter("ts_ms")


def primary_segment(profile: Profile | None) -> str | None:
    """The reader's primary segment, whatever shape the stored `segments` has."""
    segments = (profile or {}).get("segments")
    primary = segments.get("primary") if isinstance(segments, dict) else None
    return primary if isinstance(primary, str) and primary else None


def gather(
    into: Occurrences,
    events: Sequence[Event],
    before: Profile | None,
    after: Profile,
    clock: Clock,
) -> int:
    """Add to `into` what `events` (one reader's, as applied) co-occur with; returns how
    many events counted."""
    relevant = [e for e in events if e.type in OWN]
    if not relevant:
        return 0
    if len(relevant) > 1:  # (usually one: a request's events are spread over readers)
        relevant.sort(key=BY_TIME)
    views = _earlier_views(before)  # (ts, sku), oldest first
    segment = primary_segment(after)
    pairs, items, segments = into.pairs, into.items, into.segments
    for event in relevant:
        kind = event.type
        skus = _skus(event)
        if not skus:
            continue
        own = OWN[kind]
        for sku in skus:
            items[sku] = items.get(sku, 0.0) + own
            if segment is not None:
                key = (segment, sku)
                segments[key] = segments.get(key, 0.0) + own
        if views:  # (a first view has no partner: no session start to spell)
            weight = WITH_VIEWS[kind]
            # Kept times are one fixed UTC form, so they compare as text: no parsing. The
            # session's start is rounded down to the minute: its text is then spelled
            # once per minute (the clock remembers it), not once per event.
            since = clock.format_ms((event.ts_ms - SESSION_MS) // 60_000 * 60_000)
            for partner in _partners(views, event.ts, since):
                for sku in skus:
                    _pair(pairs, sku, partner, weight)
        if kind == "purchase":
            for i, a in enumerate(skus):
                for b in skus[i + 1 :]:
                    _pair(pairs, a, b, CO_BOUGHT)
        elif kind == "product_view":
            views.append((event.ts, skus[0]))
    return len(relevant)


def _skus(event: Event) -> list[str]:
    props = event.properties
    if event.type != "purchase":
        sku = props.get("sku")
        return [sku] if isinstance(sku, str) else []
    return distinct_skus(props.get("items"), MAX_ORDER_ITEMS)


def distinct_skus(rows: object, limit: int) -> list[str]:
    """The skus of `rows` (objects with a `sku`: order items, recent views), in order,
    each once, at most `limit`; anything else in them is passed over."""
    found: list[str] = []
    for row in rows if isinstance(rows, list) else ():
        sku = row.get("sku") if isinstance(row, dict) else None
        if isinstance(sku, str) and sku not in found:
            found.append(sku)
            if len(found) == limit:
                break
    return found


def _earlier_views(profile: Profile | None) -> list[tuple[str, str]]:
    """The reader's kept views before these events, oldest first (only the newest
    `PARTNERS` can pair with anything)."""
    views: list[tuple[str, str]] = []
    for view in ((profile or {}).get("recent_views") or [])[:PARTNERS]:
        if isinstance(view, dict):
            ts, sku = view.get("ts"), view.get("sku")
            if isinstance(ts, str) and isinstance(sku, str):
                views.append((ts, sku))
    views.reverse()
    return views


def _partners(views: list[tuple[str, str]], ts: str, since: str) -> list[str]:
    """The last `PARTNERS` distinct skus viewed from `since` up to `ts`."""
    found: list[str] = []
    for at, sku in reversed(views):
        if at > ts:
            continue  # a view after this event (events came out of order)
        if at < since or len(found) == PARTNERS:
            break
        if sku not in found:
            found.append(sku)
    return found


def _pair(pairs: dict[tuple[str, str], float], a: str, b: str, weight: float) -> None:
    if a == b:
        return
    key = (a, b) if a < b else (b, a)
    pairs[key] = pairs.get(key, 0.0) + weight
