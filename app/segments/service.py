"""The segments of a reader, now: the rules file, reloaded when it changes; evaluated on
each event (`step`, from what the profile keeps: `app/segments/activity.py`) and whenever
a feed, image or render reads the profile (`live`), so time windows expire without new
events; a changed rule applies to what was kept, with nothing ingested again.

What ingest and the sweep find is recorded in the segment store (members, the stream of
entries and exits, the due-time index); reads only queue a reader whose segments moved
since, for the sweep to record (`app/segments/sweep.py`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from app.segments import activity
from app.segments.activity import Needs
from app.segments.evaluate import Explanation, Segments, explain, timeline
from app.segments.fast import compile_rules, reassess
from app.segments.rules import RulesError, RuleSet, load_rules
from app.settings import ConfigError
from app.stores.protocols import EventStore, Profile, SegmentChange

log = logging.getLogger("kairos.segments")

# How often, at most, the rules file is looked at for a change.
CHECK_EVERY_S = 1.0
# Readers a read found moved, waiting for the sweep to record them: past this, the next
# event or due time records them instead.
MAX_NOTICED = 10_000
MEMO_KEY = "segments"


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


class NeedsHistory(Exception):
    """The reader's kept activity was kept for other rules: evaluating needs the kept
    history (read it, and step again with it)."""


class Segmenter:
    """A reader's segments and why. With `path`, the rules are those of that file,
    reloaded within `check_every_s` of a change; a file that no longer loads is logged
    with its rule and line, and the last good rules stay."""

    def __init__(
        self,
        rules: RuleSet,
        events: EventStore,
        *,
        path: Path | None = None,
        check_every_s: float = CHECK_EVERY_S,
    ) -> None:
        self.rules = rules
        self.needs = Needs.of(rules)
        self.fast = compile_rules(rules)
        self._events = events
        self._path = path
        self._check_every_s = check_every_s
        self._checked = time.monotonic()
        self._stamp = _stamp(path) if path is not None else None
        # Why the file as saved does not load (the rules in use are the last good ones).
        self.error: RulesError | None = None
        # Readers whose segments a read found changed since last recorded.
        self.noticed: set[str] = set()

    def current(self) -> RuleSet:
        """The rules now: the file's, if it changed since it was last looked at."""
        if self._path is None:
            return self.rules
        if time.monotonic() - self._checked >= self._check_every_s:
            self.reload()
        return self.rules

    def reload(self) -> RulesError | None:
        """Look at the rules file now (the designer's studio saw it saved) and load it
        if it changed. What keeps the file from loading, while it does (logged once;
        the last good rules stay), else None."""
        if self._path is None:
            return None
        self._checked = time.monotonic()
        stamp = _stamp(self._path)
        if stamp == self._stamp:
            return self.error
        self._stamp = stamp
        try:
            rules = load_rules(self._path.read_text(encoding="utf-8"), source=self._path.name)
        except OSError as exc:  # (its strerror: never the path, which the studio shows)
            self.error = RulesError(self._path.name, None, None, f"cannot read it: {exc.strerror}")
        except UnicodeDecodeError:
            self.error = RulesError(self._path.name, None, None, "is not UTF-8 text")
        except RulesError as exc:
            self.error = exc
        else:
            self.rules, self.needs, self.fast = rules, Needs.of(rules), compile_rules(rules)
            self.error = None
            log.info("segment rules reloaded: %d segments", len(rules.segments))
            return None
        log.error("segment rules not reloaded, the last good ones stay: %s", self.error)
        return self.error

    def stale(self, profile: Profile | None) -> bool:
        """Whether the profile's kept activity was kept for other rules (or none was kept
        for a reader with events): it must be rebuilt from the kept history."""
        self.current()
        return activity.kept(profile, self.needs) is None and activity.had_events(profile)

    def step(
        self,
        user_id: str,
        before: Profile | None,
        after: Profile,
        events: Sequence[tuple[str, int, Mapping[str, Any]]],
        now_ms: int,
        history: Sequence[bytes] | None = None,
        *,
        reuse: bool = True,
    ) -> SegmentChange | None:
        """Keep `events` (type, time ms, properties) in `after`'s activity, evaluate its
        segments into `after["segments"]`; the change to record, if the segments or the
        due time moved. `history`: the kept events, when `before`'s activity is stale
        (`NeedsHistory` is raised for a stale one without, before anything changes).
        With `reuse`, a segment reading nothing that changed from `before` to `after`
        keeps its last outcome until due; without, every segment runs (the profile may
        have changed since its last evaluation without ingest seeing it: a PUT)."""
        rules, needs = self.current(), self.needs
        kept = activity.kept(before, needs)
        if kept is None and history is None and activity.had_events(before):
            raise NeedsHistory
        prior: list[list[Any]] | None = None
        rerun: set[int] = set()
        if kept is None and history:
            kept = activity.from_history([orjson.loads(e) for e in history], needs, now_ms)
        elif kept is not None and reuse:
            prior, rerun = _prior(kept, needs, before or {}, after, events, now_ms)
            if prior is not None and not rerun and not any(e[0] in needs.types for e in events):
                # (a page view): `after` keeps `before`'s activity and segments.
                return None
        new = activity.recorded(kept, events, needs, now_ms)
        line = activity.timeline(new)
        found, due, outcomes = reassess(rules, self.fast, after, line, now_ms, prior, rerun)
        new["r"] = [needs.rules_stamp, *outcomes]
        if due is None:
            new.pop("due", None)
        else:
            new["due"] = due
        after[activity.FIELD] = new
        old = after.get("segments")
        old_all = tuple(old.get("all") or ()) if isinstance(old, dict) else None
        if not (isinstance(old, dict) and old_all == found.all) or (
            old.get("primary") != found.primary
        ):
            after["segments"] = found.as_dict()
        # The due-time index is told of an earlier time only: one later than it holds
        # costs a sweep that finds nothing and records the new one, where telling it on
        # every event would be a store write per event.
        indexed = kept.get("indexed") if kept and reuse else None
        if old_all == found.all and (due is None or (indexed is not None and indexed <= due)):
            if indexed is not None:
                new["indexed"] = indexed
            return None
        if due is not None:
            new["indexed"] = due
        return SegmentChange(user_id, found.all, due)

    def live(self, user_id: str, profile: Profile, memo: dict[Any, Any] | None) -> Profile:
        """`profile` with its `segments` as of now (a new dict when they differ from
        those stored), evaluated from its kept activity; kept beside a cached profile in
        `memo` until they can next change. A stale activity (rules changed since) gives
        the stored segments, and the reader is noticed for the sweep to re-evaluate."""
        rules, needs = self.current(), self.needs
        now = _now_ms()
        if memo is not None:
            found = memo.get(MEMO_KEY)
            if found is not None and found[0] is rules and now < found[1]:
                return found[2]  # type: ignore[no-any-return]
        kept = activity.kept(profile, needs)
        if kept is None and activity.had_events(profile):
            self.notice(user_id)
            return profile
        line = activity.timeline(kept or {})
        segments, due, _ = reassess(rules, self.fast, profile, line, now)
        stored = profile.get("segments")
        shown = segments.as_dict()
        if stored != shown:
            profile = {**profile, "segments": shown}
            if not isinstance(stored, dict) or tuple(stored.get("all") or ()) != segments.all:
                self.notice(user_id)
        if memo is not None:
            # Re-evaluated at least every minute: a due time is a lower bound.
            memo[MEMO_KEY] = (rules, min(due or now + 60_000, now + 60_000), profile)
        return profile

    def notice(self, user_id: str) -> None:
        if len(self.noticed) < MAX_NOTICED:
            self.noticed.add(user_id)

    async def of(self, user_id: str, profile: Profile | None) -> Segments:
        """The reader's segments now, from the profile's activity, else the history."""
        rules = self.current()
        if profile is not None and not self.stale(profile):
            kept = activity.kept(profile, self.needs) or {}
            line = activity.timeline(kept)
            return reassess(rules, self.fast, profile, line, _now_ms())[0]
        history = await self._timeline(user_id, rules)
        return reassess(rules, self.fast, profile or {}, history, _now_ms())[0]

    async def explain(self, user_id: str, profile: Profile | None) -> list[Explanation]:
        """Rule by rule, why the reader is or is not in each segment (from history)."""
        rules = self.current()
        return explain(rules, profile, await self._timeline(user_id, rules), _now_ms())

    async def _timeline(self, user_id: str, rules: RuleSet) -> Any:
        raw = await self._events.history(user_id)
        return timeline([orjson.loads(e) for e in raw], rules.types)


def _prior(
    kept: Mapping[str, Any],
    needs: Needs,
    before: Profile,
    after: Profile,
    events: Sequence[tuple[str, int, Mapping[str, Any]]],
    now_ms: int,
) -> tuple[list[list[Any]] | None, set[int]]:
    """The outcomes kept under these rules (None: none), and the indexes of the segments
    to run again: those reading an event's type or a profile field that changed, and
    those due."""
    prior = kept.get("r")
    if not isinstance(prior, list) or not prior or prior[0] != needs.rules_stamp:
        return None, set()
    outcomes = prior[1:]
    rerun: set[int] = set()
    by_type = needs.by_type
    for kind, _, _ in events:
        rerun.update(by_type.get(kind, ()))
    for root, readers in needs.by_root:
        if before.get(root) != after.get(root):
            rerun.update(readers)
    due = kept.get("due")
    if due is None or now_ms >= due:  # (`due` is the earliest of the outcomes' times)
        for i, (_, change) in enumerate(outcomes):
            if change is not None and now_ms >= change:
                rerun.add(i)
    return outcomes, rerun


def _stamp(path: Path) -> tuple[int, int] | None:
    """What tells a changed file (None when it cannot be read)."""
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_mtime_ns, found.st_size


def _now_ms() -> int:
    return int(time.time() * 1000)
