"""What a feed builder receives and returns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from app.catalog import Catalog
from app.stores.protocols import Product, Profile

Item = dict[str, Any]

CURRENCY_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥", "CHF": "CHF "}


@dataclass(frozen=True, slots=True)
class FeedContext:
    """One reader's profile (read-only: it may be shared with other requests), the
    catalog, the feed's query options and the request's deadline (`loop.time()`)."""

    profile: Profile
    catalog: Catalog
    limit: int
    deadline: float

    async def products(self, skus: Sequence[str]) -> dict[str, Product]:
        return await self.catalog.products(skus, self.deadline)

    async def popular(self, limit: int) -> list[Product]:
        return await self.catalog.popular(limit, self.deadline)


FeedBuilder = Callable[[FeedContext], Awaitable[list[Item]]]


def personalized(profile: Profile) -> bool:
    """False when the reader declined personalization: then no behavioural data is used."""
    consent = profile.get("consent") or {}
    return consent.get("personalization", True) is not False


def tracked(profile: Profile) -> bool:
    """False when the reader declined tracking: then links go straight to their target."""
    consent = profile.get("consent") or {}
    return consent.get("tracking", True) is not False


def money(amount: float, currency: str | None) -> str:
    """A price for display, e.g. '€39.00'; unknown currencies as '39.00 XYZ'."""
    if currency is None:
        return f"{amount:,.2f}"
    symbol = CURRENCY_SYMBOLS.get(currency)
    if symbol is None:
        return f"{amount:,.2f} {currency}"
    return f"{symbol}{amount:,.0f}" if currency == "JPY" else f"{symbol}{amount:,.2f}"


DISPLAY_MEMO_SIZE = 100_000


class SharedItem(dict[str, Any]):
    """A product as displayed, shared by every reader shown it (one object per catalog
    copy of the product and `source`): never to be changed. A template's loop over such
    items renders each item's body once for all readers (app/render/layout.py)."""

    __slots__ = ()


# (sku, source) -> (the catalog product, its display item)
_display: dict[Any, tuple[Item, SharedItem]] = {}


def display_item(product: Item, source: str) -> SharedItem:
    """The display fields of `product` as cached by the catalog, with `source`
    ("personal" or "popular"): the same object while the catalog holds that product."""
    key = (product.get("sku"), source)
    memo = _display.get(key)
    if memo is not None and memo[0] is product:
        return memo[1]
    item = SharedItem(product_item(product), source=source)
    if len(_display) >= DISPLAY_MEMO_SIZE:
        del _display[next(iter(_display))]
    _display[key] = (product, item)
    return item


def product_item(product: Item) -> Item:
    """The display fields of a catalog product."""
    price = product.get("price")
    currency = product.get("currency")
    return {
        "sku": product["sku"],
        "title": product.get("title", ""),
        "price": price,
        "currency": currency,
        "price_display": money(price, currency) if price is not None else "",
        "image_url": product.get("image_url", ""),
        "url": product.get("url", ""),
        "category": product.get("category", ""),
    }
