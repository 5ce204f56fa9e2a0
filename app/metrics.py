"""Prometheus metrics, one registry per app (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The server's counters and histograms."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "kairos_requests", "HTTP requests answered", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "kairos_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.cache = Counter(
            "kairos_profile_cache", "Profile lookups by outcome", ["result"], registry=r
        )
        self.fallbacks = Counter(
            "kairos_fallbacks", "Fallback content served", ["kind", "name", "reason"], registry=r
        )
        self.store_errors = Counter(
            "kairos_store_errors", "Profile store calls that failed", ["store"], registry=r
        )
        self.store_up = Gauge(
            "kairos_store_up", "1 when the last store check succeeded", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
