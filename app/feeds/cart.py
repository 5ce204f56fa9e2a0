"""The `cart` feed: the reader's cart lines, completed from the catalog."""

from __future__ import annotations

from app.feeds.base import FeedContext
from app.reader import Item


async def build_cart(ctx: FeedContext) -> list[Item]:
    return await ctx.reader.cart(ctx.profile, ctx.limit, ctx.deadline, ctx.formats)
