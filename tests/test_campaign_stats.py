"""A/B figures (app/campaigns/stats.py) against hand-computed values: the two-proportion
test, the chi-square survival function at its textbook critical values, sample-ratio
mismatch that alarms and that does not, the minimum-sample guard and zero sends."""

from __future__ import annotations

import json
import math

import pytest

from app.campaigns.stats import (
    INCONSISTENT_COUNTS,
    INSUFFICIENT_SAMPLE,
    VariantCounts,
    VariantStats,
    campaign_report,
    chi_square_sf,
    gammq,
    sample_ratio_mismatch,
    two_proportion_test,
)


def test_two_proportion_test_by_hand() -> None:
    # 200/1000 vs 260/1000: pooled p = 460/2000 = 0.23,
    # pooled SE = sqrt(0.23 * 0.77 * (1/1000 + 1/1000)) = sqrt(0.0003542) = 0.018820,
    # z = (0.26 - 0.20) / 0.018820 = 3.188, p = erfc(3.188 / sqrt 2) = 0.00143.
    # Unpooled SE = sqrt(0.2 * 0.8 / 1000 + 0.26 * 0.74 / 1000) = sqrt(0.0003524) = 0.018772,
    # CI = 0.06 -/+ 1.95996 * 0.018772 = 0.06 -/+ 0.036793 = (0.02321, 0.09679).
    t = two_proportion_test(200, 1000, 260, 1000)
    assert t.rate_a == 0.2 and t.rate_b == 0.26
    assert t.difference == pytest.approx(0.06)
    assert t.z == pytest.approx(3.188, abs=1e-3)
    assert t.p_value == pytest.approx(0.00143, abs=1e-5)
    assert t.ci_low == pytest.approx(0.02321, abs=1e-5)
    assert t.ci_high == pytest.approx(0.09679, abs=1e-5)
    assert t.significant


def test_two_proportion_test_is_symmetric_and_signed() -> None:
    # b - a: swapping the sides flips z, the difference and the interval, not p.
    ab, ba = two_proportion_test(200, 1000, 260, 1000), two_proportion_test(260, 1000, 200, 1000)
    assert ba.z == pytest.approx(-ab.z)
    assert ba.p_value == pytest.approx(ab.p_value)
    assert (ba.ci_low, ba.ci_high) == pytest.approx((-ab.ci_high, -ab.ci_low))


def test_a_small_difference_is_not_significant() -> None:
    # 100/1000 vs 110/1000: pooled 0.105, SE = sqrt(0.105 * 0.895 * 0.002) = 0.013709,
    # z = 0.01 / 0.013709 = 0.7294, p = 0.4657; the interval spans 0.
    t = two_proportion_test(100, 1000, 110, 1000)
    assert t.z == pytest.approx(0.7294, abs=1e-4)
    assert t.p_value == pytest.approx(0.4657, abs=1e-4)
    assert t.ci_low < 0 < t.ci_high
    assert not t.significant


def test_identical_extremes_have_nothing_to_test() -> None:
    # 0/50 vs 0/80: pooled 0, SE 0; no division by zero, no evidence either way.
    t = two_proportion_test(0, 50, 0, 80)
    assert (t.z, t.p_value, t.ci_low, t.ci_high) == (0.0, 1.0, 0.0, 0.0)


@pytest.mark.parametrize("args", [(0, 0, 1, 10), (1, 10, 0, 0), (11, 10, 1, 10), (-1, 10, 1, 10)])
def test_two_proportion_test_refuses_impossible_counts(args: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError):
        two_proportion_test(*args)


@pytest.mark.parametrize(
    ("x", "df", "p"),
    [
        (3.841, 1, 0.05),  # the textbook critical values
        (6.635, 1, 0.01),
        (10.828, 1, 0.001),
        (5.991, 2, 0.05),
        (7.815, 3, 0.05),
        (18.307, 10, 0.05),
        (0.0, 4, 1.0),
    ],
)
def test_chi_square_survival_at_critical_values(x: float, df: int, p: float) -> None:
    assert chi_square_sf(x, df) == pytest.approx(p, rel=1e-3, abs=1e-12)


def test_chi_square_survival_closed_forms() -> None:
    # df = 2: Q(1, x/2) = exp(-x/2) exactly; df = 1: erfc(sqrt(x/2)). Both branches of
    # gammq (series below a + 1, continued fraction above) are crossed.
    for x in (0.01, 0.5, 1.9, 2.1, 7.0, 30.0, 200.0):
        assert chi_square_sf(x, 2) == pytest.approx(math.exp(-x / 2), rel=1e-12)
        assert chi_square_sf(x, 1) == pytest.approx(math.erfc(math.sqrt(x / 2)), rel=1e-10)


def test_gammq_edges() -> None:
    assert gammq(3.0, 0.0) == 1.0
    assert gammq(3.0, math.inf) == 0.0
    # Q(a, x) for integer a is the Poisson tail: Q(3, 2) = e^-2 (1 + 2 + 2) = 0.676676.
    assert gammq(3.0, 2.0) == pytest.approx(5 * math.exp(-2), rel=1e-12)
    with pytest.raises(ValueError):
        gammq(0.0, 1.0)
    with pytest.raises(ValueError):
        chi_square_sf(1.0, 0)


def test_srm_alarms_on_a_lopsided_even_split() -> None:
    # Declared 50/50, observed 5,000 vs 5,400: expected 5,200 each,
    # chi2 = 2 * 200^2 / 5200 = 15.385, df 1, p = erfc(sqrt(7.692)) = 8.77e-5 < 0.001.
    srm = sample_ratio_mismatch([5000, 5400], [0.5, 0.5])
    assert srm.expected == (5200.0, 5200.0)
    assert srm.chi_square == pytest.approx(15.385, abs=1e-3)
    assert srm.df == 1
    assert srm.p_value == pytest.approx(8.77e-5, rel=1e-3)
    assert srm.alarm


def test_srm_is_quiet_on_a_fair_split() -> None:
    # Declared 50/50 (any scale), observed 5,000 vs 5,050: expected 5,025 each,
    # chi2 = 2 * 25^2 / 5025 = 0.24876, p = erfc(sqrt(0.12438)) = 0.6180.
    srm = sample_ratio_mismatch([5000, 5050], [1, 1])
    assert srm.chi_square == pytest.approx(0.24876, abs=1e-5)
    assert srm.p_value == pytest.approx(0.6180, abs=1e-4)
    assert not srm.alarm


def test_srm_with_three_uneven_weights() -> None:
    # Weights 50/25/25 of 4,000: expected 2,000/1,000/1,000; observed 2,000/1,100/900:
    # chi2 = 0 + 100^2/1000 + 100^2/1000 = 20, df 2, p = exp(-10) = 4.54e-5: alarm.
    srm = sample_ratio_mismatch([2000, 1100, 900], [50, 25, 25])
    assert srm.chi_square == pytest.approx(20.0)
    assert srm.df == 2
    assert srm.p_value == pytest.approx(math.exp(-10), rel=1e-9)
    assert srm.alarm


def test_srm_edges() -> None:
    # No sends yet: no evidence, no alarm, no division by zero.
    assert not sample_ratio_mismatch([0, 0], [1, 1]).alarm
    # A variant weighted 0 that was sent is a mismatch beyond doubt.
    paused = sample_ratio_mismatch([300, 2], [1, 0])
    assert (paused.chi_square, paused.p_value, paused.alarm) == (math.inf, 0.0, True)
    # Weighted 0 and never sent: it drops out, and one variant left has nothing to test.
    assert not sample_ratio_mismatch([300, 0], [1, 0]).alarm
    for sends, weights in (([1, 2], [1]), ([1, 2], [1, -1]), ([1, 2], [0, 0]), ([-1, 2], [1, 1])):
        with pytest.raises(ValueError):
            sample_ratio_mismatch(sends, weights)


def test_variant_rates_and_zero_sends() -> None:
    # 1,000 sends, 250 human opens, 60 clicks: 0.25 open, 0.06 per send, 0.24 per open.
    rates = VariantStats.of(VariantCounts("a", 1, 1000, 250, 400, 60))
    assert (rates.open_rate, rates.click_rate_per_send) == (0.25, 0.06)
    assert rates.click_rate_per_human_open == 0.24
    empty = VariantStats.of(VariantCounts("b", 1, 0, 0, 0, 0))
    assert (empty.open_rate, empty.click_rate_per_send, empty.click_rate_per_human_open) == (
        None,
        None,
        None,
    )


def test_campaign_report() -> None:
    report = campaign_report(
        "a",
        [
            VariantCounts("a", 0.5, 1000, 300, 500, 200),
            VariantCounts("b", 0.5, 1000, 320, 480, 260),
        ],
    )
    json.dumps(report, allow_nan=False)  # JSON-ready: plain types, no NaN or Infinity
    a, b = report["variants"]
    assert a["control"] and a["test"] is None
    assert a["open_rate"] == 0.3  # human opens only: the 500 machine opens do not count
    assert b["click_rate_per_send"] == 0.26
    assert b["click_rate_per_human_open"] == pytest.approx(260 / 320)
    assert b["machine_opens"] == 480
    # The same figures as test_two_proportion_test_by_hand.
    assert b["test"]["p_value"] == pytest.approx(0.00143, abs=1e-5)
    assert b["test"]["ci95"] == pytest.approx([0.02321, 0.09679], abs=1e-5)
    assert b["test"]["significant"] is True
    assert report["srm"]["alarm"] is False and report["srm"]["p_value"] == 1.0


def test_minimum_sample_guard() -> None:
    # 99 sends is one short of the default 100: the test waits, the rates are shown.
    variants = [VariantCounts("a", 1, 100, 30, 0, 10), VariantCounts("b", 1, 99, 30, 0, 40)]
    b = campaign_report("a", variants)["variants"][1]
    assert b["test"] == INSUFFICIENT_SAMPLE
    assert b["click_rate_per_send"] == pytest.approx(40 / 99)
    # The guard holds on the control's side too, and lifts at exactly min_sample.
    assert campaign_report("b", variants)["variants"][0]["test"] == INSUFFICIENT_SAMPLE
    assert isinstance(campaign_report("a", variants, min_sample=99)["variants"][1]["test"], dict)


def test_zero_sends_report() -> None:
    # A campaign that has sent nothing: no rates, no test, no alarm, even with the guard off.
    variants = [VariantCounts("a", 1, 0, 0, 0, 0), VariantCounts("b", 1, 0, 0, 0, 0)]
    report = campaign_report("a", variants, min_sample=0)
    json.dumps(report, allow_nan=False)
    b = report["variants"][1]
    assert b["test"] == INSUFFICIENT_SAMPLE
    assert b["open_rate"] is None and b["click_rate_per_send"] is None
    assert report["srm"]["alarm"] is False


def test_report_with_a_lost_send_count_and_a_paused_variant() -> None:
    # More clicks than counted sends (the store lost counts): not a proportion to test.
    lost = campaign_report(
        "a", [VariantCounts("a", 1, 500, 0, 0, 50), VariantCounts("b", 1, 500, 0, 0, 501)]
    )
    assert lost["variants"][1]["test"] == INCONSISTENT_COUNTS
    # A variant weighted 0 but sent: chi-square inf is reported as null, and it alarms.
    paused = campaign_report(
        "a", [VariantCounts("a", 1, 500, 0, 0, 5), VariantCounts("b", 0, 3, 0, 0, 0)]
    )
    json.dumps(paused, allow_nan=False)
    assert paused["srm"]["chi_square"] is None and paused["srm"]["alarm"] is True


def test_report_refuses_a_missing_control_or_duplicate_variants() -> None:
    a = VariantCounts("a", 1, 10, 0, 0, 0)
    with pytest.raises(ValueError):
        campaign_report("control", [a])
    with pytest.raises(ValueError):
        campaign_report("a", [a, a])
