"""A reader's segments, from their profile and kept event history at a given time.
Over 300 lines because each rule kind answers three questions (in or out, until when,
and why) in one function, so the three cannot drift apart.

Pure: the clock is the caller's `now_ms`. Each rule yields whether the reader is in,
the earliest later time its answer can change with no new event (`next_change_ms`:
what a due-time index sweeps on), and why (`explain`). Events after `now_ms` have not
happened yet; a window of length D holds an event at `t` while `t <= now < t + D`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, NamedTuple

from app.events.clock import format_ms
from app.reader.consent import personalized, tracked
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

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)
# Profile fields that remember an event type's last time past a trimmed history.
LAST_SEEN = MappingProxyType({"email_open": "last_open", "email_click": "last_click"})
CONSENT = MappingProxyType({"personalization": personalized, "tracking": tracked})
Doc = Mapping[str, Any]


class Segments(NamedTuple):
    """The segments a reader is in, highest priority first; `primary` is the first.
    (Tuples: one is made on every event, and a frozen dataclass costs ~4 times more.)"""

    primary: str | None
    all: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"primary": self.primary, "all": list(self.all)}


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a rule (a segment's, or a part of one in `children`) is in or out."""

    text: str
    matched: bool
    children: tuple[Explanation, ...] = ()
    segment: str | None = None
    priority: int | None = None

    def lines(self, depth: int = 0) -> list[str]:
        """The explanation as indented lines, for a terminal."""
        head = f"{self.segment} (priority {self.priority}): " if self.segment else ""
        out = ["  " * depth + head + self.text]
        for child in self.children:
            out.extend(child.lines(depth + 1))
        return out


class Timeline(NamedTuple):
    """A history read once: per event type, times ascending (UTC ms) and properties."""

    times: Mapping[str, list[int]]
    # Per type: the events' properties in time order, or (a profile's kept activity)
    # one column per property the rules read.
    props: Mapping[str, list[dict[str, Any]] | Mapping[str, list[Any]]]
    first_ms: int | None

    def column(self, kind: str, name: str) -> Sequence[Any]:
        """The values of property `name` of the events of `kind`, in time order."""
        found = self.props.get(kind)
        if found is None:
            return ()
        if type(found) is dict or isinstance(found, Mapping):  # (an ABC's check is slow)
            return found.get(name) or [None] * len(self.times.get(kind, ()))
        return [p.get(name) for p in found]


def timeline(history: Sequence[Doc], types: frozenset[str] | None = None) -> Timeline:
    """`history` (event documents, newest last) read once; only `types` when given."""
    found: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    first = event_ms(history[0].get("ts")) if history else None
    for doc in history:
        kind = doc.get("type")
        if not isinstance(kind, str) or (types is not None and kind not in types):
            continue
        ts = event_ms(doc.get("ts"))
        if ts is None:
            continue
        given = doc.get("properties")
        found.setdefault(kind, []).append((ts, given if isinstance(given, dict) else {}))
        if first is None or ts < first:
            first = ts
    times: dict[str, list[int]] = {}
    props: dict[str, list[dict[str, Any]] | Mapping[str, list[Any]]] = {}
    for kind, pairs in found.items():
        pairs.sort(key=lambda pair: pair[0])  # nearly sorted already: linear
        times[kind] = [ts for ts, _ in pairs]
        props[kind] = [p for _, p in pairs]
    return Timeline(times, props, first)


History = Sequence[Doc] | Timeline


def evaluate(rules: RuleSet, profile: Doc | None, history: History, now_ms: int) -> Segments:
    """The segments the reader is in at `now_ms`."""
    ctx = _context(rules, profile, history, now_ms)
    names = tuple(s.name for s in rules.segments if _run(s.rule, ctx).matched)
    return Segments(names[0] if names else None, names)


def next_change_ms(
    rules: RuleSet, profile: Doc | None, history: History, now_ms: int
) -> int | None:
    """The earliest time after `now_ms` at which a rule's answer can change with no new
    event (a lower bound: re-evaluate then, and ask again), or None."""
    ctx = _context(rules, profile, history, now_ms)
    times = [_run(s.rule, ctx).change for s in rules.segments]
    return _earliest(*(t for t in times if t is not None and t > now_ms))


def explain(
    rules: RuleSet, profile: Doc | None, history: History, now_ms: int
) -> list[Explanation]:
    """Rule by rule, highest priority first: in or out, with the values and thresholds."""
    ctx = _context(rules, profile, history, now_ms)
    out = []
    for segment in rules.segments:
        top = _explanation(_run(segment.rule, ctx))
        out.append(Explanation(top.text, top.matched, top.children, segment.name, segment.priority))
    return out


class _Outcome(NamedTuple):
    matched: bool
    change: int | None
    why: Callable[[], str]
    children: tuple[_Outcome, ...] = ()


class _Context(NamedTuple):
    timeline: Timeline
    profile: Mapping[str, Any]
    now: int
    known: int | None  # when the reader was first seen

    def times(self, kind: str) -> list[int]:
        return self.timeline.times.get(kind, [])

    def future(self, *kinds: str) -> int | None:
        """The first event of `kinds` after now: its arrival can change a rule."""
        coming = []
        for kind in kinds:
            times = self.times(kind)
            i = bisect_right(times, self.now)
            if i < len(times):
                coming.append(times[i])
        return _earliest(*coming)

    def window(self, kind: str, length: int) -> tuple[list[int], int, int]:
        """The times of `kind` and the slice of them within the last `length` ms."""
        times = self.times(kind)
        return times, bisect_right(times, self.now - length), bisect_right(times, self.now)


def _context(rules: RuleSet, profile: Doc | None, history: History, now_ms: int) -> _Context:
    line = history if isinstance(history, Timeline) else timeline(history, rules.types)
    doc = profile or {}
    first = event_ms(doc.get("first_seen"))
    known = _earliest(*(t for t in (first, line.first_ms) if t is not None))
    return _Context(line, doc, now_ms, known)


def _run(rule: Rule, ctx: _Context) -> _Outcome:
    return _KINDS[type(rule)](rule, ctx)


def _count(rule: Count, ctx: _Context) -> _Outcome:
    length, least = rule.within.ms, rule.at_least
    times, lo, hi = ctx.window(rule.event, length)
    label = f"{rule.event} in the last {rule.within}"
    if rule.per is None:
        n = hi - lo
        if n >= least:  # in until the oldest events that keep it in leave the window
            return _Outcome(True, times[hi - least] + length, lambda: f"{label}: {n} (≥ {least})")
        return _Outcome(False, ctx.future(rule.event), lambda: f"{label}: {n} (≥ {least})")
    keyed: dict[Any, list[int]] = {}
    keys = ctx.timeline.column(rule.event, rule.per) if hi > lo else ()
    for i in range(lo, hi):
        key = keys[i]
        if isinstance(key, str | int | float) and not isinstance(key, bool):
            keyed.setdefault(key, []).append(times[i])
    ends = [kept[len(kept) - least] + length for kept in keyed.values() if len(kept) >= least]

    def why() -> str:
        top = sorted(keyed.items(), key=lambda item: -len(item[1]))[:3]
        counts = ", ".join(f"{key} ×{len(kept)}" for key, kept in top) or "none"
        return f"{rule.event} per {rule.per} in the last {rule.within}: {counts} (≥ {least})"

    if ends:  # in while any key is
        return _Outcome(True, max(ends), why)
    return _Outcome(False, ctx.future(rule.event), why)


def _absence(rule: Absence, ctx: _Context) -> _Outcome:
    after = ctx.times(rule.after)
    i = bisect_right(after, ctx.now)
    coming = ctx.future(rule.after, rule.event)
    if i == 0:
        return _Outcome(False, coming, lambda: f"no {rule.after}")
    start = after[i - 1]
    ended = ctx.times(rule.event)
    if bisect_left(ended, start) < bisect_right(ended, ctx.now):
        return _Outcome(
            False, coming, lambda: f"{rule.after} at {format_ms(start)}, then {rule.event}"
        )
    due = start + rule.idle.ms
    expires = start + rule.within.ms if rule.within else None
    matched = due <= ctx.now and (expires is None or ctx.now < expires)
    change = due if ctx.now < due else expires if matched else None
    now = ctx.now

    def why() -> str:
        limit = f", < {rule.within}" if rule.within else ""
        return (
            f"{rule.after} at {format_ms(start)}, no {rule.event} since: "
            f"idle {_span(now - start)} (≥ {rule.idle}{limit})"
        )

    return _Outcome(matched, _earliest(change, coming), why)


def _aggregate(rule: Aggregate, ctx: _Context) -> _Outcome:
    length = rule.within.ms
    times, lo, hi = ctx.window(rule.event, length)
    values = ctx.timeline.column(rule.event, rule.field) if hi > lo else ()
    currencies = ctx.timeline.column(rule.event, "currency") if hi > lo and rule.currency else ()
    amounts = []
    for i in range(lo, hi):
        value = values[i]
        if isinstance(value, int | float) and not isinstance(value, bool):
            if rule.currency is None or currencies[i] == rule.currency:
                amounts.append((times[i], value))
    total = sum(value for _, value in amounts)
    matched = reaches(total, rule)
    change = ctx.future(rule.event) if not matched else None
    left = total
    for ts, value in amounts if matched else ():  # the oldest leave the window first
        left -= value
        if not reaches(left, rule):
            change = ts + length
            break
    sign = ">" if rule.strict else "≥"
    money = f" in {rule.currency}" if rule.currency else ""
    label = f"{rule.event} {rule.field}{money} in the last {rule.within}"
    return _Outcome(
        matched, change, lambda: f"{label}: {_num(total)} ({sign} {_num(rule.threshold)})"
    )


def reaches(total: float, rule: Aggregate) -> bool:
    """Whether a sum reaches the rule's threshold."""
    total = round(total, 6)  # sums of cents in binary floating point
    return total > rule.threshold if rule.strict else total >= rule.threshold


def _recency(rule: Recency, ctx: _Context) -> _Outcome:
    length, now = rule.within.ms, ctx.now
    times = ctx.times(rule.event)
    i = bisect_right(times, now)
    field = LAST_SEEN.get(rule.event)
    engagement = ctx.profile.get("engagement")
    noted = event_ms(engagement.get(field)) if field and isinstance(engagement, dict) else None
    seen = [t for t in (times[i - 1] if i else None, noted) if t is not None and t <= now]
    last = max(seen) if seen else None
    inside = last is not None and now < last + length

    def ago() -> str:
        if last is None:
            return f"no {rule.event}"
        return f"last {rule.event} {_span(now - last)} ago"

    if rule.seen:
        change = last + length if last is not None and inside else ctx.future(rule.event)
        return _Outcome(inside, change, lambda: f"{ago()} (within {rule.within})")
    known = ctx.known
    if last is not None and inside:
        return _Outcome(False, last + length, lambda: f"{ago()} (none within {rule.within})")
    if known is None or now < known + length:  # too new a reader to call dormant

        def young() -> str:
            since = f"first seen {_span(now - known)} ago" if known is not None else "never seen"
            return f"{ago()}, {since} (≥ {rule.within})"

        return _Outcome(False, known + length if known is not None else None, young)
    return _Outcome(True, ctx.future(rule.event), lambda: f"{ago()} (none within {rule.within})")


def _profile(rule: ProfileCondition, ctx: _Context) -> _Outcome:
    value: Any = ctx.profile
    for part in rule.path:
        value = value.get(part) if isinstance(value, Mapping) else None
    expected, op = rule.value, rule.op
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if op == "exists":
        matched = (value is not None and value not in ("", [], {})) is expected
    elif op == "equals":
        matched = same(value, expected)
    elif op == "in":
        matched = any(same(value, v) for v in expected)
    elif op == "at_least":
        matched = number and value >= expected
    else:
        matched = number and value <= expected
    def why() -> str:
        name = ".".join(rule.path)
        shown = list(expected) if op == "in" else expected
        return f"{name} = {value!r} ({op} {shown!r})" if value is not None else f"{name} not set"

    return _Outcome(matched, None, why)


def same(value: Any, expected: Any) -> bool:
    """Equal, and both booleans or neither (True is not 1 here)."""
    return isinstance(value, bool) is isinstance(expected, bool) and value == expected


def _consent(rule: Consent, ctx: _Context) -> _Outcome:
    given = CONSENT[rule.purpose](dict(ctx.profile))
    state = "given" if given else "declined"
    return _Outcome(given, None, lambda: f"consent to {rule.purpose}: {state}")


def _group(rule: Group, ctx: _Context) -> _Outcome:
    children = tuple(_run(child, ctx) for child in rule.rules)
    matched = (all if rule.every else any)(c.matched for c in children)
    if matched is rule.every:  # one child changing can change the group
        change = _earliest(*(c.change for c in children if c.change is not None))
    else:  # every child against the group must change first
        against = [c.change for c in children if c.matched is not rule.every]
        change = None if None in against else max(t for t in against if t is not None)
    word = "all" if rule.every else "any"
    count = sum(c.matched for c in children)
    return _Outcome(matched, change, lambda: f"{word} of {len(children)}: {count} in", children)


def _not(rule: Not, ctx: _Context) -> _Outcome:
    inner = _run(rule.rule, ctx)
    return _Outcome(not inner.matched, inner.change, lambda: "not", (inner,))


_KINDS: Mapping[type, Callable[[Any, _Context], _Outcome]] = MappingProxyType(
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


def _explanation(outcome: _Outcome) -> Explanation:
    text = f"{outcome.why()} → {'in' if outcome.matched else 'out'}"
    children = tuple(_explanation(c) for c in outcome.children)
    return Explanation(text, outcome.matched, children)


def event_ms(value: Any) -> int | None:
    """An ISO 8601 time as UTC milliseconds (no offset: UTC), or None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // MS


def _earliest(*times: int | None) -> int | None:
    known = [t for t in times if t is not None]
    return min(known) if known else None


def _span(ms: int) -> str:
    """A length of time in its two largest units: '20m', '1d 2h'."""
    parts, left = [], ms // 1000
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, left = divmod(left, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return " ".join(parts[:2]) or f"{ms}ms"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"
