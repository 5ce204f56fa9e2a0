"""The `profile` feed: the reader's display fields (never contact details)."""

from __future__ import annotations

from app.feeds.base import FeedContext
from app.reader import Item

DISPLAY_FIELDS = ("first_name", "last_name", "tier", "loyalty_points", "locale")


async def build_profile(ctx: FeedContext) -> list[Item]:
    item = {field: ctx.profile.get(field) for field in DISPLAY_FIELDS}
    item["loyalty_points"] = item["loyalty_points"] or 0
    return [item]
