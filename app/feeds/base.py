"""What a feed builder receives and returns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from app.catalog import Catalog
from app.profiles.store import Product, Profile

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


def money(amount: float, currency: str | None) -> str:
    """A price for display, e.g. '€39.00'; unknown currencies as '39.00 XYZ'."""
    if currency is None:
        return f"{amount:,.2f}"
    symbol = CURRENCY_SYMBOLS.get(currency)
    if symbol is None:
        return f"{amount:,.2f} {currency}"
    return f"{symbol}{amount:,.0f}" if currency == "JPY" else f"{symbol}{amount:,.2f}"


DISPLAY_MEMO_SIZE = 100_000
# sku -> (the catalog product, its display fields): every reader shows the same products.
_display: dict[Any, tuple[Item, Item]] = {}


def display_item(product: Item) -> Item:
    """`product_item(product)` for a product as cached by the catalog (not to be
    changed), remembered while the catalog holds that same product."""
    memo = _display.get(product.get("sku"))
    if memo is not None and memo[0] is product:
        return memo[1]
    item = product_item(product)
    if len(_display) >= DISPLAY_MEMO_SIZE:
        del _display[next(iter(_display))]
    _display[product.get("sku")] = (product, item)
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
