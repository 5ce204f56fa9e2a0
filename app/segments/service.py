"""The segments of a stored reader, now: the rules file loaded once, the reader's profile
and kept history read from the stores, and the rules evaluated at the current time (so
time windows expire without new events)."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from app.segments.evaluate import Explanation, Segments, Timeline, evaluate, explain, timeline
from app.segments.rules import RulesError, RuleSet, load_rules
from app.settings import ConfigError
from app.stores.protocols import EventStore, Profile


def load_rules_file(path: Path) -> RuleSet:
    """The rules of `path`, or `ConfigError` naming the file, rule and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"KAIROS_SEGMENTS_FILE: cannot read {path.name}: {exc.strerror}"
        ) from None
    try:
        return load_rules(text, source=path.name)
    except RulesError as exc:
        raise ConfigError(f"KAIROS_SEGMENTS_FILE: {exc}") from None


class Segmenter:
    """A reader's segments and why, from the event store."""

    def __init__(self, rules: RuleSet, events: EventStore) -> None:
        self.rules = rules
        self._events = events

    async def of(self, user_id: str, profile: Profile | None) -> Segments:
        history = await self._history(user_id)
        return evaluate(self.rules, profile, history, _now_ms())

    async def explain(self, user_id: str, profile: Profile | None) -> list[Explanation]:
        history = await self._history(user_id)
        return explain(self.rules, profile, history, _now_ms())

    async def _history(self, user_id: str) -> Timeline:
        raw = await self._events.history(user_id)
        return timeline([orjson.loads(e) for e in raw], self.rules.types)


def _now_ms() -> int:
    return int(time.time() * 1000)
