"""Open-time consistency of recommendation slots: the product a reader sees in slot k
of a campaign is chosen at their first open and remembered, so every later open shows
it again and the click link of slot k goes to exactly that product.

A pick is remembered with set-if-absent in the picks store (erased with the reader's
other data, see `Stores.erase`): two servers answering the same reader at once agree on
the first one written.
"""

from __future__ import annotations

import asyncio
import logging

from app.errors import CorruptData, StoreUnavailable
from app.profiles.cache import Lookup
from app.reader import ReaderData
from app.stores.protocols import PickStore, Product
from app.targets import UnsafeTarget, check_target

log = logging.getLogger("kairos.picks")


class Picks:
    def __init__(self, store: PickStore, reader: ReaderData, budget_s: float) -> None:
        self._store = store
        self._reader = reader
        self._catalog = reader.catalog
        self._budget_s = budget_s

    async def choose(
        self, user_id: str, lookup: Lookup, campaign: str | None, slot: int, deadline: float
    ) -> Product | None:
        """The product of slot `slot` for this reader: the one remembered, else the
        reader's recommendation at that rank now (then remembered); None when there is
        none. Raises `TimeoutError` at `deadline` (a `loop.time()`) and
        `StoreUnavailable` when the store is down."""
        assert lookup.profile is not None
        memo, key = lookup.memo, ("pick", campaign, slot)
        sku = memo.get(key) if memo is not None else None
        if sku is None:
            async with asyncio.timeout_at(deadline):
                sku = await self._store.get_pick(user_id, campaign, slot)
            if sku is None:
                items = await self._reader.recommendations(lookup.profile, slot + 1, deadline)
                if len(items) <= slot:
                    return None
                async with asyncio.timeout_at(deadline):
                    sku = await self._store.remember_pick(
                        user_id, campaign, slot, items[slot]["sku"]
                    )
            if memo is not None:
                memo[key] = sku  # picks never change: safe to keep with the profile
        products = await self._catalog.products([sku], deadline)
        return products.get(sku)

    async def target(self, user_id: str, campaign: str | None, slot: int) -> str | None:
        """Where a click on slot `slot` goes: the remembered product's page, or None
        (no pick yet, product gone, unsafe URL, store down or slow)."""
        deadline = asyncio.get_running_loop().time() + self._budget_s
        try:
            async with asyncio.timeout_at(deadline):
                sku = await self._store.get_pick(user_id, campaign, slot)
            if sku is None:
                return None
            product = (await self._catalog.products([sku], deadline)).get(sku)
            if product is None:
                return None
            return check_target(product.get("url", ""))
        except (TimeoutError, StoreUnavailable, CorruptData, UnsafeTarget) as exc:
            log.info("click on slot %d: remembered product unavailable: %r", slot, exc)
            return None
