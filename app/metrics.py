"""Prometheus metrics, one registry per app (no global state).

Counters and histograms on the request path are plain numbers, updated without locks
(the server is one event loop per process) and turned into metric families only when
Prometheus scrapes: prometheus-client's own locked children cost more than a whole
cached feed answer. With a directory shared by the workers of one server
(`KAIROS_METRICS_DIR`), the same numbers are also copied there and a scrape answers for
every worker (`app/metrics_shared.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from app.metrics_readings import Reading, circuit_readings
from app.metrics_shared import Entry, SharedFiles, bucket_label
from app.stores.protocols import Circuit

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# How often a worker copies its numbers to the shared directory: a scrape on another
# worker sees them at most this late.
SHARE_EVERY_S = 1.0


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

    def entries(self) -> Iterator[Entry]:
        names, sample = tuple(self.labelnames), f"{self.name}_total"
        for values, child in list(self.children.items()):
            yield "counter", sample, names, values, child.value


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
                buckets.append((bucket_label(bound), cumulative))
            family.add_metric(list(values), buckets, child.sum)
        return family

    def entries(self) -> Iterator[Entry]:
        # Buckets as counts of their own (not cumulative): the merge adds them up.
        names = tuple(self.labelnames)
        bucket_names, bucket, total = (*names, "le"), f"{self.name}_bucket", f"{self.name}_sum"
        les = tuple(bucket_label(bound) for bound in (*self.buckets, float("inf")))
        for values, child in list(self.children.items()):
            for le, count in zip(les, child.counts, strict=True):
                yield "histogram", bucket, bucket_names, (*values, le), count
            yield "histogram", total, names, values, child.sum


class Gauge:
    """An unlabelled gauge; `mode` is how the workers' values combine (prometheus-client's
    multiprocess modes: `livesum`, `livemax`, ...; `live` ones forget a dead worker)."""

    def __init__(self, name: str, documentation: str, mode: str) -> None:
        self.name, self.documentation, self.mode = name, documentation, mode
        self.value = 0.0

    def set(self, value: float) -> None:
        self.value = value

    def collect(self) -> Metric:
        return GaugeMetricFamily(self.name, self.documentation, value=self.value)

    def entries(self) -> Iterator[Entry]:
        yield f"gauge_{self.mode}", self.name, (), (), self.value


# What the server exposes, one family each.
Exposed = Counter | Histogram | Gauge | Reading


class _Collector:
    def __init__(self, metrics: Sequence[Exposed]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        for metric in self._metrics:
            yield metric.collect()


class Metrics:
    """The server's counters and histograms."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, shared_dir: Path | None = None, circuit: Circuit | None = None) -> None:
        """`shared_dir`: the directory the workers of one server share (else this
        process's numbers alone). `circuit`: the breaker in front of Redis, if any."""
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
        self.events_turns = Counter(
            "kairos_events_turns",
            "Events requests that found KAIROS_EVENTS_IN_FLIGHT taken: waited (their turn "
            "came), busy (not within KAIROS_EVENTS_WAIT_MS: answered 503)",
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
        self.store_up = Gauge(
            "kairos_store_up",
            "1 when the last store check succeeded (workers: 1 when that of one live "
            "worker did; they share one store)",
            mode="livemax",
        )
        self.workers = Gauge(
            "kairos_workers", "Worker processes serving (workers: the live ones)", mode="livesum"
        )
        self.workers.set(1)
        self._all: tuple[Exposed, ...] = (
            self.rate_limited,
            self.rate_limit_fail_open,
            self.studio_tests,
            self.events,
            self.segment_record_errors,
            self.segment_sweeps,
            self.recs_lost,
            self.recs_upstream,
            self.warm_readers,
            self.events_turns,
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
            self.store_up,
            self.workers,
            *(() if circuit is None else circuit_readings(circuit)),
        )
        self._shared = None if shared_dir is None else SharedFiles(shared_dir)
        if self._shared is None:
            self.registry = CollectorRegistry(auto_describe=False)
            self.registry.register(_Collector(self._all))
        else:
            self.registry = self._shared.registry

    def render(self) -> bytes:
        """The exposition: this process's numbers, or with a shared directory the sum
        over every worker (this one's copied first, so they are current)."""
        if self._shared is not None:
            self._shared.write(self._all)
        return generate_latest(self.registry)

    async def share(self, stop: asyncio.Event) -> None:
        """With a shared directory: copy this worker's numbers there at once, then every
        second until `stop` is set, and once more then."""
        if self._shared is None:
            return
        self._shared.write(self._all)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SHARE_EVERY_S)
            self._shared.write(self._all)

    def close(self) -> None:
        """The last copy of this worker's numbers (at shutdown), its files closed."""
        if self._shared is not None:
            self._shared.write(self._all)
            self._shared.close()
