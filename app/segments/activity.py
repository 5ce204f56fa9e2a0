"""What a reader's profile keeps of their events for the segment rules, so segments are
evaluated from the profile alone: on each event, and whenever a feed, image or render
reads the profile, with no history read.

`activity` in the profile holds, per event type the rules read, the times (UTC ms) and
only the properties they read: each type's events within its longest window, and always
its newest one (absence and recency rules need only that), at most `MAX_KEPT`. It is
stamped with the rules' needs (`Needs.stamp`); rules that need more than a stamp
promised (a new type, a longer window, another property) rebuild it from the kept
history, so a rules change re-evaluates without anything ingested again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from app.segments.evaluate import Timeline, event_ms
from app.segments.rules import Absence, Aggregate, Count, Group, Not, Recency, Rule, RuleSet

# Per type: a reader viewing 200 products in a day is counted on the newest 200.
MAX_KEPT = 200
FIELD = "activity"

# One kept event: its time, then its properties as the rules read them.
Entry = list[Any]


@dataclass(frozen=True, slots=True)
class Needs:
    """Per event type the rules read: how far back (ms; 0 = the newest only) and which
    properties. `stamp` names these needs in the profiles kept for them."""

    types: Mapping[str, tuple[int, tuple[str, ...]]]
    stamp: str

    @classmethod
    def of(cls, rules: RuleSet) -> Needs:
        found: dict[str, tuple[int, set[str]]] = {}
        for segment in rules.segments:
            for kind, window, props in _needs(segment.rule):
                old_window, old_props = found.get(kind, (0, set()))
                found[kind] = (max(old_window, window), old_props | set(props))
        types = {k: (w, tuple(sorted(p))) for k, (w, p) in sorted(found.items())}
        stamp = hashlib.blake2b(repr(types).encode(), digest_size=6).hexdigest()
        return cls(types, stamp)


def _needs(rule: Rule) -> Iterable[tuple[str, int, tuple[str, ...]]]:
    if isinstance(rule, Count):
        yield rule.event, rule.within.ms, (rule.per,) if rule.per else ()
    elif isinstance(rule, Aggregate):
        props = (rule.field, "currency") if rule.currency else (rule.field,)
        yield rule.event, rule.within.ms, props
    elif isinstance(rule, Absence):
        # In while no `event` came since the newest `after`: the newest of each tells.
        yield rule.after, 0, ()
        yield rule.event, 0, ()
    elif isinstance(rule, Recency):
        yield rule.event, 0, ()
    elif isinstance(rule, Group):
        for child in rule.rules:
            yield from _needs(child)
    elif isinstance(rule, Not):
        yield from _needs(rule.rule)


def kept(profile: Mapping[str, Any] | None, needs: Needs) -> dict[str, Any] | None:
    """The profile's activity if it was kept for these needs, else None."""
    activity = (profile or {}).get(FIELD)
    if isinstance(activity, dict) and activity.get("v") == needs.stamp:
        return activity
    return None


def recorded(
    activity: Mapping[str, Any] | None,
    events: Iterable[tuple[str, int, Mapping[str, Any]]],
    needs: Needs,
    now_ms: int,
) -> dict[str, Any]:
    """A new activity: `activity` (kept for `needs`, or None to start empty) with
    `events` (type, time ms, properties) added and what the needs no longer hold left
    out. `due` is carried over."""
    lists: dict[str, list[Entry]] = {}
    before = activity.get("e", {}) if activity else {}
    added: set[str] = set()
    for kind, ms, props in events:
        need = needs.types.get(kind)
        if need is None:
            continue
        if kind not in added:
            lists[kind] = list(before.get(kind, ()))
            added.add(kind)
        lists[kind].append([ms, *(_prop(props.get(p)) for p in need[1])])
    out = {k: v for k, v in before.items() if k in needs.types and k not in added}
    for kind in added:
        window = needs.types[kind][0]
        entries = lists[kind]
        entries.sort(key=_time)  # mostly in order already: linear
        newest = entries[-1]
        floor = now_ms - window
        entries = [e for e in entries[-MAX_KEPT:] if e[0] >= floor] if window else []
        if not entries or entries[-1] is not newest:
            entries.append(newest)
        out[kind] = entries
    result: dict[str, Any] = {"v": needs.stamp, "e": out}
    if activity and activity.get("due") is not None:
        result["due"] = activity["due"]
    return result


def from_history(docs: Iterable[Mapping[str, Any]], needs: Needs, now_ms: int) -> dict[str, Any]:
    """The activity of a kept history (event documents)."""
    events = []
    for doc in docs:
        kind, ms = doc.get("type"), event_ms(doc.get("ts"))
        if isinstance(kind, str) and kind in needs.types and ms is not None:
            props = doc.get("properties")
            events.append((kind, ms, props if isinstance(props, dict) else {}))
    return recorded(None, events, needs, now_ms)


def timeline(activity: Mapping[str, Any], needs: Needs) -> Timeline:
    """The activity as the evaluator reads it."""
    times: dict[str, list[int]] = {}
    props: dict[str, list[dict[str, Any]]] = {}
    for kind, entries in activity.get("e", {}).items():
        need = needs.types.get(kind)
        if need is None:
            continue
        names = need[1]
        times[kind] = [e[0] for e in entries]
        props[kind] = [dict(zip(names, e[1:], strict=False)) for e in entries] if names else [
            {} for _ in entries
        ]
    return Timeline(times, props, None)


def _prop(value: Any) -> Any:
    # Only plain values: a rule compares or sums them; anything else reads as missing.
    return value if isinstance(value, str | int | float) else None


def _time(entry: Entry) -> int:
    return int(entry[0])
