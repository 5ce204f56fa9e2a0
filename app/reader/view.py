"""The reader data every surface reads: cart lines joined with the catalog, and
recommendations (the reader's own picks, then popular products).

Catalog reads are bounded by the caller's deadline (a `loop.time()`): past it they raise
`TimeoutError`, and `StoreUnavailable` when the store is down. Stored reader data of the
wrong shape (a cart that is not a list) raises `Fallback(Reason.INVALID_DATA)`.
"""

from __future__ import annotations

from app.fallbacks import Fallback, Reason
from app.reader.catalog import Catalog
from app.reader.consent import personalized
from app.reader.items import DisplayItem, DisplayItems, Item, product_item
from app.reader.money import money
from app.stores.protocols import Profile

# What stored data of the wrong shape raises when it is read as if it had the right one.
SHAPE_ERRORS = (KeyError, TypeError, ValueError, AttributeError)


class ReaderData:
    """Built once per app over the cached catalog; holds the shared display items."""

    def __init__(self, catalog: Catalog, display: DisplayItems | None = None) -> None:
        self.catalog = catalog
        self._display = display or DisplayItems()

    async def cart(self, profile: Profile, limit: int, deadline: float) -> list[Item]:
        """The first `limit` cart lines, completed from the catalog, with line totals."""
        try:
            lines = (profile.get("cart") or [])[:limit]
            products = await self.catalog.products([line["sku"] for line in lines], deadline)
            items = []
            for line in lines:
                item = product_item({**products.get(line["sku"], {}), **line})
                qty = int(line.get("qty", 1))
                item["qty"] = qty
                if item["price"] is not None:
                    item["line_total_display"] = money(item["price"] * qty, item["currency"])
                items.append(item)
            return items
        except SHAPE_ERRORS as exc:
            raise _invalid("cart", exc) from exc

    async def recommendations(
        self, profile: Profile, limit: int, deadline: float
    ) -> list[DisplayItem]:
        """Up to `limit` products: the reader's picks by score (none for a reader who
        declined personalization), then the most popular; never a product in the cart or
        bought (the purchases the profile keeps), nor one the catalog marks
        `"in_stock": false` or `"hidden": true`."""
        try:
            return await self._recommendations(profile, limit, deadline)
        except SHAPE_ERRORS as exc:
            raise _invalid("recommendations", exc) from exc

    async def _recommendations(
        self, profile: Profile, limit: int, deadline: float
    ) -> list[DisplayItem]:
        catalog, display = self.catalog, self._display
        owned = {line["sku"] for line in profile.get("cart") or []} | _bought(profile)
        items: list[DisplayItem] = []
        if personalized(profile):
            picks = sorted(
                profile.get("recommendations") or [], key=lambda r: -float(r.get("score", 0))
            )
            # A product once, in the rank of its best score (stored picks may repeat).
            skus = list(dict.fromkeys(r["sku"] for r in picks if r["sku"] not in owned))
            products = await catalog.products(skus[: limit * 2], deadline)
            for sku in skus:
                product = products.get(sku)
                if product is not None and offered(product) and len(items) < limit:
                    items.append(display.get(product, "personal", catalog.version(sku)))
        if len(items) < limit:
            seen = {item["sku"] for item in items} | owned
            # More than needed: some may be out of stock or hidden.
            for product in await catalog.popular(2 * limit + len(seen), deadline):
                sku = product["sku"]
                if sku not in seen and offered(product) and len(items) < limit:
                    items.append(display.get(product, "popular", catalog.version(sku)))
        return items


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
