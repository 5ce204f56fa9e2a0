"""The segment rules file, parsed with `tomllib` and checked whole; errors name the
file, the rule and the line. `templates/segments.toml` shows every kind.
Over 300 lines because the rule kinds, their checks and the lines errors point at are
one concern (the file format a designer reviews), read in one place.

    [segments.NAME]          # lower snake case: templates test segments by name
    priority = 50            # an integer, unique: the highest is the reader's primary
    description = "..."      # optional
    rule = { ... }           # one kind:

- `{ count = T, at_least = N, within = D, per = P? }`: N >= 1 events of type T within
  D; with `per`, counted per value of property P, in when any value reaches N.
- `{ absence = T, after = T2, for = D, within = D2? }`: the last T2 is at least D old
  and no T came at or after it; with `within`, only while that T2 is younger than D2.
- `{ aggregate = T, field = P, sum_over = X | sum_at_least = X, within = D,
  currency = "EUR"? }`: the sum of the number P of T within D is > X (or >= X).
- `{ recency = T, none_within = D }`: no T within D, for a reader known for at least D
  (one first seen yesterday is not dormant); `seen_within = D`: some T within D.
- `{ profile = F, equals = V | in = [V, ...] | at_least = X | at_most = X | exists =
  BOOL }`: F a profile field or a path in one (`tier`, `attributes.plan`, `spend.EUR`).
- `{ consent = "personalization" | "tracking" }`: the purpose is not declined.
- `{ all = [RULE, ...] }`, `{ any = [RULE, ...] }`, `{ not = RULE }`.

T is a type of `app.events.model.TYPES` or `custom:NAME`; a duration D is one or more
`<integer><s|m|h|d|w>` (`60s`, `15m`, `24h`, `1h30m`). A window holds an event for
exactly its duration: an event at `t` counts until `t + D`, excluded.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from app.events.model import CUSTOM_NAME, CUSTOM_PREFIX, TYPES
from app.profiles.schema import CURRENCY, FIELDS, LIVE_FIELDS

NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
DURATION = re.compile(r"(?:\d{1,6}[smhdw])+")
UNIT_MS = MappingProxyType(
    {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
)
MAX_DURATION_MS = 3660 * 86_400_000
PURPOSES = ("personalization", "tracking")
PROFILE_OPS = ("equals", "in", "at_least", "at_most", "exists")
PROFILE_ROOTS = frozenset(FIELDS) | LIVE_FIELDS
MAX_DEPTH = 8


class RulesError(ValueError):
    """The rules file is not valid: `source`, `line` (None when not found), `rule`
    (None for the file as a whole) and `detail`, all in the message."""

    def __init__(self, source: str, line: int | None, rule: str | None, detail: str) -> None:
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: rule '{rule}': {detail}" if rule else f"{where}: {detail}")
        self.source, self.line, self.rule, self.detail = source, line, rule, detail


class _Invalid(Exception):
    """A problem inside one segment's table; `key` is its top-level key, for the line."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(detail)
        self.key, self.detail = key, detail


@dataclass(frozen=True, slots=True)
class Duration:
    ms: int
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Count:
    event: str
    at_least: int
    within: Duration
    per: str | None = None


@dataclass(frozen=True, slots=True)
class Absence:
    event: str
    after: str
    idle: Duration
    within: Duration | None = None


@dataclass(frozen=True, slots=True)
class Aggregate:
    event: str
    field: str
    threshold: float
    strict: bool
    within: Duration
    currency: str | None = None


@dataclass(frozen=True, slots=True)
class Recency:
    event: str
    within: Duration
    seen: bool  # seen_within; False is none_within


@dataclass(frozen=True, slots=True)
class ProfileCondition:
    path: tuple[str, ...]
    op: str
    value: Any


@dataclass(frozen=True, slots=True)
class Consent:
    purpose: str


@dataclass(frozen=True, slots=True)
class Group:
    every: bool  # all = [...]; False is any = [...]
    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class Not:
    rule: Rule


Rule = Count | Absence | Aggregate | Recency | ProfileCondition | Consent | Group | Not


@dataclass(frozen=True, slots=True)
class Segment:
    name: str
    priority: int
    rule: Rule
    description: str = ""


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The segments of one rules file, highest priority first; `types` are the event
    types any rule reads."""

    segments: tuple[Segment, ...]
    source: str = "segments.toml"
    types: frozenset[str] = frozenset()


def load_rules(text: str, source: str = "segments.toml") -> RuleSet:
    """The rules in `text` (the contents of the file `source`), or `RulesError`."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"at line (\d+)", str(exc))
        line = int(found.group(1)) if found else None
        raise RulesError(source, line, _rule_at(text, line), str(exc)) from None
    for key in doc:
        if key != "segments":
            line = _line(text, None, key)
            raise RulesError(source, line, None, f"unknown table or key '{key}' ([segments.NAME])")
    tables = doc.get("segments", {})
    if not isinstance(tables, dict):
        raise RulesError(source, _line(text, None, "segments"), None, "segments must be tables")
    segments: list[Segment] = []
    owners: dict[int, str] = {}
    for name, table in tables.items():
        try:
            segment = _segment(name, table)
        except _Invalid as exc:
            raise RulesError(source, _line(text, name, exc.key), name, exc.detail) from None
        if segment.priority in owners:
            detail = f"priority {segment.priority} is already rule '{owners[segment.priority]}''s"
            raise RulesError(source, _line(text, name, "priority"), name, detail)
        owners[segment.priority] = name
        segments.append(segment)
    segments.sort(key=lambda s: s.priority, reverse=True)
    types = frozenset(t for s in segments for t in _types(s.rule))
    return RuleSet(tuple(segments), source, types)


def _segment(name: str, table: Any) -> Segment:
    if not NAME.fullmatch(name):
        raise _Invalid("", "a segment name is 1-64 of a-z, 0-9 and _, starting with a letter")
    if not isinstance(table, dict):
        raise _Invalid("", "a segment must be a table with priority and rule")
    for key in table:
        if key not in ("priority", "rule", "description"):
            raise _Invalid(key, f"unknown key '{key}' (expected priority, rule, description)")
    priority = table.get("priority")
    if type(priority) is not int:
        raise _Invalid("priority", "priority must be an integer")
    description = table.get("description", "")
    if not isinstance(description, str) or len(description) > 500:
        raise _Invalid("description", "description must be a string of at most 500 characters")
    if "rule" not in table:
        raise _Invalid("", "rule is required")
    try:
        rule = _rule(table["rule"], "rule", 0)
    except _Invalid as exc:
        raise _Invalid("rule", exc.detail) from None
    return Segment(name, priority, rule, description)


def _rule(doc: Any, path: str, depth: int) -> Rule:
    if not isinstance(doc, dict):
        raise _Invalid("rule", f"{path}: must be a table such as {{ count = ... }}")
    if depth > MAX_DEPTH:
        raise _Invalid("rule", f"{path}: rules nest at most {MAX_DEPTH} levels")
    kinds = [k for k in doc if k in KINDS]
    if len(kinds) != 1:
        raise _Invalid("rule", f"{path}: needs exactly one of {', '.join(KINDS)}")
    kind = kinds[0]
    parse, optional = KINDS[kind]
    for key in doc:
        if key != kind and key not in optional:
            allowed = ", ".join(optional) or "nothing else"
            raise _Invalid("rule", f"{path}: unknown key '{key}' in a {kind} rule ({allowed})")
    return parse(_Reader(doc, path, depth))


@dataclass(frozen=True, slots=True)
class _Reader:
    """One rule table being read, its errors naming its path."""

    doc: dict[str, Any]
    path: str
    depth: int

    def fail(self, key: str, message: str) -> _Invalid:
        return _Invalid("rule", f"{self.path}.{key}: {message}")

    def type(self, key: str) -> str:
        value = self.doc.get(key)
        if value is None:
            raise self.fail(key, "is required")
        if isinstance(value, str) and (
            value in TYPES or (value.startswith(CUSTOM_PREFIX) and CUSTOM_NAME.fullmatch(value[7:]))
        ):
            return value
        raise self.fail(key, f"unknown event type {value!r} ({', '.join(TYPES)} or custom:NAME)")

    def duration(self, key: str) -> Duration:
        value = self.doc.get(key)
        if not isinstance(value, str) or not DURATION.fullmatch(value):
            raise self.fail(key, f"{value!r} is not a duration (e.g. 60s, 15m, 24h, 90d)")
        ms = sum(int(n) * UNIT_MS[u] for n, u in re.findall(r"(\d+)([smhdw])", value))
        if not 0 < ms <= MAX_DURATION_MS:
            raise self.fail(key, f"{value!r} must be longer than 0 and at most 3660d")
        return Duration(ms, value)

    def number(self, key: str, integer: bool = False) -> Any:
        value = self.doc.get(key)
        kinds: tuple[type, ...] = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise self.fail(key, "must be an integer" if integer else "must be a number")
        return value

    def name(self, key: str) -> str | None:
        value = self.doc.get(key)
        if value is not None and (not isinstance(value, str) or not 1 <= len(value) <= 64):
            raise self.fail(key, "must be a property name")
        return value

    def rules(self, key: str) -> tuple[Rule, ...]:
        value = self.doc[key]
        if not isinstance(value, list) or not value:
            raise self.fail(key, "must be a list of one or more rules")
        return tuple(
            _rule(r, f"{self.path}.{key}[{i}]", self.depth + 1) for i, r in enumerate(value)
        )


def _count(r: _Reader) -> Count:
    at_least = r.number("at_least", integer=True)
    if at_least < 1:
        raise r.fail("at_least", "must be at least 1")
    return Count(r.type("count"), at_least, r.duration("within"), r.name("per"))


def _absence(r: _Reader) -> Absence:
    idle = r.duration("for")
    within = r.duration("within") if "within" in r.doc else None
    if within is not None and within.ms <= idle.ms:
        raise r.fail("within", f"must be longer than for ({idle})")
    return Absence(r.type("absence"), r.type("after"), idle, within)


def _aggregate(r: _Reader) -> Aggregate:
    keys = [k for k in ("sum_over", "sum_at_least") if k in r.doc]
    if len(keys) != 1:
        raise r.fail("sum_over", "exactly one of sum_over and sum_at_least is required")
    threshold = r.number(keys[0])
    if threshold < 0:
        raise r.fail(keys[0], "must not be negative")
    field = r.name("field")
    if field is None:
        raise r.fail("field", "is required (the numeric property to sum, e.g. total)")
    currency = r.doc.get("currency")
    if currency is not None and (not isinstance(currency, str) or not CURRENCY.fullmatch(currency)):
        raise r.fail("currency", "must be a 3-letter ISO 4217 code such as EUR")
    within = r.duration("within")
    return Aggregate(r.type("aggregate"), field, threshold, keys[0] == "sum_over", within, currency)


def _recency(r: _Reader) -> Recency:
    keys = [k for k in ("none_within", "seen_within") if k in r.doc]
    if len(keys) != 1:
        raise r.fail("none_within", "exactly one of none_within and seen_within is required")
    within = r.duration(keys[0])
    return Recency(r.type("recency"), within, keys[0] == "seen_within")


def _profile(r: _Reader) -> ProfileCondition:
    field = r.doc["profile"]
    path = tuple(field.split(".")) if isinstance(field, str) else ()
    if not path or path[0] not in PROFILE_ROOTS or not all(path):
        raise r.fail("profile", f"unknown profile field {field!r}")
    ops = [k for k in PROFILE_OPS if k in r.doc]
    if len(ops) != 1:
        raise r.fail("profile", f"needs exactly one of {', '.join(PROFILE_OPS)}")
    op, value = ops[0], r.doc[ops[0]]
    if op in ("at_least", "at_most"):
        value = r.number(op)
    elif op == "exists" and not isinstance(value, bool):
        raise r.fail(op, "must be true or false")
    elif op == "equals" and not isinstance(value, str | int | float | bool):
        raise r.fail(op, "must be a string, number or boolean")
    elif op == "in":
        if not isinstance(value, list) or not value:
            raise r.fail(op, "must be a list of one or more values")
        if not all(isinstance(v, str | int | float | bool) for v in value):
            raise r.fail(op, "must list strings, numbers or booleans")
        value = tuple(value)
    return ProfileCondition(path, op, value)


def _consent(r: _Reader) -> Consent:
    purpose = r.doc["consent"]
    if purpose not in PURPOSES:
        raise r.fail("consent", f"must be one of {', '.join(PURPOSES)}")
    return Consent(purpose)


def _not(r: _Reader) -> Not:
    return Not(_rule(r.doc["not"], f"{r.path}.not", r.depth + 1))


KINDS: Mapping[str, tuple[Callable[[_Reader], Rule], tuple[str, ...]]] = MappingProxyType(
    {
        "count": (_count, ("at_least", "within", "per")),
        "absence": (_absence, ("after", "for", "within")),
        "aggregate": (_aggregate, ("field", "sum_over", "sum_at_least", "within", "currency")),
        "recency": (_recency, ("none_within", "seen_within")),
        "profile": (_profile, PROFILE_OPS),
        "consent": (_consent, ()),
        "all": (lambda r: Group(True, r.rules("all")), ()),
        "any": (lambda r: Group(False, r.rules("any")), ()),
        "not": (_not, ()),
    }
)


def _types(rule: Rule) -> Iterator[str]:
    if isinstance(rule, Count | Aggregate | Recency):
        yield rule.event
    elif isinstance(rule, Absence):
        yield from (rule.event, rule.after)
    elif isinstance(rule, Group):
        for child in rule.rules:
            yield from _types(child)
    elif isinstance(rule, Not):
        yield from _types(rule.rule)


def _header(name: str) -> re.Pattern[str]:
    quoted = re.escape(name)
    return re.compile(rf"""^\s*\[\s*segments\s*\.\s*(?:{quoted}|"{quoted}"|'{quoted}')\s*\]""")


def _line(text: str, name: str | None, key: str) -> int | None:
    """The line of `key` in the table of segment `name` (its header's line when the key
    is not found there; the first line naming it otherwise)."""
    lines = text.splitlines()
    start = None
    if name is not None:
        header = _header(name)
        start = next((i for i, line in enumerate(lines) if header.match(line)), None)
    if start is not None and key:
        assignment = re.compile(rf"^\s*{re.escape(key)}\s*=")
        for i in range(start + 1, len(lines)):
            if lines[i].lstrip().startswith("["):
                break
            if assignment.match(lines[i]):
                return i + 1
    if start is not None:
        return start + 1
    word = re.compile(rf"\b{re.escape(name or key)}\b")
    return next((i + 1 for i, line in enumerate(lines) if word.search(line)), None)


def _rule_at(text: str, line: int | None) -> str | None:
    """The segment whose table holds `line`: the last header at or above it."""
    if line is None:
        return None
    header = re.compile(r"""^\s*\[\s*segments\s*\.\s*["']?([^"'\]\s]+)["']?\s*\]""")
    found = None
    for current in text.splitlines()[:line]:
        match = header.match(current)
        if match:
            found = match.group(1)
        elif current.lstrip().startswith("["):
            found = None
    return found
