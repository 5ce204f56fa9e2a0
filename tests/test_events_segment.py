"""The Segment dialect: request bodies as analytics-python, analytics-node and analytics.js
send them, each call and each event mapping, Segment's clock-skew correction, and the
messages that cannot be translated."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from app.events.segment import CALLS, SegmentError, messages, translate

RECEIVED = datetime(2026, 12, 6, 10, 0, 0, 500000, tzinfo=UTC)
RECEIVED_TS = "2026-12-06T10:00:00.500Z"
MONOPOLY = {
    "product_id": "507f1f77bcf86cd799439011",
    "sku": "G-32",
    "category": "Games",
    "name": "Monopoly: 3rd Edition",
    "brand": "Hasbro",
    "variant": "200 pieces",
    "price": 18.99,
    "quantity": 1,
    "coupon": "MAYDEALS",
    "currency": "usd",
    "position": 3,
    "value": 18.99,
    "url": "https://www.example.com/product/path",
    "image_url": "https://www.example.com/product/path.jpg",
}


def one(message: Any, call: str | None = "track", sent_at: Any = None) -> dict[str, Any]:
    return translate(message, call=call, received_at=RECEIVED, sent_at=sent_at)


def track(event: Any, properties: Any = None, **fields: Any) -> dict[str, Any]:
    """A track message as the HTTP API documents it."""
    message = {"messageId": "m1", "userId": "u1", "event": event, **fields}
    if properties is not None:
        message["properties"] = properties
    return message


def rejected(message: Any, call: str | None = "track", sent_at: Any = None) -> SegmentError:
    with pytest.raises(SegmentError) as caught:
        one(message, call, sent_at)
    return caught.value


# --- request bodies ------------------------------------------------------------------------


def test_an_analytics_python_batch() -> None:
    body = {
        "batch": [
            {
                "integrations": {},
                "anonymousId": None,
                "properties": {"sku": "SKU-1", "quantity": 2, "price": 19.5, "currency": "eur"},
                "timestamp": "2026-12-06T10:59:58.000+01:00",
                "context": {"library": {"name": "analytics-python", "version": "2.3.3"}},
                "userId": "u42",
                "type": "track",
                "event": "Product Added",
                "messageId": "0b2f7c5e-7a4e-4d4b-9b8e-6a1c2d3e4f50",
            },
            {
                "integrations": {},
                "timestamp": "2026-12-06T10:59:59.000+01:00",
                "context": {"library": {"name": "analytics-python", "version": "2.3.3"}},
                "type": "identify",
                "userId": "u42",
                "traits": {"email": "ada@example.com", "firstName": "Ada"},
                "messageId": "7d1e2f3a-4b5c-4d6e-8f90-a1b2c3d4e5f6",
            },
        ],
        "sentAt": "2026-12-06T10:00:00.100000+00:00",
        "writeKey": "wk_python",
    }
    batch, write_key = messages("batch", body)
    assert batch is body["batch"]
    assert write_key == "wk_python"
    events = [one(m, None, body["sentAt"]) for m in batch]
    # The server's clock agrees with the client's: the times stay as the client gave them.
    assert events == [
        {
            "event_id": "0b2f7c5e-7a4e-4d4b-9b8e-6a1c2d3e4f50",
            "user_id": "u42",
            "type": "add_to_cart",
            "ts": "2026-12-06T09:59:58.400Z",
            "properties": {"sku": "SKU-1", "qty": 2, "price": 19.5, "currency": "EUR"},
        },
        {
            "event_id": "7d1e2f3a-4b5c-4d6e-8f90-a1b2c3d4e5f6",
            "user_id": "u42",
            "type": "identify",
            "ts": "2026-12-06T09:59:59.400Z",
            "properties": {"traits": {"email": "ada@example.com", "first_name": "Ada"}},
        },
    ]


def test_an_analytics_node_batch_authenticates_by_header_not_body() -> None:
    body = {
        "batch": [
            {
                "type": "page",
                "userId": "foo-user-id",
                "name": "Home",
                "category": "Category",
                "properties": {"category": "Category", "url": "http://localhost"},
                "messageId": "node-next-1796551200000-a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
                "timestamp": "2026-12-06T10:00:00.000Z",
                "_metadata": {"nodeVersion": "20.11.0", "jsRuntime": "node"},
                "context": {"library": {"name": "@segment/analytics-node", "version": "2.1.0"}},
                "integrations": {},
            }
        ],
        "sentAt": "2026-12-06T10:00:00.200Z",
    }
    batch, write_key = messages("batch", body)
    assert write_key is None
    assert [one(m, None, body["sentAt"]) for m in batch] == [
        {
            "event_id": "node-next-1796551200000-a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
            "user_id": "foo-user-id",
            "type": "page_view",
            "ts": "2026-12-06T10:00:00.300Z",
            "properties": {"url": "http://localhost", "name": "Home", "category": "Category"},
        }
    ]


def test_an_analytics_js_page_call() -> None:
    """analytics.js posts one call at a time, writeKey and sentAt inside, `userId: null`
    for a visitor not yet identified, and the page both in properties and context.page."""
    page = {
        "path": "/shoes/",
        "referrer": "https://www.google.com/",
        "search": "?utm_source=mail",
        "title": "Shoes",
        "url": "https://shop.example/shoes/?utm_source=mail",
    }
    body = {
        "timestamp": "2026-12-06T10:59:59.123Z",
        "integrations": {},
        "type": "page",
        "properties": page,
        "context": {
            "page": page,
            "userAgent": "Mozilla/5.0",
            "locale": "fr-FR",
            "library": {"name": "analytics.js", "version": "npm:next-1.70.0"},
        },
        "messageId": "ajs-next-5b0f1c2d3e4f5a6b7c8d9e0f1a2b3c4d",
        "anonymousId": "8b1f0e2a-6c3d-4e5f-9a7b-1c2d3e4f5a6b",
        "writeKey": "wk_browser",
        "userId": None,
        "sentAt": "2026-12-06T10:59:59.456Z",
        "_metadata": {"bundled": ["Segment.io"], "unbundled": [], "bundledIds": []},
    }
    batch, write_key = messages("page", body)
    assert batch == [body]
    assert write_key == "wk_browser"
    assert one(body, "page") == {
        "event_id": "ajs-next-5b0f1c2d3e4f5a6b7c8d9e0f1a2b3c4d",
        "anonymous_id": "8b1f0e2a-6c3d-4e5f-9a7b-1c2d3e4f5a6b",
        "type": "page_view",
        # The browser's clock is an hour fast: received_at - (sentAt - timestamp).
        "ts": "2026-12-06T10:00:00.167Z",
        "properties": {
            "url": "https://shop.example/shoes/?utm_source=mail",
            "title": "Shoes",
            "path": "/shoes/",
            "referrer": "https://www.google.com/",
            "search": "?utm_source=mail",
        },
    }


def test_import_is_the_old_name_of_batch() -> None:
    assert CALLS == ("track", "identify", "page", "screen", "alias", "batch", "import")
    body = {"batch": [track("Signed Up")], "writeKey": "wk"}
    assert messages("import", body) == ([track("Signed Up")], "wk")


@pytest.mark.parametrize(
    ("call", "body", "field"),
    [
        ("track", [], None),
        ("batch", "batch", None),
        ("batch", None, None),
        ("batch", {"writeKey": "wk"}, "batch"),
        ("batch", {"batch": {"type": "track"}}, "batch"),
        ("import", {"batch": "[]"}, "batch"),
    ],
)
def test_a_body_that_is_not_an_object_or_a_batch_that_is_not_a_list(
    call: str, body: Any, field: str | None
) -> None:
    with pytest.raises(SegmentError) as caught:
        messages(call, body)
    assert (caught.value.code, caught.value.field) == ("invalid_body", field)


def test_a_write_key_that_is_not_a_string_is_no_write_key() -> None:
    assert messages("track", {"writeKey": 42}) == ([{"writeKey": 42}], None)


# --- track -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "properties", "kind", "expected"),
    [
        (
            "Product Viewed",
            MONOPOLY,
            "product_view",
            {
                "sku": "G-32",
                "qty": 1,
                "price": 18.99,
                "title": "Monopoly: 3rd Edition",
                "currency": "USD",
                "url": "https://www.example.com/product/path",
                "image_url": "https://www.example.com/product/path.jpg",
                "product_id": "507f1f77bcf86cd799439011",
                "category": "Games",
                "brand": "Hasbro",
                "variant": "200 pieces",
                "coupon": "MAYDEALS",
                "position": 3,
                "value": 18.99,
            },
        ),
        (
            "Product Added",
            {"cart_id": "c9", "product_id": 9714107479, "quantity": 2, "price": None},
            "add_to_cart",
            {"sku": "9714107479", "qty": 2, "cart_id": "c9", "price": None},
        ),
        ("product removed", {"sku": "G-32"}, "remove_from_cart", {"sku": "G-32"}),
        ("PRODUCT VIEWED", None, "product_view", {}),
        (
            "Order Completed",
            {
                "checkout_id": "fksdjfsdjfisjf9sdfjsd9f",
                "order_id": "50314b8e9bcf000000000000",
                "affiliation": "Google Store",
                "total": 27.50,
                "subtotal": 22.50,
                "revenue": 25.00,
                "shipping": 3,
                "tax": 2,
                "discount": 2.5,
                "coupon": "hasbros",
                "currency": "EUR",
                "products": [
                    {**MONOPOLY, "sku": "45790-32", "price": 19},
                    {"product_id": "505bd76785ebb509fc183733", "name": "Uno", "quantity": 2},
                ],
            },
            "purchase",
            {
                "items": [
                    {"sku": "45790-32", "qty": 1, "price": 19, "title": "Monopoly: 3rd Edition"},
                    {"sku": "505bd76785ebb509fc183733", "qty": 2, "title": "Uno"},
                ],
                "total": 27.50,
                "currency": "EUR",
                "order_id": "50314b8e9bcf000000000000",
                "checkout_id": "fksdjfsdjfisjf9sdfjsd9f",
                "affiliation": "Google Store",
                "subtotal": 22.50,
                "revenue": 25.00,
                "shipping": 3,
                "tax": 2,
                "discount": 2.5,
                "coupon": "hasbros",
            },
        ),
        (
            "order completed",
            {"order_id": 1001, "revenue": 40, "currency": "eur", "products": "SKU-1"},
            "purchase",
            {"items": "SKU-1", "total": 40, "currency": "EUR", "order_id": "1001"},
        ),
        (
            "Email Opened",
            {
                "email_id": "18vzF7u3z",
                "email_subject": "First shirt on us!",
                "campaign_id": "123",
                "campaign_name": "New Customer Discount",
            },
            "email_open",
            {
                "campaign": "New Customer Discount",
                "email_id": "18vzF7u3z",
                "email_subject": "First shirt on us!",
                "campaign_id": "123",
            },
        ),
        ("Email Opened", {"campaign_id": 123}, "email_open", {"campaign": "123"}),
        (
            "Email Link Clicked",
            {
                "campaign_name": "spring",
                "link_id": "101",
                "link_url": "https://shop.example/?promo=NEW",
            },
            "email_click",
            {"campaign": "spring", "url": "https://shop.example/?promo=NEW", "link_id": "101"},
        ),
        (
            "email link clicked",
            {"url": "https://shop.example/"},
            "email_click",
            {"url": "https://shop.example/"},
        ),
        (
            "Song Played",
            {"name": "Fallin for You", "artist": "Dierks Bentley"},
            "custom:Song Played",
            {"name": "Fallin for You", "artist": "Dierks Bentley"},
        ),
        ("Products Searched", None, "custom:Products Searched", {}),
    ],
)
def test_track_events_and_their_properties(
    event: str, properties: Any, kind: str, expected: dict[str, Any]
) -> None:
    assert one(track(event, properties)) == {
        "event_id": "m1",
        "user_id": "u1",
        "type": kind,
        "ts": RECEIVED_TS,
        "properties": expected,
    }


def test_mapped_properties_come_first_and_others_follow_as_they_are() -> None:
    properties = one(track("Product Viewed", MONOPOLY))["properties"]
    assert list(properties)[:7] == ["sku", "qty", "price", "title", "currency", "url", "image_url"]


def test_translating_leaves_the_message_as_it_was() -> None:
    message = track("Order Completed", {"currency": "usd", "products": [{"product_id": 7}]})
    copy = {**message, "properties": {"currency": "usd", "products": [{"product_id": 7}]}}
    one(message)
    assert message == copy


@pytest.mark.parametrize("event", [None, 42, ["Product Viewed"]])
def test_a_track_without_an_event_name(event: Any) -> None:
    message = track("x")
    if event is None:
        del message["event"]
    else:
        message["event"] = event
    error = rejected(message)
    assert (error.code, error.field) == ("missing_field", "event")


# --- identify, page, screen, alias -----------------------------------------------------------


@pytest.mark.parametrize(
    ("traits", "context", "expected"),
    [
        (
            {
                "firstName": "Ada",
                "lastName": "Lovelace",
                "email": "ada@example.com",
                "plan": "premium",
                "friendCount": 29,
            },
            {"locale": "en-GB", "timezone": "Europe/London", "ip": "203.0.113.9"},
            {
                "first_name": "Ada",
                "last_name": "Lovelace",
                "email": "ada@example.com",
                "locale": "en-GB",
                "timezone": "Europe/London",
                "plan": "premium",
                "friendCount": 29,
            },
        ),
        (
            {"locale": "de-DE", "timezone": "Europe/Berlin"},
            {"locale": "en-US", "timezone": "America/New_York"},
            {"locale": "de-DE", "timezone": "Europe/Berlin"},
        ),
        (None, {"locale": "fr-FR"}, {"locale": "fr-FR"}),
        (None, None, {}),
        ({"email": "ada@example.com"}, "not an object", {"email": "ada@example.com"}),
    ],
)
def test_identify_traits(traits: Any, context: Any, expected: dict[str, Any]) -> None:
    message: dict[str, Any] = {"messageId": "m1", "userId": "u1"}
    if traits is not None:
        message["traits"] = traits
    if context is not None:
        message["context"] = context
    assert one(message, "identify") == {
        "event_id": "m1",
        "user_id": "u1",
        "type": "identify",
        "ts": RECEIVED_TS,
        "properties": {"traits": expected},
    }


def test_a_page_call_over_http_names_its_page_and_takes_the_rest_from_context_page() -> None:
    message = {
        "messageId": "m1",
        "userId": "019mr8mf4r",
        "name": "Tracking HTTP API",
        "properties": {"title": "Docs"},
        "context": {"page": {"url": "https://example.com/docs", "path": "/docs", "search": ""}},
        "timestamp": "2012-12-02T00:31:29.738Z",
        "writeKey": "YOUR_WRITE_KEY",
    }
    assert one(message, "page") == {
        "event_id": "m1",
        "user_id": "019mr8mf4r",
        "type": "page_view",
        "ts": "2012-12-02T00:31:29.738Z",
        "properties": {
            "url": "https://example.com/docs",
            "title": "Docs",
            "path": "/docs",
            "name": "Tracking HTTP API",
        },
    }


def test_a_screen_is_a_page_view_named_after_the_screen() -> None:
    message = {
        "type": "screen",
        "messageId": "m1",
        "userId": "u1",
        "name": "Home",
        "category": "Category",
        "properties": {"variation": "local", "name": "ignored: the call's name wins"},
    }
    assert one(message, None)["properties"] == {"name": "Home", "variation": "local"}


def test_alias_is_an_identify_carrying_both_ids() -> None:
    message = {
        "type": "alias",
        "messageId": "m1",
        "previousId": "39239-239239-239239-23923",
        "userId": "019mr8mf4r",
        "timestamp": "2012-12-02T00:31:29.738Z",
    }
    assert one(message, None) == {
        "event_id": "m1",
        "user_id": "019mr8mf4r",
        "anonymous_id": "39239-239239-239239-23923",
        "type": "identify",
        "ts": "2012-12-02T00:31:29.738Z",
        "properties": {"traits": {}},
    }


@pytest.mark.parametrize("missing", ["previousId", "userId"])
def test_an_alias_needs_both_ids(missing: str) -> None:
    message = {"messageId": "m1", "previousId": "anon-1", "userId": "u1"}
    del message[missing]
    error = rejected(message, "alias")
    assert (error.code, error.field) == ("missing_field", missing)


# --- ids -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        ({"userId": "u1", "anonymousId": "a1"}, {"user_id": "u1", "anonymous_id": "a1"}),
        ({"anonymousId": "a1"}, {"anonymous_id": "a1"}),
        ({"userId": None, "anonymousId": "a1"}, {"anonymous_id": "a1"}),
        ({"userId": 42}, {"user_id": "42"}),
        # Not ours to judge: the native validator rejects what is not an id.
        ({"userId": {"id": 1}}, {"user_id": {"id": 1}}),
        ({"userId": True}, {"user_id": True}),
    ],
)
def test_user_and_anonymous_ids(ids: dict[str, Any], expected: dict[str, Any]) -> None:
    event = one({"messageId": 7, "event": "Signed Up", **ids})
    assert event == {
        "event_id": "7",
        **expected,
        "type": "custom:Signed Up",
        "ts": RECEIVED_TS,
        "properties": {},
    }


@pytest.mark.parametrize("ids", [{}, {"userId": None, "anonymousId": None}])
def test_a_message_without_any_id(ids: dict[str, Any]) -> None:
    error = rejected({"messageId": "m1", "event": "Signed Up", **ids})
    assert (error.code, error.field) == ("missing_field", "userId")


def test_a_message_without_its_message_id() -> None:
    error = rejected({"userId": "u1", "event": "Signed Up"})
    assert (error.code, error.field) == ("missing_field", "messageId")


# --- time ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("times", "envelope_sent_at", "ts"),
    [
        ({}, None, RECEIVED_TS),
        # No sentAt: the client's time is taken as it is.
        ({"timestamp": "2026-12-05T23:00:00.250+01:00"}, None, "2026-12-05T22:00:00.250Z"),
        ({"originalTimestamp": "2026-12-05T22:00:00Z"}, None, "2026-12-05T22:00:00.000Z"),
        (
            {"timestamp": "2026-12-05T22:00:00Z", "originalTimestamp": "2026-12-05T21:00:00Z"},
            None,
            "2026-12-05T22:00:00.000Z",
        ),
        ({"timestamp": "2026-12-05T22:00:00"}, None, "2026-12-05T22:00:00.000Z"),
        ({"timestamp": "2026-12-05T22:00:00.123999Z"}, None, "2026-12-05T22:00:00.123Z"),
        ({"timestamp": "2026-12-06T15:30:00+05:30"}, None, "2026-12-06T10:00:00.000Z"),
        # A client clock an hour fast: the event happened 0.4 s before it was sent.
        (
            {"timestamp": "2026-12-06T11:00:00.000Z", "sentAt": "2026-12-06T11:00:00.400Z"},
            None,
            "2026-12-06T10:00:00.100Z",
        ),
        # ... and one ten minutes slow, with the batch's sentAt.
        (
            {"timestamp": "2026-12-06T09:50:00.000Z"},
            "2026-12-06T09:50:00.300Z",
            "2026-12-06T10:00:00.200Z",
        ),
        # The message's own sentAt wins over the batch's.
        (
            {"timestamp": "2026-12-06T11:00:00Z", "sentAt": "2026-12-06T11:00:01Z"},
            "2026-12-06T09:00:00Z",
            "2026-12-06T09:59:59.500Z",
        ),
        # Corrected from originalTimestamp when the message carries both.
        (
            {
                "timestamp": "2026-12-01T00:00:00Z",
                "originalTimestamp": "2026-12-06T11:00:00Z",
                "sentAt": "2026-12-06T11:00:02Z",
            },
            None,
            "2026-12-06T09:59:58.500Z",
        ),
        # Queued offline for a day on a right clock: the day is kept.
        (
            {"timestamp": "2026-12-05T10:00:00Z"},
            "2026-12-06T10:00:00.400Z",
            "2026-12-05T10:00:00.100Z",
        ),
        # sentAt alone says nothing about when the event happened.
        ({"sentAt": "2026-12-06T11:00:00Z"}, None, RECEIVED_TS),
    ],
)
def test_the_event_time(times: dict[str, Any], envelope_sent_at: str | None, ts: str) -> None:
    assert one(track("Signed Up", **times), sent_at=envelope_sent_at)["ts"] == ts


def test_a_naive_received_at_is_utc() -> None:
    event = translate(track("x"), call="track", received_at=datetime(2026, 12, 6, 10, 0))
    assert event["ts"] == "2026-12-06T10:00:00.000Z"


@pytest.mark.parametrize(
    ("times", "envelope_sent_at", "field"),
    [
        ({"timestamp": "yesterday"}, None, "timestamp"),
        ({"timestamp": 1796551200}, None, "timestamp"),
        # The HTTP API page's own example: a one-digit month is not ISO 8601.
        ({"timestamp": "2015-2-02T00:30:08.276Z"}, None, "timestamp"),
        ({"originalTimestamp": "2026-13-01T00:00:00Z"}, None, "originalTimestamp"),
        ({"timestamp": "2026-12-06T10:00:00Z", "sentAt": "soon"}, None, "sentAt"),
        ({"timestamp": "2026-12-06T10:00:00Z"}, ["2026-12-06T10:00:00Z"], "sentAt"),
        ({"timestamp": "0001-01-01T00:00:00+01:00"}, None, "timestamp"),
        (
            {"timestamp": "0001-01-01T00:00:00Z", "sentAt": "9999-12-31T23:59:59Z"},
            None,
            "sentAt",
        ),
    ],
)
def test_an_unreadable_time(times: dict[str, Any], envelope_sent_at: Any, field: str) -> None:
    error = rejected(track("Signed Up", **times), sent_at=envelope_sent_at)
    assert (error.code, error.field) == ("invalid_ts", field)


# --- what cannot be translated ---------------------------------------------------------------


@pytest.mark.parametrize("message", [None, "track", 42, ["messageId"]])
def test_a_message_that_is_not_an_object(message: Any) -> None:
    assert rejected(message, None).code == "invalid_body"


@pytest.mark.parametrize("kind", ["group", "batch", "import", "Track", 7, ["track"]])
def test_calls_other_than_track_identify_page_screen_alias(kind: Any) -> None:
    message = {"type": kind, "messageId": "m1", "userId": "u1", "groupId": "g1"}
    error = rejected(message, None)
    assert (error.code, error.field) == ("unsupported_call", "type")


def test_a_group_posted_alone_is_refused_by_its_path() -> None:
    error = rejected({"messageId": "m1", "userId": "u1", "groupId": "g1"}, "group")
    assert error.code == "unsupported_call"
    assert "group" in error.message


def test_a_batched_message_without_its_type() -> None:
    error = rejected({"messageId": "m1", "userId": "u1", "event": "x"}, None)
    assert (error.code, error.field) == ("missing_field", "type")


@pytest.mark.parametrize(
    ("call", "message", "field"),
    [
        ("track", track("Product Viewed", ["G-32"]), "properties"),
        ("page", {"messageId": "m1", "userId": "u1", "properties": "home"}, "properties"),
        ("identify", {"messageId": "m1", "userId": "u1", "traits": [1]}, "traits"),
    ],
)
def test_properties_and_traits_must_be_objects(
    call: str, message: dict[str, Any], field: str
) -> None:
    error = rejected(message, call)
    assert (error.code, error.field) == ("invalid_field", field)


def test_a_translated_time_is_checked_without_parsing_it_again() -> None:
    """The translation's time carries its milliseconds; the native check takes them and
    keeps the same text, as it would have from parsing it."""
    from app.events.clock import Clock, parse_ms
    from app.events.model import check_event

    for clock in (None, Clock()):
        message = {
            **track("Product Viewed", {"sku": "SKU-1"}),
            "timestamp": "2026-12-06T09:59:58.4+01:00",
        }
        native = translate(message, call="track", received_at=RECEIVED, clock=clock)
        assert native["ts"] == "2026-12-06T08:59:58.400Z"
        event = check_event(native, received_ms=parse_ms(RECEIVED_TS), max_bytes=None, clock=clock)
        plain = check_event(
            {**native, "ts": str(native["ts"])},
            received_ms=parse_ms(RECEIVED_TS),
            max_bytes=None,
            clock=clock,
        )
        assert (event.ts_ms, event.ts, event.raw) == (plain.ts_ms, plain.ts, plain.raw)
        assert event.ts_ms == parse_ms("2026-12-06T08:59:58.400Z")
