"""The `cart` feed: the reader's cart lines, completed from the catalog."""

from __future__ import annotations

from app.feeds.base import FeedContext, Item, money, product_item


async def build_cart(ctx: FeedContext) -> list[Item]:
    lines = (ctx.profile.get("cart") or [])[: ctx.limit]
    products = await ctx.products([line["sku"] for line in lines])
    items = []
    for line in lines:
        item = product_item({**products.get(line["sku"], {}), **line})
        qty = int(line.get("qty", 1))
        item["qty"] = qty
        if item["price"] is not None:
            item["line_total_display"] = money(item["price"] * qty, item["currency"])
        items.append(item)
    return items
