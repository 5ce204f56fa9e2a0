"""The segment rules compiled for the event path: each rule a closure answering only in or
out and until when, with no explanation built (`app/segments/evaluate.py` answers the
same questions and why; tests hold the two to the same answers on random histories).

Ingest evaluates a reader's segments on every event, so this is on every event's path:
a compiled rule does a few bisections and comparisons, where the explaining evaluator
builds an outcome, a closure for its text and a call per node.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from app.segments.evaluate import (
    CONSENT,
    LAST_SEEN,
    Doc,
    Segments,
    Timeline,
    event_ms,
    reaches,
    same,
)
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

# A compiled rule: (kept events, profile, now ms) -> (in, the earliest later time the
# answer can change with no new event).
Fast = Callable[[Timeline, Mapping[str, Any], int], tuple[bool, int | None]]
EMPTY: tuple[int, ...] = ()


def compile_rules(rules: RuleSet) -> tuple[Fast, ...]:
    """The rules' segments compiled, in their order."""
    return tuple(_compile(segment.rule) for segment in rules.segments)


def reassess(
    rules: RuleSet,
    fast: Sequence[Fast],
    profile: Doc,
    line: Timeline,
    now_ms: int,
    prior: Sequence[list[Any]] | None = None,
    rerun: Collection[int] = (),
) -> tuple[Segments, int | None, list[list[Any]]]:
    """The reader's segments at `now_ms`, the earliest time any can change with no new
    event, and each segment's [in, until]. A segment's outcome is taken from `prior` (in
    the order of the rules) unless its index is in `rerun` (every one without `prior`)."""
    names, times, outcomes = [], [], []
    for i, segment in enumerate(rules.segments):
        if prior is None or i in rerun:
            matched, change = fast[i](line, profile, now_ms)
            outcomes.append([matched, change])
        else:
            kept = prior[i]  # (as read: a list of its own, kept as it is)
            matched, change = kept
            outcomes.append(kept)
        if matched:
            names.append(segment.name)
        if change is not None and change > now_ms:
            times.append(change)
    found = tuple(names)
    return Segments(found[0] if found else None, found), min(times) if times else None, outcomes


def _compile(rule: Rule) -> Fast:
    return _COMPILERS[type(rule)](rule)


def _next(times: Sequence[int], i: int) -> int | None:
    return times[i] if i < len(times) else None


def _count(rule: Count) -> Fast:
    kind, length, least, per = rule.event, rule.within.ms, rule.at_least, rule.per

    def run(line: Timeline, profile: Mapping[str, Any], now: int) -> Any:
        times = line.times.get(kind) or EMPTY
        lo, hi = bisect_right(times, now - length), bisect_right(times, now)
        if hi - lo >= least and per is None:
            return True, times[hi - least] + length
        if hi - lo < least:
            return False, _next(times, hi)
        keys = line.column(kind, per or "")
        keyed: dict[Any, list[int]] = {}
        for i in range(lo, hi):
            key = keys[i]
            if isinstance(key, str | int | float) and not isinstance(key, bool):
                keyed.setdefault(key, []).append(times[i])
        ends = [kept[len(kept) - least] + length for kept in keyed.values() if len(kept) >= least]
        return (True, max(ends)) if ends else (False, _next(times, hi))

    return run


def _absence(rule: Absence) -> Fast:
    kind, after_kind, idle = rule.event, rule.after, rule.idle.ms
    within = rule.within.ms if rule.within else None

    def run(line: Timeline, profile: Mapping[str, Any], now: int) -> Any:
        after = line.times.get(after_kind) or EMPTY
        ended = line.times.get(kind) or EMPTY
        i = bisect_right(after, now)
        j = bisect_right(ended, now)
        coming = [t for t in (_next(after, i), _next(ended, j)) if t is not None]
        soonest = min(coming) if coming else None
        if i == 0:
            return False, soonest
        start = after[i - 1]
        if bisect_left(ended, start) < j:
            return False, soonest
        due = start + idle
        expires = start + within if within is not None else None
        matched = due <= now and (expires is None or now < expires)
        change = due if now < due else expires if matched else None
        if change is None or (soonest is not None and soonest < change):
            change = soonest
        return matched, change

    return run


def _aggregate(rule: Aggregate) -> Fast:
    kind, field, length, currency = rule.event, rule.field, rule.within.ms, rule.currency

    def run(line: Timeline, profile: Mapping[str, Any], now: int) -> Any:
        times = line.times.get(kind) or EMPTY
        lo, hi = bisect_right(times, now - length), bisect_right(times, now)
        amounts = []
        if hi > lo:
            values = line.column(kind, field)
            currencies = line.column(kind, "currency") if currency else ()
            for i in range(lo, hi):
                value = values[i]
                if isinstance(value, int | float) and not isinstance(value, bool):
                    if currency is None or currencies[i] == currency:
                        amounts.append((times[i], value))
        total = sum(value for _, value in amounts)
        if not reaches(total, rule):
            return False, _next(times, hi)
        left = total
        for ts, value in amounts:  # the oldest leave the window first
            left -= value
            if not reaches(left, rule):
                return True, ts + length
        return True, None

    return run


def _recency(rule: Recency) -> Fast:
    kind, length, seen_rule = rule.event, rule.within.ms, rule.seen
    field = LAST_SEEN.get(kind)

    def run(line: Timeline, profile: Mapping[str, Any], now: int) -> Any:
        times = line.times.get(kind) or EMPTY
        i = bisect_right(times, now)
        last = times[i - 1] if i else None
        engagement = profile.get("engagement")
        if field and isinstance(engagement, dict):
            noted = event_ms(engagement.get(field))
            if noted is not None and noted <= now and (last is None or noted > last):
                last = noted
        inside = last is not None and now < last + length
        if seen_rule:
            return inside, last + length if last is not None and inside else _next(times, i)
        if last is not None and inside:
            return False, last + length
        # When the reader was first seen (the profile's, or an older kept event's).
        known = event_ms(profile.get("first_seen"))
        if line.first_ms is not None and (known is None or line.first_ms < known):
            known = line.first_ms
        if known is None or now < known + length:  # too new a reader to call dormant
            return False, known + length if known is not None else None
        return True, _next(times, i)

    return run


def _profile(rule: ProfileCondition) -> Fast:
    path, expected, op = rule.path, rule.value, rule.op

    def run(line: Timeline, profile: Mapping[str, Any], now: int) -> Any:
        value: Any = profile
        for part in path:
            # (a profile is a dict: an ABC's isinstance is slow, asked only otherwise)
            value = value.get(part) if type(value) is dict or isinstance(value, Mapping) else None
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if op == "exists":
            return (value is not None and value not in ("", [], {})) is expected, None
        if op == "equals":
            return same(value, expected), None
        if op == "in":
            return any(same(value, v) for v in expected), None
        if op == "at_least":
            return bool(number and value >= expected), None
        return bool(number and value <= expected), None

    return run


def _consent(rule: Consent) -> Fast:
    given = CONSENT[rule.purpose]

    def run(line: Timeline, profile: Mapping[str, Any], now: int) -> Any:
        return given(dict(profile)), None

    return run


def _group(rule: Group) -> Fast:
    parts, every = tuple(_compile(child) for child in rule.rules), rule.every

    def run(line: Timeline, profile: Mapping[str, Any], now: int) -> Any:
        outcomes = [part(line, profile, now) for part in parts]
        matched = all(m for m, _ in outcomes) if every else any(m for m, _ in outcomes)
        if matched is every:  # one child changing can change the group
            changes = [c for _, c in outcomes if c is not None]
            return matched, min(changes) if changes else None
        against = [c for m, c in outcomes if m is not every]
        return matched, None if None in against else max(c for c in against if c is not None)

    return run


def _not(rule: Not) -> Fast:
    inner = _compile(rule.rule)

    def run(line: Timeline, profile: Mapping[str, Any], now: int) -> Any:
        matched, change = inner(line, profile, now)
        return not matched, change

    return run


_COMPILERS: Mapping[type, Callable[[Any], Fast]] = MappingProxyType(
    {
        Count: _count,
        Absence: _absence,
        Aggregate: _aggregate,
        Recency: _recency,
        ProfileCondition: _profile,
        Consent: _consent,
        Group: _group,
        Not: _not,
    }
)
