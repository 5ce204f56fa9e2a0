"""Demo readers and a demo catalog, loaded into the embedded store for newcomers."""

from __future__ import annotations

from pathlib import Path

from app.importer import product_row, profile_row, read_jsonl
from app.stores.bundle import Stores

HERE = Path(__file__).parent
CATALOG = HERE / "catalog.jsonl"
PROFILES = HERE / "profiles.jsonl"


async def load_demo(stores: Stores) -> tuple[int, int]:
    """Load the demo catalog and readers; returns (products, profiles)."""
    products = await stores.catalog.put_products(
        product_row(CATALOG, n, row) for n, row in read_jsonl(CATALOG)
    )
    profiles = await stores.profiles.put_many(
        profile_row(PROFILES, n, row) for n, row in read_jsonl(PROFILES)
    )
    return products, profiles
