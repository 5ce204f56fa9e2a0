"""What a kind's data step works with: the app's shared parts, and the one open."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from app.fallbacks import Fallback, Reason
from app.images.assets import Assets
from app.images.fonts import Fonts
from app.images.sources import SourceImages
from app.picks import Picks
from app.profiles.cache import CachedProfiles, Lookup
from app.reader.catalog import Catalog
from app.tokens import Grant


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """One open: the verified grant, the wall-clock time of the open (seconds) and the
    deadline for its data (`loop.time()`)."""

    grant: Grant
    now: float
    deadline: float

    def left(self) -> float:
        """Seconds of the budget left."""
        return max(0.0, self.deadline - asyncio.get_running_loop().time())


@dataclass(frozen=True, slots=True)
class ImageDeps:
    """Built once per app."""

    fonts: Fonts
    assets: Assets
    sources: SourceImages
    profiles: CachedProfiles
    catalog: Catalog
    picks: Picks

    async def reader(self, request: ImageRequest) -> Lookup:
        """The reader's profile within the budget, or `Fallback` saying why not."""
        user_id = request.grant.user_id
        lookup = await self.profiles.now(user_id, request.left())
        if lookup.profile is None:
            raise Fallback(lookup.reason or Reason.MISSING_PROFILE)
        return lookup
