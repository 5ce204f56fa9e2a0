"""What events add to co-occurrence (pure), and the counts' way to the store: a store
that fails loses only counts, and the loss is counted."""

from __future__ import annotations

import asyncio
from typing import Any

from test_events_api import ev

from app.errors import StoreUnavailable
from app.events.clock import Clock, format_ms
from app.events.model import Event, check_event
from app.metrics import Metrics
from app.recs.cooccurrence import CoOccurrence
from app.recs.signals import gather, primary_segment
from app.stores.memory import MemoryCatalog
from app.stores.memory_recs import MemoryRecs
from app.stores.protocols import Occurrences

T0 = 1_800_000_000_000
MINUTE = 60_000


def event(kind: str, at_ms: int, **properties: Any) -> Event:
    doc = ev(kind, "u1", ts=format_ms(at_ms), **properties)
    return check_event(doc, received_ms=at_ms, max_bytes=None)


def gathered(events: list[Event], before: dict[str, Any] | None = None, after=None):
    into = Occurrences()
    gather(into, events, before, after or {}, Clock())
    return into


def test_views_pair_within_the_session_only():
    got = gathered(
        [
            event("product_view", T0, sku="A"),
            event("product_view", T0 + MINUTE, sku="B"),
            event("product_view", T0 + 2 * 60 * MINUTE, sku="C"),  # two hours later
        ]
    )
    assert got.pairs == {("A", "B"): 1.0}
    assert got.items == {"A": 1.0, "B": 1.0, "C": 1.0}


def test_earlier_views_kept_in_the_profile_pair_with_new_events():
    before = {"recent_views": [{"sku": "A", "ts": format_ms(T0 - 10 * MINUTE)}]}
    got = gathered([event("add_to_cart", T0, sku="B")], before)
    assert got.pairs == {("A", "B"): 2.0}  # carted with a view: stronger than co-viewed


def test_a_purchase_pairs_its_items_and_the_views_before_it():
    items = [{"sku": s, "qty": 1, "price": 1.0} for s in ("B", "C", "B")]
    got = gathered(
        [
            event("product_view", T0, sku="A"),
            event("purchase", T0 + MINUTE, items=items, total=3.0, currency="EUR"),
        ],
        after={"segments": {"primary": "vip", "all": ["vip"]}},
    )
    assert got.pairs == {("B", "C"): 3.0, ("A", "B"): 2.0, ("A", "C"): 2.0}
    assert got.items == {"A": 1.0, "B": 3.0, "C": 3.0}
    assert got.segments == {("vip", "A"): 1.0, ("vip", "B"): 3.0, ("vip", "C"): 3.0}


def test_the_primary_segment_is_read_whatever_the_shape():
    assert primary_segment({"segments": {"primary": "vip", "all": ["vip"]}}) == "vip"
    assert primary_segment({"segments": {"primary": None, "all": []}}) is None
    assert primary_segment({"segments": ["vip", "dormant"]}) is None  # the older shape
    assert primary_segment({}) is None and primary_segment(None) is None


class FailingRecs(MemoryRecs):
    async def add(self, batch: Occurrences, cap: int) -> None:
        raise StoreUnavailable("down")


async def test_a_store_that_fails_loses_only_counts_and_counts_the_loss():
    catalog = MemoryCatalog()
    await catalog.put_products([{"sku": s} for s in ("A", "B")])
    metrics = Metrics()
    counter = CoOccurrence(FailingRecs(), catalog, metrics, cap=10)
    views = [event("product_view", T0, sku="A"), event("product_view", T0 + MINUTE, sku="B")]
    counter.note("u1", views, None, {})
    await counter.flush()
    assert metrics.recs_lost.labels("store").value == 2
    await asyncio.wait_for(counter.drained(), 1)


async def test_unknown_products_are_not_counted():
    catalog, store = MemoryCatalog(), MemoryRecs()
    await catalog.put_products([{"sku": "A"}, {"sku": "B"}])
    counter = CoOccurrence(store, catalog, Metrics(), cap=10)
    counter.note(
        "u1",
        [
            event("product_view", T0, sku="A"),
            event("product_view", T0 + MINUTE, sku="MADE-UP"),
            event("product_view", T0 + 2 * MINUTE, sku="B"),
        ],
        None,
        {},
    )
    await counter.flush()
    assert await store.neighbours(["A", "MADE-UP"], 10) == {"A": [("B", 1.0)]}
    assert await store.counts(["MADE-UP"]) == {"MADE-UP": 0.0}


async def test_the_embedded_store_keeps_the_cap():
    store = MemoryRecs()
    for i in range(40):
        await store.add(Occurrences(pairs={("A", f"P{i:02d}"): float(i + 1)}), cap=10)
    kept = await store.neighbours(["A"], 100)
    assert len(kept["A"]) <= 12 and kept["A"][:10] == [
        (f"P{i:02d}", i + 1.0) for i in range(39, 29, -1)
    ]
