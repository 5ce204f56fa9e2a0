"""Segment rules (app/segments/rules.py) and their evaluation (app/segments/evaluate.py):
pure functions with an explicit clock, `now_ms`."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from app.events.clock import format_ms
from app.segments.evaluate import evaluate, explain, next_change_ms, timeline
from app.segments.rules import RulesError, RuleSet, load_rules

T0 = int(datetime(2026, 12, 6, 10, tzinfo=UTC).timestamp() * 1000)
S, MIN, H, D = 1000, 60_000, 3_600_000, 86_400_000
DEFAULT = Path(__file__).resolve().parent.parent / "templates" / "segments.toml"
_ids = count()


def ev(kind: str, at: int, **props: Any) -> dict[str, Any]:
    """An event as a reader's history keeps it."""
    return {
        "event_id": f"e{next(_ids)}",
        "type": kind,
        "user_id": "u1",
        "ts": format_ms(at),
        "properties": props,
    }


def one(rule: str) -> RuleSet:
    return load_rules(f"[segments.s]\npriority = 1\nrule = {rule}\n")


def is_in(rules: RuleSet, history: list[dict[str, Any]], now: int, profile: Any = None) -> bool:
    return "s" in evaluate(rules, profile, history, now).all


# --- the file ---------------------------------------------------------------------------

GOOD = """\
[segments.a]
priority = 10
rule = { count = "product_view", at_least = 1, within = "1h" }

[segments.b]
priority = 20
description = "b"
rule = { count = "custom:quiz done", at_least = 2, within = "1h30m" }
"""


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [
        (
            GOOD + "[segments.c]\npriority = 5\nrule = { count = \n",
            "segments.toml:11: rule 'c'",
            "Invalid value",
        ),
        (
            GOOD.replace('count = "product_view"', 'counts = "product_view"'),
            ":3: rule 'a'",
            "one of",
        ),
        (GOOD.replace('"1h"', '"24x"'), ":3: rule 'a'", "'24x' is not a duration"),
        (GOOD.replace('"1h"', '"0s"'), ":3: rule 'a'", "longer than 0"),
        (GOOD.replace("priority = 20", "priority = 10"), ":6: rule 'b'", "priority 10"),
        (GOOD.replace("priority = 20", 'priority = "high"'), ":6: rule 'b'", "integer"),
        (GOOD.replace("priority = 20", "priorty = 20"), ":6: rule 'b'", "unknown key 'priorty'"),
        (GOOD.replace("at_least = 1,", "at_least = -1,"), ":3: rule 'a'", "at least 1"),
        (GOOD.replace("at_least = 1,", "at_least = 0,"), ":3: rule 'a'", "at least 1"),
        (GOOD.replace("at_least = 1,", "at_least = 1, foo = 2,"), ":3: rule 'a'", "'foo'"),
        (GOOD.replace('"product_view"', '"product_viewed"'), ":3: rule 'a'", "unknown event type"),
        (GOOD.replace("[segments.a]", "[segments.A-1]"), ":1: rule 'A-1'", "a segment name"),
        (GOOD + "[other]\nx = 1\n", "segments.toml:9:", "unknown table or key 'other'"),
        (
            GOOD.replace(
                'rule = { count = "product_view", at_least = 1, within = "1h" }',
                'rule = { all = [ { consent = "tracking" }, { recency = "email_open", '
                'none_within = "soon" } ] }',
            ),
            ":3: rule 'a'",
            "rule.all[1].none_within: 'soon' is not a duration",
        ),
        (
            GOOD.replace(
                '{ count = "product_view", at_least = 1, within = "1h" }',
                '{ absence = "purchase", after = "add_to_cart", for = "1h", within = "30m" }',
            ),
            ":3: rule 'a'",
            "longer than for",
        ),
        (
            GOOD.replace(
                '{ count = "product_view", at_least = 1, within = "1h" }',
                '{ aggregate = "purchase", field = "total", sum_over = -5, within = "1d" }',
            ),
            ":3: rule 'a'",
            "sum_over: must not be negative",
        ),
        (
            GOOD.replace(
                '{ count = "product_view", at_least = 1, within = "1h" }',
                '{ profile = "shoe_size", equals = 42 }',
            ),
            ":3: rule 'a'",
            "unknown profile field",
        ),
        (GOOD.replace("rule = {", "rules = {", 1), ":3: rule 'a'", "unknown key 'rules'"),
    ],
)
def test_errors_name_the_file_the_rule_and_the_line(text: str, where: str, says: str) -> None:
    with pytest.raises(RulesError) as caught:
        load_rules(text)
    message = str(caught.value)
    assert message.startswith("segments.toml:") and where in message and says in message, message


def test_a_syntax_error_names_the_rule_around_its_line() -> None:
    with pytest.raises(RulesError) as caught:
        load_rules(GOOD.replace('within = "1h" }', 'within = "1h"'), source="my.toml")
    assert caught.value.line == 3 and caught.value.rule == "a"
    assert str(caught.value).startswith("my.toml:3: rule 'a': ")


def test_segments_sort_by_priority_and_know_their_event_types() -> None:
    rules = load_rules(GOOD)
    assert [s.name for s in rules.segments] == ["b", "a"]
    assert rules.types == {"product_view", "custom:quiz done"}
    assert rules.segments[1].rule.within.ms == H  # type: ignore[union-attr]
    assert rules.segments[0].rule.within.ms == 90 * MIN  # type: ignore[union-attr]
    assert load_rules("").segments == ()


# --- count ------------------------------------------------------------------------------

VIEWS = one('{ count = "product_view", at_least = 3, within = "24h" }')


@pytest.mark.parametrize(("views", "expected"), [(2, False), (3, True), (4, True)])
def test_count_below_at_and_above_its_threshold(views: int, expected: bool) -> None:
    history = [ev("product_view", T0 + i * H, sku=f"S{i}") for i in range(views)]
    assert is_in(VIEWS, history, T0 + 5 * H) is expected


def test_count_window_holds_an_event_for_exactly_its_length() -> None:
    history = [ev("product_view", T0 + i * H, sku="S") for i in range(3)]
    assert is_in(VIEWS, history, T0 + D - 1)
    assert not is_in(VIEWS, history, T0 + D)
    assert next_change_ms(VIEWS, None, history, T0 + 5 * H) == T0 + D
    # Four views: the oldest may leave, the second oldest ends it.
    history.append(ev("product_view", T0 + 3 * H, sku="S"))
    assert next_change_ms(VIEWS, None, history, T0 + 5 * H) == T0 + H + D


def test_count_ignores_other_types_and_events_still_to_come() -> None:
    history = [ev("product_view", T0), ev("page_view", T0), ev("product_view", T0 + 2 * H)]
    history.append(ev("product_view", T0 + 3 * H))
    assert not is_in(VIEWS, history, T0 + H)
    assert next_change_ms(VIEWS, None, history, T0 + H) == T0 + 2 * H
    assert is_in(VIEWS, history, T0 + 3 * H)


KEYED = one('{ count = "product_view", at_least = 3, within = "24h", per = "sku" }')


def test_a_keyed_count_is_counted_per_key() -> None:
    history = [ev("product_view", T0 + i * MIN, sku=s) for i, s in enumerate("ABAB")]
    assert not is_in(KEYED, history, T0 + H)  # 4 views, 2 per sku
    history.append(ev("product_view", T0 + 5 * MIN, sku="A"))
    assert is_in(KEYED, history, T0 + H)
    history += [ev("product_view", T0 + H + i, sku="B") for i in range(2)]
    # In until the later of the two skus falls below 3: B's third newest view.
    assert next_change_ms(KEYED, None, history, T0 + 2 * H) == T0 + 3 * MIN + D
    assert is_in(KEYED, history, T0 + 3 * MIN + D - 1)
    assert not is_in(KEYED, history, T0 + 3 * MIN + D)


def test_keyed_count_with_three_of_one_key() -> None:
    history = [ev("product_view", T0 + i * MIN, sku="B") for i in range(3)]
    history.append(ev("product_view", T0, sku="A"))
    assert is_in(KEYED, history, T0 + H)
    assert next_change_ms(KEYED, None, history, T0 + H) == T0 + D


# --- absence ----------------------------------------------------------------------------

ABANDON = one('{ absence = "purchase", after = "add_to_cart", for = "15m", within = "7d" }')


def test_absence_is_due_exactly_at_after_plus_for() -> None:
    history = [ev("purchase", T0 - H, total=5, currency="EUR"), ev("add_to_cart", T0, sku="A")]
    assert not is_in(ABANDON, history, T0 + 15 * MIN - 1)
    assert next_change_ms(ABANDON, None, history, T0 + MIN) == T0 + 15 * MIN
    assert is_in(ABANDON, history, T0 + 15 * MIN)
    assert next_change_ms(ABANDON, None, history, T0 + 15 * MIN) == T0 + 7 * D
    assert is_in(ABANDON, history, T0 + 7 * D - 1)
    assert not is_in(ABANDON, history, T0 + 7 * D)
    assert next_change_ms(ABANDON, None, history, T0 + 7 * D) is None


def test_absence_ends_with_the_absent_event_and_restarts_with_the_next_after() -> None:
    history = [ev("add_to_cart", T0, sku="A"), ev("purchase", T0 + 5 * MIN, total=5)]
    assert not is_in(ABANDON, history, T0 + H)
    assert next_change_ms(ABANDON, None, history, T0 + H) is None
    history.append(ev("add_to_cart", T0 + 2 * H, sku="B"))
    assert not is_in(ABANDON, history, T0 + 2 * H + 14 * MIN)
    assert is_in(ABANDON, history, T0 + 2 * H + 15 * MIN)
    assert not is_in(ABANDON, [], T0)
    # A purchase still to come is not one yet; it is when this can change.
    later = [ev("add_to_cart", T0, sku="A"), ev("purchase", T0 + H, total=1)]
    assert is_in(ABANDON, later, T0 + 30 * MIN)
    assert next_change_ms(ABANDON, None, later, T0 + 30 * MIN) == T0 + H


# --- aggregate --------------------------------------------------------------------------

SPEND = one(
    '{ aggregate = "purchase", field = "total", sum_over = 500, within = "90d", currency = "EUR" }'
)


@pytest.mark.parametrize(("second", "expected"), [(199.99, False), (200, False), (200.01, True)])
def test_aggregate_sum_over_is_strict(second: float, expected: bool) -> None:
    history = [
        ev("purchase", T0, total=300, currency="EUR"),
        ev("purchase", T0 + H, total=second, currency="EUR"),
    ]
    assert is_in(SPEND, history, T0 + D) is expected


def test_aggregate_at_least_and_currency_filter() -> None:
    at_least = one(
        '{ aggregate = "purchase", field = "total", sum_at_least = 500, within = "90d" }'
    )
    history = [
        ev("purchase", T0, total=300, currency="EUR"),
        ev("purchase", T0 + H, total=200, currency="USD"),
    ]
    assert is_in(at_least, history, T0 + D)  # any currency
    assert not is_in(SPEND, history + [ev("purchase", T0, total=200.5, currency="USD")], T0 + D)


def test_aggregate_window_edge_and_next_change() -> None:
    history = [
        ev("purchase", T0, total=100, currency="EUR"),
        ev("purchase", T0 + D, total=300, currency="EUR"),
        ev("purchase", T0 + 2 * D, total=200, currency="EUR"),
    ]
    assert is_in(SPEND, history, T0 + 3 * D)
    # Once the 100 leaves, 500 is not over 500.
    assert next_change_ms(SPEND, None, history, T0 + 3 * D) == T0 + 90 * D
    assert is_in(SPEND, history, T0 + 90 * D - 1)
    assert not is_in(SPEND, history, T0 + 90 * D)


# --- recency ----------------------------------------------------------------------------

DORMANT = one('{ recency = "email_open", none_within = "60d" }')
ACTIVE = one('{ recency = "email_open", seen_within = "30d" }')


def test_recency_none_within_its_window_edge() -> None:
    history = [ev("page_view", T0 - 100 * D), ev("email_open", T0)]
    assert not is_in(DORMANT, history, T0 + 60 * D - 1)
    assert next_change_ms(DORMANT, None, history, T0 + D) == T0 + 60 * D
    assert is_in(DORMANT, history, T0 + 60 * D)
    assert next_change_ms(DORMANT, None, history, T0 + 60 * D) is None


def test_recency_needs_a_reader_known_for_the_window() -> None:
    profile = {"first_seen": format_ms(T0)}
    assert not is_in(DORMANT, [], T0 + 59 * D, profile)
    assert next_change_ms(DORMANT, profile, [], T0 + D) == T0 + 60 * D
    assert is_in(DORMANT, [], T0 + 60 * D, profile)
    assert not is_in(DORMANT, [], T0 + 600 * D)  # never seen at all


def test_recency_reads_the_last_open_the_profile_kept_past_a_trimmed_history() -> None:
    profile = {"first_seen": format_ms(T0 - 400 * D), "engagement": {"last_open": format_ms(T0)}}
    assert not is_in(DORMANT, [ev("page_view", T0 + D)], T0 + 10 * D, profile)
    assert is_in(ACTIVE, [], T0 + 30 * D - 1, profile)
    assert not is_in(ACTIVE, [], T0 + 30 * D, profile)
    assert next_change_ms(ACTIVE, profile, [], T0 + D) == T0 + 30 * D


# --- profile, consent, all / any / not --------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "profile", "expected"),
    [
        ('{ profile = "tier", equals = "gold" }', {"tier": "gold"}, True),
        ('{ profile = "tier", equals = "gold" }', {"tier": "silver"}, False),
        ('{ profile = "tier", equals = "gold" }', None, False),
        ('{ profile = "tier", in = ["gold", "silver"] }', {"tier": "silver"}, True),
        ('{ profile = "attributes.score", at_least = 10 }', {"attributes": {"score": 10}}, True),
        ('{ profile = "attributes.score", at_least = 10 }', {"attributes": {"score": 9.5}}, False),
        ('{ profile = "attributes.score", at_least = 1 }', {"attributes": {"score": True}}, False),
        ('{ profile = "attributes.vip", equals = true }', {"attributes": {"vip": 1}}, False),
        ('{ profile = "spend.EUR", at_most = 50 }', {"spend": {"EUR": 50}}, True),
        ('{ profile = "cart", exists = true }', {"cart": []}, False),
        ('{ profile = "cart", exists = true }', {"cart": [{"sku": "A"}]}, True),
        ('{ profile = "cart", exists = false }', None, True),
        ('{ consent = "personalization" }', None, True),
        ('{ consent = "personalization" }', {"consent": {"personalization": False}}, False),
        ('{ consent = "tracking" }', {"consent": {"personalization": False}}, True),
    ],
)
def test_profile_conditions(rule: str, profile: Any, expected: bool) -> None:
    assert is_in(one(rule), [], T0, profile) is expected


GOLD_ENGAGED = one(
    '{ all = [ { profile = "tier", equals = "gold" }, '
    '{ not = { recency = "email_open", none_within = "30d" } } ] }'
)


def test_all_any_not() -> None:
    known = {"tier": "gold", "first_seen": format_ms(T0 - 100 * D)}
    opened = [ev("email_open", T0)]
    assert is_in(GOLD_ENGAGED, opened, T0 + D, known)
    assert not is_in(GOLD_ENGAGED, opened, T0 + D, {**known, "tier": "silver"})
    assert not is_in(GOLD_ENGAGED, opened, T0 + 30 * D, known)
    assert next_change_ms(GOLD_ENGAGED, known, opened, T0 + D) == T0 + 30 * D
    # Out for a profile reason no time can change: no change is due.
    assert next_change_ms(GOLD_ENGAGED, {**known, "tier": "x"}, opened, T0 + D) is None
    either = one('{ any = [ { profile = "tier", equals = "gold" }, { consent = "tracking" } ] }')
    assert is_in(either, [], T0, {"consent": {"tracking": False}, "tier": "gold"})
    assert not is_in(either, [], T0, {"consent": {"tracking": False}})


# --- priorities, explanations, the default file -----------------------------------------

OVERLAP = load_rules(
    """
[segments.low]
priority = 1
rule = { count = "product_view", at_least = 1, within = "1h" }

[segments.high]
priority = 9
rule = { count = "product_view", at_least = 2, within = "1h" }

[segments.middle]
priority = 5
rule = { count = "product_view", at_least = 1, within = "2h" }
"""
)


def test_overlapping_segments_are_ordered_by_priority() -> None:
    two = [ev("product_view", T0), ev("product_view", T0 + MIN)]
    segments = evaluate(OVERLAP, None, two, T0 + 2 * MIN)
    assert segments.as_dict() == {"primary": "high", "all": ["high", "middle", "low"]}
    assert evaluate(OVERLAP, None, two, T0 + H + MIN).as_dict() == {
        "primary": "middle",
        "all": ["middle"],
    }
    assert evaluate(OVERLAP, None, [], T0).as_dict() == {"primary": None, "all": []}
    # The soonest change of any rule: "high" needs both views, the first leaves at T0 + 1h.
    assert next_change_ms(OVERLAP, None, two, T0 + 2 * MIN) == T0 + H
    read = timeline(two, OVERLAP.types)
    assert evaluate(OVERLAP, None, read, T0 + 2 * MIN) == segments


def test_explain_gives_the_values_and_thresholds() -> None:
    history = [ev("product_view", T0 + i * MIN, sku="SKU-1") for i in range(3)]
    (keyed,) = explain(KEYED, None, history, T0 + H)
    assert keyed.matched and keyed.segment == "s" and keyed.priority == 1
    assert keyed.text == "product_view per sku in the last 24h: SKU-1 ×3 (≥ 3) → in"
    (spend,) = explain(SPEND, None, [ev("purchase", T0, total=120.5, currency="EUR")], T0)
    assert spend.text == "purchase total in EUR in the last 90d: 120.50 (> 500) → out"
    (cart,) = explain(ABANDON, None, [ev("add_to_cart", T0, sku="A")], T0 + 20 * MIN)
    assert cart.text == (
        "add_to_cart at 2026-12-06T10:00:00.000Z, no purchase since: idle 20m (≥ 15m, < 7d) → in"
    )
    known = {"tier": "gold", "first_seen": format_ms(T0 - 100 * D)}
    (nested,) = explain(GOLD_ENGAGED, known, [ev("email_open", T0)], T0 + 2 * D)
    assert nested.lines() == [
        "s (priority 1): all of 2: 2 in → in",
        "  tier = 'gold' (equals 'gold') → in",
        "  not → in",
        "    last email_open 2d ago (none within 30d) → out",
    ]


def test_the_default_file_loads_and_does_what_it_says() -> None:
    rules = load_rules(DEFAULT.read_text(encoding="utf-8"), source=str(DEFAULT))
    assert [s.name for s in rules.segments] == [
        "vip",
        "cart_abandoner",
        "browsing_intent",
        "dormant",
    ]
    assert all(s.description for s in rules.segments)
    profile = {"first_seen": format_ms(T0 - 100 * D), "cart": [{"sku": "A", "qty": 1}]}
    history = [
        ev("email_open", T0 - 61 * D),
        ev("purchase", T0 - 10 * D, total=450, currency="EUR"),
        *(ev("product_view", T0 - i * H, sku="A") for i in (5, 4, 3)),
        ev("add_to_cart", T0 - 2 * H, sku="A"),
    ]

    def names(extra: list[dict[str, Any]], at: int = T0, doc: Any = profile) -> list[str]:
        return list(evaluate(rules, doc, history + extra, at).all)

    assert names([]) == ["cart_abandoner", "browsing_intent", "dormant"]
    assert names([ev("purchase", T0 - H, total=60, currency="EUR")]) == [
        "vip",
        "browsing_intent",
        "dormant",
    ]
    assert names([ev("email_open", T0 - H)]) == ["cart_abandoner", "browsing_intent"]
    assert names([], doc={**profile, "cart": []}) == ["browsing_intent", "dormant"]
    assert names([], at=T0 + 19 * H) == ["cart_abandoner", "dormant"]  # a view is 24h old
    # The next change without events: the oldest of the three views leaves its window.
    assert next_change_ms(rules, profile, history, T0) == T0 - 5 * H + D
