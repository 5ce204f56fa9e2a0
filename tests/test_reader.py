"""The reader data layer (app/reader/): cart lines joined with the catalog,
recommendations (the reader's picks, then popular), consent, money, and display items
shared by every reader shown the same product, over a real catalog on the embedded
store."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.fallbacks import Fallback, Reason
from app.reader import DisplayItem, ReaderData, money, personalized, tracked
from app.reader.catalog import Catalog
from app.reader.formats import Formats
from app.stores.memory import MemoryCatalog

PRODUCTS: list[dict[str, Any]] = [
    {
        "sku": "LAMP",
        "title": "Brass lamp",
        "price": 39.0,
        "currency": "EUR",
        "popularity": 5,
        "image_url": "https://cdn.example/lamp.jpg",
        "url": "https://shop.example/p/lamp",
        "category": "lighting",
    },
    {"sku": "THROW", "title": "Wool throw", "price": 20.0, "currency": "EUR", "popularity": 9},
    {"sku": "CHAIR", "title": "Chair", "price": 120.0, "currency": "EUR", "popularity": 1},
    {"sku": "VASE", "title": "Vase", "price": 4500, "currency": "JPY", "popularity": 7},
    {"sku": "MUG", "title": "Mug", "price": 12.5, "currency": "USD", "popularity": 3},
]
# Popularity order: THROW, VASE, LAMP, MUG, CHAIR.


def deadline() -> float:
    return asyncio.get_running_loop().time() + 1


@pytest.fixture
async def store() -> MemoryCatalog:
    store = MemoryCatalog()
    await store.put_products(PRODUCTS)
    return store


@pytest.fixture
def catalog(store: MemoryCatalog) -> Catalog:
    return Catalog(store)


@pytest.fixture
def reader(catalog: Catalog) -> ReaderData:
    return ReaderData(catalog)


def skus(items: list[Any]) -> list[tuple[str, str]]:
    return [(item["sku"], item["source"]) for item in items]


# --- cart ------------------------------------------------------------------------------


async def test_cart_lines_are_joined_with_the_catalog_with_line_totals(reader):
    profile = {"cart": [{"sku": "LAMP", "qty": 2}, {"sku": "VASE", "qty": 3}]}
    lamp, vase = await reader.cart(profile, 10, deadline())
    assert lamp == {
        "sku": "LAMP",
        "title": "Brass lamp",
        "price": 39.0,
        "currency": "EUR",
        "price_display": "€39.00",
        "image_url": "https://cdn.example/lamp.jpg",
        "url": "https://shop.example/p/lamp",
        "category": "lighting",
        "qty": 2,
        "line_total_display": "€78.00",
    }
    assert (vase["price_display"], vase["line_total_display"]) == ("¥4,500", "¥13,500")


async def test_a_cart_line_keeps_its_own_fields_over_the_catalogs(reader):
    # The price the reader put in the cart at; products gone from the catalog are left
    # out (a line's own title and price alone would sell what the shop no longer has).
    profile = {
        "cart": [
            {"sku": "LAMP", "price": 35.0, "currency": "EUR"},
            {"sku": "GONE", "title": "Old stool", "price": 5.0, "currency": "GBP", "qty": 4},
            {"sku": "GHOST"},
        ]
    }
    [lamp] = await reader.cart(profile, 10, deadline())
    assert (lamp["title"], lamp["price_display"], lamp["qty"]) == ("Brass lamp", "€35.00", 1)
    assert lamp["line_total_display"] == "€35.00"
    lines = await reader.cart_lines(profile, 10, deadline())
    assert lines.items == [lamp] and lines.missing == ["GONE", "GHOST"]


async def test_cart_prices_are_written_in_the_language_asked(reader):
    profile = {"cart": [{"sku": "LAMP", "price": 1234.5, "qty": 2}]}
    [german] = await reader.cart(profile, 10, deadline(), Formats("de-DE"))
    shown = (german["price_display"], german["line_total_display"])
    assert shown == ("1.234,50\xa0€", "2.469,00\xa0€")
    [english] = await reader.cart(profile, 10, deadline())
    assert english["price_display"] == "€1,234.50"


async def test_the_cart_is_cut_at_the_limit_in_order(reader):
    profile = {"cart": [{"sku": s} for s in ("MUG", "LAMP", "CHAIR")]}
    assert [i["sku"] for i in await reader.cart(profile, 2, deadline())] == ["MUG", "LAMP"]
    assert await reader.cart({}, 4, deadline()) == []
    assert await reader.cart({"cart": None}, 4, deadline()) == []


# --- recommendations ---------------------------------------------------------------------


READER = {
    "cart": [{"sku": "MUG"}],
    "recommendations": [
        {"sku": "CHAIR", "score": 0.2},
        {"sku": "LAMP", "score": 0.9},
        {"sku": "MUG", "score": 0.5},  # in the cart: left out
        {"sku": "NOT-IN-CATALOG", "score": 1.0},
    ],
}


async def test_recommendations_by_score_without_cart_items_topped_up_with_popular(reader):
    items = await reader.recommendations(READER, 4, deadline())
    assert skus(items) == [
        ("LAMP", "personal"),
        ("CHAIR", "personal"),
        ("THROW", "popular"),
        ("VASE", "popular"),
    ]
    assert all(isinstance(item, DisplayItem) for item in items)
    assert items[0]["price_display"] == "€39.00"
    assert items[0]["url"] == "https://shop.example/p/lamp"


async def test_recommendations_stop_at_the_limit(reader):
    assert skus(await reader.recommendations(READER, 1, deadline())) == [("LAMP", "personal")]
    assert await reader.recommendations(READER, 0, deadline()) == []


async def test_a_reader_with_no_picks_gets_popular_products(reader):
    items = await reader.recommendations({}, 3, deadline())
    assert skus(items) == [("THROW", "popular"), ("VASE", "popular"), ("LAMP", "popular")]


async def test_the_popular_top_up_skips_what_the_reader_is_already_shown(reader):
    profile = {"recommendations": [{"sku": "VASE", "score": 1}]}
    items = await reader.recommendations(profile, 3, deadline())
    assert skus(items) == [("VASE", "personal"), ("THROW", "popular"), ("LAMP", "popular")]


@pytest.mark.parametrize(
    "consent",
    [{"personalization": False}, {"personalization": False, "tracking": True}],
)
async def test_a_reader_who_declined_personalization_gets_only_popular(reader, consent):
    items = await reader.recommendations({**READER, "consent": consent}, 4, deadline())
    # Their picks are not used; what is in their cart is still not offered again.
    assert skus(items) == [
        ("THROW", "popular"),
        ("VASE", "popular"),
        ("LAMP", "popular"),
        ("CHAIR", "popular"),
    ]


async def test_a_product_is_recommended_once(reader):
    profile = {"recommendations": [{"sku": "LAMP", "score": 0.9}, {"sku": "LAMP", "score": 0.4}]}
    items = await reader.recommendations(profile, 3, deadline())
    assert skus(items) == [("LAMP", "personal"), ("THROW", "popular"), ("VASE", "popular")]


# --- display items shared by readers ------------------------------------------------------


async def test_the_same_product_is_the_same_display_item_for_every_reader(reader, catalog):
    ada = await reader.recommendations({"recommendations": [{"sku": "LAMP"}]}, 2, deadline())
    grace = await reader.recommendations(
        {"recommendations": [{"sku": "LAMP", "score": 3}], "cart": [{"sku": "VASE"}]},
        2,
        deadline(),
    )
    assert skus(ada) == [("LAMP", "personal"), ("THROW", "popular")]
    assert skus(grace) == [("LAMP", "personal"), ("THROW", "popular")]
    for mine, theirs in zip(ada, grace, strict=True):
        assert mine is theirs
        assert mine.share_key == theirs.share_key
    lamp = ada[0]
    assert lamp.share_key == ("LAMP", "personal", catalog.version("LAMP"), "en")
    assert catalog.version("LAMP") > 0


async def test_the_same_product_from_another_source_is_another_item(reader):
    [personal] = await reader.recommendations(
        {"recommendations": [{"sku": "THROW"}]}, 1, deadline()
    )
    [popular] = await reader.recommendations({}, 1, deadline())
    assert (personal["sku"], popular["sku"]) == ("THROW", "THROW")
    assert personal is not popular
    assert personal.share_key != popular.share_key
    assert (personal["source"], popular["source"]) == ("personal", "popular")


async def test_a_reloaded_product_is_a_new_item_with_a_new_share_key(reader, catalog, store):
    profile = {"recommendations": [{"sku": "LAMP"}]}
    [before] = await reader.recommendations(profile, 1, deadline())
    await store.put_products([{**PRODUCTS[0], "title": "Copper lamp", "price": 45.0}])
    [cached] = await reader.recommendations(profile, 1, deadline())
    assert cached is before  # the catalog's cached copy: nothing changed yet
    catalog.clear()
    [after] = await reader.recommendations(profile, 1, deadline())
    assert after is not before
    assert after.share_key != before.share_key
    assert after.share_key == ("LAMP", "personal", catalog.version("LAMP"), "en")
    assert (after["title"], after["price_display"]) == ("Copper lamp", "€45.00")
    assert (before["title"], before["price_display"]) == ("Brass lamp", "€39.00")


# --- stored data of the wrong shape ---------------------------------------------------------


BAD_CARTS = [
    ("a string", "not a list"),
    ("a number", 42),
    ("an object", {"sku": "LAMP"}),
    ("a list of strings", ["LAMP"]),
    ("a line without sku", [{"qty": 1}]),
    ("a line that is null", [None]),
    ("a qty that is not a number", [{"sku": "LAMP", "qty": "two"}]),
    ("a qty that is null", [{"sku": "LAMP", "qty": None}]),
    ("a price that is a string", [{"sku": "LAMP", "price": "39"}]),
    ("an unhashable sku", [{"sku": ["LAMP"]}]),
]


@pytest.mark.parametrize("cart", [c for _, c in BAD_CARTS], ids=[n for n, _ in BAD_CARTS])
async def test_a_cart_of_the_wrong_shape_asks_for_the_fallback(reader, cart: Any):
    with pytest.raises(Fallback) as caught:
        await reader.cart({"cart": cart}, 4, deadline())
    assert caught.value.reason is Reason.INVALID_DATA
    assert "cart" in str(caught.value)
    assert caught.value.__cause__ is not None


BAD_RECOMMENDATIONS = [
    ("a pick without sku", {"recommendations": [{"score": 1}]}),
    ("a string", {"recommendations": "LAMP"}),
    ("a pick that is null", {"recommendations": [None]}),
    ("a score that is not a number", {"recommendations": [{"sku": "LAMP", "score": "high"}]}),
    ("a cart of the wrong shape", {"cart": "not a list"}),
    ("a cart line without sku", {"cart": [{"qty": 2}]}),
]


@pytest.mark.parametrize(
    "profile", [p for _, p in BAD_RECOMMENDATIONS], ids=[n for n, _ in BAD_RECOMMENDATIONS]
)
async def test_recommendations_of_the_wrong_shape_ask_for_the_fallback(reader, profile: Any):
    with pytest.raises(Fallback) as caught:
        await reader.recommendations(profile, 4, deadline())
    assert caught.value.reason is Reason.INVALID_DATA
    assert "recommendations" in str(caught.value)


# --- consent and money ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ({}, True),
        ({"consent": None}, True),
        ({"consent": {}}, True),
        ({"consent": {"personalization": True}}, True),
        ({"consent": {"personalization": False}}, False),
        ({"consent": {"tracking": False}}, True),
    ],
)
def test_personalized(profile: dict[str, Any], expected: bool):
    assert personalized(profile) is expected


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ({}, True),
        ({"consent": {}}, True),
        ({"consent": {"tracking": True}}, True),
        ({"consent": {"tracking": False}}, False),
        ({"consent": {"personalization": False}}, True),
    ],
)
def test_tracked(profile: dict[str, Any], expected: bool):
    assert tracked(profile) is expected


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (39, "EUR", "€39.00"),
        (1234.5, "EUR", "€1,234.50"),
        (0.125, "USD", "$0.12"),
        (19.99, "GBP", "£19.99"),
        (4500, "JPY", "¥4,500"),
        (1234.5, "JPY", "¥1,234"),
        (12, "CHF", "CHF\xa012.00"),
        (39, "SEK", "SEK\xa039.00"),
        (1500.5, "XYZ", "XYZ\xa01,500.50"),
        (39, None, "39.00"),
        (0, "EUR", "€0.00"),
    ],
)
def test_money(amount: float, currency: str | None, shown: str):
    assert money(amount, currency) == shown


@pytest.mark.parametrize("stored", ["no", 0, ["tracking"], True])
def test_consent_stored_as_something_else_than_an_object_is_declined(stored: object):
    """Stored data the profile API would refuse must not switch tracking on."""
    profile = {"consent": stored}
    assert not personalized(profile)
    assert not tracked(profile)


def test_absent_consent_is_given():
    assert personalized({}) and tracked({})
    assert personalized({"consent": {}}) and tracked({"consent": {}})


async def test_recommendations_leave_out_what_was_bought_and_what_is_not_offered(store):
    """A product bought (among the purchases the profile keeps) or in the cart is never
    recommended; nor is one the catalog marks out of stock or hidden, personal or
    popular, and the list is topped up past them."""
    await store.put_products(
        [
            {"sku": "RUG", "title": "Rug", "price": 80.0, "currency": "EUR", "popularity": 10},
            {"sku": "BOWL", "title": "Bowl", "price": 8.0, "currency": "EUR", "popularity": 8},
        ]
    )
    reader = ReaderData(Catalog(store))
    profile = {
        "recommendations": [
            {"sku": "LAMP", "score": 0.9},
            {"sku": "CHAIR", "score": 0.8},
            {"sku": "MUG", "score": 0.7},
        ],
        "cart": [{"sku": "MUG", "qty": 1}],
        "purchases": [
            {"ts": "2026-12-01T10:00:00.000Z", "items": [{"sku": "LAMP", "qty": 1}]},
            "not a purchase",  # kept data of another shape is passed over
            {"items": [{"qty": 1}, "x"]},
        ],
    }
    # Popularity order: RUG, THROW, BOWL, VASE, LAMP, MUG, CHAIR.
    assert skus(await reader.recommendations(profile, 4, deadline())) == [
        ("CHAIR", "personal"),
        ("RUG", "popular"),
        ("THROW", "popular"),
        ("BOWL", "popular"),
    ]
    await store.put_products(
        [
            {**PRODUCTS[2], "in_stock": False},  # CHAIR
            {"sku": "RUG", "title": "Rug", "price": 80.0, "popularity": 10, "hidden": True},
            {**PRODUCTS[1], "in_stock": True, "hidden": False},  # THROW: still offered
        ]
    )
    reader = ReaderData(Catalog(store))  # a fresh catalog cache
    assert skus(await reader.recommendations(profile, 4, deadline())) == [
        ("THROW", "popular"),
        ("BOWL", "popular"),
        ("VASE", "popular"),
    ]
