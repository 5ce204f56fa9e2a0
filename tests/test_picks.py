"""Open-time consistency of recommendation slots, on both stores: the product a reader
sees in slot k of a campaign is remembered at that first open, shown again at later
opens, and is where the slot's click link goes; erased with the reader."""

from __future__ import annotations

import asyncio
import html
import io
import json
import re
from urllib.parse import urlsplit

import httpx
from PIL import Image
from redis.crc import key_slot
from support import AUTH, TOKENS, free_port, image_url, serve

from app.app import create_app
from app.stores.redis.keys import picks_key, profile_key

FALLBACK = "https://shop.example.com/new"


def click_url(user: str, slot: int, *, campaign: str | None = "spring") -> str:
    token = TOKENS.sign("click", user, FALLBACK, campaign=campaign, params={"slot": slot})
    return f"/c/{token}"


async def open_slot(
    client: httpx.AsyncClient, user: str, slot: int, campaign: str = "spring"
) -> bytes:
    r = await client.get(image_url("product", user, campaign=campaign, slot=slot))
    assert r.status_code == 200 and "x-kairos-fallback" not in r.headers, r.headers
    Image.open(io.BytesIO(r.content)).verify()
    return r.content


async def click(client: httpx.AsyncClient, url: str) -> str:
    r = await client.get(url)
    assert r.status_code == 302, r.text
    return r.headers["location"]


async def test_a_slot_click_goes_to_the_product_the_reader_saw(any_client, any_app):
    # before any open: the slot's own target
    assert await click(any_client, click_url("ada", 0)) == FALLBACK
    seen = await open_slot(any_client, "ada", 0)  # ada's first pick: SKU-9
    assert await click(any_client, click_url("ada", 0)) == "https://shop.example.com/p/sku-9"
    await open_slot(any_client, "ada", 1)  # SKU-6
    assert await click(any_client, click_url("ada", 1)) == "https://shop.example.com/p/sku-6"

    # ada's picks change: later opens of the same campaign keep showing what she saw
    r = await any_client.patch(
        "/v1/profiles/ada",
        json={"recommendations": [{"sku": "SKU-4", "score": 0.99}]},
        headers=AUTH,
    )
    assert r.status_code == 200, r.text
    assert await open_slot(any_client, "ada", 0) == seen
    assert await click(any_client, click_url("ada", 0)) == "https://shop.example.com/p/sku-9"

    # another campaign is chosen afresh
    await open_slot(any_client, "ada", 0, campaign="summer")
    assert (
        await click(any_client, click_url("ada", 0, campaign="summer"))
        == "https://shop.example.com/p/sku-4"
    )
    # a click link without a slot is untouched
    plain = TOKENS.sign("click", "ada", FALLBACK, campaign="spring")
    assert await click(any_client, f"/c/{plain}") == FALLBACK


async def test_concurrent_first_opens_agree_on_one_product(any_client, any_app):
    answers = await asyncio.gather(
        *(any_client.get(image_url("product", "grace", campaign="c", slot=0)) for _ in range(20))
    )
    assert len({a.content for a in answers}) == 1
    assert await click(any_client, click_url("grace", 0, campaign="c")) == (
        "https://shop.example.com/p/sku-8"
    )


async def test_erasing_the_reader_erases_the_picks(any_client, any_app):
    await open_slot(any_client, "ada", 0)
    store = any_app.state.services.stores.picks
    assert await store.get_pick("ada", "spring", 0) == "SKU-9"
    assert (await any_client.delete("/v1/profiles/ada", headers=AUTH)).status_code == 204
    assert await store.get_pick("ada", "spring", 0) is None
    assert await click(any_client, click_url("ada", 0)) == FALLBACK


async def test_redis_keeps_picks_in_the_readers_hash_slot(redis_app_client, redis_client):
    await open_slot(redis_app_client, "ada", 2)
    assert redis_client.hgetall(picks_key("ada")) == {b"2:spring": b"SKU-3"}
    assert key_slot(picks_key("ada").encode()) == key_slot(profile_key("ada").encode())
    assert 0 < redis_client.ttl(picks_key("ada")) <= 90 * 86400


async def test_a_store_that_fails_sends_the_click_to_its_target(settings):
    app = create_app(
        settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", KAIROS_REDIS_TIMEOUT_MS=100)
    )
    async with serve(app) as client:
        assert await click(client, click_url("ada", 0)) == FALLBACK


async def test_a_rendered_slot_image_and_its_link_agree(settings, sources_copy):
    """End to end: a block embeds slot 1's live image and link at send time; the reader
    opens the image, then clicks the link, and lands on the product the image showed."""
    blocks, templates = sources_copy(templates=False)
    (blocks / "slot").mkdir()
    (blocks / "slot" / "block.json").write_text(json.dumps({"description": "probe"}))
    (blocks / "slot" / "block.mjml").write_text(
        "<mj-section><mj-column><mj-image src=\"{{ links.image('product', slot=1) }}\" "
        "href=\"{{ links.product_click(1, 'https://shop.example.com/new') }}\" />"
        "</mj-column></mj-section>\n"
    )
    (blocks / "slot" / "block.txt").write_text(
        "{{ links.product_click(1, 'https://shop.example.com/new') }}\n"
    )
    (templates / "slot_t").mkdir()
    (templates / "slot_t" / "template.json").write_text(
        json.dumps(
            {"subject": "x", "links": {"home": "https://shop.example.com/"}, "blocks": ["slot"]}
        )
    )
    app = create_app(settings(KAIROS_BLOCKS_DIR=blocks, KAIROS_TEMPLATES_DIR=templates))
    async with serve(app) as client:
        r = await client.post(
            "/v1/render",
            json={"template": "slot_t", "user_id": "grace", "campaign": "weekly-48"},
            headers=AUTH,
        )
        assert r.status_code == 200, r.text
        doc = r.json()
        src = html.unescape(re.search(r'src="([^"]*/v1/img/product\.png[^"]*)"', doc["html"])[1])
        href = html.unescape(re.search(r'href="([^"]*/c/[^"]*)"', doc["html"])[1])
        assert href.strip() in doc["text"]  # the same signed link in the text part
        assert await click(client, path_of(href)) == "https://shop.example.com/new"
        image = await client.get(path_of(src))
        assert image.status_code == 200 and "x-kairos-fallback" not in image.headers
        # grace's second pick is SKU-5: the image showed it, the link now goes there
        assert await click(client, path_of(href)) == "https://shop.example.com/p/sku-5"


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path
