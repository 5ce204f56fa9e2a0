"""A/B figures for a campaign: rates per variant, a two-proportion test of each variant's
click rate against the control, and a sample-ratio-mismatch check of the split.

Standard library only. The chi-square survival function is the regularized upper
incomplete gamma Q(k/2, x/2), computed as in Numerical Recipes (`gammq`: a series below
a + 1, a continued fraction above).

Rates are None, not 0, when their denominator is 0: "no sends yet" is not "no clicks".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

# Two-sided 95 %: the normal quantile at 0.975 (1.959963984540054).
Z_95 = NormalDist().inv_cdf(0.975)
SIGNIFICANCE = 0.05
SRM_ALARM = 0.001
INSUFFICIENT_SAMPLE = "insufficient_sample"
# More clicks (or opens) than sends: a lost send count, not a rate to test.
INCONSISTENT_COUNTS = "inconsistent_counts"

_EPS = 1e-15
_FPMIN = 1e-300
_MAX_ITERATIONS = 10_000


@dataclass(frozen=True, slots=True)
class VariantCounts:
    """What the store counted for one variant of a campaign."""

    variant: str
    weight: float  # the declared share of sends; any positive scale
    sends: int  # renders
    human_opens_unique: int
    machine_opens: int
    clicks_unique: int  # people's clicks
    machine_clicks: int = 0  # scanners' and prefetchers': never in a rate


@dataclass(frozen=True, slots=True)
class VariantStats:
    """The rates of one variant; None where the denominator is 0."""

    variant: str
    open_rate: float | None  # unique human opens per send
    click_rate_per_send: float | None
    click_rate_per_human_open: float | None

    @classmethod
    def of(cls, counts: VariantCounts) -> VariantStats:
        return cls(
            variant=counts.variant,
            open_rate=_ratio(counts.human_opens_unique, counts.sends),
            click_rate_per_send=_ratio(counts.clicks_unique, counts.sends),
            click_rate_per_human_open=_ratio(counts.clicks_unique, counts.human_opens_unique),
        )


@dataclass(frozen=True, slots=True)
class Test:
    """A two-proportion test of b against a."""

    __test__ = False  # not a pytest class, though its name says Test

    rate_a: float
    rate_b: float
    difference: float  # rate_b - rate_a
    z: float
    p_value: float  # two-sided
    ci_low: float  # 95 % Wald interval of the difference, unpooled standard error
    ci_high: float

    @property
    def significant(self) -> bool:
        return self.p_value < SIGNIFICANCE


@dataclass(frozen=True, slots=True)
class SRM:
    """A chi-square goodness-of-fit test of the observed split against the weights."""

    chi_square: float  # inf when a variant weighted 0 was sent
    df: int
    p_value: float
    expected: tuple[float, ...]

    @property
    def alarm(self) -> bool:
        return self.p_value < SRM_ALARM


def two_proportion_test(successes_a: int, n_a: int, successes_b: int, n_b: int) -> Test:
    """Pooled two-proportion z-test of b against a, two-sided, with a Wald interval.

    Raises ValueError when a side has no trials or more successes than trials."""
    for successes, n in ((successes_a, n_a), (successes_b, n_b)):
        if n <= 0:
            raise ValueError("a proportion needs at least one trial")
        if not 0 <= successes <= n:
            raise ValueError(f"{successes} successes out of {n} trials")
    rate_a, rate_b = successes_a / n_a, successes_b / n_b
    difference = rate_b - rate_a
    pooled = (successes_a + successes_b) / (n_a + n_b)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    # All successes or none on both sides: the rates are equal and there is nothing to
    # test (the pooled standard error is 0).
    z = difference / se_pooled if se_pooled > 0 else 0.0
    p_value = math.erfc(abs(z) / math.sqrt(2))
    se = math.sqrt(rate_a * (1 - rate_a) / n_a + rate_b * (1 - rate_b) / n_b)
    return Test(
        rate_a=rate_a,
        rate_b=rate_b,
        difference=difference,
        z=z,
        p_value=p_value,
        ci_low=difference - Z_95 * se,
        ci_high=difference + Z_95 * se,
    )


def sample_ratio_mismatch(observed_sends: Sequence[int], weights: Sequence[float]) -> SRM:
    """Does the observed split of sends fit the declared weights? Alarm at p < 0.001.

    A variant weighted 0 and never sent drops out; one weighted 0 but sent is a mismatch
    beyond any doubt (chi-square inf, p 0). No sends at all is no evidence: p 1."""
    if len(observed_sends) != len(weights):
        raise ValueError("one weight per variant")
    if any(w < 0 or not math.isfinite(w) for w in weights) or sum(weights) <= 0:
        raise ValueError("weights must be finite, not negative, and not all 0")
    if any(n < 0 for n in observed_sends):
        raise ValueError("sends cannot be negative")
    total = sum(observed_sends)
    expected = tuple(total * w / sum(weights) for w in weights)
    cells = [(o, e) for o, e, w in zip(observed_sends, expected, weights, strict=True) if w > 0]
    df = len(cells) - 1
    if any(o > 0 and w == 0 for o, w in zip(observed_sends, weights, strict=True)):
        return SRM(chi_square=math.inf, df=max(df, 1), p_value=0.0, expected=expected)
    if total == 0 or df < 1:
        return SRM(chi_square=0.0, df=max(df, 0), p_value=1.0, expected=expected)
    chi_square = sum((o - e) ** 2 / e for o, e in cells)
    return SRM(chi_square, df, chi_square_sf(chi_square, df), expected)


def chi_square_sf(x: float, df: int) -> float:
    """P(X >= x) for X chi-square with `df` degrees of freedom: Q(df/2, x/2)."""
    if df < 1:
        raise ValueError("degrees of freedom must be at least 1")
    if x <= 0:
        return 1.0
    return gammq(df / 2, x / 2)


def gammq(a: float, x: float) -> float:
    """The regularized upper incomplete gamma function Q(a, x) = Γ(a, x) / Γ(a)."""
    if a <= 0 or x < 0:
        raise ValueError("gammq needs a > 0 and x >= 0")
    if x == 0:
        return 1.0
    if math.isinf(x):
        return 0.0
    # The series converges fast below a + 1, the continued fraction above (NR 6.2).
    if x < a + 1:
        return max(0.0, 1.0 - _lower_series(a, x))
    return _upper_fraction(a, x)


def campaign_report(
    control: str, variants: Sequence[VariantCounts], min_sample: int = 100
) -> dict[str, Any]:
    """The JSON-ready figures of a campaign, per variant and for the split.

    Each variant's click rate per send is tested against the control's; the test is
    "insufficient_sample" while either side has fewer than `min_sample` sends (and
    never runs on 0 sends)."""
    names = [v.variant for v in variants]
    if len(set(names)) != len(names):
        raise ValueError("variant names must be unique")
    by_name = {v.variant: v for v in variants}
    if control not in by_name:
        raise ValueError(f"the control {control!r} is not among the variants")
    base = by_name[control]
    rows = [_variant_row(v, base, control, max(min_sample, 1)) for v in variants]
    return {
        "control": control,
        "min_sample": min_sample,
        "variants": rows,
        "srm": _srm(variants),
    }


def _srm(variants: Sequence[VariantCounts]) -> dict[str, Any] | None:
    """The split check; None when no weights are known (no send was counted yet)."""
    if sum(v.weight for v in variants) <= 0:
        return None
    srm = sample_ratio_mismatch([v.sends for v in variants], [v.weight for v in variants])
    return {
        "chi_square": _finite(srm.chi_square),
        "df": srm.df,
        "p_value": srm.p_value,
        "alarm": srm.alarm,
        "expected_sends": list(srm.expected),
        "observed_sends": [v.sends for v in variants],
    }


def _variant_row(
    counts: VariantCounts, base: VariantCounts, control: str, min_sample: int
) -> dict[str, Any]:
    rates = VariantStats.of(counts)
    test: dict[str, Any] | str | None = None
    if counts.variant != control:
        if min(counts.sends, base.sends) < min_sample:
            test = INSUFFICIENT_SAMPLE
        elif counts.clicks_unique > counts.sends or base.clicks_unique > base.sends:
            test = INCONSISTENT_COUNTS
        else:
            result = two_proportion_test(
                base.clicks_unique, base.sends, counts.clicks_unique, counts.sends
            )
            test = {
                "difference": result.difference,
                "z": result.z,
                "p_value": result.p_value,
                "ci95": [result.ci_low, result.ci_high],
                "significant": result.significant,
            }
    return {
        "variant": counts.variant,
        "control": counts.variant == control,
        "weight": counts.weight,
        "sends": counts.sends,
        "human_opens_unique": counts.human_opens_unique,
        "machine_opens": counts.machine_opens,
        "clicks_unique": counts.clicks_unique,
        "machine_clicks": counts.machine_clicks,
        "open_rate": rates.open_rate,
        "click_rate_per_send": rates.click_rate_per_send,
        "click_rate_per_human_open": rates.click_rate_per_human_open,
        "test": test,
    }


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator > 0 else None


def _finite(value: float) -> float | None:
    # JSON has no Infinity.
    return value if math.isfinite(value) else None


def _prefactor(a: float, x: float) -> float:
    return math.exp(-x + a * math.log(x) - math.lgamma(a))


def _lower_series(a: float, x: float) -> float:
    """P(a, x) by its series (NR `gser`)."""
    term = total = 1.0 / a
    ap = a
    for _ in range(_MAX_ITERATIONS):
        ap += 1
        term *= x / ap
        total += term
        if abs(term) < abs(total) * _EPS:
            return total * _prefactor(a, x)
    raise ArithmeticError(f"gammq series did not converge for a={a}, x={x}")


def _upper_fraction(a: float, x: float) -> float:
    """Q(a, x) by its continued fraction, modified Lentz (NR `gcf`)."""
    b = x + 1 - a
    c = 1 / _FPMIN
    d = 1 / b
    h = d
    for i in range(1, _MAX_ITERATIONS + 1):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        if abs(d) < _FPMIN:
            d = _FPMIN
        c = b + an / c
        if abs(c) < _FPMIN:
            c = _FPMIN
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < _EPS:
            return _prefactor(a, x) * h
    raise ArithmeticError(f"gammq continued fraction did not converge for a={a}, x={x}")
