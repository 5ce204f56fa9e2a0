"""Merging one reader's profile into a user's (identity stitching): pure, like
`app/events/reduce.py`, and bounded by the profile's own limits."""

from __future__ import annotations

from typing import Any

import orjson

from app.events.reduce import MAX_COUNTERS, MAX_PURCHASES, MAX_RECENT_VIEWS, OTHER_CUSTOM, newest
from app.profiles.schema import MAX_ATTRIBUTES, MAX_ATTRIBUTES_BYTES, MAX_LIST
from app.stores.protocols import Profile


def merge(user: Profile | None, other: Profile) -> Profile:
    """The profile of a user into which another reader's (an anonymous id's, or an
    aliased user's) is merged: counters and spend summed, views and purchases
    interleaved by time, carts united (a sku in both keeps the larger quantity), the
    user's own fields kept and the other's filling the gaps, and consent declined if
    either declined."""
    base = dict(user or {})
    out = {**{k: v for k, v in other.items() if k not in base}, **base}
    counters = dict(base.get("counters") or {})
    for kind, n in (other.get("counters") or {}).items():
        if kind not in counters and len(counters) >= MAX_COUNTERS:
            kind = OTHER_CUSTOM
        counters[kind] = counters.get(kind, 0) + n
    if counters:
        out["counters"] = counters
    spend = dict(base.get("spend") or {})
    for currency, total in (other.get("spend") or {}).items():
        spend[currency] = round(spend.get(currency, 0) + total, 2)
    if spend:
        out["spend"] = spend
    for key, pick in (("first_seen", min), ("last_seen", max)):
        times = [p[key] for p in (base, other) if key in p]
        if times:
            out[key] = pick(times)
    views = [*base.get("recent_views", []), *other.get("recent_views", [])]
    if views:
        out["recent_views"] = newest(views, MAX_RECENT_VIEWS, unique="sku")
    purchases = [*base.get("purchases", []), *other.get("purchases", [])]
    if purchases:
        out["purchases"] = newest(purchases, MAX_PURCHASES)
    engagement = dict(other.get("engagement") or {})
    for key, when in (base.get("engagement") or {}).items():
        engagement[key] = max(when, engagement.get(key, ""))
    if engagement:
        out["engagement"] = engagement
    out["cart"] = _united(base.get("cart", []), other.get("cart", []))
    if not out["cart"]:
        del out["cart"]
    attributes = _within_limits(base.get("attributes") or {}, other.get("attributes") or {})
    if attributes:
        out["attributes"] = attributes
    consent = _stricter(base.get("consent"), other.get("consent"))
    if consent is not None:
        out["consent"] = consent
    # What the segment rules keep of events is rebuilt from the merged history.
    out.pop("activity", None)
    return out


def _within_limits(mine: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """The user's attributes, then the other's new ones while the profile's limits allow
    (a merge must not leave a profile that no later write can pass)."""
    out = dict(mine)
    size = len(orjson.dumps(out))
    for key, value in theirs.items():
        if key in out or len(out) >= MAX_ATTRIBUTES:
            continue
        grown = size + len(orjson.dumps({key: value}))
        if grown <= MAX_ATTRIBUTES_BYTES:
            out[key], size = value, grown
    return out


def _united(mine: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    lines = {line["sku"]: dict(line) for line in mine}
    for line in theirs:
        kept = lines.get(line["sku"])
        if kept is None:
            lines[line["sku"]] = dict(line)
        else:
            kept["qty"] = max(kept.get("qty", 1), line.get("qty", 1))
    return list(lines.values())[:MAX_LIST]


def _stricter(a: Any, b: Any) -> dict[str, bool] | None:
    if a is None and b is None:
        return None
    out: dict[str, bool] = {}
    for consent in (a, b):
        if not isinstance(consent, dict):
            if consent is not None:
                return {"personalization": False, "tracking": False}
            continue
        for purpose, given in consent.items():
            out[purpose] = out.get(purpose, True) and given is not False
    return out
