"""One protocol per concern; each has an embedded and a Redis backend.

Every method raises `app.errors.StoreUnavailable` when the backend cannot answer, and
reads raise `app.errors.CorruptData` for a stored value that cannot be read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any, Protocol

Profile = dict[str, Any]
Product = dict[str, Any]
Updater = Callable[[Profile | None], Profile | None]


class ProfileStore(Protocol):
    """Readers' profiles, by user id."""

    name: str

    async def get(self, user_id: str) -> Profile | None: ...

    async def put(self, user_id: str, profile: Profile) -> None: ...

    async def put_many(self, profiles: Iterable[tuple[str, Profile]]) -> int: ...

    async def update(self, user_id: str, change: Updater) -> Profile | None:
        """Apply `change` to the stored profile atomically and store what it returns.

        `change` gets the current profile (or None) and returns the new one, or None to
        leave the store untouched. Returns the profile as stored afterwards.
        """
        ...

    async def delete(self, user_id: str) -> bool:
        """Delete the profile only (erasure is `Stores.erase`); True if there was one."""
        ...


class CatalogStore(Protocol):
    """The products by sku, shared by all readers, and their popularity ranking."""

    name: str

    async def get_products(self, skus: Sequence[str]) -> dict[str, Product]:
        """The products found; an unknown or unreadable one is left out."""
        ...

    async def put_products(self, products: Iterable[Product]) -> int: ...

    async def popular(self, limit: int) -> list[str]:
        """The `limit` most popular skus, most popular first, ties in sku order."""
        ...


class Erasable(Protocol):
    """A store, besides the profiles, that holds data about readers: erasure forgets it."""

    async def forget(self, user_id: str) -> None:
        """Drop everything this store holds about the reader."""
        ...


class PickStore(Erasable, Protocol):
    """The product each reader was shown in each recommendation slot of a campaign."""

    name: str

    async def get_pick(self, user_id: str, campaign: str | None, slot: int) -> str | None: ...

    async def remember_pick(self, user_id: str, campaign: str | None, slot: int, sku: str) -> str:
        """Remember `sku` for that slot unless one is remembered already (atomically);
        returns the sku remembered, ours or the earlier one."""
        ...


class ChangeBus(Protocol):
    """Tells the servers sharing the stores which readers changed."""

    name: str

    async def publish_change(self, user_id: str) -> None:
        """Tell every server sharing the stores that `user_id` changed ('*': everyone)."""
        ...

    def changes(self, stop: asyncio.Event) -> AsyncIterator[str] | None:
        """The user ids other servers changed, until `stop` is set; None when no one
        else shares the stores."""
        ...


class Backend(Protocol):
    """What spans the stores of one backend: its health, its end, and erasure."""

    async def erase(self, user_id: str) -> bool:
        """Remove the reader from every store holding reader data (the profile and the
        picks) at once; True if a profile existed."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


def pick_field(campaign: str | None, slot: int) -> str:
    """How a (campaign, slot) is named among a reader's picks (the slot first: a
    campaign name may contain ':')."""
    return f"{slot}:{campaign or ''}"
