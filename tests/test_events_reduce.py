"""What events do to a profile (app/events/reduce.py) and what one event must be
(app/events/model.py): pure functions, no store."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from app.events.clock import format_ms
from app.events.merge import merge
from app.events.model import Event, EventRejected, check_event
from app.events.reduce import (
    ACCEPTED,
    DROPPED,
    DUPLICATE,
    MAX_COUNTERS,
    MAX_PURCHASES,
    MAX_RECENT_VIEWS,
    OTHER_CUSTOM,
    reduce,
)

NOW_MS = int(datetime(2026, 12, 1, 12, tzinfo=UTC).timestamp() * 1000)
MAX_BYTES = 32 * 1024


def event(kind: str, event_id: str = "e1", ts_offset_s: float = 0, **props: Any) -> Event:
    doc = {
        "event_id": event_id,
        "user_id": "u1",
        "type": kind,
        "ts": format_ms(int(NOW_MS + ts_offset_s * 1000)),
        "properties": props,
    }
    return check_event(doc, received_ms=NOW_MS, max_bytes=MAX_BYTES)


def rejected(doc: Any, max_bytes: int = MAX_BYTES) -> EventRejected:
    with pytest.raises(EventRejected) as caught:
        check_event(doc, received_ms=NOW_MS, max_bytes=max_bytes)
    return caught.value


BASE = {"event_id": "e1", "user_id": "u1", "type": "page_view"}


ITEMS = "properties.items"


def p(kind: str, **props: Any) -> dict[str, Any]:
    return {"type": kind, "properties": props}


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"event_id": None}, "missing_field", "event_id"),
        ({"event_id": ""}, "invalid_field", "event_id"),
        ({"event_id": "x" * 101}, "invalid_field", "event_id"),
        ({"event_id": 7}, "invalid_field", "event_id"),
        ({"user_id": None}, "missing_field", "user_id"),
        ({"user_id": "ada@example.com"}, "invalid_field", "user_id"),
        ({"anonymous_id": "{slot}"}, "invalid_field", "anonymous_id"),
        ({"type": None}, "missing_field", "type"),
        ({"type": "pageview"}, "unknown_type", "type"),
        ({"type": "custom:"}, "unknown_type", "type"),
        ({"type": "custom:" + "x" * 65}, "unknown_type", "type"),
        ({"ts": "1999-12-31T23:59:59Z"}, "invalid_ts", "ts"),
        ({"ts": format_ms(NOW_MS + 86_400_000 + 1000)}, "invalid_ts", "ts"),
        ({"ts": "yesterday"}, "invalid_ts", "ts"),
        ({"ts": 1700000000}, "invalid_ts", "ts"),
        ({"properties": []}, "invalid_field", "properties"),
        (p("product_view"), "missing_field", "properties.sku"),
        (p("add_to_cart", sku="A", qty=0), "invalid_field", "properties.qty"),
        (p("add_to_cart", sku="A", qty=True), "invalid_field", "properties.qty"),
        (p("add_to_cart", sku="A b"), "invalid_field", "properties.sku"),
        (p("add_to_cart", sku="A", price=-1), "invalid_field", "properties.price"),
        (p("add_to_cart", sku="A", currency="eur"), "invalid_field", "properties.currency"),
        (p("product_view", sku="A", url="javascript:x"), "invalid_field", "properties.url"),
        (p("purchase", total=1, currency="EUR"), "missing_field", "properties.items"),
        (p("purchase", items=[], total=1, currency="EUR"), "invalid_field", "properties.items"),
        (p("purchase", items=[{}], total=1, currency="EUR"), "missing_field", f"{ITEMS}[0].sku"),
        (p("purchase", items=[{"sku": "A"}], currency="EUR"), "missing_field", "properties.total"),
        (p("purchase", items=[{"sku": "A"}], total=1), "missing_field", "properties.currency"),
        (p("identify"), "missing_field", "properties.traits"),
        (p("identify", traits=[]), "invalid_field", "properties.traits"),
        (p("email_open", campaign="c" * 101), "invalid_field", "properties.campaign"),
    ],
)  # fmt: skip
def test_an_invalid_event_is_rejected_naming_its_field(
    change: dict[str, Any], code: str, field: str
):
    doc = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    exc = rejected(doc)
    assert (exc.code, exc.field) == (code, field), exc.message


def test_a_non_object_and_an_oversized_event_are_rejected():
    assert rejected([BASE]).code == "invalid_event"
    big = {**BASE, "properties": {"note": "x" * 200}}
    assert rejected(big, max_bytes=100).code == "event_too_large"
    assert check_event(big, received_ms=NOW_MS, max_bytes=1000).event_id == "e1"


def test_an_event_nested_past_what_json_can_encode_is_rejected_not_a_crash():
    deep: dict[str, Any] = {}
    inner = deep
    for _ in range(300):
        inner["a"] = {}
        inner = inner["a"]
    assert rejected({**BASE, "properties": deep}).code == "invalid_event"


def test_time_is_normalized_to_utc_and_defaults_to_receipt():
    e = check_event({**BASE, "ts": "2026-12-01T12:00:00+02:00"}, received_ms=NOW_MS, max_bytes=999)
    assert e.ts == "2026-12-01T10:00:00.000Z"
    assert orjson.loads(e.raw)["ts"] == "2026-12-01T10:00:00.000Z"
    naive = check_event({**BASE, "ts": "2026-12-01T10:00:00"}, received_ms=NOW_MS, max_bytes=999)
    assert naive.ts_ms == e.ts_ms
    received = check_event(BASE, received_ms=NOW_MS, max_bytes=999)
    assert received.ts_ms == NOW_MS


def test_the_history_keeps_the_event_as_checked():
    doc = {
        **BASE,
        "anonymous_id": "a1",
        "context": {"ip": "1.2.3.4"},
        "properties": {"url": "https://x.example/"},
    }
    raw = orjson.loads(check_event(doc, received_ms=NOW_MS, max_bytes=999).raw)
    assert raw == {
        "event_id": "e1",
        "type": "page_view",
        "user_id": "u1",  # the anonymous id beside a user's is not kept
        "ts": format_ms(NOW_MS),
        "properties": {"url": "https://x.example/"},
    }


def test_custom_events_are_counted_under_their_name():
    done = reduce(None, [event("custom:Signed Up"), event("custom:Signed Up", "e2")], ())
    assert done.profile is not None
    assert done.profile["counters"] == {"custom:Signed Up": 2}


def test_counters_and_first_and_last_seen():
    events = [
        event("page_view", "e1", ts_offset_s=0),
        event("page_view", "e2", ts_offset_s=-3600),  # late arrival: earlier time
        event("email_open", "e3", ts_offset_s=60),
    ]
    profile = reduce({"first_name": "Ada"}, events, ()).profile
    assert profile == {
        "first_name": "Ada",
        "counters": {"page_view": 2, "email_open": 1},
        "first_seen": format_ms(NOW_MS - 3_600_000),
        "last_seen": format_ms(NOW_MS + 60_000),
        "engagement": {"last_open": format_ms(NOW_MS + 60_000)},
    }


def test_duplicates_by_id_seen_before_or_earlier_in_the_run():
    done = reduce(
        None, [event("page_view", "e1"), event("page_view", "e1"), event("page_view", "e2")], {"e2"}
    )
    assert done.outcomes == [ACCEPTED, DUPLICATE, DUPLICATE]
    assert [e.event_id for e in done.applied] == ["e1"]
    assert done.profile is not None and done.profile["counters"] == {"page_view": 1}


def test_recent_views_newest_first_unique_and_bounded():
    views = [event("product_view", f"v{i}", ts_offset_s=i, sku=f"S{i % 30}") for i in range(40)]
    profile = reduce(None, views, ()).profile
    assert profile is not None
    recent = profile["recent_views"]
    assert len(recent) == MAX_RECENT_VIEWS
    assert [v["sku"] for v in recent] == [f"S{i % 30}" for i in range(39, 19, -1)]
    assert recent == sorted(recent, key=lambda v: v["ts"], reverse=True)


def test_the_cart_follows_adds_removes_and_purchases():
    events = [
        event("add_to_cart", "a1", sku="A", qty=2, price=10, currency="EUR", title="Lamp"),
        event("add_to_cart", "a2", sku="A", qty=1),
        event("add_to_cart", "a3", sku="B"),
        event("add_to_cart", "a4", sku="C", qty=5),
        event("remove_from_cart", "r1", sku="C", qty=2),
        event("remove_from_cart", "r2", sku="B"),
    ]
    profile = reduce(None, events, ()).profile
    assert profile is not None
    assert profile["cart"] == [
        {"sku": "A", "qty": 3, "title": "Lamp", "price": 10, "currency": "EUR"},
        {"sku": "C", "qty": 3},
    ]
    bought = event(
        "purchase",
        "p1",
        items=[{"sku": "A", "qty": 3, "price": 10}],
        total=30.5,
        currency="EUR",
        order_id="o-1",
    )
    after = reduce(
        profile,
        [bought, event("purchase", "p2", items=[{"sku": "Z"}], total=5, currency="USD")],
        (),
    )
    assert after.profile is not None
    assert after.profile["cart"] == [{"sku": "C", "qty": 3}]
    assert after.profile["spend"] == {"EUR": 30.5, "USD": 5}
    assert after.profile["purchases"][1] == {
        "ts": format_ms(NOW_MS),
        "total": 30.5,
        "currency": "EUR",
        "items": [{"sku": "A", "qty": 3, "price": 10}],
        "order_id": "o-1",
    }


def test_purchases_are_bounded_and_spend_keeps_counting():
    many = [
        event("purchase", f"p{i}", i, items=[{"sku": "A"}], total=1, currency="EUR")
        for i in range(30)
    ]
    profile = reduce(None, many, ()).profile
    assert profile is not None
    assert len(profile["purchases"]) == MAX_PURCHASES
    assert profile["spend"] == {"EUR": 30}
    assert profile["counters"]["purchase"] == 30


def test_a_full_cart_rejects_a_new_line_but_not_more_of_a_kept_one():
    cart = [{"sku": f"S{i}", "qty": 1} for i in range(100)]
    done = reduce(
        {"cart": cart},
        [event("add_to_cart", "n", sku="NEW"), event("add_to_cart", "m", sku="S1")],
        (),
    )
    assert isinstance(done.outcomes[0], EventRejected) and done.outcomes[0].code == "cart_full"
    assert done.outcomes[1] == ACCEPTED
    assert done.profile is not None and done.profile["cart"][1] == {"sku": "S1", "qty": 2}


def test_identify_traits_fill_known_fields_and_attributes():
    traits = {
        "first_name": "Ada",
        "email": "ada@example.com",
        "plan": "pro",
        "consent": {"tracking": True},
    }
    profile = reduce(
        {"attributes": {"team": "x"}, "consent": {"personalization": False}},
        [event("identify", traits=traits)],
        (),
        trusted=True,
    ).profile
    assert profile is not None
    assert profile["first_name"] == "Ada"
    assert profile["email"] == "ada@example.com"
    assert profile["attributes"] == {"team": "x", "plan": "pro"}
    assert profile["consent"] == {"personalization": False, "tracking": True}


def test_identify_with_invalid_traits_is_rejected_and_changes_nothing():
    done = reduce(
        {"first_name": "Ada"},
        [event("identify", traits={"email": "not-an-address"})],
        (),
        trusted=True,
    )
    assert isinstance(done.outcomes[0], EventRejected)
    assert done.outcomes[0].field == "properties.traits.email"
    assert done.profile == {"first_name": "Ada"} and not done.changed


def test_a_reader_who_declined_tracking_gets_nothing_recorded_but_consent():
    declined = {"consent": {"tracking": False}}
    done = reduce(
        declined, [event("page_view"), event("identify", "e2", traits={"first_name": "Ada"})], ()
    )
    assert done.outcomes == [DROPPED, DROPPED]
    assert done.profile == declined and not done.changed
    opt_in = event("identify", "e3", traits={"consent": {"tracking": True}})
    # a write key never grants consent; an API key does
    assert reduce(declined, [opt_in], ()).outcomes == [DROPPED]
    again = reduce(declined, [opt_in, event("page_view", "e4")], (), trusted=True)
    assert again.outcomes == [ACCEPTED, ACCEPTED]
    assert again.profile is not None and again.profile["counters"]["page_view"] == 1


def test_an_unsubscribed_reader_gets_no_email_engagement_recorded_until_subscribed_again():
    unsubscribed = {"consent": {"tracking": True, "email": False}}
    opens = [event("email_open", "e1", campaign="spring"), event("page_view", "e2")]
    done = reduce(unsubscribed, opens, ())
    assert done.outcomes == [DROPPED, ACCEPTED]  # the email, not the shop
    back = event("identify", "e3", traits={"consent": {"email": True}})
    kept = reduce(unsubscribed, [back, event("email_click", "e5")], ())
    assert kept.outcomes == [ACCEPTED, DROPPED]  # a write key cannot subscribe again
    assert kept.profile is not None and kept.profile["consent"]["email"] is False
    again = reduce(unsubscribed, [back, event("email_open", "e4")], (), trusted=True)
    assert again.outcomes == [ACCEPTED, ACCEPTED]
    assert again.profile is not None and again.profile["consent"]["email"] is True


def test_merge_sums_interleaves_unites_and_keeps_the_users_fields():
    user = reduce(
        {"first_name": "Ada", "consent": {"personalization": True}},
        [
            event("product_view", "u1", 10, sku="A"),
            event("add_to_cart", "u2", 10, sku="A", qty=1),
            event("purchase", "u3", 20, items=[{"sku": "Q"}], total=10, currency="EUR"),
        ],
        (),
    ).profile
    anonymous = (
        reduce(
            {"first_name": "Anon", "tier": "gold", "consent": {"tracking": False}},
            [],
            (),
        ).profile
        or {}
    )
    anonymous = {
        **anonymous,
        **(reduce(None, [
            event("product_view", "a1", 5, sku="B"),
            event("product_view", "a2", 15, sku="A"),
            event("add_to_cart", "a3", 5, sku="A", qty=4),
            event("add_to_cart", "a4", 5, sku="C"),
            event("purchase", "a5", 0, items=[{"sku": "R"}], total=2.5, currency="EUR"),
        ], ()).profile or {}),
    }  # fmt: skip
    merged = merge(user, anonymous)
    assert merged["first_name"] == "Ada" and merged["tier"] == "gold"
    assert merged["counters"] == {"product_view": 3, "add_to_cart": 3, "purchase": 2}
    assert [v["sku"] for v in merged["recent_views"]] == ["A", "B"]
    assert merged["recent_views"][0]["ts"] == format_ms(NOW_MS + 15_000)
    assert {line["sku"]: line["qty"] for line in merged["cart"]} == {"A": 4, "C": 1}
    assert merged["spend"] == {"EUR": 12.5}
    assert [p["total"] for p in merged["purchases"]] == [10, 2.5]
    assert merged["first_seen"] == format_ms(NOW_MS) and merged["last_seen"] == format_ms(
        NOW_MS + 20_000
    )
    assert merged["consent"] == {"personalization": True, "tracking": False}


def test_merge_into_no_one_is_the_other_profile():
    other = reduce(None, [event("page_view")], ()).profile or {}
    assert merge(None, other) == other


def test_custom_types_past_the_cap_are_counted_together():
    events = [event(f"custom:t{i}", f"c{i}") for i in range(MAX_COUNTERS + 5)]
    profile = reduce(None, events, ()).profile
    assert profile is not None
    assert len(profile["counters"]) == MAX_COUNTERS + 1
    assert profile["counters"][OTHER_CUSTOM] == 5


def test_a_trait_named_attributes_fills_the_attributes():
    traits = {"attributes": {"team": "x"}, "plan": "pro"}
    profile = reduce(None, [event("identify", traits=traits)], ()).profile
    assert profile is not None and profile["attributes"] == {"team": "x", "plan": "pro"}


def test_a_write_key_identify_sets_names_and_withdrawals_only():
    traits = {
        "first_name": "Ada",
        "timezone": "Europe/London",
        "email": "mallory@example.com",
        "tier": "platinum",
        "consent": {"tracking": True, "personalization": False},
    }
    profile = reduce({"tier": "gold"}, [event("identify", traits=traits)], ()).profile
    assert profile is not None
    assert (profile["first_name"], profile["timezone"], profile["tier"]) == (
        "Ada",
        "Europe/London",
        "gold",
    )
    assert "email" not in profile
    assert profile["consent"] == {"personalization": False}


def test_a_merge_keeps_the_profile_within_the_schemas_limits():
    mine = {"attributes": {f"m{i}": i for i in range(60)}}
    theirs = {"attributes": {f"t{i}": "x" * 300 for i in range(80)}}
    merged = merge(mine, theirs)
    attributes = merged["attributes"]
    assert all(f"m{i}" in attributes for i in range(60))  # the user's own first
    assert len(attributes) <= 100
    assert len(orjson.dumps(attributes)) <= 16 * 1024


def test_a_clock_parses_and_formats_as_the_pure_functions_do() -> None:
    """A `Clock` remembers whole seconds; with or without its table, and past its size,
    it agrees with datetime."""
    import random
    from datetime import UTC, datetime, timedelta

    from app.events import clock as times

    clock = times.Clock(size=64)
    rng = random.Random(7)
    base = datetime(2026, 12, 6, tzinfo=UTC)
    moments = [base + timedelta(milliseconds=rng.randrange(10**10)) for _ in range(200)]
    moments += [base + timedelta(milliseconds=i) for i in range(0, 5000, 7)]
    for moment in moments:
        expected_ms = (moment - times.EPOCH) // timedelta(milliseconds=1)
        text = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert times.parse_ms(text) == expected_ms and times.format_ms(expected_ms) == text
        for _ in range(2):  # the second time from the table
            assert clock.parse_ms(text) == expected_ms
            assert clock.format_ms(expected_ms) == text
        assert 0 < clock.remembered() <= 64
    # Other spellings are parsed, not looked up, even when their second is known.
    clock.format_ms(times.parse_ms("2026-12-06T00:00:00.000Z"))
    assert clock.parse_ms("2026-12-06T01:00:00.250+01:00") == times.parse_ms(
        "2026-12-06T00:00:00.250Z"
    )
    assert clock.parse_ms("2026-12-06T00:00:00.25") == times.parse_ms("2026-12-06T00:00:00.250Z")
    for bad in ("2026-12-06T00:00:00.2x0Z", "2026-12-06T00:00:00.\uff12\uff15\uff10Z"):
        with pytest.raises(ValueError):
            clock.parse_ms(bad)
    assert clock.format_ms(-1) == times.format_ms(-1) == "1969-12-31T23:59:59.999Z"
    with pytest.raises(OverflowError):
        clock.format_ms(10**15)
