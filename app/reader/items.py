"""Products as a reader sees them: display fields, and display items shared by readers.

A display item is the same for every reader shown the same product from the same
source, so renders share the work of displaying it (a product card's HTML is made once
per item: app/render/layout). What makes two items the same is written down in their
`share_key`, never inferred from object identity.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from app.caching import Bounded
from app.reader.formats import Formats

Item = dict[str, Any]

DISPLAY_MEMO_SIZE = 100_000


class DisplayItem(dict[str, Any]):
    """A product as displayed, shared by every reader shown it: never to be changed.
    `share_key` = (sku, source, catalog version of the product, language): equal keys,
    equal items."""

    __slots__ = ("share_key",)

    def __init__(self, fields: Item, share_key: Hashable) -> None:
        super().__init__(fields)
        self.share_key = share_key


def product_item(product: Item, formats: Formats) -> Item:
    """The display fields of a catalog product, its price as `formats` writes money."""
    price = product.get("price")
    currency = product.get("currency")
    if price is not None and type(price) not in (int, float):
        raise TypeError(f"a price must be a number, not {type(price).__name__}")
    return {
        "sku": product["sku"],
        "title": product.get("title", ""),
        "price": price,
        "currency": currency,
        "price_display": formats.money(price, currency) if price is not None else "",
        "image_url": product.get("image_url", ""),
        "url": product.get("url", ""),
        "category": product.get("category", ""),
    }


class DisplayItems:
    """The display items made so far, by share key (bounded: the oldest made goes first)."""

    def __init__(self, size: int = DISPLAY_MEMO_SIZE) -> None:
        self._items: Bounded[Hashable, DisplayItem] = Bounded(size)

    def get(self, product: Item, source: str, version: float, formats: Formats) -> DisplayItem:
        """The display item of `product` (at catalog `version`) from `source`
        ("personal" or "popular"), in the language of `formats`."""
        key = (product.get("sku"), source, version, formats.language)
        item = self._items.get(key)
        if item is None:
            item = DisplayItem({**product_item(product, formats), "source": source}, key)
            self._items.put(key, item)
        return item
