"""`product`: a product card (image, title, price) for recommendation slot k of this
reader, chosen at open time and remembered (see app/picks.py), so the slot's click link
leads to the product the reader saw.

The product image comes from the catalog's local assets (the product's `image`, a file
in KAIROS_CATALOG_ASSETS_DIR), else from its `image_url` when that host is in
KAIROS_UPSTREAM_HOSTS, fetched inside the budget; a product with neither gets a drawn
placeholder. An upstream that fails or is too slow gives the fallback card.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Mapping
from typing import ClassVar

from PIL import Image, ImageDraw

from app.fallbacks import Fallback, Reason
from app.images.base import (
    Color,
    Colour,
    Font,
    Int,
    Job,
    Limits,
    Param,
    Params,
    pixels,
)
from app.images.context import ImageRequest
from app.images.draw import contain, png
from app.images.fonts import Fonts
from app.images.kind import ImageKind
from app.images.sources import Source
from app.images.text import MIN_TEXT_PX, draw_line, fit, line, wrap
from app.links import MAX_SLOT
from app.reader import money
from app.stores.protocols import Product as CatalogProduct


class Product(ImageKind):
    name = "product"
    format = "png"
    limits = Limits(max_width=800, max_height=1200)
    not_drawn = ("slot",)
    params: ClassVar[Mapping[str, Param]] = {
        "slot": Int(0, MAX_SLOT, 0),
        "width": Int(100, 10_000, 300),
        "height": Int(100, 10_000, 400),
        "background": Color("#ffffff"),
        "color": Color("#1f2933"),
        "accent": Color("#b4472a"),
        "font": Font(),
    }

    async def prepare(self, request: ImageRequest, params: Params, style: str) -> Job:
        deps = self.deps
        lookup = await deps.reader(request)
        grant = request.grant
        product = await deps.picks.choose(
            grant.user_id, lookup, grant.campaign, params["slot"], request.deadline
        )
        if product is None:
            raise Fallback(Reason.MISSING_DATA, f"no product for slot {params['slot']}")
        title = " ".join(str(product.get("title") or "").split())
        price = product.get("price")
        price_display = (
            money(price, product.get("currency")) if isinstance(price, int | float) else ""
        )
        if deps.fonts.missing(params["font"], title + price_display):
            raise Fallback(Reason.UNSUPPORTED_TEXT, "the font cannot draw the product's title")
        source = await self._source(product, request.deadline)
        key: Hashable = (
            style,
            title,
            price_display,
            source.digest if source is not None else None,
        )
        image = source.image if source is not None else None
        return Job(key, functools.partial(render, params, image, title, price_display, deps.fonts))

    async def _source(self, product: CatalogProduct, deadline: float) -> Source | None:
        deps = self.deps
        name = product.get("image")
        path = deps.assets.catalog_image(name) if isinstance(name, str) else None
        if path is not None:
            return await deps.sources.local(path, deadline)
        url = product.get("image_url")
        if isinstance(url, str) and deps.sources.allowed(url):
            return await deps.sources.remote(url, deadline)
        return None  # nothing we may load: the card draws a placeholder


def render(
    params: Params, image: Image.Image | None, title: str, price: str, fonts: Fonts
) -> bytes:
    width, height = pixels(params)
    background: Colour = params["background"]
    card = Image.new("RGB", (width, height), background)
    pad = max(4, round(width * 0.06))
    smallest = MIN_TEXT_PX * params["density"]
    title_size = max(smallest, round(width * 0.062))
    price_size = max(smallest, round(width * 0.068))
    text_block = round(title_size * 2.5 + price_size * 1.6)
    side = max(16, min(width - 2 * pad, height - 2 * pad - text_block))
    box = (side, side)
    x0 = (width - side) // 2
    tint = _mix(background, params["color"], 0.06)
    if image is not None:
        card.paste(contain(image, box, tint), (x0, pad))
    else:
        card.paste(_placeholder(box, tint, params, title, fonts), (x0, pad))

    draw = ImageDraw.Draw(card)
    y = pad + side + round(title_size * 0.7)
    lines, _ = wrap(fonts, params["font"], title_size, title, width - 2 * pad, 2)
    for each in lines:
        draw_line(draw, (width // 2, y), each, params["color"], "center")
        y += round(title_size * 1.25)
    if price:
        _, shown = fit(fonts, params["font"], price, price_size, width - 2 * pad, smallest, 1)
        draw_line(
            draw, (width // 2, y + round(price_size * 0.3)), shown[0], params["accent"], "center"
        )
    return png(card, compress_level=4)


def _placeholder(
    box: tuple[int, int], tint: Colour, params: Params, title: str, fonts: Fonts
) -> Image.Image:
    """A tinted tile with the product's initial, for a product without a usable image."""
    tile = Image.new("RGB", box, tint)
    initial = line(fonts, params["font"], max(8, box[1] // 3), (title[:1] or "?").upper())
    top = (box[1] - initial.ascent - initial.descent) // 2
    draw_line(
        ImageDraw.Draw(tile),
        (box[0] // 2, top),
        initial,
        _mix(tint, params["color"], 0.35),
        "center",
    )
    return tile


def _mix(a: Colour, b: Colour, t: float) -> Colour:
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )
