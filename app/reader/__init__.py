"""The reader's view: what every surface (feeds, renders, live images, picks) reads a
reader through. Consent, money formatting, cart lines joined with the catalog,
recommendations; surfaces never call each other for data."""

from app.reader.consent import personalized, subscribed, tracked
from app.reader.items import DisplayItem, Item, product_item
from app.reader.money import money
from app.reader.view import ReaderData

__all__ = [
    "DisplayItem",
    "Item",
    "ReaderData",
    "money",
    "personalized",
    "product_item",
    "subscribed",
    "tracked",
]
