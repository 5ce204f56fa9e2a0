"""Opens and clicks recorded as events (app/campaigns/tracking.py, app/routes/opens.py):
one event per reader and campaign (per link for clicks), machines flagged, consent
respected, and the pixel and the redirect answered whatever the store does."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from support import API_KEY, AUTH, TOKENS, free_port, serve

from app.app import create_app

HUMAN_UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko)"


def pixel(user: str, campaign: str = "spring", variant: str = "A") -> str:
    return f"/v1/px/{TOKENS.sign('pixel', user, '', campaign=campaign, variant=variant)}.gif"


def click(user: str, url: str, campaign: str = "spring") -> str:
    # A link token signed for its reader carries the variant itself (no `r` token).
    return f"/c/{TOKENS.sign('click', user, url, campaign=campaign, variant='A')}"


async def variant_a(client: httpx.AsyncClient, campaign: str = "spring") -> dict[str, Any]:
    """The campaign's figures of variant A."""
    r = await client.get(f"/v1/campaigns/{campaign}/stats", headers=AUTH)
    assert r.status_code == 200, r.text
    [row] = [v for v in r.json()["variants"] if v["variant"] == "A"]
    found: dict[str, Any] = row
    return found


async def settled(app: Starlette) -> None:
    await app.state.services.tracker.drained()


async def profile(client: httpx.AsyncClient, user: str) -> dict[str, Any]:
    r = await client.get(f"/v1/profiles/{user}", headers=AUTH)
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return found


async def history(app: Starlette, user: str) -> list[bytes]:
    events: list[bytes] = await app.state.services.stores.events.history(user)
    return events


async def test_an_open_is_one_event_per_reader_and_campaign(
    any_app: Starlette, any_client: httpx.AsyncClient
) -> None:
    for _ in range(3):
        r = await any_client.get(pixel("ada"), headers={"User-Agent": HUMAN_UA})
        assert r.status_code == 200 and r.headers["content-type"] == "image/gif"
    await any_client.get(pixel("ada", "autumn"), headers={"User-Agent": HUMAN_UA})
    await settled(any_app)
    ada = await profile(any_client, "ada")
    assert ada["counters"]["email_open"] == 2  # spring once, autumn once
    assert ada["engagement"]["last_open"] == ada["last_seen"]
    kept = [e for e in await history(any_app, "ada") if b"email_open" in e]
    assert len(kept) == 2 and all(b'"machine":null' in e for e in kept)
    assert all(b'"variant":"A"' in e for e in kept)
    a = await variant_a(any_client)
    assert (a["human_opens_unique"], a["machine_opens"]) == (1, 0)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"User-Agent": "Mozilla/5.0"}, "apple_mpp"),
        ({}, "no_user_agent"),
        ({"User-Agent": "curl/8.5.0"}, "http_library"),
    ],
)
async def test_a_machines_open_is_flagged_and_engages_no_one(
    app: Starlette, client: httpx.AsyncClient, headers: dict[str, str], reason: str
) -> None:
    client.headers.pop("user-agent", None)
    r = await client.get(pixel("hedy"), headers=headers)
    assert r.status_code == 200
    await settled(app)
    hedy = await profile(client, "hedy")
    assert hedy["counters"]["email_open"] == 1
    assert "last_open" not in hedy.get("engagement", {})
    [kept] = [e for e in await history(app, "hedy") if b"email_open" in e]
    assert f'"machine":"{reason}"'.encode() in kept
    a = await variant_a(client)
    assert (a["human_opens_unique"], a["machine_opens"], a["open_rate"]) == (0, 1, None)
    # The reader's own open after a machine's (a prefetch on delivery) is not its
    # duplicate: it is recorded, and counts as a person's.
    await client.get(pixel("hedy"), headers={"User-Agent": HUMAN_UA})
    await client.get(pixel("hedy"), headers=headers)
    await settled(app)
    assert (await profile(client, "hedy"))["counters"]["email_open"] == 2
    a = await variant_a(client)
    assert (a["human_opens_unique"], a["machine_opens"]) == (1, 1)


async def test_a_click_is_one_event_per_link(app: Starlette, client: httpx.AsyncClient) -> None:
    shoes, hats = "https://shop.example.com/shoes", "https://shop.example.com/hats"
    for url in (shoes, shoes, hats):
        r = await client.get(click("ada", url), headers={"User-Agent": HUMAN_UA})
        assert r.status_code == 302 and r.headers["location"] == url
    await settled(app)
    ada = await profile(client, "ada")
    assert ada["counters"]["email_click"] == 2
    assert "last_click" in ada["engagement"]
    # A scanner's HEAD is flagged and counted, not taken for the reader's click.
    await client.head(click("hedy", shoes), headers={"User-Agent": HUMAN_UA})
    await settled(app)
    hedy = await profile(client, "hedy")
    assert hedy["counters"]["email_click"] == 1 and "last_click" not in hedy.get("engagement", {})
    # Unique readers: ada's two links are one clicker; hedy's scanner is no clicker.
    a = await variant_a(client)
    assert (a["clicks_unique"], a["machine_clicks"]) == (1, 1)


async def test_nothing_is_recorded_for_a_reader_who_declined_tracking(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    # grace declined tracking in the demo data
    assert (await client.get(pixel("grace"))).status_code == 200
    assert (await client.get(click("grace", "https://shop.example.com/x"))).status_code == 302
    await settled(app)
    assert "counters" not in await profile(client, "grace")
    assert await history(app, "grace") == []
    r = await client.get("/v1/campaigns/spring/stats", headers=AUTH)
    assert r.status_code == 404  # nothing counted for the campaign


async def test_unattributed_fetches_record_nothing(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    shared = f"/c/{TOKENS.sign('click', '', 'https://shop.example.com/x', campaign='c')}"
    assert (await client.get(shared)).status_code == 302
    await settled(app)
    assert app.state.services.metrics.events.children == {}


async def test_the_pixel_and_the_redirect_answer_with_the_store_down(settings: Any) -> None:
    # Nothing listens on the port: every store call fails.
    app = create_app(settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"))
    async with serve(app) as client:
        assert (await client.get(pixel("ada"))).status_code == 200
        r = await client.get(click("ada", "https://shop.example.com/x"))
        assert r.status_code == 302
        await settled(app)
        metrics = (await client.get("/metrics")).text
    assert 'kairos_tracking_lost_total{reason="store"} 2.0' in metrics
    assert API_KEY not in metrics
