"""The Segment dialect: HTTP Tracking API messages translated into native event dicts.

Pure functions, no I/O. `messages` splits a request body to `/v1/{call}` into its
messages; `translate` turns one message into the native shape, mapping the e-commerce v2
and email specs' events and correcting the client's clock as Segment does. Checking the
result is the native validator's job, so values are passed on rather than judged here
(but for fields of the wrong type that a call would otherwise ignore: `TYPED`).
Spec: https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/

Over 300 lines because the calls, the event names and their field mappings are one table
to read top to bottom, and the hot path is spelled out rather than looped (every Segment
event runs it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from app.events.clock import EPOCH, MILLISECOND, Clock, parse_ms, stamped

CALLS = ("track", "identify", "page", "screen", "alias", "batch", "import")
BATCHES = frozenset({"batch", "import"})

# A native property: its name, the Segment names it is read from (first present wins),
# and how the value is converted.
Field = tuple[str, tuple[str, ...], Callable[[Any], Any]]
# A call's native type and properties.
Translated = tuple[str, dict[str, Any]]
EMPTY: Mapping[str, Any] = MappingProxyType({})


class SegmentError(Exception):
    """One message (or body) that cannot be translated: `code` and `field` say why."""

    def __init__(self, message: str, *, code: str = "invalid_field", field: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field


def _missing(field: str) -> SegmentError:
    return SegmentError(f"the message needs its `{field}`", code="missing_field", field=field)


def _same(value: Any) -> Any:
    return value


def _ident(value: Any) -> Any:
    """An id as a string when it is a number; anything else as given."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _kept(*names: str) -> tuple[Field, ...]:
    """Properties whose native name is their Segment name, kept as they are."""
    return tuple((name, (name,), _same) for name in names)


ITEM: tuple[Field, ...] = (
    ("sku", ("sku", "product_id"), _ident),
    ("qty", ("quantity",), _same),
    *_kept("price"),
    ("title", ("name",), _same),
)
PRODUCT: tuple[Field, ...] = (
    *ITEM,
    ("currency", ("currency",), _upper),
    *_kept("url", "image_url"),
)
EMAIL_OPEN: tuple[Field, ...] = (("campaign", ("campaign_name", "campaign_id"), _ident),)
EMAIL_CLICK: tuple[Field, ...] = (*EMAIL_OPEN, ("url", ("link_url", "url"), _same))
PAGE = _kept("url", "title", "path", "referrer", "name")
TRAITS: tuple[Field, ...] = (
    ("first_name", ("firstName",), _same),
    ("last_name", ("lastName",), _same),
    *_kept("email", "locale", "timezone"),
)


def _mapped(
    fields: tuple[Field, ...],
    props: Mapping[str, Any],
    fallback: Mapping[str, Any] = EMPTY,
    *,
    rest: bool = True,
) -> dict[str, Any]:
    """`props` under native names: the fields first (from `props`, else `fallback`), then
    (with `rest`) every other property of `props` as it is."""
    out: dict[str, Any] = {}
    used: set[str] = set()  # sources read under another name
    # Plain loops, no generator per field: every Segment event goes through here.
    for native, sources, convert in fields:
        for source in sources:
            value = props.get(source)
            if value is not None:
                out[native] = value if convert is _same else convert(value)
                if source != native:
                    used.add(source)
                break
        else:
            for source in sources if fallback is not EMPTY else ():
                value = fallback.get(source)
                if value is not None:
                    out[native] = value if convert is _same else convert(value)
                    break
    if rest:
        for key, value in props.items():
            if key not in out and key not in used:
                out[key] = value
    return out


def _items(products: Any) -> Any:
    """An order's products as native items; anything but a list of objects is passed on
    for the native validator to name."""
    if not isinstance(products, list):
        return products
    return [_mapped(ITEM, p, rest=False) if isinstance(p, dict) else p for p in products]


ORDER: tuple[Field, ...] = (
    ("items", ("products",), _items),
    ("total", ("total", "revenue"), _same),
    ("currency", ("currency",), _upper),
    ("order_id", ("order_id",), _ident),
)
# The spec's event names as it spells them; a name is matched case-insensitively.
_SPELLED: Mapping[str, tuple[str, tuple[Field, ...]]] = MappingProxyType(
    {
        "Product Viewed": ("product_view", PRODUCT),
        "Product Added": ("add_to_cart", PRODUCT),
        "Product Removed": ("remove_from_cart", PRODUCT),
        "Order Completed": ("purchase", ORDER),
        "Email Opened": ("email_open", EMAIL_OPEN),
        "Email Link Clicked": ("email_click", EMAIL_CLICK),
    }
)
TRACKED = MappingProxyType({name.lower(): found for name, found in _SPELLED.items()})


def _object(message: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = message.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SegmentError(f"`{key}` must be an object", field=key)
    return value


def _context(message: Mapping[str, Any], key: str | None = None) -> Mapping[str, Any]:
    """The message's `context`, or its `key` object; empty when not an object."""
    context = message.get("context")
    if isinstance(context, dict) and key is not None:
        context = context.get(key)
    return context if isinstance(context, dict) else EMPTY


def _track(message: Mapping[str, Any]) -> Translated:
    name = message.get("event")
    if not isinstance(name, str):
        raise _missing("event")
    props = _object(message, "properties")
    found = _SPELLED.get(name) or TRACKED.get(name.lower())  # as the spec spells it, first
    kind, fields = found or ("custom:" + name, ())
    return kind, _mapped(fields, props)


def _identify(message: Mapping[str, Any]) -> Translated:
    context = _context(message)
    client = {k: context[k] for k in ("locale", "timezone") if k in context}
    return "identify", {"traits": _mapped(TRAITS, _object(message, "traits"), client)}


def _page(message: Mapping[str, Any]) -> Translated:
    props = _object(message, "properties")
    if message.get("name") is not None:
        props = {**props, "name": message["name"]}
    return "page_view", _mapped(PAGE, props, _context(message, "page"))


def _alias(message: Mapping[str, Any]) -> Translated:
    return "identify", {"traits": {}}


CALLED: Mapping[str, Callable[[Mapping[str, Any]], Translated]] = MappingProxyType(
    {"track": _track, "identify": _identify, "page": _page, "screen": _page, "alias": _alias}
)


def _ids(message: Mapping[str, Any], call: str) -> dict[str, Any]:
    if call == "alias":
        # The user and the id it was known by before: an identify carrying both merges
        # the earlier id into the user.
        for name in ("userId", "previousId"):
            if message.get(name) is None:
                raise _missing(name)
        return {"user_id": _ident(message["userId"]), "anonymous_id": _ident(message["previousId"])}
    user, anonymous = message.get("userId"), message.get("anonymousId")
    if user is None and anonymous is None:
        raise _missing("userId")
    # Spelled out, not a loop over the two: every Segment event comes here.
    ids = {}
    if user is not None:
        ids["user_id"] = user if type(user) is str else _ident(user)
    if anonymous is not None:
        ids["anonymous_id"] = anonymous if type(anonymous) is str else _ident(anonymous)
    return ids


class Millis(int):
    """A time already parsed, in UTC milliseconds (unlike a number a client sent)."""


def _bad_time(field: str, why: str = "must be an ISO 8601 time") -> SegmentError:
    return SegmentError(f"`{field}` {why}", code="invalid_ts", field=field)


def _ms(value: Any, field: str, clock: Clock | None = None) -> int:
    """An ISO 8601 time (naive means UTC) as UTC milliseconds."""
    if clock is not None and type(value) is str:  # the usual case, first
        try:
            return clock.parse_ms(value)
        except (ValueError, OverflowError):
            raise _bad_time(field) from None
    if isinstance(value, datetime):
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value
        return (moment - EPOCH) // MILLISECOND
    try:
        return parse_ms(value) if clock is None else clock.parse_ms(value)
    except (TypeError, ValueError, OverflowError):
        raise _bad_time(field) from None


def _ts(message: Mapping[str, Any], received_ms: int, sent_at: Any, clock: Clock | None) -> str:
    """When the event happened, as Segment computes `timestamp`."""
    # Spelled out, not a loop over the three: every Segment event comes here.
    stamp, original, sent = (
        message.get("timestamp"),
        message.get("originalTimestamp"),
        message.get("sentAt"),
    )
    if stamp is not None:
        stamp = _ms(stamp, "timestamp", clock)
    if original is not None:
        original = _ms(original, "originalTimestamp", clock)
    if sent is not None:
        sent = _ms(sent, "sentAt", clock)
    if sent is None and sent_at is not None:
        # The envelope's, parsed once for its batch by the caller when it can be.
        sent = sent_at if isinstance(sent_at, Millis) else _ms(sent_at, "sentAt", clock)
    client = stamp if original is None else original
    if client is None:
        when = received_ms
    elif sent is None:
        when = client if stamp is None else stamp
    else:
        # The client's clock is off by (sentAt - receivedAt), the request's transit being
        # negligible: the event's time on that clock is off by as much.
        when = received_ms - (sent - client)
    try:
        return stamped(when, clock)
    except OverflowError:
        raise _bad_time("sentAt", "is too far from the event's time") from None


def messages(call: str, body: Any) -> tuple[list[Any], str | None]:
    """The messages of one request body to `/v1/{call}` and the writeKey it carries (the
    body's `writeKey`, None when absent). For `batch`/`import` the body's `batch` list
    (each message carrying its own `type`); for a single call the body itself, its type
    being `call`. Raises SegmentError(code="invalid_body") when the body is not an object
    or `batch` is not a list."""
    if not isinstance(body, dict):
        raise SegmentError("the body must be a JSON object", code="invalid_body")
    key = body.get("writeKey")
    write_key = key if isinstance(key, str) else None
    if call not in BATCHES:
        return [body], write_key
    batch = body.get("batch")
    if not isinstance(batch, list):
        raise SegmentError("`batch` must be a list of messages", code="invalid_body", field="batch")
    return batch, write_key


# Fields a call may not read, refused all the same when not of their type (null: absent;
# `context`, the client's metadata, is read only when it is an object).
TYPED: tuple[tuple[str, type, str], ...] = (
    ("event", str, "a string"),
    ("name", str, "a string"),
    ("properties", dict, "an object"),
    ("traits", dict, "an object"),
)


def translate(
    message: Any,
    *,
    call: str | None,
    received_at: datetime | int,
    sent_at: Any = None,
    clock: Clock | None = None,
) -> dict[str, Any]:
    """One Segment message as a native event dict; raises SegmentError for a message that
    cannot be translated (not an object, no messageId, unsupported type such as `group`,
    an unparseable timestamp...). `call` is the message's type for a single call (None in
    a batch: use message["type"]). `received_at` may be UTC milliseconds; `sent_at` is the
    batch envelope's `sentAt`, as given or parsed (`Millis`; a message's own wins).
    `clock` reads and writes times faster."""
    if not isinstance(message, dict):
        raise SegmentError("a message must be a JSON object", code="invalid_body")
    kind = message.get("type") if call is None else call
    if kind is None:
        raise _missing("type")
    if not isinstance(kind, str) or kind not in CALLED:
        raise SegmentError(
            f"{str(kind)[:40]!r} calls are not supported", code="unsupported_call", field="type"
        )
    if message.get("messageId") is None:
        raise _missing("messageId")
    ids = _ids(message, kind)
    received_ms = received_at if isinstance(received_at, int) else _ms(received_at, "receivedAt")
    ts = _ts(message, received_ms, sent_at, clock)
    native_type, properties = CALLED[kind](message)
    for field, kinds, what in TYPED:  # after the call's own checks, which say more
        value = message.get(field)
        if value is not None and not isinstance(value, kinds):
            raise SegmentError(f"`{field}` must be {what}", field=field)
    event_id = message["messageId"]
    return {
        "event_id": event_id if type(event_id) is str else _ident(event_id),
        **ids,
        "type": native_type,
        "ts": ts,
        "properties": properties,
    }
