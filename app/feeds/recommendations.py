"""The `recommendations` feed: the reader's stored picks, else popular items."""

from __future__ import annotations

from app.feeds.base import FeedContext, Item, display_item, personalized


async def build_recommendations(ctx: FeedContext) -> list[Item]:
    profile, limit = ctx.profile, ctx.limit
    in_cart = {line["sku"] for line in profile.get("cart") or []}
    items: list[Item] = []
    if personalized(profile):
        picks = sorted(
            profile.get("recommendations") or [], key=lambda r: -float(r.get("score", 0))
        )
        skus = [r["sku"] for r in picks if r["sku"] not in in_cart]
        products = await ctx.products(skus[: limit * 2])
        for sku in skus:
            if sku in products and len(items) < limit:
                items.append(display_item(products[sku], "personal"))
    if len(items) < limit:
        seen = {item["sku"] for item in items} | in_cart
        for product in await ctx.popular(limit + len(seen)):
            if product["sku"] not in seen and len(items) < limit:
                items.append(display_item(product, "popular"))
    return items
