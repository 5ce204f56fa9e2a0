"""Segments that change with time alone, found with no new event: the due-time index
that ingest sets, the sweep that claims and records them (called here with a clock
moved on, run by the server itself, and as `kairos worker` in a process of its own
against a real redis-server), the reader a read queued for it, erasure in the segment
store, merges, the segment store's lease and cap on both backends, and the routes that
read it: `/v1/segments` and its changes (paging, bad input, the API key)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from support import AUTH, assert_error, feed_url, serve
from test_cli import KAIROS, subprocess_env
from test_events_api import WRITE, WRITE_KEY, Kairos, ev
from test_events_api import kairos as kairos  # the fixture, used by name
from test_segments_live import (
    DAY,
    MINUTE,
    NONE,
    READERS,
    VIEWERS,
    Live,
    at,
    changes,
    entries,
    key,
    members,
    now_ms,
    purchase,
    segments_of,
    swept,
    views,
)
from test_segments_live import k as k  # the fixture, used by name
from test_segments_live import live as live  # the fixture, used by name
from test_segments_reload import write

from app.app import create_app
from app.settings import Settings
from app.stores.bundle import embedded_stores, redis_stores
from app.stores.protocols import SegmentChange
from app.stores.redis.keys import (
    SEGMENT_CHANGES_KEY,
    SEGMENT_COUNTS_KEY,
    SEGMENT_DUE_KEY,
    SEGMENT_OF_KEY,
)

SettingsFactory = Callable[..., Settings]
CART = ("cart-s", "cart_abandoner")


def added(user: str, ts_ms: int, sku: str = "MUG-1") -> dict[str, Any]:
    return ev("add_to_cart", user, ts=at(ts_ms), sku=sku, price=12, currency="EUR")


# --- the due sweep, with no new event ----------------------------------------------------------


async def test_an_idle_cart_is_found_by_the_sweep_with_no_new_event(
    k: Kairos, backend: str, request: pytest.FixtureRequest
) -> None:
    services, store = k.app.state.services, k.stores.segments
    now = now_ms()
    added_at = now - 10 * MINUTE
    await k.post([added("cart-s", added_at)])
    assert await segments_of(k, "cart-s") == NONE  # idle 10 minutes: not yet
    assert await entries(k) == []
    assert await services.sweep.due(now_ms=now) == 0  # due only at 15 minutes idle
    if backend != "embedded":
        client: redis.Redis = request.getfixturevalue("redis_client")
        assert client.zscore(SEGMENT_DUE_KEY, "cart-s") == added_at + 15 * MINUTE

    # Six minutes on, nothing sent: the sweep finds it.
    assert await services.sweep.due(now_ms=now + 6 * MINUTE) == 1
    assert await entries(k) == [(*CART, "entered")]
    assert (await members(k))["cart_abandoner"] == 1
    assert await store.segments_of("cart-s") == ("cart_abandoner",)
    stored = await k.stores.profiles.get("cart-s")
    assert stored is not None and stored["segments"]["all"] == ["cart_abandoner"]
    # Next due when the week the rule allows is over: not again before.
    assert await services.sweep.due(now_ms=now + 7 * MINUTE) == 0
    if backend != "embedded":
        assert client.zscore(SEGMENT_DUE_KEY, "cart-s") == added_at + 7 * DAY
    assert await entries(k) == [(*CART, "entered")]

    # The cart bought: out, recorded, and nothing due any more.
    await k.post([purchase("cart-s", 12, sku="MUG-1")])
    assert await entries(k) == [(*CART, "entered"), (*CART, "exited")]
    assert (await members(k))["cart_abandoner"] == 0
    assert await store.claim(now + 30 * DAY, 100, MINUTE) == []


async def test_a_cart_bought_before_it_is_due_never_enters(k: Kairos) -> None:
    now = now_ms()
    await k.post([added("cart-s", now - 10 * MINUTE)])
    await k.post([purchase("cart-s", 12, sku="MUG-1")])
    # The index may still hold the idle cart's time (ingest tells it only of earlier
    # times): the sweep then finds nothing to record, and the reader is due no more.
    await k.app.state.services.sweep.due(now_ms=now + 6 * MINUTE)
    assert await entries(k) == []
    assert await k.app.state.services.sweep.due(now_ms=now + 7 * MINUTE) == 0
    # A cart emptied another way is no abandoned cart either (the rule wants it full).
    await k.post([added("cart-r", now - 10 * MINUTE)])
    await k.post([ev("remove_from_cart", "cart-r", sku="MUG-1")])
    await k.app.state.services.sweep.due(now_ms=now + 6 * MINUTE)
    assert await entries(k) == []
    assert await segments_of(k, "cart-r") == NONE


async def test_the_servers_own_sweep_finds_an_idle_cart_within_its_interval(
    live: Live,
) -> None:
    async with live(KAIROS_SEGMENTS_SWEEP_S="1") as k:
        idle_at = now_ms() + 500  # 15 minutes idle half a second from now
        await k.post([added("cart-s", idle_at - 15 * MINUTE)])
        assert await segments_of(k, "cart-s") == NONE
        deadline = time.monotonic() + 3.0
        while await entries(k) != [(*CART, "entered")]:
            assert time.monotonic() < deadline, await entries(k)
            await asyncio.sleep(0.1)
        assert await segments_of(k, "cart-s") == {
            "primary": "cart_abandoner",
            "all": ["cart_abandoner"],
        }
        assert (await members(k))["cart_abandoner"] == 1


async def test_a_sweep_that_dies_after_claiming_loses_no_one(k: Kairos) -> None:
    now = now_ms()
    await k.post([added("cart-s", now - 10 * MINUTE)])
    store = k.stores.segments
    later = now + 6 * MINUTE
    # Claimed by a sweep that never recorded: leased for a minute, then due again.
    assert await store.claim(later, 10, MINUTE) == ["cart-s"]
    assert await k.app.state.services.sweep.due(now_ms=later + 1000) == 0
    assert await k.app.state.services.sweep.due(now_ms=later + MINUTE) == 1
    assert await entries(k) == [(*CART, "entered")]


# --- what a read finds -------------------------------------------------------------------------


async def test_after_a_rules_change_a_feed_read_queues_the_reader_for_the_sweep(
    live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "segments.toml"
    write(path, VIEWERS, tick=0)
    async with live(KAIROS_SEGMENTS_FILE=str(path)) as k:
        now = now_ms()
        await k.post(
            [
                ev("page_view", "rf", ts=at(now - 2 * MINUTE), title="Rugs"),
                ev("page_view", "rf", ts=at(now - MINUTE), title="Rugs"),
            ]
        )
        assert await entries(k) == []
        services = k.app.state.services
        monkeypatch.setattr(services.segments, "_check_every_s", 0)
        write(path, READERS, tick=1)
        assert (await k.client.get(feed_url("profile", "rf"))).status_code == 200
        await swept(k, "rf", [("rf", "journal_reader", "entered")])
        assert await members(k) == {"journal_reader": 1}


async def test_a_put_that_changes_a_profile_condition_is_recorded_by_the_sweep(
    k: Kairos,
) -> None:
    now = now_ms()
    await k.post([added("cart-p", now - 20 * MINUTE)])
    assert await entries(k) == [("cart-p", "cart_abandoner", "entered")]
    # A CRM sync without the cart: the rule's `cart exists` no longer holds.
    r = await k.client.put("/v1/profiles/cart-p", json={"first_name": "Ada"}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert await segments_of(k, "cart-p") == NONE
    # An event of a type the rule does not read, before the sweep: it changes nothing
    # the rule reads, and must not keep the old outcome standing for good.
    await k.post([ev("page_view", "cart-p")])
    await swept(
        k,
        "cart-p",
        [("cart-p", "cart_abandoner", "entered"), ("cart-p", "cart_abandoner", "exited")],
    )
    assert (await members(k))["cart_abandoner"] == 0
    assert await k.stores.segments.segments_of("cart-p") == ()
    stored = await k.stores.profiles.get("cart-p")
    assert stored is not None and stored["segments"] == NONE


# --- erasure -----------------------------------------------------------------------------------


async def test_erasure_forgets_the_reader_in_counts_due_index_and_stream(
    k: Kairos, backend: str, request: pytest.FixtureRequest
) -> None:
    now = now_ms()
    for user in ("gone-r", "stay-r"):
        await k.post(
            [
                purchase(user, 600),
                *views(user, "LAMP-1", [now - 3, now - 2, now - 1]),
                ev("add_to_cart", user, ts=at(now - 5 * MINUTE), sku="MUG-1"),
            ]
        )
    store = k.stores.segments
    assert await store.segments_of("gone-r") == ("vip", "browsing_intent")
    assert await members(k) == {"vip": 2, "cart_abandoner": 0, "browsing_intent": 2, "dormant": 0}

    r = await k.client.delete("/v1/profiles/gone-r", headers=AUTH)
    assert r.status_code == 204, r.text
    assert await members(k) == {"vip": 1, "cart_abandoner": 0, "browsing_intent": 1, "dormant": 0}
    assert await store.segments_of("gone-r") == ()
    assert {user for user, _, _ in await entries(k)} == {"stay-r"}
    assert await k.profile("gone-r") is None
    # Suppressed: its events are refused, nothing recorded for it again.
    r = await k.send(views("gone-r", "LAMP-1", [now, now, now], prefix="late"))
    assert r.status_code == 422 and r.json()["accepted"] == 0, r.text
    assert {e["code"] for e in r.json()["rejected"]} == {"suppressed"}
    if backend != "embedded":
        client: redis.Redis = request.getfixturevalue("redis_client")
        name = b"gone-r"
        assert client.hget(SEGMENT_OF_KEY, name) is None
        assert client.zscore(SEGMENT_DUE_KEY, name) is None
        assert client.zscore(SEGMENT_DUE_KEY, b"stay-r") is not None
        assert client.hget(SEGMENT_COUNTS_KEY, b"vip") == b"1"
        stream: Any = client.xrange(SEGMENT_CHANGES_KEY)
        assert [fields[b"user_id"] for _, fields in stream] == [b"stay-r"] * 2
        assert not [key for key in client.scan_iter() if name in key]
    # Due in 10 minutes (the cart): only the reader kept is claimed.
    assert await store.claim(now + DAY, 100, MINUTE) == ["stay-r"]


# --- merges ------------------------------------------------------------------------------------


async def test_a_merged_anonymous_reader_is_not_left_a_member(k: Kairos) -> None:
    now = now_ms()
    seen = [now - 3, now - 2, now - 1]
    await k.post(
        [
            ev("product_view", None, anon="visit-1", eid=f"a{i}", ts=at(t), sku="LAMP-1")
            for i, t in enumerate(seen)
        ]
    )
    assert (await members(k))["browsing_intent"] == 1
    await k.post([ev("identify", "merged-u", anon="visit-1", traits={"first_name": "Ada"})])
    assert (await segments_of(k, "merged-u"))["all"] == ["browsing_intent"]
    # The anonymous reader left with the merge; the user entered.
    await swept(k, "merged-u", [("merged-u", "browsing_intent", "entered")])
    assert await entries(k) == [
        ("~visit-1", "browsing_intent", "entered"),
        ("~visit-1", "browsing_intent", "exited"),
        ("merged-u", "browsing_intent", "entered"),
    ]
    assert await k.stores.segments.segments_of("~visit-1") == ()
    # One person, one member: the user, not also the anonymous reader merged into it.
    assert (await members(k))["browsing_intent"] == 1
    assert await k.stores.segments.segments_of("merged-u") == ("browsing_intent",)


# --- the segment store itself ------------------------------------------------------------------


async def test_the_changes_stream_is_capped(backend: str, request: pytest.FixtureRequest) -> None:
    cap = 1000  # the smallest KAIROS_SEGMENTS_STREAM_MAX allows
    if backend != "embedded":
        small = redis_stores(request.getfixturevalue("redis_url"), segments_cap=cap)
    else:
        small = embedded_stores(segments_cap=cap)
    try:
        now = now_ms()
        for start in range(0, 3000, 500):
            batch = [SegmentChange(f"r{i}", ("vip",), None) for i in range(start, start + 500)]
            assert await small.segments.record(batch, now) == 500
        kept = await small.segments.changes("0", 10_000)
        # Redis trims by whole nodes (MAXLEN ~): a little over the cap, never the lot.
        assert cap <= len(kept) <= cap + 200 if backend != "embedded" else len(kept) == cap
        assert kept[-1][1]["user_id"] == "r2999"
        assert await small.segments.counts() == {"vip": 3000}
    finally:
        await small.close()


async def test_a_redis_that_forgot_the_record_script_records_all_the_same(
    redis_url: str,
) -> None:
    stores = redis_stores(redis_url)
    try:
        with redis.Redis.from_url(redis_url) as client:
            client.script_flush()  # as a restarted Redis
        now = now_ms()
        assert await stores.segments.record([SegmentChange("s1", ("vip",), now + 5)], now) == 1
        assert await stores.segments.segments_of("s1") == ("vip",)
        assert await stores.segments.claim(now + 10, 10, 1000) == ["s1"]
    finally:
        await stores.close()


# --- /v1/segments and its changes --------------------------------------------------------------


async def test_the_segments_list_names_the_rules_file_and_every_rule(k: Kairos) -> None:
    r = await k.client.get("/v1/segments", headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["rules_file"] == "segments.toml"
    assert [(s["name"], s["priority"], s["members"]) for s in body["segments"]] == [
        ("vip", 50, 0),
        ("cart_abandoner", 40, 0),
        ("browsing_intent", 30, 0),
        ("dormant", 10, 0),
    ]
    assert all(isinstance(s["description"], str) and s["description"] for s in body["segments"])


async def test_changes_are_read_page_by_page_with_after_and_next(k: Kairos) -> None:
    now = now_ms()
    readers = [f"page-{i}" for i in range(5)]
    for user in readers:  # one request each: entries in this order
        await k.post(views(user, "LAMP-1", [now - 3, now - 2, now - 1]))
    everything = (await changes(k))["changes"]
    assert [e["user_id"] for e in everything] == readers
    ids = [e["id"] for e in everything]
    assert len(set(ids)) == 5

    seen, after = [], "0"
    for size in (2, 2, 1):
        page = await changes(k, after, 2)
        assert len(page["changes"]) == size
        assert page["next"] == page["changes"][-1]["id"]
        seen += page["changes"]
        after = page["next"]
    assert seen == everything
    empty = await changes(k, after, 2)
    assert empty == {"changes": [], "next": after}  # nothing new: start there again
    # A new entry is what the next call after it returns.
    await k.post([purchase("page-0", 999)])
    page = await changes(k, after, 2)
    assert [(e["user_id"], e["segment"], e["change"]) for e in page["changes"]] == [
        ("page-0", "vip", "entered")
    ]
    # `after` as a bare millisecond time: as "<ms>-0", entries after that one.
    ms = int(ids[2].split("-")[0])
    every = [e["id"] for e in (await changes(k))["changes"]]
    later = [e["id"] for e in (await changes(k, str(ms)))["changes"]]
    assert later == [i for i in every if key(i) > (ms, 0)]
    assert every == sorted(every, key=key) and len(every) == 6
    defaulted = await k.client.get("/v1/segments/changes", headers=AUTH)
    assert defaulted.status_code == 200 and len(defaulted.json()["changes"]) == 6


@pytest.mark.parametrize(
    "query",
    [
        {"after": "abc"},
        {"after": ""},
        {"after": "-1"},
        {"after": "1-2-3"},
        {"after": "1733480000000-"},
        {"after": "+"},
        {"after": "1" * 21},
        {"after": "1733480000000-0\n"},
        {"after": "(1733480000000-0"},
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "-1"},
        {"limit": "1.5"},
        {"limit": "ten"},
        {"limit": ""},
        {"limit": " 5"},
        {"limit": "9" * 30},
    ],
)
async def test_a_bad_after_or_limit_is_400(k: Kairos, query: dict[str, str]) -> None:
    r = await k.client.get("/v1/segments/changes", params=query, headers=AUTH)
    field = next(iter(query))
    error = assert_error(r, 400, f"invalid_{field}")
    assert error.get("field", field) == field


@pytest.mark.parametrize("limit", ["²", "١٠", "１０"])
async def test_a_limit_in_other_digits_than_ascii_is_400_not_500(k: Kairos, limit: str) -> None:
    # A regression test: str.isdigit() holds for each ("²" superscript, Arabic-Indic and
    # full-width digits), and int("²") raises ValueError: it was a 500.
    r = await k.client.get("/v1/segments/changes", params={"limit": limit}, headers=AUTH)
    assert_error(r, 400, "invalid_limit")


MAX_ID = "18446744073709551615-18446744073709551615"  # the largest Redis stream id


@pytest.mark.parametrize(
    "after", ["99999999999999999999", "18446744073709551616", "18446744073709551615", MAX_ID, "0-0"]
)
async def test_an_after_at_or_past_the_largest_entry_id_is_answered_not_503(
    k: Kairos, after: str
) -> None:
    await k.post(views("big-after", "LAMP-1", [now_ms() - 2, now_ms() - 1, now_ms()]))
    r = await k.client.get("/v1/segments/changes", params={"after": after}, headers=AUTH)
    if after == "0-0":
        assert r.status_code == 200 and len(r.json()["changes"]) == 1, r.text
        return
    # At or past the largest id Redis can spell (2^64 - 1): nothing after it, or a 400.
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        assert r.json() == {"changes": [], "next": after}
    else:
        assert_error(r, 400, "invalid_after")


@pytest.mark.parametrize("path", ["/v1/segments", "/v1/segments/changes"])
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key-0123456789"},
        {"Authorization": AUTH["Authorization"].replace("Bearer", "Basic")},
        {"Authorization": AUTH["Authorization"] + "x"},
    ],
    ids=["none", "wrong", "basic", "longer"],
)
async def test_the_segment_routes_need_the_api_key(
    k: Kairos, path: str, headers: dict[str, str]
) -> None:
    await k.post(views("secret-r", "LAMP-1", [now_ms() - 2, now_ms() - 1, now_ms()]))
    r = await k.client.get(path, headers=headers)
    assert r.status_code == 401, r.text
    assert "secret-r" not in r.text
    with contextlib.suppress(ValueError):
        assert "changes" not in r.json()


@pytest.mark.parametrize("path", ["/v1/segments", "/v1/segments/changes"])
async def test_a_public_write_key_reads_no_segments(k: Kairos, path: str) -> None:
    await k.post(views("secret-r", "LAMP-1", [now_ms() - 2, now_ms() - 1, now_ms()]))
    r = await k.client.get(path, headers=WRITE)
    assert_error(r, 403, "write_key_not_allowed")


# --- kairos worker -----------------------------------------------------------------------------


async def test_kairos_worker_records_an_idle_cart_and_exits_0_on_sigterm(
    settings: SettingsFactory, redis_url: str, tmp_path: Path
) -> None:
    # The server does not sweep (KAIROS_SEGMENTS_SWEEP_S=0): the worker must.
    env = {"KAIROS_DEMO_DATA": "false", "KAIROS_SEGMENTS_SWEEP_S": "0"}
    app = create_app(settings(REDIS_URL=redis_url, KAIROS_WRITE_KEYS=WRITE_KEY, **env))
    async with serve(cast(Any, app)) as client:
        k = Kairos(client, app)
        idle_at = now_ms() + 300
        await k.post([added("cart-w", idle_at - 15 * MINUTE)])
        assert await entries(k) == []
        env = subprocess_env(tmp_path, REDIS_URL=redis_url, KAIROS_WRITE_KEYS=WRITE_KEY)
        proc = await asyncio.create_subprocess_exec(
            str(KAIROS),
            "worker",
            "--every",
            "0.2",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 5.0
            while await entries(k) != [("cart-w", "cart_abandoner", "entered")]:
                assert proc.returncode is None, await proc.communicate()
                assert time.monotonic() < deadline, await entries(k)
                await asyncio.sleep(0.1)
            assert (await members(k))["cart_abandoner"] == 1
            stored = await k.stores.profiles.get("cart-w")
            assert stored is not None and stored["segments"]["all"] == ["cart_abandoner"]
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 10)
            assert proc.returncode == 0, err
            assert b"sweeping segments every 0.2 s" in err
            assert b"Traceback" not in err
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def test_kairos_worker_needs_redis(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(KAIROS), "worker"],
        env=subprocess_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "REDIS_URL" in result.stderr
