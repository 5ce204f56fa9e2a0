"""The embedded recommendations store: co-occurrence and segment popularity in dicts.

A product's neighbours are trimmed back to the cap once they pass it by a quarter, so a
trim (a sort) runs once per many additions rather than on each.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from app.stores.memory import NAME
from app.stores.protocols import Occurrences

SLACK = 1.25


class MemoryRecs:
    name = NAME

    def __init__(self) -> None:
        self._neighbours: dict[str, dict[str, float]] = {}
        self._items: dict[str, float] = {}
        self._segments: dict[str, dict[str, float]] = {}

    async def add(self, batch: Occurrences, cap: int) -> None:
        neighbours = self._neighbours
        for (a, b), weight in batch.pairs.items():
            for one, other in ((a, b), (b, a)):
                row = neighbours.setdefault(one, {})
                row[other] = row.get(other, 0.0) + weight
                if len(row) > cap * SLACK:
                    neighbours[one] = _top(row, cap)
        items = self._items
        for sku, weight in batch.items.items():
            items[sku] = items.get(sku, 0.0) + weight
        for (segment, sku), weight in batch.segments.items():
            row = self._segments.setdefault(segment, {})
            row[sku] = row.get(sku, 0.0) + weight
            if len(row) > cap * SLACK:
                self._segments[segment] = _top(row, cap)

    async def neighbours(
        self, skus: Sequence[str], limit: int
    ) -> dict[str, list[tuple[str, float]]]:
        found = {}
        for sku in skus:
            row = self._neighbours.get(sku)
            if row:
                found[sku] = _ranked(row, limit)
        return found

    async def counts(self, skus: Sequence[str]) -> dict[str, float]:
        return {sku: self._items.get(sku, 0.0) for sku in skus}

    async def segment_popular(self, segment: str, limit: int) -> list[str]:
        return [sku for sku, _ in _ranked(self._segments.get(segment) or {}, limit)]


def _ranked(row: dict[str, float], limit: int) -> list[tuple[str, float]]:
    """The `limit` highest counts, highest first, ties in reverse sku order: the order
    of Redis's ZREVRANGE, so both stores answer alike."""
    return heapq.nlargest(limit, row.items(), key=lambda kv: (kv[1], kv[0]))


def _top(row: dict[str, float], cap: int) -> dict[str, float]:
    return dict(_ranked(row, cap))
