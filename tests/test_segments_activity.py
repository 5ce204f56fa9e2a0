"""What a profile keeps of its events for the segment rules, and the segments ingest
evaluates from it: always what the rules say over the whole kept history, whether an
outcome was reused or run again, and whether the activity was grown event by event or
rebuilt from the history."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from app.events.clock import format_ms
from app.segments import activity
from app.segments.activity import MAX_KEPT, Needs
from app.segments.evaluate import _context, _run, evaluate, next_change_ms, timeline
from app.segments.fast import compile_rules, reassess
from app.segments.rules import load_rules
from app.segments.service import Segmenter

DEFAULT_RULES = Path(__file__).parents[1] / "templates" / "segments.toml"
DAY = 86_400_000
NOW = 1_780_000_000_000  # 2026-05-28
RULES_TEXT = """
[segments.big]
priority = 60
rule = { aggregate = "purchase", field = "total", sum_over = 100, within = "7d", currency = "EUR" }

[segments.idle_cart]
priority = 50
rule = { all = [
    { absence = "purchase", after = "add_to_cart", for = "15m", within = "2d" },
    { profile = "cart", exists = true },
] }

[segments.looker]
priority = 40
rule = { count = "product_view", at_least = 3, within = "24h", per = "sku" }

[segments.gold]
priority = 30
rule = { profile = "tier", equals = "gold" }

[segments.quiet]
priority = 20
rule = { recency = "email_open", none_within = "3d" }

[segments.clicker]
priority = 10
rule = { not = { count = "email_click", at_least = 1, within = "1d" } }
"""
RULES = load_rules(RULES_TEXT)
TYPES = ["product_view", "add_to_cart", "purchase", "email_open", "email_click", "page_view"]


def _event(rng: random.Random, at: int) -> tuple[str, int, dict[str, Any]]:
    kind = rng.choice(TYPES)
    props: dict[str, Any] = {"sku": f"S{rng.randrange(3)}"}
    if kind == "purchase":
        props = {"total": rng.choice([20, 60.5, 90]), "currency": rng.choice(["EUR", "EUR", "USD"])}
    return kind, at, props


def _profile(rng: random.Random, first: int) -> dict[str, Any]:
    profile: dict[str, Any] = {"first_seen": format_ms(first), "counters": {"x": 1}}
    if rng.random() < 0.5:
        profile["tier"] = "gold"
    if rng.random() < 0.7:
        profile["cart"] = [{"sku": "S1", "qty": 1}]
    return profile


@pytest.mark.parametrize("seed", range(40))
def test_ingest_evaluates_what_the_rules_say_over_the_whole_history(seed: int) -> None:
    """Event after event, and sweeps in between with no event, the segments ingest finds
    (reusing the outcomes that stand) equal the rules run on every event so far."""
    rng = random.Random(seed)
    segmenter = Segmenter(RULES, events=None)  # type: ignore[arg-type]
    at = NOW - 10 * DAY
    before: dict[str, Any] | None = None
    history: list[dict[str, Any]] = []
    for _ in range(60):
        at += rng.choice([1_000, 60_000, 20 * 60_000, 3 * 3_600_000, 2 * DAY])
        after = _profile(rng, NOW - 10 * DAY) if before is None else dict(before)
        if rng.random() < 0.2:  # a trait changes, no event the rules read
            after["tier"] = rng.choice(["gold", "silver"])
        news = [] if rng.random() < 0.25 else [_event(rng, at - rng.randrange(0, 5_000))]
        for _, ts, _ in news:  # as ingest keeps it
            after["first_seen"] = min(after["first_seen"], format_ms(ts))
        segmenter.step("u", before, after, news, at)
        history += [{"type": k, "ts": format_ms(t), "properties": p} for k, t, p in news]
        expected = evaluate(RULES, after, history, at)
        assert after["segments"] == expected.as_dict(), (seed, len(history))
        due = after["activity"].get("due")
        # The due time may be earlier than the next change (a lower bound), never later.
        change = next_change_ms(RULES, after, history, at)
        if change is not None:
            assert due is not None and due <= change
        before = after


def test_an_activity_rebuilt_from_history_equals_one_grown_event_by_event() -> None:
    rng = random.Random(7)
    needs = Needs.of(RULES)
    events = [_event(rng, NOW - DAY + i * 60_000) for i in range(300)]
    grown: dict[str, Any] | None = None
    for event in events:
        grown = activity.recorded(grown, [event], needs, event[1])
    docs = [{"type": k, "ts": format_ms(t), "properties": p} for k, t, p in events]
    rebuilt = activity.from_history(docs, needs, events[-1][1])
    assert grown is not None
    assert rebuilt["e"] == grown["e"]


@pytest.mark.parametrize("seed", range(20))
def test_one_event_kept_alone_equals_it_kept_among_others(seed: int) -> None:
    """The one-event path (a reader's one event in a request) keeps what the general one
    does: in and out of order, past the window, past MAX_KEPT, with columns missing."""
    rng = random.Random(seed)
    needs = Needs.of(RULES)
    at = NOW - 3 * DAY
    kept: dict[str, Any] | None = None
    for i in range(3 * MAX_KEPT):
        at += DAY if rng.random() < 0.003 else rng.choice([1, 1_000, 60_000])
        event = _event(rng, at - rng.choice([0, 0, 0, 5_000]))  # some out of order
        if rng.random() < 0.6:  # enough views in a day to pass MAX_KEPT
            event = ("product_view", event[1], {"sku": f"S{rng.randrange(3)}"})
        if kept is not None and rng.random() < 0.05:  # a column lost (a hand-edited profile)
            for columns in kept["e"].values():
                columns.pop("sku", None)
        if kept is not None:
            kept["r"], kept["due"] = ["x", [True, None]], at + i
        alone = activity.recorded(kept, [event], needs, at)
        among = activity.recorded(kept, iter([event]), needs, at)  # (not a list: the general path)
        assert alone == among, (seed, i)
        kept = alone


def test_each_type_keeps_its_window_at_most_max_kept_and_always_its_newest() -> None:
    needs = Needs.of(RULES)
    views = [("product_view", NOW - 2 * DAY + i * 1_000, {"sku": "S1"}) for i in range(50)]
    views += [("product_view", NOW - 3_600_000 + i, {"sku": f"S{i}"}) for i in range(MAX_KEPT + 5)]
    opens = [("email_open", NOW - 30 * DAY, {}), ("email_open", NOW - 20 * DAY, {})]
    kept = activity.recorded(None, [*views, *opens], needs, NOW)["e"]
    assert len(kept["product_view"]["t"]) == MAX_KEPT  # the window's, capped
    assert kept["product_view"]["sku"][-1] == f"S{MAX_KEPT + 4}"
    assert min(kept["product_view"]["t"]) >= NOW - DAY
    assert kept["email_open"] == {"t": [NOW - 20 * DAY]}  # recency: the newest only
    assert "page_view" not in activity.recorded(None, [("page_view", NOW, {})], needs, NOW)["e"]


def test_out_of_order_events_are_kept_in_time_order_with_their_properties() -> None:
    needs = Needs.of(RULES)
    kept = activity.recorded(
        None,
        [("product_view", NOW - 9, {"sku": "late"}), ("product_view", NOW - 99, {"sku": "early"})],
        needs,
        NOW,
    )["e"]["product_view"]
    assert kept == {"t": [NOW - 99, NOW - 9], "sku": ["early", "late"]}


def test_a_rules_change_that_keeps_the_needs_does_not_reuse_old_outcomes() -> None:
    """Same event types, windows and properties, another threshold: the stamp of the
    kept events stands, the outcomes kept under the old rules do not."""
    three = RULES
    looker = 'count = "product_view", at_least = {}, within = "24h"'
    two = load_rules(RULES_TEXT.replace(looker.format(3), looker.format(2)))
    assert two != three
    first = Segmenter(three, events=None)  # type: ignore[arg-type]
    profile: dict[str, Any] = {"first_seen": format_ms(NOW - DAY), "counters": {"x": 1}}
    views = [("product_view", NOW - 1_000 * i, {"sku": "S1"}) for i in (3, 2)]
    first.step("u", None, profile, views, NOW)
    assert "looker" not in profile["segments"]["all"]
    second = Segmenter(two, events=None)  # type: ignore[arg-type]
    assert second.needs.stamp == first.needs.stamp
    after = dict(profile)
    second.step("u", profile, after, [("page_view", NOW, {})], NOW)
    assert "looker" in after["segments"]["all"]


@pytest.mark.parametrize("seed", range(60))
def test_the_compiled_rules_answer_as_the_explaining_evaluator(seed: int) -> None:
    """In or out, and the time each answer can next change, equal for every segment of
    random readers at random times (both rules files: this one and the default)."""
    rng = random.Random(seed)
    default = load_rules(DEFAULT_RULES.read_text(encoding="utf-8"))
    for rules in (RULES, default):
        fast = compile_rules(rules)
        first = NOW - rng.choice([DAY, 5 * DAY, 90 * DAY])
        at = first + rng.randrange(0, 4 * DAY)
        moments = sorted(first + rng.randrange(0, 6 * DAY) for _ in range(25))
        events = [_event(rng, t) for t in moments]
        history = [{"type": k, "ts": format_ms(t), "properties": p} for k, t, p in events]
        profile = _profile(rng, first)
        if rng.random() < 0.5:
            profile["engagement"] = {"last_open": format_ms(first + rng.randrange(0, 3 * DAY))}
        line = timeline(history, rules.types)
        found, due, outcomes = reassess(rules, fast, profile, line, at)
        assert found == evaluate(rules, profile, history, at)
        assert due == next_change_ms(rules, profile, history, at)
        ctx = _context(rules, profile, history, at)
        for segment, (matched, change) in zip(rules.segments, outcomes, strict=True):
            slow = _run(segment.rule, ctx)
            assert (matched, change) == (slow.matched, slow.change), segment.name
