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
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from app.segments.evaluate import Timeline, event_ms
from app.segments.rules import (
    Absence,
    Aggregate,
    Consent,
    Count,
    Group,
    Not,
    ProfileCondition,
    Recency,
    Rule,
    RuleSet,
)

# Per type: a reader viewing 200 products in a day is counted on the newest 200.
MAX_KEPT = 200
FIELD = "activity"


@dataclass(frozen=True, slots=True)
class Needs:
    """Per event type the rules read: how far back (ms; 0 = the newest only) and which
    properties. `stamp` names these needs in the profiles kept for them."""

    types: Mapping[str, tuple[int, tuple[str, ...]]]
    stamp: str
    # Which segments (indexes in the rules' order) read each event type, and each
    # profile field: an event of none of their types, changing none of their fields,
    # leaves a segment's outcome standing until its due time.
    by_type: Mapping[str, frozenset[int]]
    by_root: tuple[tuple[str, frozenset[int]], ...]
    # Names the rules themselves: outcomes kept under other rules are not reused.
    rules_stamp: str

    @classmethod
    def of(cls, rules: RuleSet) -> Needs:
        found: dict[str, tuple[int, set[str]]] = {}
        by_type: dict[str, set[int]] = {}
        by_root: dict[str, set[int]] = {}
        for i, segment in enumerate(rules.segments):
            for kind, window, props in _needs(segment.rule):
                old_window, old_props = found.get(kind, (0, set()))
                found[kind] = (max(old_window, window), old_props | set(props))
                by_type.setdefault(kind, set()).add(i)
            for root in _roots(segment.rule):
                by_root.setdefault(root, set()).add(i)
        types = {k: (w, tuple(sorted(p))) for k, (w, p) in sorted(found.items())}
        stamp = hashlib.blake2b(repr(types).encode(), digest_size=6).hexdigest()
        rules_stamp = hashlib.blake2b(repr(rules.segments).encode(), digest_size=6).hexdigest()
        return cls(
            types,
            stamp,
            {k: frozenset(v) for k, v in by_type.items()},
            tuple((k, frozenset(v)) for k, v in sorted(by_root.items())),
            rules_stamp,
        )


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


def _roots(rule: Rule) -> Iterable[str]:
    """The profile fields a rule reads, besides the events kept for it."""
    if isinstance(rule, ProfileCondition):
        yield rule.path[0]
    elif isinstance(rule, Consent):
        yield "consent"
    elif isinstance(rule, Recency):
        yield from ("engagement", "first_seen")  # the last open kept, and how long known
    elif isinstance(rule, Group):
        for child in rule.rules:
            yield from _roots(child)
    elif isinstance(rule, Not):
        yield from _roots(rule.rule)


def had_events(profile: Mapping[str, Any] | None) -> bool:
    """Whether events were applied to the profile (its activity, if kept for other rules
    or not at all, must then be rebuilt from the kept history)."""
    return bool(profile and profile.get("counters"))


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
    out. `due` is carried over. Per type, columns: `t` the times, ascending, then one per
    property the rules read."""
    before = activity.get("e", {}) if activity else {}
    types = needs.types
    if activity and type(events) is list and len(events) == 1:
        out = _appended(before, events[0], types, now_ms)
        if out is not None:
            return _carried(activity, {"v": needs.stamp, "e": out})
    grown: dict[str, dict[str, list[Any]]] = {}
    unordered: set[str] = set()
    for kind, ms, props in events:
        need = types.get(kind)
        if need is None:
            continue
        columns = grown.get(kind)
        if columns is None:
            old = before.get(kind) or {}
            columns = {"t": list(old.get("t", ()))}
            for name in need[1]:
                columns[name] = list(old.get(name) or [None] * len(columns["t"]))
            grown[kind] = columns
        times = columns["t"]
        if times and ms < times[-1]:
            unordered.add(kind)
        times.append(ms)
        for name in need[1]:
            columns[name].append(_prop(props.get(name)))
    out = {k: v for k, v in before.items() if k in types and k not in grown}
    for kind, columns in grown.items():
        times = columns["t"]
        if kind in unordered:
            order = sorted(range(len(times)), key=times.__getitem__)
            columns = {name: [column[i] for i in order] for name, column in columns.items()}
            times = columns["t"]
        start = _first_kept(times, len(times), types[kind][0], now_ms)
        out[kind] = {n: c[start:] for n, c in columns.items()} if start else columns
    return _carried(activity, {"v": needs.stamp, "e": out})


def _appended(
    before: Mapping[str, Any],
    event: tuple[str, int, Mapping[str, Any]],
    types: Mapping[str, tuple[int, tuple[str, ...]]],
    now_ms: int,
) -> dict[str, Any] | None:
    """`recorded`'s events for one event no older than its type's newest (the usual
    case: a reader's one event in a request), or None when it is not that case."""
    kind, ms, props = event
    need = types.get(kind)
    if need is None:
        return {k: v for k, v in before.items() if k in types}
    old = before.get(kind)
    if not isinstance(old, dict):
        return None
    times = old.get("t")
    window, names = need
    if not times or ms < times[-1]:
        return None
    for name in names:
        column = old.get(name)
        if column is None or len(column) != len(times):
            return None
    # (`times` and the new one: the newest cannot be before the window's start.)
    start = _first_kept(times, len(times) + 1, window, now_ms)
    columns = {"t": [*times[start:], ms]}
    for name in names:
        columns[name] = [*old[name][start:], _prop(props.get(name))]
    out = {k: v for k, v in before.items() if k in types and k != kind}
    out[kind] = columns
    return out


def _first_kept(times: list[int], n: int, window: int, now_ms: int) -> int:
    """Where the `n` times kept of a type start (`times`: the first of them, ascending):
    the events within `window` (0: the newest only), at most MAX_KEPT, always the newest."""
    start = bisect_left(times, now_ms - window) if window else n - 1
    return min(max(start, n - MAX_KEPT), n - 1)


def _carried(activity: Mapping[str, Any] | None, result: dict[str, Any]) -> dict[str, Any]:
    """`result` with `activity`'s due time, indexed time and outcomes carried over."""
    if activity:
        for carried in ("due", "indexed", "r"):
            if activity.get(carried) is not None:
                result[carried] = activity[carried]
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


def timeline(activity: Mapping[str, Any]) -> Timeline:
    """The activity as the evaluator reads it (its columns, not copied)."""
    events = activity.get("e", {})
    return Timeline({kind: columns["t"] for kind, columns in events.items()}, events, None)


def _prop(value: Any) -> Any:
    # Only plain values: a rule compares or sums them; anything else reads as missing.
    return value if isinstance(value, str | int | float) else None
