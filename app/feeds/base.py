"""What a feed builder receives and returns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from app.reader import Item, ReaderData
from app.stores.protocols import Profile


@dataclass(frozen=True, slots=True)
class FeedContext:
    """One reader's profile (read-only: it may be shared with other requests), the
    reader data layer, the feed's query options and the request's deadline
    (`loop.time()`)."""

    profile: Profile
    reader: ReaderData
    limit: int
    deadline: float


FeedBuilder = Callable[[FeedContext], Awaitable[list[Item]]]
