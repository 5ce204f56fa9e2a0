"""The segments of a stored reader, now: the rules file, reloaded when it changes; the
reader's profile and kept history read from the stores; the rules evaluated at the
current time (so time windows expire without new events, and a changed rule applies to
what was kept, with nothing ingested again)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import orjson

from app.segments.evaluate import Explanation, Segments, Timeline, evaluate, explain, timeline
from app.segments.rules import RulesError, RuleSet, load_rules
from app.settings import ConfigError
from app.stores.protocols import EventStore, Profile

log = logging.getLogger("kairos.segments")

# How often, at most, the rules file is looked at for a change.
CHECK_EVERY_S = 1.0


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
    """A reader's segments and why, from the event store. With `path`, the rules are
    those of that file, reloaded within `check_every_s` of a change; a file that no
    longer loads is logged with its rule and line, and the last good rules stay."""

    def __init__(
        self,
        rules: RuleSet,
        events: EventStore,
        *,
        path: Path | None = None,
        check_every_s: float = CHECK_EVERY_S,
    ) -> None:
        self.rules = rules
        self._events = events
        self._path = path
        self._check_every_s = check_every_s
        self._checked = time.monotonic()
        self._stamp = _stamp(path) if path is not None else None

    async def of(self, user_id: str, profile: Profile | None) -> Segments:
        rules = self.current()
        history = await self._history(user_id, rules)
        return evaluate(rules, profile, history, _now_ms())

    async def explain(self, user_id: str, profile: Profile | None) -> list[Explanation]:
        rules = self.current()
        history = await self._history(user_id, rules)
        return explain(rules, profile, history, _now_ms())

    def current(self) -> RuleSet:
        """The rules now: the file's, if it changed since it was last looked at."""
        if self._path is None:
            return self.rules
        now = time.monotonic()
        if now - self._checked < self._check_every_s:
            return self.rules
        self._checked = now
        stamp = _stamp(self._path)
        if stamp == self._stamp:
            return self.rules
        self._stamp = stamp
        try:
            self.rules = load_rules_file(self._path)
        except ConfigError as exc:
            log.error("segment rules not reloaded, the last good ones stay: %s", exc)
        else:
            log.info("segment rules reloaded: %d segments", len(self.rules.segments))
        return self.rules

    async def _history(self, user_id: str, rules: RuleSet) -> Timeline:
        raw = await self._events.history(user_id)
        return timeline([orjson.loads(e) for e in raw], rules.types)


def _stamp(path: Path) -> tuple[int, int] | None:
    """What tells a changed file (None when it cannot be read)."""
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_mtime_ns, found.st_size


def _now_ms() -> int:
    return int(time.time() * 1000)
