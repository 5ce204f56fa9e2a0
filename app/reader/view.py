"""The reader data every surface reads: cart lines joined with the catalog, and
recommendations (the recommender's ranking, app/recs/recommender.py, then popular
products within the reader's primary segment, then overall).

Catalog reads are bounded by the caller's deadline (a `loop.time()`): past it they raise
`TimeoutError`, and `StoreUnavailable` when the store is down. Stored reader data of the
wrong shape (a cart that is not a list) raises `Fallback(Reason.INVALID_DATA)`.
"""

from __future__ import annotations

from typing import NamedTuple

from app.caching import Bounded
from app.fallbacks import Fallback, Reason
from app.reader.catalog import Catalog
from app.reader.consent import personalized
from app.reader.formats import Formats, LanguageError
from app.reader.items import DisplayItem, DisplayItems, Item, product_item
from app.recs.recommender import Ranked, Recommender
from app.stores.protocols import Product, Profile

# Languages whose formats are kept for feeds (templates declare a handful).
LANGUAGES = 64
# What stored data of the wrong shape raises when it is read as if it had the right one.
SHAPE_ERRORS = (KeyError, TypeError, ValueError, AttributeError)


class Cart(NamedTuple):
    """A reader's cart lines as shown, the skus of the lines left out because the
    catalog no longer has their product, and how many lines lie past the limit."""

    items: list[Item]
    missing: list[str]
    more: int = 0


class ReaderData:
    """Built once per app over the cached catalog and the recommender (without one: the
    reader's stored picks only); holds the shared display items. Prices are written as
    `formats` says (a render passes its template's), else in English."""

    def __init__(
        self,
        catalog: Catalog,
        display: DisplayItems | None = None,
        recommender: Recommender | None = None,
    ) -> None:
        self.catalog = catalog
        self._display = display or DisplayItems()
        self.recommender = recommender or Recommender()
        self.formats = Formats()
        self._languages: Bounded[str, Formats] = Bounded(LANGUAGES)

    def formats_for(self, language: object) -> Formats:
        """The formats of `language` (a tag signed into a feed URL), kept; English for
        none, or for a tag Babel does not know."""
        if not isinstance(language, str):
            return self.formats
        found = self._languages.get(language)
        if found is None:
            try:
                found = Formats(language)
            except LanguageError:
                found = self.formats
            self._languages.put(language, found)
        return found

    async def cart(
        self, profile: Profile, limit: int, deadline: float, formats: Formats | None = None
    ) -> list[Item]:
        """The first `limit` cart lines whose product the catalog has, completed from
        it, with line totals."""
        return (await self.cart_lines(profile, limit, deadline, formats)).items

    async def cart_lines(
        self, profile: Profile, limit: int, deadline: float, formats: Formats | None = None
    ) -> Cart:
        """`cart()`, and the skus of the lines among the first `limit` whose product
        the catalog no longer has: those are left out, never shown from the line's
        own fields alone."""
        formats = formats or self.formats
        try:
            every = profile.get("cart") or []
            lines = every[:limit]
            products = await self.catalog.products([line["sku"] for line in lines], deadline)
            items, missing = [], []
            for line in lines:
                product = products.get(line["sku"])
                if product is None:
                    missing.append(str(line["sku"]))
                    continue
                item = product_item({**product, **line}, formats)
                qty = int(line.get("qty", 1))
                item["qty"] = qty
                if item["price"] is not None:
                    total = item["price"] * qty
                    item["line_total_display"] = formats.money(total, item["currency"])
                items.append(item)
            return Cart(items, missing, max(len(every) - limit, 0))
        except SHAPE_ERRORS as exc:
            raise _invalid("cart", exc) from exc

    async def recommendations(
        self, profile: Profile, limit: int, deadline: float, formats: Formats | None = None
    ) -> list[DisplayItem]:
        """Up to `limit` products, each with its `source`: the recommender's ranking
        (`personal`, `related`, `recent`, `model`; none for a reader who declined
        personalization), then the most popular in the reader's primary segment
        (`segment`), then overall (`popular`); never a product in the cart or bought (the
        purchases the profile keeps), nor one the catalog marks `"in_stock": false` or
        `"hidden": true`. `TimeoutError` past `deadline` (a `loop.time()`)."""
        try:
            return await self._recommendations(profile, limit, deadline, formats or self.formats)
        except SHAPE_ERRORS as exc:
            raise _invalid("recommendations", exc) from exc

    async def _recommendations(
        self, profile: Profile, limit: int, deadline: float, formats: Formats
    ) -> list[DisplayItem]:
        owned = {line["sku"] for line in profile.get("cart") or []} | _bought(profile)
        items: list[DisplayItem] = []
        seen = set(owned)
        if personalized(profile):
            recommender = self.recommender
            ranked = await recommender.personal(profile, deadline)
            await self._take(items, ranked, seen, limit, deadline, formats)
            if len(items) < limit:
                segment = [
                    (s, "segment") for s in await recommender.segment_popular(profile, deadline)
                ]
                await self._take(items, segment, seen, limit, deadline, formats)
        if len(items) < limit:
            # More than needed: some may be out of stock or hidden.
            popular = await self.catalog.popular(2 * limit + len(seen), deadline)
            self._offer(items, [(p, "popular") for p in popular], seen, limit, formats)
        return items

    async def _take(
        self,
        items: list[DisplayItem],
        ranked: Ranked,
        seen: set[str],
        limit: int,
        deadline: float,
        formats: Formats,
    ) -> None:
        """Add the offered products of `ranked` not `seen` until there are `limit` items,
        reading the catalog a few more at a time than are missing."""
        ranked = [(sku, source) for sku, source in ranked if sku not in seen]
        start = 0
        while len(items) < limit and start < len(ranked):
            chunk = ranked[start : start + 2 * (limit - len(items)) + 2]
            start += len(chunk)
            products = await self.catalog.products([sku for sku, _ in chunk], deadline)
            found = [(products[sku], source) for sku, source in chunk if sku in products]
            self._offer(items, found, seen, limit, formats)

    def _offer(
        self,
        items: list[DisplayItem],
        products: list[tuple[Product, str]],
        seen: set[str],
        limit: int,
        formats: Formats,
    ) -> None:
        catalog, display = self.catalog, self._display
        for product, source in products:
            sku = str(product["sku"])
            if len(items) < limit and sku not in seen and offered(product):
                seen.add(sku)
                items.append(display.get(product, source, catalog.version(sku), formats))


def offered(product: dict[str, object]) -> bool:
    """Whether the catalog offers the product now: not `"in_stock": false`, not
    `"hidden": true`."""
    return product.get("in_stock") is not False and product.get("hidden") is not True


def _bought(profile: Profile) -> set[str]:
    """The skus of the purchases the profile keeps (the newest, `MAX_PURCHASES`)."""
    return {
        item["sku"]
        for purchase in profile.get("purchases") or []
        if isinstance(purchase, dict)
        for item in purchase.get("items") or []
        if isinstance(item, dict) and isinstance(item.get("sku"), str)
    }


def _invalid(what: str, exc: Exception) -> Fallback:
    return Fallback(Reason.INVALID_DATA, f"stored {what} data: {exc!r}")
