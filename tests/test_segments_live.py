"""Segments end to end, over HTTP into the app, on a real redis-server and on the
embedded store: an event moves a reader into a segment within its request, overlapping
segments resolve by priority, a time window ends at read time with no event, a rules
change is evaluated from the kept history, templates show blocks by segment, the kept
`activity` is never shown and survives a PUT.

The evaluator reads the wall clock: time windows are tested with events whose `ts` lies
in the past. What the sweep finds with no new event, erasure, merges, and the routes of
the changes stream: tests/test_segments_sweep.py."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from support import AUTH, feed_url
from test_events_api import Kairos, Opener, ev
from test_events_api import kairos as kairos  # the fixture, used by name
from test_segments_reload import write

from app.events.clock import format_ms, parse_ms

Json = dict[str, Any]
Live = Callable[..., AbstractAsyncContextManager[Kairos]]

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
NONE: Json = {"primary": None, "all": []}


# --- helpers ---------------------------------------------------------------------------------


def key(entry_id: str) -> tuple[int, int]:
    """An entry id as a sortable pair."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def now_ms() -> int:
    return int(time.time() * 1000)


def at(ms: int) -> str:
    """A time in UTC milliseconds, as an event's `ts`."""
    return format_ms(ms)


def views(user: str, sku: str, times: list[int], prefix: str = "v") -> list[Json]:
    """Product views of `sku` at `times` (ms), with stable event ids (for repeats)."""
    return [
        ev("product_view", user, eid=f"{prefix}-{user}-{sku}-{i}", ts=at(t), sku=sku)
        for i, t in enumerate(times)
    ]


def purchase(
    user: str, total: float, currency: str = "EUR", *, sku: str = "P-1", **kw: Any
) -> Json:
    items = [{"sku": sku, "qty": 1, "price": total}]
    return ev("purchase", user, items=items, total=total, currency=currency, **kw)


async def segments_of(k: Kairos, user: str) -> Json:
    found = await k.profile(user)
    assert found is not None, user
    segments: Json = found["segments"]
    return segments


async def changes(k: Kairos, after: str = "0", limit: int = 1000) -> Json:
    r = await k.client.get(
        "/v1/segments/changes", params={"after": after, "limit": limit}, headers=AUTH
    )
    assert r.status_code == 200, r.text
    body: Json = r.json()
    assert set(body) == {"changes", "next"}, body
    return body


async def entries(k: Kairos, user: str | None = None) -> list[tuple[str, str, str]]:
    """(user, segment, change) of every kept entry, oldest first (of `user` only)."""
    found = (await changes(k))["changes"]
    for entry in found:
        assert set(entry) == {"id", "user_id", "segment", "change", "ts"}, entry
    return [
        (e["user_id"], e["segment"], e["change"])
        for e in found
        if user is None or e["user_id"] == user
    ]


async def swept(k: Kairos, user: str, expected: list[tuple[str, str, str]]) -> None:
    """The reader's entries become `expected` once the sweep takes the readers reads
    noticed: called here, though the server's own loop (every second) may take them
    first."""
    await k.app.state.services.sweep.noticed()
    deadline = time.monotonic() + 2.0
    while (found := await entries(k, user)) != expected:
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.05)


async def members(k: Kairos) -> dict[str, int]:
    r = await k.client.get("/v1/segments", headers=AUTH)
    assert r.status_code == 200, r.text
    return {s["name"]: s["members"] for s in r.json()["segments"]}


@pytest.fixture
def live(kairos: Opener) -> Live:
    """`async with live(**env) as k:` the app without demo readers (so every member and
    entry is the test's own) and without the periodic due sweep (tests call it)."""

    def open_app(**env: Any) -> AbstractAsyncContextManager[Kairos]:
        return kairos(**{"KAIROS_DEMO_DATA": "false", "KAIROS_SEGMENTS_SWEEP_S": "0", **env})

    return open_app


@pytest.fixture
async def k(live: Live) -> AsyncIterator[Kairos]:
    async with live() as running:
        yield running


# --- counts, keyed per key, within one request -------------------------------------------------


async def test_the_same_sku_viewed_three_times_in_24h_enters_browsing_intent_once(
    k: Kairos,
) -> None:
    now = now_ms()
    three = views("bi-1", "LAMP-1", [now - 23 * HOUR, now - 2 * HOUR, now - MINUTE])
    await k.post(three[:2])
    assert await segments_of(k, "bi-1") == NONE
    assert await entries(k) == []

    await k.post(three[2:])
    assert await segments_of(k, "bi-1") == {
        "primary": "browsing_intent",
        "all": ["browsing_intent"],
    }
    [entry] = (await changes(k))["changes"]
    assert (entry["user_id"], entry["segment"], entry["change"]) == (
        "bi-1",
        "browsing_intent",
        "entered",
    )
    assert abs(parse_ms(entry["ts"]) - now_ms()) < 60_000  # when it was recorded
    assert entry["id"] == (await changes(k))["next"]

    # Retried: all duplicates, nothing recorded again; a 4th view keeps it in, no entry.
    body = await k.post(three)
    assert (body["accepted"], body["duplicates"]) == (0, 3)
    await k.post(views("bi-1", "LAMP-1", [now], prefix="w"))
    assert await entries(k) == [("bi-1", "browsing_intent", "entered")]
    assert await members(k) == {
        "vip": 0,
        "cart_abandoner": 0,
        "browsing_intent": 1,
        "dormant": 0,
    }


async def test_keyed_counts_are_per_sku_and_within_the_window(k: Kairos) -> None:
    now = now_ms()
    # Three views, three skus: no sku reaches 3.
    await k.post(
        [
            *views("mix", "A-1", [now - 3 * MINUTE]),
            *views("mix", "B-1", [now - 2 * MINUTE]),
            *views("mix", "C-1", [now - MINUTE]),
        ]
    )
    # Two of one sku in the window, the third one 24h and a second ago: out of it.
    await k.post(views("old", "A-1", [now - DAY - 1000, now - HOUR, now - MINUTE]))
    # Two of one sku and one of another.
    await k.post(
        [*views("pair", "A-1", [now - 2 * MINUTE, now - MINUTE]), *views("pair", "B-1", [now])]
    )
    for user in ("mix", "old", "pair"):
        assert await segments_of(k, user) == NONE, user
    # The third view of one sku, in a later request, is the one that counts.
    await k.post(views("pair", "A-1", [now], prefix="again"))
    assert (await segments_of(k, "pair"))["all"] == ["browsing_intent"]
    assert await entries(k) == [("pair", "browsing_intent", "entered")]
    assert (await members(k))["browsing_intent"] == 1


# --- priorities --------------------------------------------------------------------------------


async def test_overlapping_segments_resolve_by_priority(k: Kairos) -> None:
    now = now_ms()
    await k.post([purchase("big", 600), *views("big", "LAMP-1", [now - 3, now - 2, now - 1])])
    assert await segments_of(k, "big") == {
        "primary": "vip",
        "all": ["vip", "browsing_intent"],
    }
    # vip is spend > 500 EUR: 500 is not, 500.01 is; dollars do not count.
    await k.post([purchase("edge", 200), purchase("edge", 300)])
    await k.post([purchase("usd", 900, "USD")])
    assert await segments_of(k, "edge") == NONE
    assert await segments_of(k, "usd") == NONE
    await k.post([purchase("edge", 0.01)])
    assert await segments_of(k, "edge") == {"primary": "vip", "all": ["vip"]}

    # Dormant (known 61 days, no open) and browsing: the browsing outranks it; an open
    # leaves dormant.
    await k.post([ev("page_view", "sleepy", ts=at(now - 61 * DAY))])
    assert await segments_of(k, "sleepy") == {"primary": "dormant", "all": ["dormant"]}
    await k.post(views("sleepy", "RUG-2", [now - 3, now - 2, now - 1]))
    assert await segments_of(k, "sleepy") == {
        "primary": "browsing_intent",
        "all": ["browsing_intent", "dormant"],
    }
    await k.post([ev("email_open", "sleepy", campaign="c1")])
    assert await segments_of(k, "sleepy") == {
        "primary": "browsing_intent",
        "all": ["browsing_intent"],
    }

    assert sorted(await entries(k)) == sorted(
        [
            ("big", "vip", "entered"),
            ("big", "browsing_intent", "entered"),
            ("edge", "vip", "entered"),
            ("sleepy", "dormant", "entered"),
            ("sleepy", "browsing_intent", "entered"),
            ("sleepy", "dormant", "exited"),
        ]
    )
    assert await members(k) == {"vip": 2, "cart_abandoner": 0, "browsing_intent": 2, "dormant": 0}


# --- time windows end at read time -------------------------------------------------------------


async def test_a_window_that_ends_takes_the_reader_out_at_read_time_with_no_event(
    k: Kairos,
) -> None:
    ends = now_ms() + 2000  # the oldest view leaves the 24h window 2 s from now
    await k.post(views("fading", "LAMP-1", [ends - DAY, ends - DAY + 10, ends - DAY + 20]))
    feed = feed_url("profile", "fading")
    assert (await k.client.get(feed)).status_code == 200  # read while in: nothing moved
    assert (await segments_of(k, "fading"))["all"] == ["browsing_intent"]
    assert await k.app.state.services.sweep.noticed() == 0

    await asyncio.sleep(max(0.0, (ends - now_ms()) / 1000) + 0.1)
    assert await segments_of(k, "fading") == NONE  # no event: the read re-evaluated
    # A feed read finds the move too, and queues the reader for the sweep to record.
    assert (await k.client.get(feed)).status_code == 200
    await swept(
        k,
        "fading",
        [("fading", "browsing_intent", "entered"), ("fading", "browsing_intent", "exited")],
    )
    assert (await members(k))["browsing_intent"] == 0


# --- a rules change, evaluated from history ----------------------------------------------------

VIEWERS = """
[segments.viewer]
priority = 20
rule = { count = "product_view", at_least = 2, within = "1h" }
"""
# Another event type and a property the first rules never kept.
READERS = """
[segments.journal_reader]
priority = 30
rule = { count = "page_view", at_least = 2, within = "1h", per = "title" }
"""


async def rules_changed(k: Kairos, path: Path) -> None:
    """Reader `rc` in `viewer` (recorded), then the rules file rewritten to READERS, which
    read what `rc`'s kept activity never kept (page views, by title)."""
    now = now_ms()
    await k.post(
        [
            *views("rc", "A-1", [now - 2 * MINUTE, now - MINUTE]),
            ev("page_view", "rc", ts=at(now - 3 * MINUTE), title="Light a small room"),
            ev("page_view", "rc", ts=at(now - 2 * MINUTE), title="Light a small room"),
        ]
    )
    assert await segments_of(k, "rc") == {"primary": "viewer", "all": ["viewer"]}
    assert await entries(k) == [("rc", "viewer", "entered")]
    write(path, READERS, tick=1)


async def test_a_rules_change_applies_to_the_kept_history_with_nothing_ingested_again(
    live: Live, tmp_path: Path
) -> None:
    path = tmp_path / "segments.toml"
    write(path, VIEWERS, tick=0)
    async with live(KAIROS_SEGMENTS_FILE=str(path)) as k:
        await rules_changed(k, path)
        kept = len(await k.history("rc"))
        deadline = time.monotonic() + 1.5  # the file is looked at once a second
        while (found := await segments_of(k, "rc"))["all"] != ["journal_reader"]:
            assert time.monotonic() < deadline, found
            await asyncio.sleep(0.1)
        assert found == {"primary": "journal_reader", "all": ["journal_reader"]}
        assert len(await k.history("rc")) == kept  # nothing ingested again
        r = await k.client.get("/v1/segments", headers=AUTH)
        assert [s["name"] for s in r.json()["segments"]] == ["journal_reader"]


# "kept": this server wrote the reader last, so ingest starts from its own copy of the
# profile, with no read; a regression test: its stale activity was once rebuilt only for
# readers read from the store, and the reader lost the segments its history holds.
@pytest.mark.parametrize("copy", ["kept", "dropped"])
async def test_after_a_rules_change_the_next_event_records_the_membership_from_history(
    live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, copy: str
) -> None:
    path = tmp_path / "segments.toml"
    write(path, VIEWERS, tick=0)
    async with live(KAIROS_SEGMENTS_FILE=str(path)) as k:
        services = k.app.state.services
        await rules_changed(k, path)
        monkeypatch.setattr(services.segments, "_check_every_s", 0)
        if copy == "dropped":  # as if another server wrote the reader last
            services.profiles.invalidate("rc")
        # The reader's next event (of a type neither rule reads) records the move.
        await k.post([ev("custom:wishlist", "rc", sku="A-1")])
        assert await segments_of(k, "rc") == {
            "primary": "journal_reader",
            "all": ["journal_reader"],
        }
        assert await entries(k) == [
            ("rc", "viewer", "entered"),
            ("rc", "viewer", "exited"),
            ("rc", "journal_reader", "entered"),
        ]
        assert await members(k) == {"journal_reader": 1}
        stored = await k.stores.profiles.get("rc")
        assert stored is not None
        assert stored["activity"]["v"] == services.segments.needs.stamp
        # Rebuilt from the history: the page views and the property the new rule reads.
        assert "Light a small room" in json.dumps(stored["activity"])
        assert stored["segments"] == {"primary": "journal_reader", "all": ["journal_reader"]}


# --- templates ---------------------------------------------------------------------------------

MARKS = (
    "\n{% if segment == 'vip' %}MARK-VIP-PRIMARY{% endif %}"
    "{% if 'cart_abandoner' in segments %}MARK-CART{% endif %}"
    "{% if not segments %}MARK-NONE{% endif %}\n"
)


async def test_templates_show_blocks_by_the_segments_events_put_the_reader_in(
    live: Live, sources_copy: Callable[..., tuple[Path, Path]]
) -> None:
    blocks, templates = sources_copy()
    text = blocks / "text" / "block.txt"
    text.write_text(text.read_text() + MARKS)
    async with live(KAIROS_BLOCKS_DIR=str(blocks), KAIROS_TEMPLATES_DIR=str(templates)) as k:
        now = now_ms()
        cart = ev("add_to_cart", "cart-r", ts=at(now - 20 * MINUTE), sku="MUG-1", price=12)
        await k.post(
            [
                purchase("vip-r", 800),
                cart,
                purchase("both-r", 700, ts=at(now - 30 * MINUTE)),
                ev("add_to_cart", "both-r", ts=at(now - 20 * MINUTE), sku="MUG-1"),
                ev("page_view", "plain-r"),
            ]
        )
        expected = {
            "vip-r": (["vip"], {"MARK-VIP-PRIMARY"}),
            "cart-r": (["cart_abandoner"], {"MARK-CART"}),
            "both-r": (["vip", "cart_abandoner"], {"MARK-VIP-PRIMARY", "MARK-CART"}),
            "plain-r": ([], {"MARK-NONE"}),
        }
        # Twice each, interleaved: parts shared between readers are kept per segments.
        for user in [*expected, *expected]:
            r = await k.client.post(
                "/v1/render", json={"template": "weekly_picks", "user_id": user}, headers=AUTH
            )
            assert r.status_code == 200, r.text
            doc = r.json()
            segments, marks = expected[user]
            assert doc["segments"] == segments, user
            shown = {m for m in ("MARK-VIP-PRIMARY", "MARK-CART", "MARK-NONE") if m in doc["text"]}
            assert shown == marks, user
            # The loyalty block is `when: {segment: vip}`: hidden from everyone else.
            assert ("Kairos Club" in doc["html"]) is ("vip" in segments), user


# --- the kept activity -------------------------------------------------------------------------


async def test_the_kept_activity_is_never_shown_and_a_put_keeps_it(k: Kairos) -> None:
    now = now_ms()
    await k.post([purchase("keep", 900), *views("keep", "LAMP-1", [now - 3, now - 2, now - 1])])
    both = {"primary": "vip", "all": ["vip", "browsing_intent"]}
    stored = await k.stores.profiles.get("keep")
    assert stored is not None and stored["activity"]["e"]["product_view"]
    activity = stored["activity"]

    found = await k.profile("keep")
    assert found is not None and "activity" not in found and found["segments"] == both
    r = await k.client.put("/v1/profiles/keep", json={"first_name": "Ada"}, headers=AUTH)
    assert r.status_code == 200 and "activity" not in r.json(), r.text
    r = await k.client.patch(
        "/v1/profiles/keep",
        json={"last_name": "Lovelace"},
        headers={**AUTH, "Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 200 and "activity" not in r.json(), r.text
    # A client cannot write it either.
    r = await k.client.put(
        "/v1/profiles/keep", json={"first_name": "Ada", "activity": {"e": {}}}, headers=AUTH
    )
    assert r.status_code in (200, 422), r.text
    assert "activity" not in r.json()

    stored = await k.stores.profiles.get("keep")
    assert stored is not None and stored["activity"] == activity
    found = await k.profile("keep")
    assert found is not None and found["first_name"] == "Ada" and "activity" not in found
    assert found["segments"] == both
    # The next event still counts from what was kept: a 4th view, segments unchanged.
    await k.post(views("keep", "LAMP-1", [now], prefix="w"))
    assert await segments_of(k, "keep") == both
    anonymous = await k.client.get("/v1/profiles/keep?anonymous=true", headers=AUTH)
    assert "activity" not in anonymous.text
    for name in ("profile", "cart", "recommendations"):
        r = await k.client.get(feed_url(name, "keep"))
        assert r.status_code == 200 and "activity" not in r.text
