"""The native event: its types, its fields, and the checks one event must pass.

An event is checked alone here (shape, ids, time, the properties its type needs); what
it does to a reader is `app/events/reduce.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import orjson

from app.events.clock import Clock, Stamp, format_ms, parse_ms
from app.profiles.schema import CURRENCY, SKU, USER_ID

TYPES = (
    "page_view",
    "product_view",
    "add_to_cart",
    "remove_from_cart",
    "purchase",
    "email_open",
    "email_click",
    "identify",
)
CUSTOM_PREFIX = "custom:"
CUSTOM_NAME = re.compile(r"[A-Za-z0-9 _.:/-]{1,64}")
URL = re.compile(r"https?://[^\s/]", re.IGNORECASE)
MAX_EVENT_ID = 100
# Anonymous readers are kept apart from users: "~" + the anonymous id, which no user id
# can spell (no "~" in ids). So an anonymous id never names a user, and an identify or
# alias sent with a public write key can merge only an anonymous reader into a user.
ANONYMOUS = "~"
MAX_ITEMS = 100
EARLIEST_MS = parse_ms("2000-01-01T00:00:00Z")
MAX_AHEAD_MS = 24 * 3600 * 1000


class EventRejected(Exception):
    """One event cannot be accepted; `code`, `message` and `field` go to its `rejected`
    entry."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.field = code, message, field


@dataclass(slots=True)  # not frozen: one per event, and frozen costs its __init__
class Event:
    """A checked event. `reader` is the id its changes go to first (the user id, else the
    anonymous reader of the anonymous id); `ts_ms` is its time in UTC milliseconds and
    `ts` the same in ISO 8601; `raw` is what the reader's history keeps."""

    event_id: str
    type: str
    user_id: str | None
    anonymous_id: str | None
    ts_ms: int
    ts: str
    properties: dict[str, Any]
    raw: bytes

    @property
    def reader(self) -> str:
        return self.user_id or anonymous_reader(self.anonymous_id or "")

    @property
    def merges(self) -> bool:
        """An identify carrying both ids: the anonymous reader merges into the user."""
        return self.type == "identify" and bool(self.user_id and self.anonymous_id)


def check_event(
    doc: Any, *, received_ms: int, max_bytes: int | None, clock: Clock | None = None
) -> Event:
    """`doc` as a checked `Event`, or `EventRejected` naming the first problem. With
    `max_bytes` None the size is not measured (the caller knows the event is smaller:
    its whole request was); `clock` reads and writes its time faster."""
    if not isinstance(doc, dict):
        raise EventRejected("invalid_event", "an event must be a JSON object")
    if max_bytes is not None and len(_dumps(doc)) > max_bytes:
        raise EventRejected("event_too_large", f"an event may be at most {max_bytes} bytes as JSON")
    event_id = doc.get("event_id")
    if event_id is None:
        raise EventRejected("missing_field", "event_id is required", "event_id")
    if (
        not isinstance(event_id, str)
        or not 1 <= len(event_id) <= MAX_EVENT_ID
        or not event_id.isprintable()
    ):
        raise _bad("event_id", f"must be 1-{MAX_EVENT_ID} printable characters")
    user_id = _reader_id(doc, "user_id")
    anonymous_id = _reader_id(doc, "anonymous_id")
    if user_id is None and anonymous_id is None:
        raise EventRejected("missing_field", "user_id or anonymous_id is required", "user_id")
    kind = doc.get("type")
    if kind is None:
        raise EventRejected("missing_field", "type is required", "type")
    if not isinstance(kind, str) or not (
        kind in TYPES
        or (kind.startswith(CUSTOM_PREFIX) and CUSTOM_NAME.fullmatch(kind[len(CUSTOM_PREFIX) :]))
    ):
        raise EventRejected(
            "unknown_type",
            f"type must be one of {', '.join(TYPES)} or custom:<name> (1-64 letters, digits, "
            "space and _ . : / -)",
            "type",
        )
    given_ts = doc.get("ts")
    ts_ms = _timestamp(given_ts, received_ms, clock)
    properties = doc.get("properties", {})
    if properties is None:
        properties = {}
    if not isinstance(properties, dict):
        raise _bad("properties", "must be an object")
    check = PROPERTIES.get(kind)
    if check is not None:
        check(properties)
    # The history keeps the event as checked: its time in UTC, only the known fields.
    kept: dict[str, Any] = {"event_id": event_id, "type": kind}
    if user_id is not None:
        kept["user_id"] = user_id
    elif anonymous_id is not None:
        # Only when it names the reader: a user's history never keeps the anonymous ids
        # seen beside it, which an erasure of those ids could not find.
        kept["anonymous_id"] = anonymous_id
    ts: str
    if type(given_ts) is Stamp:  # already in the kept form
        ts = given_ts
    else:
        ts = format_ms(ts_ms) if clock is None else clock.format_ms(ts_ms)
    kept["ts"] = ts
    kept["properties"] = properties
    return Event(event_id, kind, user_id, anonymous_id, ts_ms, ts, properties, _dumps(kept))


def _dumps(doc: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(doc)
    except TypeError:  # orjson stops at 255 levels of nesting
        raise EventRejected("invalid_event", "an event may nest at most 250 levels") from None


def anonymous_reader(anonymous_id: str) -> str:
    """The reader an anonymous id's events build."""
    return ANONYMOUS + anonymous_id


def _timestamp(value: Any, received_ms: int, clock: Clock | None) -> int:
    if value is None:
        return received_ms
    if type(value) is Stamp:  # a Segment event's, translated here: parsed already
        ts_ms = value.ms
    else:
        if not isinstance(value, str) or len(value) > 40:
            raise EventRejected("invalid_ts", "ts must be an ISO 8601 time", "ts")
        try:
            ts_ms = parse_ms(value) if clock is None else clock.parse_ms(value)
        except (ValueError, OverflowError):  # an offset can move a time out of range
            raise EventRejected("invalid_ts", "ts must be an ISO 8601 time", "ts") from None
    if ts_ms < EARLIEST_MS:
        raise EventRejected("invalid_ts", "ts is before 2000", "ts")
    if ts_ms > received_ms + MAX_AHEAD_MS:
        raise EventRejected("invalid_ts", "ts is more than a day ahead of the server", "ts")
    return ts_ms


def _reader_id(doc: dict[str, Any], field: str) -> str | None:
    value = doc.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not USER_ID.fullmatch(value):
        raise _bad(field, "must be 1-128 characters of letters, digits and _ . : -")
    return value


def _bad(field: str, message: str) -> EventRejected:
    return EventRejected("invalid_field", f"{field}: {message}", field)


def _sku(props: dict[str, Any], path: str = "properties") -> None:
    sku = props.get("sku")
    if sku is None:
        raise EventRejected("missing_field", f"{path}.sku is required", f"{path}.sku")
    if not isinstance(sku, str) or not SKU.fullmatch(sku):
        raise _bad(f"{path}.sku", "must be 1-64 characters of letters, digits and _ . : / -")


def _number(props: dict[str, Any], key: str, path: str, *, required: bool = False) -> None:
    value = props.get(key)
    if value is None:
        if required:
            raise EventRejected("missing_field", f"{path}.{key} is required", f"{path}.{key}")
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1e9:
        raise _bad(f"{path}.{key}", "must be a number between 0 and 1e9")


def _qty(props: dict[str, Any], path: str) -> None:
    value = props.get("qty")
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 9999
    ):
        raise _bad(f"{path}.qty", "must be an integer between 1 and 9999")


def _currency(props: dict[str, Any], path: str, *, required: bool = False) -> None:
    value = props.get("currency")
    if value is None:
        if required:
            raise EventRejected("missing_field", f"{path}.currency is required", f"{path}.currency")
        return
    if not isinstance(value, str) or not CURRENCY.fullmatch(value):
        raise _bad(f"{path}.currency", "must be a 3-letter ISO 4217 code such as EUR")


def _text(props: dict[str, Any], key: str, path: str, limit: int) -> None:
    value = props.get(key)
    if value is not None and (not isinstance(value, str) or len(value) > limit):
        raise _bad(f"{path}.{key}", f"must be a string of at most {limit} characters")


def _product(props: dict[str, Any]) -> None:
    _sku(props)
    _qty(props, "properties")
    _number(props, "price", "properties")
    _currency(props, "properties")
    _text(props, "title", "properties", 200)
    for key in ("url", "image_url"):
        _url(props, key)


def _url(props: dict[str, Any], key: str) -> None:
    value = props.get(key)
    if value is not None and (
        not isinstance(value, str) or len(value) > 2048 or URL.match(value) is None
    ):
        raise _bad(f"properties.{key}", "must be an absolute http(s) URL")


def _purchase(props: dict[str, Any]) -> None:
    items = props.get("items")
    if items is None:
        raise EventRejected("missing_field", "properties.items is required", "properties.items")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_ITEMS:
        raise _bad("properties.items", f"must be a list of 1-{MAX_ITEMS} items")
    for i, item in enumerate(items):
        path = f"properties.items[{i}]"
        if not isinstance(item, dict):
            raise _bad(path, "must be an object")
        _sku(item, path)
        _qty(item, path)
        _number(item, "price", path)
    _number(props, "total", "properties", required=True)
    _currency(props, "properties", required=True)
    _text(props, "order_id", "properties", 100)


def _identify(props: dict[str, Any]) -> None:
    traits = props.get("traits")
    if traits is None:
        raise EventRejected("missing_field", "properties.traits is required", "properties.traits")
    if not isinstance(traits, dict):
        raise _bad("properties.traits", "must be an object")


def _email(props: dict[str, Any]) -> None:
    _text(props, "campaign", "properties", 100)
    _url(props, "url")


def _page(props: dict[str, Any]) -> None:
    _text(props, "title", "properties", 200)
    _url(props, "url")


PROPERTIES = MappingProxyType(
    {
        "page_view": _page,
        "product_view": _product,
        "add_to_cart": _product,
        "remove_from_cart": _product,
        "purchase": _purchase,
        "email_open": _email,
        "email_click": _email,
        "identify": _identify,
    }
)
