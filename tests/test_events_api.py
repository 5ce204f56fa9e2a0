"""Events in, over HTTP, on the embedded store and on a real redis-server: `POST /v1/events`
(each native type, its checks and its effect on the live profile), batches and their
limits, exact dedupe under retries and concurrent posters, identity merges, consent,
erasure with suppression and its audit, write keys, CORS, the Segment dialect as the
SDKs send it, and a store that is down or too slow."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
import pytest
import redis
from support import API_KEY, AUTH, RedisServer, assert_error, feed_url, free_port, image_url, serve

from app.app import create_app
from app.errors import StoreUnavailable
from app.events.clock import format_ms, parse_ms
from app.events.model import anonymous_reader
from app.settings import Settings
from app.stores.bundle import Stores

WRITE_KEY = "test-write-key-0123456789"
WRITE = {"Authorization": f"Bearer {WRITE_KEY}"}
BODY_KEYS = {"accepted", "duplicates", "dropped", "rejected"}
REJECTED_KEYS = {"index", "code", "message", "field"}
SHOP = "https://shop.example.com"

Json = dict[str, Any]


# --- helpers ---------------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    """A UTC time as the server writes it: '2026-12-06T10:00:00.123Z'."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ago(minutes: float = 0.0) -> str:
    """A time `minutes` before now, in the server's format (milliseconds, Z)."""
    return iso(datetime.now(UTC) - timedelta(minutes=minutes))


def ev(
    kind: str,
    user: str | None = "u1",
    *,
    anon: str | None = None,
    eid: str | None = None,
    ts: str | None = None,
    **properties: Any,
) -> Json:
    """A native event; a fresh event id unless `eid` is given."""
    event: Json = {"event_id": eid or f"e-{uuid.uuid4().hex}", "type": kind}
    if user is not None:
        event["user_id"] = user
    if anon is not None:
        event["anonymous_id"] = anon
    if ts is not None:
        event["ts"] = ts
    if properties:
        event["properties"] = properties
    return event


def basic(key: str) -> dict[str, str]:
    """Basic auth with the key as user name and no password, as the Segment SDKs send it."""
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def shape(body: Json) -> Json:
    """`body` is exactly a 202 answer: the four keys, each rejected entry complete."""
    assert set(body) == BODY_KEYS, body
    for name in ("accepted", "duplicates", "dropped"):
        assert isinstance(body[name], int) and body[name] >= 0
    for entry in body["rejected"]:
        assert set(entry) == REJECTED_KEYS, entry
        assert isinstance(entry["index"], int)
        assert isinstance(entry["code"], str) and entry["code"]
        assert isinstance(entry["message"], str) and entry["message"]
        assert entry["field"] is None or isinstance(entry["field"], str)
    return body


def counts(body: Json) -> tuple[int, int, int, list[tuple[int, str]]]:
    """(accepted, duplicates, dropped, [(index, code)...]) of an answer."""
    rejected = [(r["index"], r["code"]) for r in body["rejected"]]
    return body["accepted"], body["duplicates"], body["dropped"], rejected


@dataclass
class Kairos:
    """A running app (its lifespan entered) and an HTTP client to it."""

    client: httpx.AsyncClient
    app: Any

    @property
    def stores(self) -> Stores:
        stores: Stores = self.app.state.services.stores
        return stores

    async def send(
        self, events: list[Json] | Json, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        body = {"events": events} if isinstance(events, list) else events
        return await self.client.post("/v1/events", json=body, headers=headers or WRITE)

    async def post(self, events: list[Json] | Json, headers: dict[str, str] | None = None) -> Json:
        """Post and expect 202; the checked answer."""
        r = await self.send(events, headers)
        assert r.status_code == 202, r.text
        return shape(r.json())

    async def profile(self, user: str, *, anonymous: bool = False) -> Json | None:
        """The user's profile, or with `anonymous` the anonymous id's reader."""
        query = "?anonymous=true" if anonymous else ""
        r = await self.client.get(f"/v1/profiles/{user}{query}", headers=AUTH)
        if r.status_code == 404:
            assert_error(r, 404, "profile_not_found")
            return None
        assert r.status_code == 200, r.text
        body: Json = r.json()
        return body

    async def counters(self, user: str, *, anonymous: bool = False) -> dict[str, int]:
        found = await self.profile(user, anonymous=anonymous)
        return dict((found or {}).get("counters") or {})

    async def put_profile(self, user: str, doc: Json) -> None:
        r = await self.client.put(f"/v1/profiles/{user}", json=doc, headers=AUTH)
        assert r.status_code in (200, 201), r.text

    async def history(self, user: str, *, anonymous: bool = False) -> list[Json]:
        reader = anonymous_reader(user) if anonymous else user
        return [orjson.loads(raw) for raw in await self.stores.events.history(reader)]

    async def segment(
        self,
        call: str,
        body: Json,
        headers: dict[str, str] | None = None,
        *,
        compress: bool = False,
    ) -> httpx.Response:
        content = orjson.dumps(body)
        sent = {
            "Content-Type": "application/json",
            **(basic(WRITE_KEY) if headers is None else headers),
        }
        if compress:
            content = gzip.compress(content)
            sent["Content-Encoding"] = "gzip"
        return await self.client.post(f"/segment/v1/{call}", content=content, headers=sent)


Opener = Callable[..., AbstractAsyncContextManager[Kairos]]


@pytest.fixture
def kairos(
    backend: str, settings: Callable[..., Settings], request: pytest.FixtureRequest
) -> Opener:
    """`async with kairos(**env) as k:` the app on this test's backend (a flushed real
    redis-server, or the embedded store) with a write key and the demo catalog."""
    redis_url = request.getfixturevalue("redis_url") if backend != "embedded" else None

    @contextlib.asynccontextmanager
    async def open_app(**env: Any) -> AsyncIterator[Kairos]:
        base: dict[str, Any] = {
            "KAIROS_WRITE_KEYS": WRITE_KEY,
            "KAIROS_DEMO_DATA": "true",
            "REDIS_URL": redis_url,
        }
        app = create_app(settings(**{**base, **env}))
        async with serve(cast(Any, app)) as client:
            yield Kairos(client, app)

    return open_app


@pytest.fixture
async def k(kairos: Opener) -> AsyncIterator[Kairos]:
    """The app with default settings on this test's backend."""
    async with kairos() as running:
        yield running


# --- each native type, valid ---------------------------------------------------------------


async def test_a_page_view_counts_and_sets_first_and_last_seen(k: Kairos) -> None:
    early, late = ago(30), ago(10)
    body = await k.post([ev("page_view", ts=late, url="https://shop.example.com/")])
    assert body == {"accepted": 1, "duplicates": 0, "dropped": 0, "rejected": []}
    body = await k.post([ev("page_view", ts=early, title="Home")])
    assert counts(body) == (1, 0, 0, [])
    profile = await k.profile("u1")
    assert profile is not None
    assert profile["user_id"] == "u1"
    assert profile["counters"] == {"page_view": 2}
    # An event arriving late moves first_seen back, not last_seen.
    assert (profile["first_seen"], profile["last_seen"]) == (early, late)
    assert len(await k.history("u1")) == 2


async def test_a_single_event_object_is_accepted_without_a_list(k: Kairos) -> None:
    body = await k.post(ev("custom:signup", plan="pro"))
    assert counts(body) == (1, 0, 0, [])
    assert await k.counters("u1") == {"custom:signup": 1}


async def test_product_views_are_newest_first_one_per_sku_and_bounded(k: Kairos) -> None:
    times = [ago(100 - i) for i in range(25)]
    events = [ev("product_view", ts=t, sku=f"SKU-{i}") for i, t in enumerate(times)]
    # SKU-3 viewed again, the latest view of all.
    newest = ago(1)
    events.append(ev("product_view", ts=newest, sku="SKU-3", price=10, currency="EUR"))
    random.Random(7).shuffle(events)  # arrival order does not matter, times do
    assert counts(await k.post(events)) == (26, 0, 0, [])
    profile = await k.profile("u1")
    assert profile is not None
    views = profile["recent_views"]
    assert len(views) == 20
    assert views[0] == {"sku": "SKU-3", "ts": newest}
    assert [v["sku"] for v in views[1:]] == [f"SKU-{i}" for i in range(24, 5, -1) if i != 3]
    assert [v["ts"] for v in views] == sorted((v["ts"] for v in views), reverse=True)
    assert profile["counters"] == {"product_view": 26}


async def test_the_cart_follows_add_and_remove(k: Kairos) -> None:
    body = await k.post(
        [
            ev("add_to_cart", ts=ago(9), sku="SKU-1", qty=2),
            ev("add_to_cart", ts=ago(8), sku="SKU-1"),
            ev("add_to_cart", ts=ago(7), sku="SKU-2", title="Mug", price=9.5, currency="EUR"),
            ev("add_to_cart", ts=ago(6), sku="SKU-4", qty=5),
            ev("remove_from_cart", ts=ago(5), sku="SKU-1", qty=1),
            ev("remove_from_cart", ts=ago(4), sku="SKU-4"),  # no qty: the whole line
            ev("remove_from_cart", ts=ago(3), sku="SKU-404"),  # not in the cart: no change
        ]
    )
    assert counts(body) == (7, 0, 0, [])
    profile = await k.profile("u1")
    assert profile is not None
    assert profile["cart"] == [
        {"sku": "SKU-1", "qty": 2},
        {"sku": "SKU-2", "qty": 1, "title": "Mug", "price": 9.5, "currency": "EUR"},
    ]
    assert profile["counters"] == {"add_to_cart": 4, "remove_from_cart": 3}


async def test_a_purchase_clears_what_was_bought_and_adds_spend_per_currency(k: Kairos) -> None:
    await k.post(
        [
            ev("add_to_cart", ts=ago(20), sku="SKU-1", qty=2),
            ev("add_to_cart", ts=ago(19), sku="SKU-2"),
            ev("add_to_cart", ts=ago(18), sku="SKU-3"),
        ]
    )
    first, second, third = ago(10), ago(5), ago(2)
    body = await k.post(
        [
            ev(
                "purchase",
                ts=first,
                items=[{"sku": "SKU-1", "qty": 2, "price": 10.25}, {"sku": "SKU-3"}],
                total=20.5,
                currency="EUR",
                order_id="o-1",
            ),
            ev("purchase", ts=second, items=[{"sku": "SKU-9"}], total=0.1, currency="EUR"),
            ev("purchase", ts=third, items=[{"sku": "SKU-8", "qty": 3}], total=30, currency="USD"),
        ]
    )
    assert counts(body) == (3, 0, 0, [])
    profile = await k.profile("u1")
    assert profile is not None
    assert profile["cart"] == [{"sku": "SKU-2", "qty": 1}]
    assert profile["spend"] == {"EUR": 20.6, "USD": 30}
    assert profile["purchases"] == [
        {"ts": third, "total": 30, "currency": "USD", "items": [{"sku": "SKU-8", "qty": 3}]},
        {"ts": second, "total": 0.1, "currency": "EUR", "items": [{"sku": "SKU-9"}]},
        {
            "ts": first,
            "total": 20.5,
            "currency": "EUR",
            "items": [{"sku": "SKU-1", "qty": 2, "price": 10.25}, {"sku": "SKU-3"}],
            "order_id": "o-1",
        },
    ]
    assert profile["counters"] == {"add_to_cart": 3, "purchase": 3}


async def test_email_engagement_keeps_the_last_open_and_click(k: Kairos) -> None:
    opened, clicked, older = ago(3), ago(2), ago(50)
    body = await k.post(
        [
            ev("email_open", ts=opened, campaign="spring"),
            ev("email_click", ts=clicked, campaign="spring", url="https://shop.example.com/x"),
            ev("email_open", ts=older),  # an older open does not move last_open back
        ]
    )
    assert counts(body) == (3, 0, 0, [])
    profile = await k.profile("u1")
    assert profile is not None
    assert profile["engagement"] == {"last_open": opened, "last_click": clicked}
    assert profile["counters"] == {"email_open": 2, "email_click": 1}
    assert profile["first_seen"] == older


async def test_identify_traits_fill_known_fields_and_attributes(k: Kairos) -> None:
    await k.put_profile("u1", {"tier": "gold", "attributes": {"team": "orbits"}})
    body = await k.post(
        [
            ev(
                "identify",
                traits={
                    "first_name": "Ada",
                    "email": "ada@example.com",
                    "locale": "en-GB",
                    "timezone": "Europe/London",
                    "plan": "pro",
                    "seats": 3,
                },
            )
        ],
        AUTH,  # an API key: a write key sets only names, language and time zone
    )
    assert counts(body) == (1, 0, 0, [])
    profile = await k.profile("u1")
    assert profile is not None
    assert profile["first_name"] == "Ada"
    assert profile["email"] == "ada@example.com"
    assert (profile["locale"], profile["timezone"], profile["tier"]) == (
        "en-GB",
        "Europe/London",
        "gold",
    )
    assert profile["attributes"] == {"team": "orbits", "plan": "pro", "seats": 3}
    assert profile["counters"] == {"identify": 1}


async def test_a_write_key_sets_only_names_language_time_zone_and_withdrawals(
    k: Kairos,
) -> None:
    await k.put_profile("u1", {"tier": "gold", "email": "ada@example.com"})
    traits = {
        "first_name": "Ada",
        "locale": "en-GB",
        "email": "mallory@example.com",
        "tier": "platinum",
        "loyalty_points": 10**9,
        "consent": {"personalization": False, "tracking": True},
        "plan": "pro",
    }
    assert counts(await k.post([ev("identify", traits=traits)])) == (1, 0, 0, [])
    profile = await k.profile("u1")
    assert profile is not None
    assert (profile["first_name"], profile["locale"]) == ("Ada", "en-GB")
    assert (profile["email"], profile["tier"]) == ("ada@example.com", "gold")
    assert "loyalty_points" not in profile
    assert profile["consent"] == {"personalization": False}  # withdrawn, never granted
    assert profile["attributes"] == {"plan": "pro"}


async def test_custom_events_count_by_name(k: Kairos) -> None:
    body = await k.post(
        [ev("custom:Song Played", name="x"), ev("custom:Song Played"), ev("custom:a/b.c-d_e:f")]
    )
    assert counts(body) == (3, 0, 0, [])
    assert await k.counters("u1") == {"custom:Song Played": 2, "custom:a/b.c-d_e:f": 1}


async def test_ts_with_an_offset_is_normalized_to_utc(k: Kairos) -> None:
    moment = datetime.now(UTC).replace(microsecond=250000) - timedelta(hours=1)
    local = moment.astimezone(timezone_plus_two()).isoformat()
    assert local.endswith("+02:00")
    assert counts(await k.post([ev("product_view", ts=local, sku="SKU-1")])) == (1, 0, 0, [])
    profile = await k.profile("u1")
    assert profile is not None
    assert profile["first_seen"] == profile["last_seen"] == iso(moment)
    assert profile["recent_views"] == [{"sku": "SKU-1", "ts": iso(moment)}]


def timezone_plus_two() -> Any:
    from datetime import timezone

    return timezone(timedelta(hours=2))


async def test_ts_boundaries(k: Kairos) -> None:
    """Without ts the server's time is used; up to a day ahead and 2000 itself are fine."""
    now = datetime.now(UTC)
    untimed = ev("page_view")
    body = await k.post(
        [
            untimed,
            ev("page_view", ts=iso(datetime.now(UTC) + timedelta(hours=23))),
            ev("page_view", ts="2000-01-01T00:00:00Z"),
            ev("page_view", ts="2000-01-01T01:30:00+01:00"),  # 00:30 UTC
            ev("page_view", ts="2030-01-01T00:00:00"),  # no offset: UTC, but > a day ahead
        ]
    )
    assert counts(body)[:3] == (4, 0, 0)
    assert [(r["index"], r["code"], r["field"]) for r in body["rejected"]] == [
        (4, "invalid_ts", "ts")
    ]
    profile = await k.profile("u1")
    assert profile is not None
    assert profile["first_seen"] == "2000-01-01T00:00:00.000Z"
    # Kept in the history with the server's time (events older than the kept days are not).
    [kept] = [e for e in await k.history("u1") if e["event_id"] == untimed["event_id"]]
    assert abs((datetime.fromisoformat(kept["ts"]) - now).total_seconds()) < 5, kept


# --- each native type, invalid -------------------------------------------------------------

INVALID: list[tuple[str, Json, str, str | None]] = [
    ("product view without sku", ev("product_view", price=1), "missing_field", "properties.sku"),
    ("sku not a string", ev("product_view", sku=12), "invalid_field", "properties.sku"),
    ("sku with a space", ev("add_to_cart", sku="a b"), "invalid_field", "properties.sku"),
    ("add without sku", ev("add_to_cart", qty=1), "missing_field", "properties.sku"),
    ("qty zero", ev("add_to_cart", sku="SKU-1", qty=0), "invalid_field", "properties.qty"),
    ("qty a string", ev("add_to_cart", sku="SKU-1", qty="2"), "invalid_field", "properties.qty"),
    (
        "qty a float",
        ev("remove_from_cart", sku="SKU-1", qty=1.5),
        "invalid_field",
        "properties.qty",
    ),
    ("qty too big", ev("add_to_cart", sku="SKU-1", qty=10000), "invalid_field", "properties.qty"),
    ("qty true", ev("add_to_cart", sku="SKU-1", qty=True), "invalid_field", "properties.qty"),
    ("price negative", ev("product_view", sku="S", price=-1), "invalid_field", "properties.price"),
    (
        "currency lower",
        ev("add_to_cart", sku="S", currency="eur"),
        "invalid_field",
        "properties.currency",
    ),
    ("url not http", ev("page_view", url="javascript:x"), "invalid_field", "properties.url"),
    (
        "purchase without items",
        ev("purchase", total=1, currency="EUR"),
        "missing_field",
        "properties.items",
    ),
    (
        "purchase with no item",
        ev("purchase", items=[], total=1, currency="EUR"),
        "invalid_field",
        "properties.items",
    ),
    (
        "purchase item without sku",
        ev("purchase", items=[{"qty": 1}], total=1, currency="EUR"),
        "missing_field",
        "properties.items[0].sku",
    ),
    (
        "purchase item bad qty",
        ev("purchase", items=[{"sku": "S"}, {"sku": "T", "qty": -1}], total=1, currency="EUR"),
        "invalid_field",
        "properties.items[1].qty",
    ),
    (
        "purchase without total",
        ev("purchase", items=[{"sku": "S"}], currency="EUR"),
        "missing_field",
        "properties.total",
    ),
    (
        "purchase total a string",
        ev("purchase", items=[{"sku": "S"}], total="9", currency="EUR"),
        "invalid_field",
        "properties.total",
    ),
    (
        "purchase without currency",
        ev("purchase", items=[{"sku": "S"}], total=9),
        "missing_field",
        "properties.currency",
    ),
    ("ts before 2000", ev("page_view", ts="1999-12-31T23:59:59Z"), "invalid_ts", "ts"),
    ("ts in 1970", ev("page_view", ts="1970-01-01T00:00:00+00:00"), "invalid_ts", "ts"),
    ("ts not a time", ev("page_view", ts="yesterday"), "invalid_ts", "ts"),
    ("ts a number", ev("page_view") | {"ts": 1765000000}, "invalid_ts", "ts"),
    ("event_id missing", {"user_id": "u1", "type": "page_view"}, "missing_field", "event_id"),
    ("event_id empty", ev("page_view", eid="x") | {"event_id": ""}, "invalid_field", "event_id"),
    ("event_id 101 chars", ev("page_view", eid="e" * 101), "invalid_field", "event_id"),
    ("event_id a number", ev("page_view") | {"event_id": 7}, "invalid_field", "event_id"),
    ("no reader", ev("page_view", user=None), "missing_field", "user_id"),
    ("user_id with @", ev("page_view", user="ada@example.com"), "invalid_field", "user_id"),
    (
        "anonymous_id braces",
        ev("page_view", user=None, anon="{a}"),
        "invalid_field",
        "anonymous_id",
    ),
    ("type missing", {"event_id": "e1", "user_id": "u1"}, "missing_field", "type"),
    ("unknown type", ev("click"), "unknown_type", "type"),
    ("custom without name", ev("custom:"), "unknown_type", "type"),
    ("custom name too long", ev("custom:" + "x" * 65), "unknown_type", "type"),
    ("properties a list", ev("page_view") | {"properties": [1]}, "invalid_field", "properties"),
    ("identify without traits", ev("identify"), "missing_field", "properties.traits"),
    ("traits a string", ev("identify", traits="ada"), "invalid_field", "properties.traits"),
    (
        "traits timezone unknown",
        ev("identify", traits={"timezone": "Nowhere/Land"}),
        "invalid_field",
        "properties.traits.timezone",
    ),
    (
        "traits locale bad",
        ev("identify", traits={"locale": "not a locale"}),
        "invalid_field",
        "properties.traits.locale",
    ),
    (
        "traits last name too long",
        ev("identify", traits={"last_name": "x" * 101}),
        "invalid_field",
        "properties.traits.last_name",
    ),
    ("not an object", cast(Json, 42), "invalid_event", None),
]


@pytest.mark.parametrize(
    ("event", "code", "field"),
    [pytest.param(e, c, f, id=name) for name, e, c, f in INVALID],
)
async def test_each_invalid_event_is_rejected_with_its_field(
    k: Kairos, event: Json, code: str, field: str | None
) -> None:
    good = ev("page_view", user="u2")
    body = await k.post([good, event])
    assert counts(body) == (1, 0, 0, [(1, code)])
    assert body["rejected"][0]["field"] == field
    assert await k.counters("u1") == {}
    # Alone, nothing is valid: 422 with the same entry.
    r = await k.send([event])
    assert r.status_code == 422, r.text
    alone = r.json()
    assert alone["error"]["code"] == "no_valid_events"
    assert shape({key: alone[key] for key in BODY_KEYS})["rejected"] == [
        {**body["rejected"][0], "index": 0}
    ]


async def test_ts_more_than_a_day_ahead_is_rejected(k: Kairos) -> None:
    ahead = iso(datetime.now(UTC) + timedelta(days=1, minutes=5))
    body = await k.post([ev("page_view", user="u2"), ev("page_view", ts=ahead)])
    assert counts(body) == (1, 0, 0, [(1, "invalid_ts")])
    assert body["rejected"][0]["field"] == "ts"


async def test_an_event_id_of_100_characters_is_fine(k: Kairos) -> None:
    assert counts(await k.post([ev("page_view", eid="e" * 100)])) == (1, 0, 0, [])


@pytest.mark.parametrize("ts", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
async def test_a_ts_out_of_range_after_its_offset_is_invalid_ts(k: Kairos, ts: str) -> None:
    r = await k.send([ev("page_view", user="u2"), ev("page_view", ts=ts)])
    assert r.status_code == 202, r.text
    assert counts(r.json()) == (1, 0, 0, [(1, "invalid_ts")])


# --- batches and limits --------------------------------------------------------------------


async def test_a_mixed_batch_applies_the_valid_events_and_lists_the_others(k: Kairos) -> None:
    body = await k.post(
        [
            ev("page_view"),
            ev("add_to_cart", qty=1),
            ev("product_view", sku="SKU-1"),
            ev("nope"),
            ev("add_to_cart", sku="SKU-2"),
            {"event_id": "x", "type": "page_view"},
        ]
    )
    assert counts(body) == (
        3,
        0,
        0,
        [(1, "missing_field"), (3, "unknown_type"), (5, "missing_field")],
    )
    assert [r["field"] for r in body["rejected"]] == ["properties.sku", "type", "user_id"]
    assert await k.counters("u1") == {"page_view": 1, "product_view": 1, "add_to_cart": 1}


async def test_a_batch_with_nothing_valid_is_422(k: Kairos) -> None:
    r = await k.send([ev("nope"), ev("product_view"), ev("page_view", user=None)])
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"]["code"] == "no_valid_events"
    assert isinstance(body["error"]["message"], str)
    assert counts(shape({key: body[key] for key in BODY_KEYS})) == (
        0,
        0,
        0,
        [(0, "unknown_type"), (1, "missing_field"), (2, "missing_field")],
    )
    assert await k.profile("u1") is None


async def test_an_event_over_32_kb_is_rejected_and_the_others_applied(k: Kairos) -> None:
    big = ev("custom:big", blob="x" * (33 * 1024))
    body = await k.post([ev("page_view"), big, ev("page_view")])
    assert counts(body) == (2, 0, 0, [(1, "event_too_large")])
    assert await k.counters("u1") == {"page_view": 2}
    # Just under the limit is fine.
    fits = ev("custom:big", blob="x" * (31 * 1024))
    assert counts(await k.post([fits])) == (1, 0, 0, [])


async def test_a_body_over_the_limit_is_413_before_it_is_parsed(kairos: Opener) -> None:
    async with kairos(KAIROS_EVENTS_MAX_BODY_MB=1) as k:
        limit = 1024 * 1024
        # Not JSON at all: a 413 (not a 400) shows it was never parsed.
        junk = b"{" * (limit + 1)
        headers = {**WRITE, "Content-Type": "application/json"}
        r = await k.client.post("/v1/events", content=junk, headers=headers)
        assert_error(r, 413, "payload_too_large")

        # The same without Content-Length (chunked): refused while it streams in.
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(40):
                yield b" " * 32768

        r = await k.client.post("/v1/events", content=chunks(), headers=headers)
        assert_error(r, 413, "payload_too_large")

        # Up to the limit is read.
        events = [ev("custom:pad", pad="y" * 20_000) for _ in range(45)]
        raw = orjson.dumps({"events": events})
        assert len(raw) < limit
        r = await k.client.post("/v1/events", content=raw, headers=headers)
        assert r.status_code == 202, r.text
        assert await k.counters("u1") == {"custom:pad": 45}


async def test_a_gzip_bomb_is_413_and_a_gzip_body_within_the_limit_is_read(kairos: Opener) -> None:
    async with kairos(KAIROS_EVENTS_MAX_BODY_MB=1) as k:
        headers = {**WRITE, "Content-Type": "application/json", "Content-Encoding": "gzip"}
        bomb = gzip.compress(b'{"events": [' + b" " * (16 * 1024 * 1024) + b"]}")
        assert len(bomb) < 64 * 1024
        r = await k.client.post("/v1/events", content=bomb, headers=headers)
        assert_error(r, 413, "payload_too_large")

        fine = gzip.compress(orjson.dumps({"events": [ev("page_view"), ev("page_view")]}))
        r = await k.client.post("/v1/events", content=fine, headers=headers)
        assert r.status_code == 202, r.text
        assert counts(shape(r.json())) == (2, 0, 0, [])

        r = await k.client.post("/v1/events", content=b"not gzip", headers=headers)
        assert_error(r, 400, "invalid_gzip")
        r = await k.client.post("/v1/events", content=fine[:-12], headers=headers)
        assert_error(r, 400, "invalid_gzip")
        assert await k.counters("u1") == {"page_view": 2}


async def test_more_events_than_the_count_limit_is_413(kairos: Opener) -> None:
    async with kairos(KAIROS_EVENTS_MAX_COUNT=1000) as k:
        r = await k.send([ev("page_view") for _ in range(1001)])
        assert_error(r, 413, "too_many_events")
        assert await k.profile("u1") is None
        body = await k.post([ev("page_view") for _ in range(1000)])
        assert counts(body) == (1000, 0, 0, [])


async def test_a_thousand_events_for_a_hundred_readers_in_one_request(k: Kairos) -> None:
    events = [ev("product_view", f"r{i % 100}", sku=f"SKU-{i}") for i in range(1500)]
    body = await k.post(events)
    assert counts(body) == (1500, 0, 0, [])
    assert await k.counters("r7") == {"product_view": 15}
    assert await k.counters("r99") == {"product_view": 15}


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"", "invalid_json"),
        (b"[1, 2]", "invalid_body"),
        (b'{"events": {"a": 1}}', "invalid_body"),
        (b'"page_view"', "invalid_body"),
    ],
)
async def test_a_body_that_is_not_json_or_not_events_is_400(
    k: Kairos, content: bytes, code: str
) -> None:
    headers = {**WRITE, "Content-Type": "application/json"}
    r = await k.client.post("/v1/events", content=content, headers=headers)
    assert_error(r, 400, code)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_the_native_api_wants_json(k: Kairos, content_type: str | None) -> None:
    headers = dict(WRITE)
    if content_type is not None:
        headers["Content-Type"] = content_type
    r = await k.client.post("/v1/events", content=orjson.dumps(ev("page_view")), headers=headers)
    assert_error(r, 415)
    assert await k.profile("u1") is None
    headers["Content-Type"] = "application/json; charset=utf-8"
    r = await k.client.post("/v1/events", content=orjson.dumps(ev("page_view")), headers=headers)
    assert r.status_code == 202


async def test_an_empty_batch_is_202_with_zeros(k: Kairos) -> None:
    assert await k.post([]) == {"accepted": 0, "duplicates": 0, "dropped": 0, "rejected": []}


# --- exactly once ----------------------------------------------------------------------------


async def test_a_retried_request_is_applied_once(k: Kairos) -> None:
    events = [
        ev("page_view"),
        ev("add_to_cart", sku="SKU-1", qty=2),
        ev("purchase", items=[{"sku": "SKU-7"}], total=5, currency="EUR"),
        ev("product_view", user="u2", sku="SKU-3"),
    ]
    assert counts(await k.post(events)) == (4, 0, 0, [])
    before = await k.profile("u1")
    again = await k.post(events)
    assert again == {"accepted": 0, "duplicates": 4, "dropped": 0, "rejected": []}
    after = await k.profile("u1")
    assert after == before
    assert after is not None and after["cart"] == [{"sku": "SKU-1", "qty": 2}]
    assert after["spend"] == {"EUR": 5}
    assert len(await k.history("u1")) == 3
    # A retry with one new event: only that one counts.
    body = await k.post([*events, ev("page_view")])
    assert counts(body) == (1, 4, 0, [])
    assert await k.counters("u1") == {"page_view": 2, "add_to_cart": 1, "purchase": 1}


async def test_a_duplicate_within_one_batch_is_applied_once(k: Kairos) -> None:
    same = ev("add_to_cart", sku="SKU-1", qty=1)
    body = await k.post([same, ev("page_view"), same, dict(same)])
    assert counts(body) == (2, 2, 0, [])
    profile = await k.profile("u1")
    assert profile is not None
    assert profile["cart"] == [{"sku": "SKU-1", "qty": 1}]
    assert profile["counters"] == {"add_to_cart": 1, "page_view": 1}


async def test_a_rejected_event_id_can_be_sent_again_fixed(k: Kairos) -> None:
    body = await k.post([ev("page_view", user="u2"), ev("product_view", eid="fix-me")])
    assert counts(body) == (1, 0, 0, [(1, "missing_field")])
    body = await k.post([ev("product_view", eid="fix-me", sku="SKU-1")])
    assert counts(body) == (1, 0, 0, [])
    assert await k.counters("u1") == {"product_view": 1}


async def test_twenty_concurrent_posters_of_overlapping_batches_leave_exact_counters(
    k: Kairos,
) -> None:
    readers, kinds = 5, ("page_view", "email_open", "custom:tick")
    pool = [
        ev(kinds[i % 3], f"c{i % readers}", eid=f"conc-{i}", ts=ago(60 - i / 10))
        for i in range(240)
    ]
    rng = random.Random(11)
    batches = [rng.sample(pool, 60) for _ in range(20)]
    answers = await asyncio.gather(*(k.send(batch) for batch in batches))
    bodies = [shape(r.json()) for r in answers if r.status_code == 202]
    assert len(bodies) == 20, [r.text for r in answers if r.status_code != 202]
    distinct = {e["event_id"]: e for batch in batches for e in batch}
    assert sum(b["accepted"] for b in bodies) == len(distinct)
    assert sum(b["duplicates"] for b in bodies) == 20 * 60 - len(distinct)
    assert all(not b["rejected"] and not b["dropped"] for b in bodies)
    expected: dict[str, Counter[str]] = {f"c{r}": Counter() for r in range(readers)}
    for event in distinct.values():
        expected[event["user_id"]][event["type"]] += 1
    for reader, want in expected.items():
        assert await k.counters(reader) == dict(want), reader
        assert len(await k.history(reader)) == sum(want.values())
    # And all of it once more, concurrently: nothing new.
    again = await asyncio.gather(*(k.post(batch) for batch in batches))
    assert sum(b["accepted"] for b in again) == 0
    for reader, want in expected.items():
        assert await k.counters(reader) == dict(want), reader


# --- identity stitching ----------------------------------------------------------------------


async def test_identify_with_both_ids_merges_the_anonymous_reader(k: Kairos) -> None:
    anon, user = "anon-1", "ava"
    await k.post(
        [
            ev("page_view", None, anon=anon, eid="a-pv", ts=ago(50)),
            ev("product_view", None, anon=anon, ts=ago(40), sku="SKU-A1"),
            ev("product_view", None, anon=anon, ts=ago(20), sku="SKU-A2"),
            ev("add_to_cart", None, anon=anon, ts=ago(19), sku="SKU-A1", qty=2),
            ev("add_to_cart", None, anon=anon, ts=ago(18), sku="SKU-S", qty=1),
            ev(
                "purchase",
                None,
                anon=anon,
                ts=ago(17),
                items=[{"sku": "X"}],
                total=5,
                currency="EUR",
            ),
        ]
    )
    await k.put_profile(user, {"first_name": "Ada", "tier": "gold"})
    await k.post(
        [
            ev("page_view", user, ts=ago(45)),
            ev("product_view", user, ts=ago(30), sku="SKU-U1"),
            ev("product_view", user, ts=ago(10), sku="SKU-U2"),
            ev("add_to_cart", user, ts=ago(9), sku="SKU-S", qty=3),
            ev("email_open", user, ts=ago(8)),
            ev("purchase", user, ts=ago(7), items=[{"sku": "Y"}], total=2.5, currency="EUR"),
        ]
    )
    anon_before = await k.profile(anon, anonymous=True)
    assert anon_before is not None and anon_before["counters"]["product_view"] == 2
    merge = ev("identify", user, anon=anon, eid="merge-1", ts=ago(5), traits={"last_name": "L"})
    assert counts(await k.post([merge])) == (1, 0, 0, [])

    profile = await k.profile(user)
    assert profile is not None
    assert profile["counters"] == {
        "page_view": 2,
        "product_view": 4,
        "add_to_cart": 3,
        "purchase": 2,
        "email_open": 1,
        "identify": 1,
    }
    assert [v["sku"] for v in profile["recent_views"]] == ["SKU-U2", "SKU-A2", "SKU-U1", "SKU-A1"]
    assert sorted(profile["cart"], key=lambda line: line["sku"]) == [
        {"sku": "SKU-A1", "qty": 2},
        {"sku": "SKU-S", "qty": 3},
    ]
    assert profile["spend"] == {"EUR": 7.5}
    assert [p["total"] for p in profile["purchases"]] == [2.5, 5]
    assert (profile["first_name"], profile["last_name"], profile["tier"]) == ("Ada", "L", "gold")
    assert profile["first_seen"] == anon_before["first_seen"]
    assert await k.profile(anon) is None  # the anonymous profile lives in the user's now
    # The history keeps both readers' events.
    history = await k.history(user)
    assert len(history) == 13
    # the anonymous reader's own 6 (the identify is the user's, kept without the
    # anonymous id beside it)
    assert sum(1 for e in history if e.get("anonymous_id") == anon) == 6

    # The same identify again (a retry): a duplicate, nothing doubled.
    assert counts(await k.post([merge])) == (0, 1, 0, [])
    assert await k.profile(user) == profile
    # Another identify naming the same pair: counted as an identify, no data doubled.
    again = ev("identify", user, anon=anon, ts=ago(4), traits={})
    assert counts(await k.post([again])) == (1, 0, 0, [])
    after = await k.profile(user)
    assert after is not None
    assert after["counters"] == {**profile["counters"], "identify": 2}
    assert after["recent_views"] == profile["recent_views"]
    assert after["spend"] == {"EUR": 7.5}

    # Later anonymous events land on the user; a retried pre-merge one is a duplicate.
    body = await k.post(
        [
            ev("page_view", None, anon=anon, eid="a-pv", ts=ago(50)),
            ev("add_to_cart", None, anon=anon, ts=ago(1), sku="SKU-N"),
        ]
    )
    assert counts(body) == (1, 1, 0, [])
    last = await k.profile(user)
    assert last is not None
    assert last["counters"]["page_view"] == 2
    assert last["counters"]["add_to_cart"] == 4
    assert {"sku": "SKU-N", "qty": 1} in last["cart"]
    assert await k.profile(anon) is None


async def test_events_and_identify_in_one_batch_merge_in_order(k: Kairos) -> None:
    """Anonymous events before the identify go to the anonymous reader and are merged;
    those after it go to the user directly."""
    body = await k.post(
        [
            ev("product_view", None, anon="anon-2", ts=ago(9), sku="SKU-1"),
            ev("identify", "gwen", anon="anon-2", ts=ago(8), traits={"first_name": "Grace"}),
            ev("product_view", None, anon="anon-2", ts=ago(7), sku="SKU-2"),
            ev("add_to_cart", "gwen", ts=ago(6), sku="SKU-2"),
        ]
    )
    assert counts(body) == (4, 0, 0, [])
    profile = await k.profile("gwen")
    assert profile is not None
    assert profile["counters"] == {"product_view": 2, "identify": 1, "add_to_cart": 1}
    assert [v["sku"] for v in profile["recent_views"]] == ["SKU-2", "SKU-1"]
    assert await k.profile("anon-2") is None


async def test_an_identify_with_a_rejected_trait_merges_no_one(k: Kairos) -> None:
    await k.post([ev("page_view", None, anon="anon-3")])
    r = await k.send([ev("identify", "u9", anon="anon-3", traits={"timezone": "Mars/Base"})])
    assert r.status_code == 422, r.text
    assert [x["code"] for x in r.json()["rejected"]] == ["invalid_field"]
    # Beside a valid event: 202, and still no merge.
    body = await k.post(
        [ev("page_view", "u8"), ev("identify", "u9", anon="anon-3", traits={"locale": "?"})]
    )
    assert counts(body) == (1, 0, 0, [(1, "invalid_field")])
    assert await k.counters("anon-3", anonymous=True) == {"page_view": 1}
    assert await k.profile("u9") is None


async def test_segment_alias_merges_the_previous_id_idempotently(k: Kairos) -> None:
    await k.post(
        [
            ev("product_view", None, anon="visitor-1", ts=ago(9), sku="SKU-1"),
            ev("add_to_cart", None, anon="visitor-1", ts=ago(8), sku="SKU-1"),
        ]
    )
    await k.post([ev("product_view", "linus", ts=ago(5), sku="SKU-2")])
    alias = {
        "type": "alias",
        "userId": "linus",
        "previousId": "visitor-1",
        "messageId": "alias-msg-1",
        "timestamp": ago(4),
        "context": {"library": {"name": "analytics-python", "version": "2.3.3"}},
    }
    r = await k.segment("alias", alias)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "success": True,
        "accepted": 1,
        "duplicates": 0,
        "dropped": 0,
        "rejected": [],
    }
    profile = await k.profile("linus")
    assert profile is not None
    assert profile["counters"] == {"product_view": 2, "add_to_cart": 1, "identify": 1}
    assert profile["cart"] == [{"sku": "SKU-1", "qty": 1}]
    assert await k.profile("visitor-1") is None
    # The same alias again (the SDK retried): nothing doubles.
    r = await k.segment("alias", alias)
    assert r.json()["duplicates"] == 1
    r = await k.segment("alias", {**alias, "messageId": "alias-msg-2"})
    assert r.json()["accepted"] == 1
    again = await k.profile("linus")
    assert again is not None
    assert again["counters"] == {"product_view": 2, "add_to_cart": 1, "identify": 2}
    assert again["cart"] == [{"sku": "SKU-1", "qty": 1}]
    # And the previous id's later events land on the user.
    await k.post([ev("product_view", None, anon="visitor-1", ts=ago(1), sku="SKU-3")])
    last = await k.profile("linus")
    assert last is not None
    assert last["counters"]["product_view"] == 3
    assert last["recent_views"][0]["sku"] == "SKU-3"


async def test_merging_a_user_who_absorbed_others_moves_them_all(k: Kairos) -> None:
    """anon-a merges into mid; mid is later aliased into top: anon-a's events go to top."""
    await k.post([ev("page_view", None, anon="anon-a")])
    await k.post([ev("identify", "mid", anon="anon-a", traits={})])
    await k.post([ev("page_view", "top")])
    alias = {"userId": "top", "previousId": "mid", "messageId": "alias-mid-top"}
    # A public write key never moves one user's data into another's...
    r = await k.segment("alias", alias)
    assert r.status_code == 200, r.text
    assert await k.counters("top") == {"page_view": 1, "identify": 1}
    assert await k.counters("mid") == {"page_view": 1, "identify": 1}
    # ...an API key (a server-side source) does: Segment's alias of a former user id.
    r = await k.segment("alias", {**alias, "messageId": "alias-2"}, basic(API_KEY))
    assert r.status_code == 200, r.text
    assert await k.counters("top") == {"page_view": 2, "identify": 3}
    await k.post([ev("page_view", None, anon="anon-a")])
    await k.post([ev("page_view", "mid")])
    assert await k.counters("top") == {"page_view": 4, "identify": 3}
    assert await k.profile("mid") is None
    assert await k.profile("anon-a", anonymous=True) is None


# --- consent ---------------------------------------------------------------------------------


async def test_events_for_a_reader_who_declined_tracking_are_dropped(k: Kairos) -> None:
    await k.put_profile("shy", {"first_name": "Shy", "consent": {"tracking": False}})
    before = await k.profile("shy")
    body = await k.post(
        [
            ev("page_view", "shy"),
            ev("add_to_cart", "shy", sku="SKU-1"),
            ev("identify", "shy", traits={"first_name": "Changed"}),
            ev("page_view", "other"),
        ]
    )
    assert body == {"accepted": 1, "duplicates": 0, "dropped": 3, "rejected": []}
    assert await k.profile("shy") == before
    assert await k.history("shy") == []
    # Only dropped: still 202, never "200 and drop" silently.
    body = await k.post([ev("page_view", "shy")])
    assert body == {"accepted": 0, "duplicates": 0, "dropped": 1, "rejected": []}
    assert await k.profile("shy") == before


async def test_a_dropped_event_is_applied_once_consent_is_given(k: Kairos) -> None:
    await k.put_profile("shy", {"consent": {"tracking": False}})
    event = ev("page_view", "shy", eid="later")
    assert (await k.post([event]))["dropped"] == 1
    await k.put_profile("shy", {"consent": {"tracking": True}})
    assert counts(await k.post([event])) == (1, 0, 0, [])
    assert await k.counters("shy") == {"page_view": 1}


# --- erasure ---------------------------------------------------------------------------------

ERASED_USER = "erase-u-7q2z"
ERASED_ANON = "erase-a-k9w4"


def leftovers(sync_client: redis.Redis, needles: list[str]) -> tuple[int, list[str]]:
    """SCAN the whole database: how many keys, and every key whose name or value (by its
    type: string, set, sorted set, hash, list, stream) contains one of `needles`."""
    client: Any = sync_client  # replies are bytes: the client does not decode
    found: list[str] = []
    scanned = 0
    wanted = [n.encode() for n in needles]
    for key in client.scan_iter(count=1000):
        scanned += 1
        kind = client.type(key).decode()
        values: list[bytes]
        if kind == "none":
            continue  # expired since SCAN listed it (a rate limit bucket lives ~1 s)
        if kind == "string":
            values = [client.get(key) or b""]
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "hash":
            values = [part for pair in client.hgetall(key).items() for part in pair]
        elif kind == "list":
            values = list(client.lrange(key, 0, -1))
        elif kind == "stream":
            values = [
                part for _, fields in client.xrange(key) for pair in fields.items() for part in pair
            ]
        else:
            found.append(f"{key!r}: unexpected type {kind}")
            continue
        for needle in wanted:
            if needle in key or any(needle in v for v in values):
                found.append(f"{key.decode()} ({kind}) names {needle.decode()}")
    return scanned, found


async def make_erasable_reader(k: Kairos) -> None:
    """A user with events, a profile, picks and a merged anonymous id."""
    await k.post(
        [
            ev("product_view", None, anon=ERASED_ANON, ts=ago(9), sku="SKU-1"),
            ev("add_to_cart", None, anon=ERASED_ANON, ts=ago(8), sku="SKU-1"),
        ]
    )
    await k.put_profile(
        ERASED_USER, {"first_name": "Erin", "recommendations": [{"sku": "SKU-3"}, {"sku": "SKU-5"}]}
    )
    await k.post(
        [
            ev("page_view", ERASED_USER, ts=ago(7)),
            ev("identify", ERASED_USER, anon=ERASED_ANON, ts=ago(6), traits={"plan": "pro"}),
            ev("custom:note", ERASED_USER, ts=ago(5), about=ERASED_ANON),
        ]
    )
    r = await k.client.get(image_url("product", ERASED_USER, campaign="spring", slot=1))
    assert r.status_code == 200 and "x-kairos-fallback" not in r.headers, r.headers
    assert await k.stores.picks.get_pick(ERASED_USER, "spring", 1) == "SKU-5"
    profile = await k.profile(ERASED_USER)
    assert profile is not None and profile["counters"]["add_to_cart"] == 1


async def test_erasure_removes_every_trace_and_suppresses(
    k: Kairos, backend: str, request: pytest.FixtureRequest
) -> None:
    await make_erasable_reader(k)
    if backend != "embedded":
        client = request.getfixturevalue("redis_client")
        _, before = leftovers(client, [ERASED_USER, ERASED_ANON])
        assert before, "the reader is stored before erasure"

    r = await k.client.delete(f"/v1/profiles/{ERASED_USER}", headers=AUTH)
    assert r.status_code == 204, r.text
    assert await k.profile(ERASED_USER) is None
    assert await k.profile(ERASED_ANON) is None
    assert await k.history(ERASED_USER) == []
    assert await k.stores.picks.get_pick(ERASED_USER, "spring", 1) is None
    for reader in (ERASED_USER, ERASED_ANON):
        assert await k.stores.backend.keys_of(reader) == []
        assert await k.app.state.services.erasure.leftovers(reader) == []

    if backend != "embedded":
        client = request.getfixturevalue("redis_client")
        scanned, found = leftovers(client, [ERASED_USER, ERASED_ANON])
        assert scanned >= 5, "the demo data and the audit log are there"
        assert found == []

    # The audit entry names the reader by a hash only.
    r = await k.client.get("/v1/erasures", headers=AUTH)
    assert r.status_code == 200
    [entry] = r.json()["erasures"]
    assert len(entry["reader"]) == 32 and int(entry["reader"], 16) >= 0
    assert ERASED_USER not in str(entry) and ERASED_ANON not in str(entry)
    assert entry["suppressed"] == "1" and entry["profile"] == "1" and entry["ids"] == "2"

    # Later events for either id are refused, alone with 422.
    pairs: list[tuple[str | None, str | None]] = [(ERASED_USER, None), (None, ERASED_ANON)]
    for who, anon in pairs:
        r = await k.send([ev("page_view", who, anon=anon)])
        assert r.status_code == 422, r.text
        field = "user_id" if who else "anonymous_id"
        assert [(x["code"], x["field"]) for x in r.json()["rejected"]] == [("suppressed", field)]
    body = await k.post([ev("page_view", "someone"), ev("page_view", ERASED_USER)])
    assert counts(body) == (1, 0, 0, [(1, "suppressed")])
    assert await k.profile(ERASED_USER) is None
    # A profile write by API key is the caller's own business; events are not.
    if backend != "embedded":
        client = request.getfixturevalue("redis_client")
        assert leftovers(client, [ERASED_USER, ERASED_ANON])[1] == []

    # Lifting the suppression of one id lets its events in again, and only its own.
    r = await k.client.delete(f"/v1/suppressions/{ERASED_USER}", headers=AUTH)
    assert r.status_code == 204, r.text
    assert counts(await k.post([ev("page_view", ERASED_USER)])) == (1, 0, 0, [])
    assert await k.counters(ERASED_USER) == {"page_view": 1}
    r = await k.send([ev("page_view", None, anon=ERASED_ANON)])
    assert r.status_code == 422
    r = await k.client.delete(f"/v1/suppressions/{ERASED_USER}", headers=AUTH)
    assert_error(r, 404, "not_suppressed")


async def test_erasure_through_the_anonymous_id_erases_the_user(k: Kairos) -> None:
    await make_erasable_reader(k)
    r = await k.client.delete(f"/v1/profiles/{ERASED_ANON}", headers=AUTH)
    assert r.status_code == 204, r.text
    assert await k.profile(ERASED_USER) is None
    r = await k.send([ev("page_view", ERASED_USER)])
    assert r.status_code == 422 and r.json()["rejected"][0]["code"] == "suppressed"


async def test_erasure_without_suppression(k: Kairos) -> None:
    await k.post([ev("page_view", "temp")])
    r = await k.client.delete("/v1/profiles/temp?suppress=false", headers=AUTH)
    assert r.status_code == 204, r.text
    assert await k.profile("temp") is None
    assert counts(await k.post([ev("page_view", "temp")])) == (1, 0, 0, [])
    assert await k.counters("temp") == {"page_view": 1}
    r = await k.client.delete("/v1/suppressions/temp", headers=AUTH)
    assert_error(r, 404, "not_suppressed")
    r = await k.client.get("/v1/erasures", headers=AUTH)
    assert r.json()["erasures"][0]["suppressed"] == "0"
    r = await k.client.delete("/v1/profiles/temp?suppress=maybe", headers=AUTH)
    assert_error(r, 400)


async def test_erasing_an_unknown_id_is_404(k: Kairos) -> None:
    r = await k.client.delete("/v1/profiles/nobody-here", headers=AUTH)
    assert_error(r, 404, "profile_not_found")


async def test_an_erased_anonymous_id_is_not_stored_again_by_someone_elses_identify(
    k: Kairos, backend: str
) -> None:
    """After erasure, an identify from another user naming the erased anonymous id must
    not link that id again (its alias would name an erased, suppressed reader)."""
    await make_erasable_reader(k)
    r = await k.client.delete(f"/v1/profiles/{ERASED_USER}", headers=AUTH)
    assert r.status_code == 204
    await k.post([ev("identify", "new-user", anon=ERASED_ANON, traits={})])
    assert await k.stores.backend.keys_of(ERASED_ANON) == []
    assert ERASED_ANON not in await k.stores.events.links("new-user")


# --- keys --------------------------------------------------------------------------------------


async def test_a_write_key_sends_events_every_way(k: Kairos) -> None:
    assert (await k.post([ev("page_view")], WRITE))["accepted"] == 1
    assert (await k.post([ev("page_view")], basic(WRITE_KEY)))["accepted"] == 1
    assert (await k.post([ev("page_view")], AUTH))["accepted"] == 1  # an API key too
    track = {"userId": "u1", "event": "Signed Up", "messageId": f"m-{uuid.uuid4()}"}
    for headers, message in (
        (WRITE, track),
        (basic(WRITE_KEY), track),
        ({}, {**track, "writeKey": WRITE_KEY}),
        (AUTH, track),
    ):
        r = await k.segment("track", {**message, "messageId": f"m-{uuid.uuid4()}"}, headers)
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == 1
    assert await k.counters("u1") == {"page_view": 3, "custom:Signed Up": 4}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/profiles/u1", None),
        ("PUT", "/v1/profiles/u1", {"first_name": "Mallory"}),
        ("PATCH", "/v1/profiles/u1", {"first_name": "Mallory"}),
        ("DELETE", "/v1/profiles/u1", None),
        ("POST", "/v1/render", {"template": "welcome", "user_id": "u1"}),
        ("GET", "/v1/erasures", None),
        ("DELETE", "/v1/suppressions/u1", None),
    ],
)
async def test_a_write_key_is_403_on_every_other_route(
    k: Kairos, method: str, path: str, body: Json | None
) -> None:
    await k.post([ev("page_view")])
    r = await k.client.request(method, path, json=body, headers=WRITE)
    assert_error(r, 403, "write_key_not_allowed")
    assert await k.counters("u1") == {"page_view": 1}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key-0123456789"},
        {"Authorization": f"Bearer {WRITE_KEY}x"},
        basic("wrong"),
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": f"Token {WRITE_KEY}"},
    ],
)
async def test_no_key_or_a_wrong_key_is_401(k: Kairos, headers: dict[str, str]) -> None:
    r = await k.client.post("/v1/events", json=ev("page_view"), headers=headers)
    assert_error(r, 401)
    track = {"userId": "u1", "event": "X", "messageId": "m1"}
    r = await k.segment("track", track, headers)
    assert_error(r, 401)
    # A wrong header is not saved by a right writeKey in the body... nor a wrong body key.
    r = await k.segment("track", {**track, "writeKey": "nope"}, {})
    assert_error(r, 401)
    assert await k.profile("u1") is None


# --- CORS ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/segment/v1/batch", "/segment/v1/track", "/v1/events"])
async def test_preflight_is_answered_for_any_origin_by_default(k: Kairos, path: str) -> None:
    r = await k.client.options(
        path,
        headers={
            "Origin": "https://anywhere.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert r.status_code == 204, r.text
    assert r.headers["access-control-allow-origin"] == "*"
    assert "POST" in r.headers["access-control-allow-methods"]
    allowed = r.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert int(r.headers["access-control-max-age"]) > 0
    assert "access-control-allow-credentials" not in r.headers


async def test_cors_with_an_origin_list(kairos: Opener) -> None:
    async with kairos(KAIROS_EVENT_ORIGINS=SHOP) as k:
        for path in ("/segment/v1/batch", "/v1/events"):
            r = await k.client.options(
                path, headers={"Origin": SHOP, "Access-Control-Request-Method": "POST"}
            )
            assert r.status_code == 204, r.text
            assert r.headers["access-control-allow-origin"] == SHOP
            assert "origin" in r.headers["vary"].lower()

            r = await k.client.options(
                path,
                headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
            )
            assert_error(r, 403)
            assert "access-control-allow-origin" not in r.headers

        # A post from the shop's pages is readable there, and so are its errors.
        r = await k.client.post(
            "/v1/events", json=ev("page_view"), headers={**WRITE, "Origin": SHOP}
        )
        assert r.status_code == 202
        assert r.headers["access-control-allow-origin"] == SHOP
        assert "origin" in r.headers["vary"].lower()
        r = await k.client.post("/v1/events", json=ev("page_view"), headers={"Origin": SHOP})
        assert_error(r, 401)
        assert r.headers["access-control-allow-origin"] == SHOP
        r = await k.segment("batch", {"batch": "nope"}, {**basic(WRITE_KEY), "Origin": SHOP})
        assert_error(r, 400, "invalid_body")
        assert r.headers["access-control-allow-origin"] == SHOP
        # Another origin's post gets no CORS header (its page cannot read the answer).
        r = await k.client.post(
            "/v1/events", json=ev("page_view"), headers={**WRITE, "Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in r.headers


# --- the Segment dialect -------------------------------------------------------------------


def library(name: str, version: str) -> Json:
    return {"library": {"name": name, "version": version}}


def client_clock(ahead: timedelta) -> Callable[[float], str]:
    """Times on a client's clock that runs `ahead` of the server's: `stamp(s)` is `s`
    seconds ago on that clock."""

    def stamp(seconds_ago: float = 0.0) -> str:
        moment = datetime.now(UTC) + ahead - timedelta(seconds=seconds_ago)
        return moment.isoformat(timespec="milliseconds")

    return stamp


async def test_an_sdk_batch_gzip_basic_auth_and_a_fast_clock(k: Kairos) -> None:
    """analytics-python, analytics-node and analytics.js messages in one gzip batch, from
    a client whose clock is an hour fast: stored times are the server's."""
    stamp = client_clock(timedelta(hours=1))
    python = library("analytics-python", "2.3.3")
    node = library("@segment/analytics-node", "2.1.0")
    body = {
        "batch": [
            {
                "type": "page",
                "anonymousId": "8b1f0e2a-6c3d-4e5f-9a7b-1c2d3e4f5a6b",
                "userId": None,
                "name": "Shoes",
                "properties": {"path": "/shoes/", "title": "Shoes"},
                "context": {
                    **library("analytics.js", "npm:next-1.70.0"),
                    "page": {"url": "https://shop.example.com/shoes/", "title": "Shoes"},
                    "locale": "fr-FR",
                },
                "messageId": "ajs-next-5b0f1c2d3e4f5a6b7c8d9e0f1a2b3c4d",
                "timestamp": stamp(30),
                "integrations": {},
            },
            {
                "type": "track",
                "event": "Product Viewed",
                "anonymousId": "8b1f0e2a-6c3d-4e5f-9a7b-1c2d3e4f5a6b",
                "properties": {
                    "product_id": "SKU-1",
                    "name": "Mug",
                    "price": 9.5,
                    "currency": "eur",
                },
                "context": library("analytics.js", "npm:next-1.70.0"),
                "messageId": "ajs-next-0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f",
                "originalTimestamp": stamp(20),
            },
            {
                "type": "identify",
                "userId": "u42",
                "anonymousId": "8b1f0e2a-6c3d-4e5f-9a7b-1c2d3e4f5a6b",
                "traits": {
                    "email": "ada@example.com",
                    "firstName": "Ada",
                    "lastName": "Lovelace",
                    "createdAt": "2026-01-01T00:00:00Z",
                },
                "context": python,
                "messageId": "7d1e2f3a-4b5c-4d6e-8f90-a1b2c3d4e5f6",
                "timestamp": stamp(15),
                "integrations": {},
            },
            {
                "type": "track",
                "event": "Product Added",
                "userId": "u42",
                "properties": {"sku": "SKU-2", "quantity": 2, "price": 19.5, "currency": "eur"},
                "context": python,
                "messageId": "0b2f7c5e-7a4e-4d4b-9b8e-6a1c2d3e4f50",
                "timestamp": stamp(10),
                "integrations": {},
            },
            {
                "type": "track",
                "event": "Order Completed",
                "userId": "u42",
                "properties": {
                    "order_id": "50314b8e9bcf000000000000",
                    "revenue": 25.0,
                    "total": 27.5,
                    "currency": "EUR",
                    "products": [{"product_id": "SKU-9", "quantity": 1, "price": 27.5}],
                },
                "context": node,
                "messageId": "node-next-1796551200000-a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
                "timestamp": stamp(8),
                "_metadata": {"nodeVersion": "20.11.0", "jsRuntime": "node"},
            },
            {
                "type": "screen",
                "userId": "u42",
                "name": "Checkout",
                "properties": {},
                "context": library("analytics-ios", "4.1.8"),
                "messageId": "ios-0f1e2d3c",
                "timestamp": stamp(5),
            },
            {
                "type": "track",
                "event": "Email Opened",
                "userId": "u42",
                "properties": {"campaign_name": "spring", "email_id": "e1"},
                "context": node,
                "messageId": "node-next-1796551200001-b1b2c3d4",
                "timestamp": stamp(4),
            },
            {
                "type": "alias",
                "userId": "u42",
                "previousId": "old-crm-42",
                "context": node,
                "messageId": "node-next-1796551200002-c1b2c3d4",
                "timestamp": stamp(3),
            },
        ],
        "sentAt": stamp(0),
        "context": python,
    }
    headers = {**basic(WRITE_KEY), "User-Agent": "analytics-python/2.3.3"}
    r = await k.segment("batch", body, headers, compress=True)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "success": True,
        "accepted": 8,
        "duplicates": 0,
        "dropped": 0,
        "rejected": [],
    }
    now = datetime.now(UTC)
    profile = await k.profile("u42")
    assert profile is not None
    assert profile["counters"] == {
        "page_view": 2,  # page and screen
        "product_view": 1,
        "identify": 2,  # identify and alias
        "add_to_cart": 1,
        "purchase": 1,
        "email_open": 1,
    }
    assert (profile["first_name"], profile["last_name"]) == ("Ada", "Lovelace")
    assert "email" not in profile  # a write key does not set a CRM's fields
    assert profile["attributes"] == {"createdAt": "2026-01-01T00:00:00Z"}
    assert profile["cart"] == [{"sku": "SKU-2", "qty": 2, "price": 19.5, "currency": "EUR"}]
    assert profile["spend"] == {"EUR": 27.5}
    assert profile["recent_views"][0]["sku"] == "SKU-1"
    assert await k.profile("8b1f0e2a-6c3d-4e5f-9a7b-1c2d3e4f5a6b") is None

    def skew(ts: str) -> float:
        return abs((datetime.fromisoformat(ts) - now).total_seconds())

    # The client's hour is corrected: each time is within a few seconds of when it was
    # sent, by the server's clock (and never an hour ahead).
    view_ts = profile["recent_views"][0]["ts"]
    assert 19 < skew(view_ts) < 25, view_ts
    assert skew(profile["last_seen"]) < 6, profile["last_seen"]
    assert skew(profile["first_seen"]) < 35, profile["first_seen"]
    assert skew(profile["engagement"]["last_open"]) < 8
    assert profile["purchases"][0]["ts"] < profile["engagement"]["last_open"]

    # The SDK retries the whole batch: all duplicates, and still 200.
    r = await k.segment("batch", body, headers, compress=True)
    assert r.status_code == 200
    assert r.json()["duplicates"] == 8
    assert await k.counters("u42") == profile["counters"]


GROUP_BATCH: Json = {
    "batch": [
        {"type": "track", "userId": "u5", "event": "Signed Up", "messageId": "s-1"},
        {"type": "group", "userId": "u5", "groupId": "g1", "messageId": "s-2"},
        {"type": "track", "userId": "u5", "messageId": "s-3"},  # no event name
        {"type": "page", "userId": "u5", "messageId": "s-4"},
        {"type": "track", "userId": "u5", "event": "X", "messageId": "s-5", "timestamp": "soon"},
    ],
    "writeKey": WRITE_KEY,
}


async def test_a_segment_batch_with_a_group_call_applies_the_others(k: Kairos) -> None:
    r = await k.segment("batch", GROUP_BATCH, {})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["success"] is True
    assert (answer["accepted"], answer["duplicates"], answer["dropped"]) == (2, 0, 0)
    assert [x["index"] for x in answer["rejected"]] == [1, 2, 4]
    assert all(set(x) == REJECTED_KEYS for x in answer["rejected"])
    assert await k.counters("u5") == {"custom:Signed Up": 1, "page_view": 1}


async def test_a_segment_message_that_cannot_be_translated_is_named_by_its_own_code(
    k: Kairos,
) -> None:
    r = await k.segment("batch", GROUP_BATCH, {})
    assert r.status_code == 200, r.text
    assert [(x["index"], x["code"], x["field"]) for x in r.json()["rejected"]] == [
        (1, "unsupported_call", "type"),
        (2, "missing_field", "event"),
        (4, "invalid_ts", "timestamp"),
    ]
    r = await k.segment("track", {"userId": "u5", "messageId": "s-6"})
    assert r.status_code == 400, r.text
    assert [(x["code"], x["field"]) for x in r.json()["rejected"]] == [("missing_field", "event")]


async def test_a_segment_batch_with_nothing_valid_is_400(k: Kairos) -> None:
    body = {
        "batch": [
            {"type": "group", "userId": "u5", "groupId": "g1", "messageId": "s-1"},
            {"type": "track", "event": "X", "messageId": "s-2"},  # no user or anonymous id
            {"type": "track", "userId": "u5", "event": "X", "messageId": "s-3", "ts": "x"}
            | {"properties": [1]},
        ]
    }
    r = await k.segment("batch", body)
    assert r.status_code == 400, r.text
    answer = r.json()
    assert answer["success"] is False
    assert answer["error"]["code"] == "no_valid_events"
    assert [x["index"] for x in answer["rejected"]] == [0, 1, 2]
    assert await k.profile("u5") is None


async def test_segment_single_calls_and_text_plain(k: Kairos) -> None:
    track = {
        "userId": "u6",
        "event": "Product Removed",
        "properties": {"sku": "SKU-1"},
        "messageId": "single-1",
        "timestamp": ago(1),
        "context": library("analytics-python", "2.3.3"),
    }
    await k.post([ev("add_to_cart", "u6", sku="SKU-1", qty=2)])
    r = await k.segment("track", track)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1
    # analytics.js in a browser posts text/plain (no preflight), the write key in the body.
    page = {
        "type": "page",
        "userId": "u6",
        "properties": {"url": "https://shop.example.com/"},
        "messageId": "ajs-single-2",
        "writeKey": WRITE_KEY,
        "sentAt": ago(0),
        "timestamp": ago(0.01),
    }
    r = await k.client.post(
        "/segment/v1/page",
        content=orjson.dumps(page),
        headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": SHOP},
    )
    assert r.status_code == 200, r.text
    assert r.json()["success"] is True
    identify = {"userId": "u6", "traits": {"firstName": "Six"}, "messageId": "single-3"}
    r = await k.segment("identify", identify)
    assert r.status_code == 200
    r = await k.segment("screen", {"userId": "u6", "name": "Home", "messageId": "single-4"})
    assert r.status_code == 200
    r = await k.segment(
        "import",
        {"batch": [{"type": "track", "userId": "u6", "event": "Y", "messageId": "single-5"}]},
    )
    assert r.status_code == 200
    profile = await k.profile("u6")
    assert profile is not None
    assert profile["counters"] == {
        "add_to_cart": 1,
        "remove_from_cart": 1,
        "page_view": 2,
        "identify": 1,
        "custom:Y": 1,
    }
    assert "cart" not in profile or profile["cart"] == []
    assert profile["first_name"] == "Six"
    # A single call that cannot be translated: 400, success false.
    r = await k.segment("track", {"userId": "u6", "messageId": "single-6"})
    assert r.status_code == 400
    assert r.json()["success"] is False


# --- the store down --------------------------------------------------------------------------


async def test_a_redis_that_refuses_connections_is_503(settings: Callable[..., Settings]) -> None:
    env = {
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "KAIROS_REDIS_TIMEOUT_MS": 100,
        "KAIROS_WRITE_KEYS": WRITE_KEY,
        "KAIROS_DEMO_DATA": "false",
    }
    app = create_app(settings(**env))
    async with serve(cast(Any, app)) as client:
        k = Kairos(client, app)
        r = await k.send([ev("page_view")])
        assert_error(r, 503, "store_unavailable")
        assert int(r.headers["retry-after"]) >= 1
        r = await k.segment(
            "batch", {"batch": [{"type": "page", "userId": "u1", "messageId": "m"}]}
        )
        assert_error(r, 503, "store_unavailable")
        assert "retry-after" in r.headers
        r = await client.delete("/v1/profiles/u1", headers=AUTH)
        assert_error(r, 503, "store_unavailable")
        # A page posting from the browser can read the 503 and its Retry-After.
        r = await client.post(
            "/segment/v1/track",
            json={"userId": "u1", "event": "X", "messageId": "m", "writeKey": WRITE_KEY},
            headers={"Origin": SHOP, "Content-Type": "text/plain"},
        )
        assert_error(r, 503, "store_unavailable")
        assert r.headers["access-control-allow-origin"] == "*"
        assert r.headers["retry-after"] == "1"


async def retry_until_accepted(k: Kairos, events: list[Json], within_s: float = 5.0) -> Json:
    """Post as a client honouring 503 + Retry-After would (sooner, for the test)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        r = await k.send(events)
        if r.status_code != 503:
            assert r.status_code == 202, r.text
            return shape(r.json())
        assert "retry-after" in r.headers
        assert asyncio.get_running_loop().time() < deadline, "the store did not come back"
        await asyncio.sleep(0.05)


async def test_a_redis_stopped_mid_test_is_503_and_the_retry_lands_once(
    tmp_path: Path, settings: Callable[..., Settings]
) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        env = {
            "REDIS_URL": server.url,
            "KAIROS_REDIS_TIMEOUT_MS": 100,
            "KAIROS_WRITE_KEYS": WRITE_KEY,
        }
        app = create_app(settings(**env))
        async with serve(cast(Any, app)) as client:
            k = Kairos(client, app)
            first = [ev("page_view", eid=f"s-{i}") for i in range(3)]
            assert counts(await k.post(first)) == (3, 0, 0, [])
            with server.client() as direct:
                direct.save()  # kept across the restart (the server has no persistence of its own)
            server.stop()

            request = [ev("page_view", eid=f"s-{i}") for i in range(2, 6)]
            r = await k.send(request)
            assert_error(r, 503, "store_unavailable")
            assert r.headers["retry-after"] == "1"
            r = await k.segment("track", {"userId": "u1", "event": "X", "messageId": "z"})
            assert_error(r, 503, "store_unavailable")

            server.start()
            body = await retry_until_accepted(k, request)
            assert counts(body) == (3, 1, 0, [])
            assert await k.counters("u1") == {"page_view": 6}
            assert counts(await k.post(request)) == (0, 4, 0, [])
            assert await k.counters("u1") == {"page_view": 6}
    finally:
        server.stop()


@pytest.mark.parametrize("mode", ["ALL", "WRITE"])
async def test_a_redis_slower_than_its_timeout_is_503_and_the_retry_lands_once(
    settings: Callable[..., Settings], redis_url: str, redis_client: redis.Redis, mode: str
) -> None:
    """CLIENT PAUSE holds every command (ALL), or only writes (WRITE: the reads pass, the
    write script waits): past KAIROS_REDIS_TIMEOUT_MS the answer is 503; once Redis
    answers again, the client's retry leaves each event applied exactly once."""
    env = {"REDIS_URL": redis_url, "KAIROS_REDIS_TIMEOUT_MS": 100, "KAIROS_WRITE_KEYS": WRITE_KEY}
    app = create_app(settings(**env))
    async with serve(cast(Any, app)) as client:
        k = Kairos(client, app)
        assert counts(await k.post([ev("page_view", eid="p-0")])) == (1, 0, 0, [])
        request = [ev("page_view", eid=f"p-{i}") for i in range(5)]
        cast(Any, redis_client).execute_command("CLIENT", "PAUSE", 600, mode)
        started = asyncio.get_running_loop().time()
        r = await k.send(request)
        elapsed = asyncio.get_running_loop().time() - started
        assert_error(r, 503, "store_unavailable")
        assert r.headers["retry-after"] == "1"
        assert elapsed < 0.5, f"answered after {elapsed:.3f}s (timeout 100 ms)"
        await asyncio.sleep(0.7)  # the pause is over
        body = await retry_until_accepted(k, request)
        # What the paused write did once the pause ended counts as applied: the retry
        # then finds those ids, never applies them twice.
        assert body["accepted"] + body["duplicates"] == 5
        assert body["duplicates"] in (1, 5)
        assert await k.counters("u1") == {"page_view": 5}
        assert len(await k.history("u1")) == 5


# --- more: history, consent by identify, limits on the Segment routes, merges under load -------


async def test_the_history_keeps_the_normalized_utc_time(k: Kairos) -> None:
    moment = datetime.now(UTC).replace(microsecond=250123) - timedelta(hours=1)
    local = moment.astimezone(timezone_plus_two()).isoformat()
    event = ev("page_view", ts=local)
    assert counts(await k.post([event])) == (1, 0, 0, [])
    [kept] = await k.history("u1")
    assert kept["ts"] == iso(moment)


async def test_the_history_is_bounded_by_count(kairos: Opener) -> None:
    async with kairos(KAIROS_HISTORY_EVENTS=5) as k:
        events = [ev("page_view", eid=f"h-{i}", ts=ago(30 - i)) for i in range(8)]
        assert counts(await k.post(events[:6])) == (6, 0, 0, [])
        assert counts(await k.post(events[6:])) == (2, 0, 0, [])
        assert [e["event_id"] for e in await k.history("u1")] == [f"h-{i}" for i in range(3, 8)]
        # Counters are not bounded by the history.
        assert await k.counters("u1") == {"page_view": 8}
        # Ids stay deduplicated after their event left the history.
        assert counts(await k.post(events[:1])) == (0, 1, 0, [])


async def test_consent_given_and_withdrawn_by_identify(k: Kairos) -> None:
    withdraw = ev("identify", "u3", traits={"consent": {"tracking": False}})
    body = await k.post([ev("page_view", "u3"), withdraw, ev("page_view", "u3")])
    assert counts(body) == (2, 0, 1, [])
    profile = await k.profile("u3")
    assert profile is not None
    assert profile["consent"] == {"tracking": False}
    assert profile["counters"] == {"page_view": 1, "identify": 1}
    # An identify that gives consent back is applied, and so are events after it.
    give = ev("identify", "u3", traits={"consent": {"tracking": True}, "first_name": "T"})
    # ...sent with a write key, it is dropped: a public key never grants consent...
    body = await k.post([give])
    assert counts(body) == (0, 0, 1, [])
    # ...with an API key it is applied.
    body = await k.post([ev("page_view", "u3"), give, ev("page_view", "u3")], AUTH)
    assert counts(body) == (2, 0, 1, [])
    profile = await k.profile("u3")
    assert profile is not None
    assert profile["consent"] == {"tracking": True}
    assert profile["counters"] == {"page_view": 2, "identify": 2}


async def test_erasures_are_listed_newest_first_with_a_limit(k: Kairos) -> None:
    for user in ("g-1", "g-2", "g-3"):
        await k.post([ev("page_view", user)])
        r = await k.client.delete(f"/v1/profiles/{user}", headers=AUTH)
        assert r.status_code == 204
    r = await k.client.get("/v1/erasures?limit=2", headers=AUTH)
    assert r.status_code == 200
    entries = r.json()["erasures"]
    hashes = [entry["reader"] for entry in entries]
    assert len(hashes) == 2 and len(set(hashes)) == 2
    assert all(set(e) == {"at", "reader", "ids", "profile", "suppressed"} for e in entries)
    assert "g-" not in str(entries)
    for bad in ("0", "1001", "x", "-1"):
        r = await k.client.get(f"/v1/erasures?limit={bad}", headers=AUTH)
        assert_error(r, 400, "invalid_limit")


async def test_the_segment_routes_have_the_same_limits(kairos: Opener) -> None:
    async with kairos(KAIROS_EVENTS_MAX_BODY_MB=1, KAIROS_EVENTS_MAX_COUNT=1000) as k:
        batch = [
            {"type": "track", "userId": "u1", "event": "X", "messageId": f"m-{i}"}
            for i in range(1001)
        ]
        r = await k.segment("batch", {"batch": batch})
        assert_error(r, 413, "too_many_events")
        r = await k.segment("batch", {"batch": batch[:1000]}, compress=True)
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == 1000
        bomb = gzip.compress(b'{"batch": [' + b" " * (8 * 1024 * 1024) + b"]}")
        headers = {**basic(WRITE_KEY), "Content-Encoding": "gzip"}
        r = await k.client.post("/segment/v1/batch", content=bomb, headers=headers)
        assert_error(r, 413, "payload_too_large")
        r = await k.client.post("/segment/v1/batch", content=b"[" * (1 << 20 | 1), headers=headers)
        assert_error(r, 413, "payload_too_large")
        r = await k.client.post(
            "/segment/v1/batch",
            content=b"{}",
            headers={**basic(WRITE_KEY), "Content-Encoding": "br"},
        )
        assert_error(r, 415, "unsupported_encoding")
        r = await k.client.post("/segment/v1/batch", content=b"{nope", headers=basic(WRITE_KEY))
        assert_error(r, 400, "invalid_json")


async def test_a_body_of_several_megabytes_is_read_by_default(k: Kairos) -> None:
    """The events routes have their own cap (4 MB by default), not the 1 MB of others."""
    events = [ev("custom:pad", f"r{i % 100}", pad="z" * 2500) for i in range(1000)]
    raw = orjson.dumps({"events": events})
    assert 2_500_000 < len(raw) < 4 * 1024 * 1024
    headers = {**WRITE, "Content-Type": "application/json"}
    r = await k.client.post("/v1/events", content=raw, headers=headers)
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 1000
    messages = [
        {"type": "track", "userId": e["user_id"], "event": "pad", "messageId": "s" + e["event_id"]}
        | {"properties": {"pad": "z" * 2500}}
        for e in events
    ]
    r = await k.segment("batch", {"batch": messages})
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1000
    assert await k.counters("r5") == {"custom:pad": 20}


async def test_an_anonymous_event_retried_during_its_merge_is_applied_once(
    k: Kairos, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The merge is held (for 200 ms) between reading the anonymous reader's data and
    writing it into the user: the client's retry of an event already applied to the
    anonymous reader arrives then."""
    anon, user = "race-anon", "race-user"
    event = ev("add_to_cart", None, anon=anon, eid="retried-during-merge", sku="SKU-1")
    assert counts(await k.post([event])) == (1, 0, 0, [])
    await k.post([ev("page_view", user)])
    store = k.stores.events
    dump = store.dump
    dumped = asyncio.Event()

    async def slow_dump(user_id: str) -> Any:
        found = await dump(user_id)
        dumped.set()
        await asyncio.sleep(0.2)
        return found

    monkeypatch.setattr(store, "dump", slow_dump)
    merging = asyncio.create_task(k.post([ev("identify", user, anon=anon, traits={})]))
    await dumped.wait()
    retry = await k.post([event])
    assert counts(await merging) == (1, 0, 0, [])
    profile = await k.profile(user)
    assert profile is not None
    assert profile["counters"] == {"page_view": 1, "add_to_cart": 1, "identify": 1}
    assert [e["event_id"] for e in await k.history(user)].count(event["event_id"]) == 1
    assert counts(retry) == (0, 1, 0, [])


async def merge_round(k: Kairos, tag: str, seed: int) -> list[str]:
    """20 concurrent posters of overlapping batches mixing anonymous events, identify
    merges and user events, for readers named after `tag`: what came out wrong."""
    users = [f"{tag}u{u}" for u in range(4)]
    anons = [f"{tag}a{a}" for a in range(8)]
    owner = {anon: users[i % len(users)] for i, anon in enumerate(anons)}
    pool: list[Json] = []
    for i, anon in enumerate(anons):
        for j in range(5):
            pool.append(ev("product_view", None, anon=anon, eid=f"{anon}-v{j}", sku=f"S-{i}-{j}"))
        pool.append(ev("identify", owner[anon], anon=anon, eid=f"{anon}-id", traits={}))
    for user in users:
        pool += [ev("page_view", user, eid=f"{user}-p{j}") for j in range(5)]
    rng = random.Random(seed)
    batches = [rng.sample(pool, 25) for _ in range(20)]
    answers = await asyncio.gather(*(k.send(batch) for batch in batches))
    assert all(r.status_code == 202 for r in answers), [r.text for r in answers]
    bodies = [shape(r.json()) for r in answers]
    distinct = {e["event_id"]: e for batch in batches for e in batch}
    wrong: list[str] = []
    accepted = sum(b["accepted"] for b in bodies)
    if accepted != len(distinct):
        wrong.append(f"{tag}: {accepted} accepted of {len(distinct)} distinct events")
    merged = {e["anonymous_id"] for e in distinct.values() if e["type"] == "identify"}
    expected: dict[str, Counter[str]] = {who: Counter() for who in [*users, *anons]}
    for event in distinct.values():
        from_id = event.get("anonymous_id")
        dest = str(event.get("user_id") or from_id)
        if event["type"] != "identify" and from_id in merged:
            dest = owner[str(from_id)]
        expected[dest][event["type"]] += 1
    for reader, want in expected.items():
        got = await k.counters(reader)
        if got != dict(want):
            wrong.append(f"{reader}: counters {got}, expected {dict(want)}")
        kept = Counter(e["event_id"] for e in await k.history(reader))
        twice = sorted(i for i, n in kept.items() if n > 1)
        if twice:
            wrong.append(f"{reader}: kept twice in its history: {twice}")
    return wrong


async def test_concurrent_posters_with_overlapping_merges_leave_exact_counters(
    k: Kairos, backend: str, request: pytest.FixtureRequest
) -> None:
    """Five rounds of 20 posters sending overlapping batches that mix anonymous events,
    identify merges (each merge event sent by several posters at once) and user events:
    every distinct event must end up applied once, on the user its anonymous id merged
    into. (Embedded, a request never yields between its reads and writes, so this race
    does not happen there; the test above holds a merge open to show it on both.)"""
    wrong: list[str] = []
    for n in range(5):
        wrong += await merge_round(k, f"m{n}", seed=n)
    assert wrong == []


async def test_feeds_on_the_same_server_show_an_event_at_once(k: Kairos) -> None:
    """The server's own profile cache (5 s) does not hide what an event just changed,
    nor what an erasure removed."""
    await k.put_profile("fresh", {"first_name": "Before", "cart": []})
    url = feed_url("profile", "fresh")
    r = await k.client.get(url)
    assert r.json()["items"][0]["first_name"] == "Before"
    await k.post([ev("identify", "fresh", traits={"first_name": "After"})])
    r = await k.client.get(url)
    assert r.json()["items"][0]["first_name"] == "After"
    cart = feed_url("cart", "fresh")
    assert (await k.client.get(cart)).json()["items"] == []
    await k.post([ev("add_to_cart", "fresh", sku="SKU-1", qty=2)])
    items = (await k.client.get(cart)).json()["items"]
    assert [(i["sku"], i["qty"]) for i in items] == [("SKU-1", 2)]
    # A merge changes the user's feeds at once too.
    await k.post([ev("add_to_cart", None, anon="fresh-anon", sku="SKU-2")])
    await k.post([ev("identify", "fresh", anon="fresh-anon", traits={})])
    items = (await k.client.get(cart)).json()["items"]
    assert sorted(i["sku"] for i in items) == ["SKU-1", "SKU-2"]
    await asyncio.sleep(0.1)  # the changes announced so far have come back (on Redis)
    assert (await k.client.get(url)).json()["items"][0]["first_name"] == "After"  # cached
    r = await k.client.delete("/v1/profiles/fresh", headers=AUTH)
    assert r.status_code == 204
    r = await k.client.get(url)
    assert r.headers["x-kairos-fallback"] == "missing-profile"


async def test_a_full_cart_rejects_one_more_line(k: Kairos) -> None:
    adds = [ev("add_to_cart", sku=f"SKU-{i}") for i in range(101)]
    body = await k.post(adds)
    assert counts(body) == (100, 0, 0, [(100, "cart_full")])
    assert body["rejected"][0]["field"] == "properties.sku"
    # More of a sku already in the cart is fine; a purchase makes room.
    body = await k.post(
        [
            ev("add_to_cart", sku="SKU-0"),
            ev("purchase", items=[{"sku": "SKU-1"}], total=1, currency="EUR"),
            adds[100],
        ]
    )
    assert counts(body) == (3, 0, 0, [])
    profile = await k.profile("u1")
    assert profile is not None
    assert len(profile["cart"]) == 100
    assert profile["cart"][0] == {"sku": "SKU-0", "qty": 2}


@pytest.mark.parametrize(
    "consent", [{"tracking": False}, {"personalization": True}, {"personalization": False}]
)
async def test_an_identify_that_keeps_tracking_off_is_dropped(
    k: Kairos, consent: dict[str, bool]
) -> None:
    await k.put_profile("shy", {"first_name": "Shy", "consent": {"tracking": False}})
    before = await k.profile("shy")
    leak = ev("identify", "shy", traits={"consent": consent, "first_name": "Leak"})
    body = await k.post([leak])
    assert body == {"accepted": 0, "duplicates": 0, "dropped": 1, "rejected": []}
    after = await k.profile("shy")
    assert after is not None and before is not None
    assert after["first_name"] == "Shy"
    assert "counters" not in after
    assert await k.history("shy") == []


async def test_a_merge_cut_short_by_the_store_completes_on_retry(
    k: Kairos, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store fails between the identify and the merge it starts: 503, and the client's
    retry (the identify now a duplicate) completes the merge exactly once."""
    await k.post(
        [
            ev("product_view", None, anon="cut-anon", sku="SKU-1"),
            ev("add_to_cart", None, anon="cut-anon", sku="SKU-1"),
        ]
    )
    store = k.stores.events
    dump = store.dump
    failures = [StoreUnavailable("the store went away")]

    async def failing_dump(user_id: str) -> Any:
        if failures:
            raise failures.pop()
        return await dump(user_id)

    monkeypatch.setattr(store, "dump", failing_dump)
    request = [ev("identify", "cut-user", anon="cut-anon", traits={}), ev("page_view", "cut-user")]
    r = await k.send(request)
    assert_error(r, 503, "store_unavailable")
    assert r.headers["retry-after"] == "1"
    body = await k.post(request)
    assert counts(body) == (1, 1, 0, [])
    assert await k.counters("cut-user") == {
        "identify": 1,
        "page_view": 1,
        "product_view": 1,
        "add_to_cart": 1,
    }
    assert await k.profile("cut-anon") is None
    assert counts(await k.post(request)) == (0, 2, 0, [])
    assert (await k.counters("cut-user"))["product_view"] == 1


# --- the paths other clients post to ----------------------------------------------------


def _message(kind: str, mid: str) -> Json:
    base: Json = {"messageId": mid, "userId": "short-u", "type": kind}
    extra: dict[str, Json] = {
        "track": {"event": "Product Viewed", "properties": {"sku": "SKU-1"}},
        "page": {"name": "Home"},
        "screen": {"name": "Cart"},
        "identify": {"traits": {"firstName": "Ada"}},
        "alias": {"previousId": "short-anon"},
    }
    return {**base, **extra[kind]}


@pytest.mark.parametrize(
    ("path", "kind", "counter"),
    [
        ("t", "track", "product_view"),
        ("p", "page", "page_view"),
        ("s", "screen", "page_view"),
        ("i", "identify", "identify"),
        ("a", "alias", "identify"),
    ],
)
async def test_analytics_js_short_paths_are_their_calls(
    k: Kairos, path: str, kind: str, counter: str
) -> None:
    # analytics.js posts to {apiHost}/t, /p, /i, /a, /s, and batches to /b.
    r = await k.segment(path, _message(kind, f"short-{path}"))
    assert r.status_code == 200, r.text
    assert await k.counters("short-u") == {counter: 1}
    r = await k.segment("b", {"batch": [_message(kind, f"short-b-{path}")]})
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    assert await k.counters("short-u") == {counter: 2}


async def test_a_webhook_destination_posts_every_type_to_one_path(k: Kairos) -> None:
    for n, kind in enumerate(("track", "page", "identify")):
        r = await k.segment("webhook", _message(kind, f"hook-{n}"))
        assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    assert await k.counters("short-u") == {"product_view": 1, "page_view": 1, "identify": 1}
    r = await k.segment("webhook", {**_message("track", "hook-g"), "type": "group"})
    assert r.status_code == 400
    assert [x["code"] for x in r.json()["rejected"]] == ["unsupported_call"]


async def test_rudderstacks_anonymousid_header_passes_preflight(k: Kairos) -> None:
    r = await k.client.options(
        "/segment/v1/batch",
        headers={
            "Origin": "https://shop.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,anonymousid",
        },
    )
    assert r.status_code == 204
    assert "anonymousid" in r.headers["access-control-allow-headers"].lower()


async def test_lifting_covers_the_id_as_an_anonymous_id_too(k: Kairos) -> None:
    await k.post([ev("page_view", None, anon="lift-me")])
    r = await k.client.delete("/v1/profiles/lift-me", headers=AUTH)
    assert r.status_code == 204, r.text
    assert (await k.send([ev("page_view", None, anon="lift-me")])).status_code == 422
    r = await k.client.delete("/v1/suppressions/lift-me", headers=AUTH)
    assert r.status_code == 204
    assert (await k.post([ev("page_view", None, anon="lift-me")]))["accepted"] == 1


async def test_a_request_merges_at_most_a_hundred_readers(k: Kairos) -> None:
    merges = [ev("identify", f"mm-{i}", anon=f"ma-{i}", traits={}) for i in range(101)]
    body = await k.post([ev("page_view", None, anon="ma-100"), *merges])
    assert counts(body) == (101, 0, 0, [(101, "too_many_merges")])
    assert body["rejected"][0]["field"] == "anonymous_id"
    # the merges before it happened; the one refused moved nothing
    assert await k.profile("ma-99", anonymous=True) is None
    assert await k.counters("ma-100", anonymous=True) == {"page_view": 1}


async def test_erasing_a_user_refuses_that_id_as_an_anonymous_id_too(k: Kairos) -> None:
    # No anonymous reader of that id exists yet: none must start after the erasure.
    await k.post([ev("page_view", "zz1")])
    r = await k.client.delete("/v1/profiles/zz1", headers=AUTH)
    assert r.status_code == 204
    r = await k.send([ev("page_view", None, anon="zz1")])
    assert r.status_code == 422
    assert [(x["code"], x["field"]) for x in r.json()["rejected"]] == [
        ("suppressed", "anonymous_id")
    ]


async def test_a_profile_shows_its_segments_evaluated_now(k: Kairos) -> None:
    views = [ev("product_view", "seg-1", ts=ago(60 * i), sku="SKU-1") for i in range(3)]
    order = ev("purchase", "seg-1", items=[{"sku": "SKU-9"}], total=600, currency="EUR")
    await k.post([*views, order])
    found = await k.profile("seg-1")
    assert found is not None
    # the shipped rules: vip (spend > 500 EUR in 90 days) outranks browsing_intent
    assert found["segments"] == {"primary": "vip", "all": ["vip", "browsing_intent"]}
    assert (await k.profile("u-nothing")) is None


async def test_a_batchs_sent_at_corrects_each_clock_and_a_number_is_no_time(k: Kairos) -> None:
    """The envelope's `sentAt` is parsed once for its batch; a number there is not taken
    for a time (each message names it), nor is the server's own clock affected."""
    now_ms = int(time.time() * 1000)
    fast = now_ms + 3_600_000  # this client's clock is an hour ahead
    batch = [
        {**_message("track", f"skew-{i}"), "userId": "skew-u", "timestamp": format_ms(fast - i)}
        for i in range(3)
    ]
    r = await k.segment("batch", {"batch": batch, "sentAt": format_ms(fast + 50)})
    assert r.status_code == 200 and r.json()["accepted"] == 3, r.text
    kept = sorted(parse_ms(e["ts"]) for e in await k.history("skew-u"))
    for i, ts in enumerate(reversed(kept)):
        # received - (sentAt - timestamp): about 50 ms + i before the server's now
        assert now_ms - 50 - i - 5_000 <= ts <= now_ms - 50 - i + 5_000, (i, ts, now_ms)
    numbered = [{**_message("track", "skew-n"), "timestamp": format_ms(now_ms)}]
    r = await k.segment("batch", {"batch": numbered, "sentAt": now_ms})
    assert r.status_code == 400, r.text
    assert [(x["code"], x["field"]) for x in r.json()["rejected"]] == [("invalid_ts", "sentAt")]


async def test_an_erasure_announces_the_anonymous_reader_it_suppresses(
    k: Kairos, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no anonymous reader of the id at lookup, one may still be started before the
    erasure suppresses it: the other servers are told to drop any copy of it too."""
    await k.put_profile("lonely", {"first_name": "Lo"})
    profiles = k.app.state.services.profiles
    announced: list[str] = []
    changed = profiles.changed

    async def recording(reader: str) -> None:
        announced.append(reader)
        await changed(reader)

    monkeypatch.setattr(profiles, "changed", recording)
    r = await k.client.delete("/v1/profiles/lonely", headers=AUTH)
    assert r.status_code == 204, r.text
    assert announced == ["lonely", anonymous_reader("lonely")]
    announced.clear()
    r = await k.client.delete("/v1/profiles/lonely?suppress=false", headers=AUTH)
    assert r.status_code in (204, 404), r.text
    assert anonymous_reader("lonely") not in announced  # nothing suppressed, nothing to say
