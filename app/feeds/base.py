"""What a feed builder receives and returns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from app.reader import Item, ReaderData
from app.reader.formats import Formats
from app.stores.protocols import Profile


@dataclass(frozen=True, slots=True)
class FeedContext:
    """One reader's profile (read-only: it may be shared with other requests), the
    reader data layer, the feed's query options, the request's deadline
    (`loop.time()`) and how to write prices (the language of the email that asks)."""

    profile: Profile
    reader: ReaderData
    limit: int
    deadline: float
    formats: Formats | None = None


FeedBuilder = Callable[[FeedContext], Awaitable[list[Item]]]
