"""The `recommendations` feed: the reader's picks, else popular items."""

from __future__ import annotations

from app.feeds.base import FeedContext
from app.reader import Item


async def build_recommendations(ctx: FeedContext) -> list[Item]:
    reader = ctx.reader
    return list(await reader.recommendations(ctx.profile, ctx.limit, ctx.deadline, ctx.formats))
