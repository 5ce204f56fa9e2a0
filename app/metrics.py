"""Prometheus metrics, one registry per app (no global state).

Counters and histograms on the request path are plain numbers, updated without locks
(the server is one event loop per process) and turned into metric families only when
Prometheus scrapes: prometheus-client's own locked children cost more than a whole
cached feed answer.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class HistogramChild:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class Counter:
    """A labelled counter; `labels(...)` returns a child to keep and `inc()`."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, list(labelnames)
        self.children: dict[tuple[str, ...], CounterChild] = {}

    def labels(self, *values: str) -> CounterChild:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = CounterChild()
        return child

    def collect(self) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in self.children.items():
            family.add_metric(list(values), child.value)
        return family


class Histogram:
    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, list(labelnames)
        self.buckets = tuple(buckets)
        self.children: dict[tuple[str, ...], HistogramChild] = {}

    def labels(self, *values: str) -> HistogramChild:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = HistogramChild(self.buckets)
        return child

    def collect(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in self.children.items():
            cumulative, buckets = 0, []
            for bound, count in zip((*self.buckets, float("inf")), child.counts, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            family.add_metric(list(values), buckets, child.sum)
        return family


class _Collector:
    def __init__(self, metrics: Sequence[Counter | Histogram]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        for metric in self._metrics:
            yield metric.collect()


class Metrics:
    """The server's counters and histograms."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "kairos_requests", "HTTP requests answered", ["route", "method", "status"]
        )
        self.latency = Histogram(
            "kairos_request_seconds", "HTTP request latency", ["route"], LATENCY_BUCKETS
        )
        self.cache = Counter("kairos_profile_cache", "Profile lookups by outcome", ["result"])
        self.fallbacks = Counter(
            "kairos_fallbacks", "Fallback content served", ["kind", "name", "reason"]
        )
        self.store_errors = Counter(
            "kairos_store_errors", "Profile store calls that failed", ["store"]
        )
        self.image_renders = Counter(
            "kairos_image_renders", "Live images drawn (cache misses that rendered)", ["image"]
        )
        self.image_cache = Counter(
            "kairos_image_cache",
            "Live image lookups in the rendered-bytes cache",
            ["image", "result"],
        )
        self.events = Counter(
            "kairos_events", "Events received, by dialect and outcome", ["dialect", "outcome"]
        )
        self.warm_readers = Counter(
            "kairos_events_warm_readers",
            "Readers an events request applied to: from this server's copy of its last "
            "write (copy), read first (read), or a copy the store refused (refused)",
            ["result"],
        )
        self.merges = Counter("kairos_identity_merges", "Readers merged into a user", [])
        self.erasures = Counter("kairos_erasures", "Erasure requests carried out", [])
        self.unsubscribes = Counter(
            "kairos_unsubscribes",
            "One-click unsubscribes, by result (recorded; already: the reader had "
            "unsubscribed before; erased: nothing kept of an erased reader)",
            ["result"],
        )
        self.tracking_lost = Counter(
            "kairos_tracking_lost", "Sends, opens and clicks not counted, by reason", ["reason"]
        )
        self.segment_record_errors = Counter(
            "kairos_segment_record_errors",
            "Segment changes the store refused on ingest, left to the sweep",
            [],
        )
        self.segment_sweeps = Counter(
            "kairos_segment_sweeps",
            "Readers the segment sweep evaluated, by outcome (recorded, conflict: changed "
            "meanwhile, gone: no profile, erased or merged)",
            ["outcome"],
        )
        self.recs_lost = Counter(
            "kairos_recs_lost",
            "Co-occurrence counts not stored (events counted), by reason",
            ["reason"],
        )
        self.recs_upstream = Counter(
            "kairos_recs_upstream",
            "Calls to the upstream recommendation model, by result",
            ["result"],
        )
        self.studio_tests = Counter(
            "kairos_studio_tests_sent",
            "Tests sent from the designer's studio, by result (sent, failed: the SMTP "
            "server refused or was unreachable, limited: over the per-minute limit)",
            ["result"],
        )
        self.rate_limited = Counter(
            "kairos_rate_limited",
            "Requests answered 429 by a key's rate limit, by family of routes (api: the "
            "server-to-server routes; events: both events dialects)",
            ["family"],
        )
        self.rate_limit_fail_open = Counter(
            "kairos_rate_limit_fail_open",
            "Requests let through without a rate limit check because its store did not "
            "answer (Redis down or its circuit open), by family of routes",
            ["family"],
        )
        self.registry.register(
            _Collector(
                [
                    self.rate_limited,
                    self.rate_limit_fail_open,
                    self.studio_tests,
                    self.events,
                    self.segment_record_errors,
                    self.segment_sweeps,
                    self.recs_lost,
                    self.recs_upstream,
                    self.warm_readers,
                    self.merges,
                    self.erasures,
                    self.unsubscribes,
                    self.tracking_lost,
                    self.requests,
                    self.latency,
                    self.cache,
                    self.fallbacks,
                    self.store_errors,
                    self.image_renders,
                    self.image_cache,
                ]
            )
        )
        self.store_up = Gauge(
            "kairos_store_up", "1 when the last store check succeeded", registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
