"""The recommender's ranking at serve time: what a reader's own signals point to.

Four sources are blended, each scaled to at most 1 and weighted (`WEIGHTS`):

- `personal`: the reader's stored picks (`profile["recommendations"]`), by their score;
- `related`: the neighbours of the products the reader viewed, carted and bought, by
  cosine co-occurrence, c(a,b) / sqrt(n(a)·n(b)), so a best-seller, which co-occurs with
  everything, does not neighbour everything; each seed weighs by its recency (the newest
  view 1, each older one `RECENCY` times the one after it);
- `recent`: the products the reader viewed lately themselves, by the same recency;
- `model`: the upstream model's ranking (`KAIROS_RECS_URL`), when it answers in time.

A product's score is the sum of its sources; its label is the source that gave most.
Exclusions (cart, bought, out of stock, hidden) and the fallbacks (popular within the
reader's primary segment, then overall) are the reader view's (app/reader/view.py).
The ranking does not depend on how many items are asked for, so the first k of a
longer list are the list of k: the feed, the grid and slot k of a card agree.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable
from types import MappingProxyType
from typing import Any

from app.recs.signals import distinct_skus, primary_segment
from app.recs.upstream import UpstreamModel
from app.stores.protocols import Profile, RecsStore

RECENCY = 0.8
VIEW_SEEDS = 8
PURCHASE_SEEDS = 6  # items of the newest purchases
PURCHASE_WEIGHT = 0.5  # a product bought is a seed, weaker than a fresh view
CART_WEIGHT = 1.0
NEIGHBOURS_PER_SEED = 40
SEGMENT_POPULAR = 50
UPSTREAM_CONTEXT = 10  # skus of each kind sent to the model
UPSTREAM_LIMIT = 20  # fixed, not the caller's limit: the ranking must not depend on it
WEIGHTS = MappingProxyType({"personal": 1.0, "related": 1.0, "recent": 0.6, "model": 1.0})
Ranked = list[tuple[str, str]]  # (sku, source), best first


class Recommender:
    """Without a store (and without a model) it ranks the stored picks alone."""

    def __init__(
        self, store: RecsStore | None = None, upstream: UpstreamModel | None = None
    ) -> None:
        self._store = store
        self.upstream = upstream

    async def personal(self, profile: Profile, deadline: float) -> Ranked:
        """The reader's products, best first, owned ones included (the caller excludes
        them); `TimeoutError` past `deadline` (a `loop.time()`)."""
        scores: dict[str, dict[str, float]] = {}
        _add(scores, "personal", stored_picks(profile))
        views = recent_views(profile)
        seeds = seeds_of(profile, views)
        asked = None
        if self.upstream is not None:
            asked = asyncio.ensure_future(self.upstream.ask(context(profile, views), deadline))
        try:
            if self._store is not None and seeds:
                _add(scores, "related", _scaled(await self._related(seeds, deadline)))
            _add(scores, "recent", {sku: RECENCY**i for i, sku in enumerate(views)})
            if asked is not None:
                _add(scores, "model", _by_rank(await asked))
        finally:
            if asked is not None and not asked.done():
                asked.cancel()
        return rank(scores)

    async def segment_popular(self, profile: Profile, deadline: float) -> list[str]:
        """The products most viewed and bought by readers of the reader's primary
        segment (none without one)."""
        segment = primary_segment(profile)
        if self._store is None or segment is None:
            return []
        async with asyncio.timeout_at(deadline):
            return await self._store.segment_popular(segment, SEGMENT_POPULAR)

    async def close(self) -> None:
        if self.upstream is not None:
            await self.upstream.close()

    async def _related(self, seeds: dict[str, float], deadline: float) -> dict[str, float]:
        assert self._store is not None
        async with asyncio.timeout_at(deadline):
            found = await self._store.neighbours(list(seeds), NEIGHBOURS_PER_SEED)
            if not found:
                return {}
            skus = set(seeds)
            for row in found.values():
                skus.update(sku for sku, _ in row)
            counts = await self._store.counts(sorted(skus))
        related: dict[str, float] = {}
        for seed, row in found.items():
            n_seed = counts.get(seed, 0.0)
            for sku, together in row:
                n_sku = counts.get(sku, 0.0)
                if n_seed > 0 and n_sku > 0:
                    cosine = together / math.sqrt(n_seed * n_sku)
                    related[sku] = related.get(sku, 0.0) + seeds[seed] * cosine
        return related


def stored_picks(profile: Profile) -> dict[str, float]:
    """The reader's stored picks by score, each product once at its best score."""
    picks = sorted(profile.get("recommendations") or [], key=lambda r: -float(r.get("score", 0)))
    found: dict[str, float] = {}
    for pick in picks:
        found.setdefault(pick["sku"], max(0.0, min(1.0, float(pick.get("score", 0)))))
    return found


def recent_views(profile: Profile) -> list[str]:
    """The skus the reader viewed lately, newest first (`VIEW_SEEDS` at most)."""
    return distinct_skus(profile.get("recent_views"), VIEW_SEEDS)


def seeds_of(profile: Profile, views: list[str]) -> dict[str, float]:
    """The products whose neighbours the reader may like, by weight: recent views by
    recency, the cart, the items of recent purchases."""
    seeds = {sku: RECENCY**i for i, sku in enumerate(views)}
    for line in profile.get("cart") or []:
        sku = line.get("sku") if isinstance(line, dict) else None
        if isinstance(sku, str):
            seeds[sku] = max(seeds.get(sku, 0.0), CART_WEIGHT)
    bought = 0
    for purchase in profile.get("purchases") or []:
        for item in (purchase.get("items") if isinstance(purchase, dict) else None) or []:
            sku = item.get("sku") if isinstance(item, dict) else None
            if isinstance(sku, str) and bought < PURCHASE_SEEDS:
                weight = PURCHASE_WEIGHT * RECENCY**bought
                seeds[sku] = max(seeds.get(sku, 0.0), weight)
                bought += 1
    return seeds


def context(profile: Profile, views: list[str]) -> dict[str, Any]:
    """What the upstream model is told: no reader id, only what it ranks from."""
    cart = [
        line["sku"]
        for line in profile.get("cart") or []
        if isinstance(line, dict) and isinstance(line.get("sku"), str)
    ]
    return {
        "recent_views": views[:UPSTREAM_CONTEXT],
        "cart": cart[:UPSTREAM_CONTEXT],
        "segment": primary_segment(profile),
        "limit": UPSTREAM_LIMIT,
    }


def rank(scores: dict[str, dict[str, float]]) -> Ranked:
    """Products by the weighted sum of their sources, each labelled with the source that
    gave most (ties: the order sources were added, then the order products were)."""
    totals = []
    for sku, parts in scores.items():
        weighted = {source: WEIGHTS[source] * value for source, value in parts.items()}
        label = max(weighted, key=lambda s: weighted[s])  # the first of equals
        totals.append((sum(weighted.values()), sku, label))
    totals.sort(key=lambda t: -t[0])  # stable: equal scores keep their order
    return [(sku, label) for _, sku, label in totals]


def _add(scores: dict[str, dict[str, float]], source: str, values: dict[str, float]) -> None:
    for sku, value in values.items():
        if value > 0 or source == "personal":  # a stored pick counts, whatever its score
            scores.setdefault(sku, {})[source] = value


def _scaled(values: dict[str, float]) -> dict[str, float]:
    """Scaled so the best is 1."""
    top = max(values.values(), default=0.0)
    return {sku: v / top for sku, v in values.items()} if top > 0 else {}


def _by_rank(values: dict[str, float]) -> dict[str, float]:
    """The model's scores as ranks (1 for its best, down to 1/n): a model's scale is
    its own, its order is what it means."""
    ordered: Iterable[str] = sorted(values, key=lambda s: -values[s])
    n = len(values)
    return {sku: (n - i) / n for i, sku in enumerate(ordered)}
