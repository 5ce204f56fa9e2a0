"""Metrics: counters and the latency histogram as Prometheus reads them."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.metrics import LATENCY_BUCKETS, Metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counters_by_labels():
    m = Metrics()
    m.requests.labels("/healthz", "GET", "200").inc()
    m.requests.labels("/healthz", "GET", "200").inc()
    m.requests.labels("/healthz", "POST", "405").inc(3)
    m.fallbacks.labels("feed", "cart", "budget").inc()
    s = samples(m)
    key = (("method", "GET"), ("route", "/healthz"), ("status", "200"))
    assert s[("kairos_requests_total", key)] == 2
    assert (
        s[("kairos_requests_total", (("method", "POST"), ("route", "/healthz"), ("status", "405")))]
        == 3
    )
    assert (
        s[("kairos_fallbacks_total", (("kind", "feed"), ("name", "cart"), ("reason", "budget")))]
        == 1
    )


def test_histogram_buckets_are_cumulative_and_inclusive():
    m = Metrics()
    child = m.latency.labels("/v1/feeds/{feed}")
    for value in (0.001, 0.0011, 0.3, 3.0):  # 0.001 sits exactly on the first bound
        child.observe(value)
    s = samples(m)

    def bucket(le: str) -> float:
        return s[("kairos_request_seconds_bucket", (("le", le), ("route", "/v1/feeds/{feed}")))]

    assert bucket("0.001") == 1
    assert bucket("0.0025") == 2
    assert bucket("0.25") == 2
    assert bucket("0.5") == 3
    assert bucket("2.5") == 3
    assert bucket("+Inf") == 4
    assert s[("kairos_request_seconds_count", (("route", "/v1/feeds/{feed}"),))] == 4
    assert s[("kairos_request_seconds_sum", (("route", "/v1/feeds/{feed}"),))] == pytest.approx(
        3.3021
    )
    les = [
        float(labels[0][1])
        for (name, labels) in s
        if name == "kairos_request_seconds_bucket" and labels[0][1] != "+Inf"
    ]
    assert sorted(les) == list(LATENCY_BUCKETS)


def test_gauge_and_empty_families():
    m = Metrics()
    m.store_up.set(1)
    s = samples(m)
    assert s[("kairos_store_up", ())] == 1
    assert not any(name.startswith("kairos_requests") for name, _ in s)


def test_registries_are_independent():
    a, b = Metrics(), Metrics()
    a.cache.labels("hit").inc()
    assert ("kairos_profile_cache_total", (("result", "hit"),)) in samples(a)
    assert ("kairos_profile_cache_total", (("result", "hit"),)) not in samples(b)
