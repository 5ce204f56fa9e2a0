"""What events do to a reader's profile: pure functions over the profile document, the
same for every store (the embedded one and Redis apply exactly what this returns).

The live part of a profile is computed (`LIVE_FIELDS`, read-only to the profiles API):
counters per type, first and last seen, recent product views, purchases, spend per
currency and email engagement. Add and remove events change the profile's `cart`, and
identify traits its known fields and `attributes`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from app.errors import Unprocessable
from app.events.model import Event, EventRejected
from app.profiles.schema import (
    FIELDS,
    MAX_LIST,
    validate_profile,
)
from app.reader.consent import records
from app.stores.protocols import Profile

MAX_RECENT_VIEWS = 20
MAX_PURCHASES = 20
MAX_COUNTERS = 100
OTHER_CUSTOM = "custom:*"  # where custom types past MAX_COUNTERS are counted ('*' spells no name)
# Traits that name a profile field; any other trait is kept under `attributes`.
TRAIT_FIELDS = frozenset(FIELDS) - {"cart", "recommendations", "attributes"}
# The profile fields an identify sent with a write key may set (consent: only withdrawn).
WRITER_FIELDS = frozenset({"first_name", "last_name", "locale", "timezone", "consent"})
ACCEPTED, DUPLICATE, DROPPED = "accepted", "duplicate", "dropped"
Outcome = str | EventRejected


@dataclass(slots=True)
class Reduced:
    """A reader's profile after a run of events, and what became of each event (in the
    order given). `applied` are the events to record as seen and keep in history."""

    profile: Profile | None
    outcomes: list[Outcome] = field(default_factory=list)
    applied: list[Event] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.applied)


def reduce(
    profile: Profile | None, events: Sequence[Event], seen: Iterable[str], trusted: bool = False
) -> Reduced:
    """Apply `events` (one reader's, in arrival order) to `profile`. An event whose id is in
    `seen`, or earlier in `events`, is a duplicate; one for a reader who declined tracking
    (an email open or click: who unsubscribed) is dropped, unless it is an identify that
    grants it again, sent with an API key (`trusted`): a public write key may withdraw
    consent but never grant it."""
    done = set(seen)
    result = Reduced(profile)
    current = profile
    for event in events:
        if event.event_id in done:
            result.outcomes.append(DUPLICATE)
            continue
        if (
            current is not None
            and not records(current, event.type)
            and not (trusted and _grants(event))
        ):
            result.outcomes.append(DROPPED)
            continue
        try:
            current = apply(current or {}, event, trusted)
        except EventRejected as exc:
            result.outcomes.append(exc)
            continue
        done.add(event.event_id)
        result.outcomes.append(ACCEPTED)
        result.applied.append(event)
    result.profile = current
    return result


def apply(profile: Profile, event: Event, trusted: bool = False) -> Profile:
    """`profile` with one event applied (a new document; `profile` is not changed).
    Without `trusted` (a write key), identify traits set only `WRITER_FIELDS`."""
    out = dict(profile)
    when = event.ts
    counters = dict(out.get("counters") or {})
    name = event.type
    if name not in counters and len(counters) >= MAX_COUNTERS:
        name = OTHER_CUSTOM  # a public write key must not grow a profile without bound
    counters[name] = counters.get(name, 0) + 1
    out["counters"] = counters
    if when < out.get("first_seen", "~"):
        out["first_seen"] = when
    if when > out.get("last_seen", ""):
        out["last_seen"] = when
    if event.type == "identify":
        _identify(out, event, trusted)
    else:
        step = STEPS.get(event.type)
        if step is not None:
            step(out, event, when)
    return out


def _product_view(out: Profile, event: Event, when: str) -> None:
    view = {"sku": event.properties["sku"], "ts": when}
    out["recent_views"] = newest(
        [view, *out.get("recent_views", [])], MAX_RECENT_VIEWS, unique="sku"
    )


def _add_to_cart(out: Profile, event: Event, when: str) -> None:
    props = event.properties
    qty = props.get("qty", 1)
    cart = [dict(line) for line in out.get("cart", [])]
    for line in cart:
        if line.get("sku") == props["sku"]:
            line["qty"] = min(9999, line.get("qty", 1) + qty)
            line.update(_line_details(props))
            break
    else:
        if len(cart) >= MAX_LIST:
            raise EventRejected(
                "cart_full", f"the reader's cart already has {MAX_LIST} lines", "properties.sku"
            )
        cart.append({"sku": props["sku"], "qty": qty, **_line_details(props)})
    out["cart"] = cart


def _line_details(props: dict[str, Any]) -> dict[str, Any]:
    return {
        key: props[key]
        for key in ("title", "price", "currency", "image_url", "url")
        if props.get(key) is not None
    }


def _remove_from_cart(out: Profile, event: Event, when: str) -> None:
    props = event.properties
    cart = []
    for line in out.get("cart", []):
        if line.get("sku") == props["sku"]:
            left = line.get("qty", 1) - props["qty"] if "qty" in props else 0
            if left > 0:
                cart.append({**line, "qty": left})
        else:
            cart.append(line)
    out["cart"] = cart


def _purchase(out: Profile, event: Event, when: str) -> None:
    props = event.properties
    bought = {item["sku"] for item in props["items"]}
    out["cart"] = [line for line in out.get("cart", []) if line.get("sku") not in bought]
    purchase = {
        "ts": when,
        "total": props["total"],
        "currency": props["currency"],
        "items": [
            {k: item[k] for k in ("sku", "qty", "price") if k in item} for item in props["items"]
        ],
    }
    if props.get("order_id") is not None:
        purchase["order_id"] = props["order_id"]
    out["purchases"] = newest([purchase, *out.get("purchases", [])], MAX_PURCHASES)
    spend = dict(out.get("spend") or {})
    spend[props["currency"]] = round(spend.get(props["currency"], 0) + props["total"], 2)
    out["spend"] = spend


def _engagement(name: str) -> Any:
    def step(out: Profile, event: Event, when: str) -> None:
        if event.properties.get("machine"):
            return  # a proxy's or a scanner's fetch: counted, but no one engaged
        engagement = dict(out.get("engagement") or {})
        if when > engagement.get(name, ""):
            engagement[name] = when
        out["engagement"] = engagement

    return step


def _identify(out: Profile, event: Event, trusted: bool) -> None:
    traits = event.properties["traits"]
    known = {k: v for k, v in traits.items() if k in TRAIT_FIELDS}
    if not trusted:
        # A write key is public: it may name the reader and withdraw consent, but the
        # fields a CRM owns (email, tier, points) and consent grants need an API key.
        known = {k: v for k, v in known.items() if k in WRITER_FIELDS}
        if isinstance(known.get("consent"), dict):
            known["consent"] = {p: v for p, v in known["consent"].items() if v is False}
    extra = {k: v for k, v in traits.items() if k not in TRAIT_FIELDS and k != "attributes"}
    if isinstance(traits.get("attributes"), dict):  # traits that spell the profile's own
        extra = {**traits["attributes"], **extra}
    if "consent" in known and isinstance(known["consent"], dict):
        known["consent"] = {**(out.get("consent") or {}), **known["consent"]}
    if extra:
        known["attributes"] = {**(out.get("attributes") or {}), **extra}
    try:
        clean = validate_profile(known)
    except Unprocessable as exc:
        field = f"properties.traits.{exc.field}" if exc.field else "properties.traits"
        raise EventRejected("invalid_field", f"properties.traits.{exc.message}", field) from None
    out.update(clean)


STEPS = MappingProxyType(
    {
        "product_view": _product_view,
        "add_to_cart": _add_to_cart,
        "remove_from_cart": _remove_from_cart,
        "purchase": _purchase,
        "email_open": _engagement("last_open"),
        "email_click": _engagement("last_click"),
    }
)


def _grants(event: Event) -> bool:
    """An identify that grants tracking or email (re-subscribes): the one event a
    reader who declined can send."""
    if event.type != "identify":
        return False
    consent = event.properties["traits"].get("consent")
    return isinstance(consent, dict) and (
        consent.get("tracking") is True or consent.get("email") is True
    )


def newest(entries: list[dict[str, Any]], limit: int, unique: str | None = None) -> list[Any]:
    """Entries newest first by `ts` (stable for equal times), the first of each `unique`
    value kept, at most `limit`."""
    ordered = sorted(entries, key=lambda e: e["ts"], reverse=True)
    if unique is not None:
        kept, out = set(), []
        for entry in ordered:
            if entry[unique] not in kept:
                kept.add(entry[unique])
                out.append(entry)
        ordered = out
    return ordered[:limit]
