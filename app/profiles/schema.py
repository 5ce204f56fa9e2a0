"""The profile document: known fields typed and size-capped, CRM extras under `attributes`.

Strings are stored exactly as given (data, not markup) and escaped only on output.

Over 300 lines because every field's check, limit and error is here, read top to bottom as
the one description of what a stored profile may hold.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from app.errors import BadRequest, Unprocessable

USER_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
LOCALE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}")
CURRENCY = re.compile(r"[A-Z]{3}")
SKU = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")

MAX_LIST = 100
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTES_BYTES = 16 * 1024
MAX_ATTRIBUTES_DEPTH = 8  # objects and lists within `attributes`
# Computed by Kairos (the live part from events, `app/events/reduce.py`): never written
# by the profiles API, and kept across a PUT.
LIVE_FIELDS = frozenset(
    {"counters", "first_seen", "last_seen", "recent_views", "purchases", "spend", "engagement"}
)
# The events the segment rules read, kept for them (app/segments/activity.py): internal,
# never shown, kept across a PUT.
HIDDEN = frozenset({"activity"})
READ_ONLY = frozenset({"segments", "updated_at", "user_id"}) | LIVE_FIELDS | HIDDEN

Profile = dict[str, Any]
Check = Callable[[str, Any], Any]

# The longest each text field may be, in characters: the profiles API refuses a longer
# one; a render cuts it to fit instead (app/profiles/fit.py).
MAX_CHARS: Mapping[str, int] = MappingProxyType(
    {"first_name": 100, "last_name": 100, "tier": 32, "email": 254, "locale": 35, "timezone": 64}
)
CART_MAX_CHARS: Mapping[str, int] = MappingProxyType(
    {"sku": 64, "title": 200, "currency": 3, "image_url": 2048, "url": 2048}
)


def check_user_id(user_id: str) -> str:
    """The id unchanged, or 400. Ids are opaque: no braces (they pick the Redis hash slot),
    no '@' (an email address is PII and must not travel in signed URLs)."""
    if not USER_ID.fullmatch(user_id):
        raise BadRequest(
            "user_id must be 1-128 characters of letters, digits and _ . : -",
            code="invalid_user_id",
            field="user_id",
        )
    return user_id


def _fail(field: str, message: str) -> Unprocessable:
    return Unprocessable(f"{field}: {message}", field=field)


def _str(max_len: int, pattern: re.Pattern[str] | None = None) -> Callable[[str, Any], str]:
    def check(field: str, value: Any) -> str:
        if not isinstance(value, str):
            raise _fail(field, "must be a string")
        if len(value) > max_len:
            raise _fail(field, f"must be at most {max_len} characters")
        if pattern is not None and not pattern.fullmatch(value):
            raise _fail(field, "has an invalid format")
        return value

    return check


def _int(lo: int, hi: int) -> Callable[[str, Any], int]:
    def check(field: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(field, "must be an integer")
        if not lo <= value <= hi:
            raise _fail(field, f"must be between {lo} and {hi}")
        return value

    return check


def _number(lo: float, hi: float) -> Callable[[str, Any], float]:
    def check(field: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(field, "must be a number")
        if not lo <= value <= hi:
            raise _fail(field, f"must be between {lo} and {hi}")
        return value

    return check


def _bool(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(field, "must be true or false")
    return value


def _url(field: str, value: Any) -> str:
    text = _str(CART_MAX_CHARS["url"])(field, value)
    if not re.match(r"https?://[^\s/]", text, re.IGNORECASE):
        raise _fail(field, "must be an absolute http(s) URL")
    return text


def _email(field: str, value: Any) -> str:
    text = _str(MAX_CHARS["email"])(field, value)
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", text):
        raise _fail(field, "must be an email address")
    return text


def _timezone(field: str, value: Any) -> str:
    text = _str(MAX_CHARS["timezone"])(field, value)
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # 'Europe' is a directory
        raise _fail(field, "must be an IANA time zone such as Europe/London") from None
    return text


def _object(
    fields: dict[str, Callable[[str, Any], Any]], required: tuple[str, ...] = ()
) -> Callable[[str, Any], dict[str, Any]]:
    def check(field: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _fail(field, "must be an object")
        out: dict[str, Any] = {}
        for key, item in value.items():
            checker = fields.get(key)
            if checker is None:
                raise _fail(f"{field}.{key}", "is not a known field")
            if item is not None:
                # The field's path is spelled out only when it is bad (renders check
                # every inline profile: this is on their path).
                try:
                    out[key] = checker(key, item)
                except Unprocessable as exc:
                    raise _within(field, exc) from None
        for key in required:
            if key not in out:
                raise _fail(f"{field}.{key}", "is required")
        return out

    return check


def _list(item: Callable[[str, Any], Any]) -> Callable[[str, Any], list[Any]]:
    def check(field: str, value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise _fail(field, "must be a list")
        if len(value) > MAX_LIST:
            raise _fail(field, f"must have at most {MAX_LIST} items")
        out = []
        for i, v in enumerate(value):
            try:
                out.append(item("", v))
            except Unprocessable as exc:
                raise _within(f"{field}[{i}]", exc) from None
        return out

    return check


def _within(path: str, exc: Unprocessable) -> Unprocessable:
    """`exc`, about a field at a path relative to `path`, about the full path."""
    inner = exc.field or ""
    full = path + inner if inner[:1] in ("", ".", "[") else f"{path}.{inner}"
    return _fail(full, exc.message.removeprefix(f"{inner}: "))


def _attributes(field: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(field, "must be an object")
    if len(value) > MAX_ATTRIBUTES:
        raise _fail(field, f"must have at most {MAX_ATTRIBUTES} keys")
    for key in value:
        if not isinstance(key, str) or not 1 <= len(key) <= 64:
            raise _fail(field, "keys must be 1-64 characters")
    if _deeper(value, MAX_ATTRIBUTES_DEPTH):
        raise _fail(field, f"may nest objects and lists at most {MAX_ATTRIBUTES_DEPTH} deep")
    if len(orjson.dumps(value)) > MAX_ATTRIBUTES_BYTES:
        raise _fail(field, f"must be at most {MAX_ATTRIBUTES_BYTES} bytes as JSON")
    return value


def _deeper(value: Any, limit: int) -> bool:
    """Whether objects and lists nest in `value` more than `limit` deep (itself counting
    one), without recursion: the value may come from a hostile client."""
    level: list[Any] = [value]
    for _ in range(limit):
        level = [
            child
            for item in level
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return True


CART_FIELDS: Mapping[str, Check] = MappingProxyType(
    {
        "sku": _str(CART_MAX_CHARS["sku"], SKU),
        "title": _str(CART_MAX_CHARS["title"]),
        "price": _number(0, 1e9),
        "currency": _str(CART_MAX_CHARS["currency"], CURRENCY),
        "qty": _int(1, 9999),
        "image_url": _url,
        "url": _url,
    }
)
CART_ITEM = _object(dict(CART_FIELDS), required=("sku",))
RECOMMENDATION = _object({"sku": _str(64, SKU), "score": _number(-1e9, 1e9)}, ("sku",))

FIELDS: Mapping[str, Callable[[str, Any], Any]] = MappingProxyType(
    {
        "first_name": _str(MAX_CHARS["first_name"]),
        "last_name": _str(MAX_CHARS["last_name"]),
        "email": _email,
        "locale": _str(MAX_CHARS["locale"], LOCALE),
        "timezone": _timezone,
        "tier": _str(MAX_CHARS["tier"]),
        "loyalty_points": _int(0, 10**12),
        "cart": _list(CART_ITEM),
        "recommendations": _list(RECOMMENDATION),
        "consent": _object({"personalization": _bool, "tracking": _bool, "email": _bool}),
        "attributes": _attributes,
    }
)


def _lenient(check: Check, limit: int) -> Check:
    """`check`, but a string longer than `limit` is let through as it is: a render
    cuts it to fit (app/profiles/fit.py) rather than refuse the reader."""

    def lenient(field: str, value: Any) -> Any:
        if isinstance(value, str) and len(value) > limit:
            return value
        return check(field, value)

    return lenient


# What a render accepts of a profile sent with it: the same, but too long text.
RENDER_FIELDS: Mapping[str, Check] = MappingProxyType(
    {
        **FIELDS,
        **{key: _lenient(FIELDS[key], limit) for key, limit in MAX_CHARS.items()},
        "cart": _list(
            _object(
                {
                    **CART_FIELDS,
                    **{k: _lenient(CART_FIELDS[k], n) for k, n in CART_MAX_CHARS.items()},
                },
                required=("sku",),
            )
        ),
    }
)


def validate_profile(doc: Any, fields: Mapping[str, Check] = FIELDS) -> Profile:
    """A clean copy of a profile document, or `Unprocessable` naming the first bad field."""
    if not isinstance(doc, dict):
        raise Unprocessable("the profile must be a JSON object", code="invalid_body")
    out: Profile = {}
    for key, value in doc.items():
        if key in READ_ONLY:
            raise _fail(key, "is computed by Kairos and cannot be written")
        check = fields.get(key)
        if check is None:
            raise Unprocessable(
                f"{key}: is not a known field; put CRM-specific fields under 'attributes'",
                field=key,
            )
        if value is not None:
            out[key] = check(key, value)
    return out


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON Merge Patch: objects merge, `null` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def writable_part(profile: Profile) -> Profile:
    """The fields a client may write (computed ones stripped)."""
    return {k: v for k, v in profile.items() if k not in READ_ONLY}


def shown(profile: Profile) -> Profile:
    """The profile as the API shows it (internal fields left out)."""
    return {k: v for k, v in profile.items() if k not in HIDDEN}


def computed_part(profile: Profile) -> Profile:
    """The fields Kairos computes (segments, counters), kept across client writes."""
    return {k: v for k, v in profile.items() if k in READ_ONLY and k != "updated_at"}


def inline_profile(doc: Any, *, render: bool = False) -> dict[str, Any]:
    """A profile sent with a render: the profile document, plus the computed `segments`
    an ESP may know. With `render`, text longer than the schema allows is kept for the
    render to cut to fit (and report), not refused."""
    if not isinstance(doc, dict):
        raise Unprocessable("profile: must be an object", field="profile")
    segments = doc.get("segments", [])
    if not isinstance(segments, list) or not all(isinstance(s, str) for s in segments):
        raise Unprocessable("profile.segments: must be a list of strings", field="profile")
    try:
        fields = RENDER_FIELDS if render else FIELDS
        clean = validate_profile({k: v for k, v in doc.items() if k != "segments"}, fields)
    except Unprocessable as exc:
        raise Unprocessable(f"profile.{exc.message}", field=f"profile.{exc.field}") from None
    return {**clean, "segments": segments[:100]}


def updated_at() -> str:
    """A profile's `updated_at` for a write now (UTC, whole seconds)."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
