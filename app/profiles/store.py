"""The protocol every profile store backend implements."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any, Protocol

Profile = dict[str, Any]
Product = dict[str, Any]
Updater = Callable[[Profile | None], Profile | None]


class ProfileStore(Protocol):
    """Readers' profiles and the shared catalog.

    Every method raises `app.errors.StoreUnavailable` when the backend cannot answer,
    and reads raise `app.errors.CorruptData` for a stored value that cannot be read.
    """

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
        """Erase the reader (profile and remembered picks); True if a profile existed."""
        ...

    async def get_pick(self, user_id: str, campaign: str | None, slot: int) -> str | None:
        """The sku shown to `user_id` in recommendation slot `slot` of `campaign`."""
        ...

    async def remember_pick(self, user_id: str, campaign: str | None, slot: int, sku: str) -> str:
        """Remember `sku` for that slot unless one is remembered already (atomically);
        returns the sku remembered, ours or the earlier one."""
        ...

    async def get_products(self, skus: Sequence[str]) -> dict[str, Product]: ...

    async def put_products(self, products: Iterable[Product]) -> int: ...

    async def popular(self, limit: int) -> list[str]: ...

    async def publish_change(self, user_id: str) -> None:
        """Tell every server sharing this store that `user_id` changed ('*': everyone)."""
        ...

    def changes(self, stop: asyncio.Event) -> AsyncIterator[str] | None:
        """The user ids other servers changed, until `stop` is set; None for a store no
        one else shares."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


def pick_field(campaign: str | None, slot: int) -> str:
    """How a (campaign, slot) is named among a reader's picks (the slot first: a
    campaign name may contain ':')."""
    return f"{slot}:{campaign or ''}"
