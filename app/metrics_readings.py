"""Numbers the server exposes that other objects keep: read from them when Prometheus
scrapes, or when a worker copies its numbers for the others (`app/metrics.py`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from app.metrics_shared import Entry
from app.stores.protocols import Circuit


class Reading:
    """An unlabelled number read from its owner when scraped or shared (the Redis
    breaker's): a counter, or with `mode` a gauge whose workers' values combine so."""

    def __init__(
        self, name: str, documentation: str, read: Callable[[], float], mode: str | None = None
    ) -> None:
        self.name, self.documentation, self.read, self.mode = name, documentation, read, mode

    def collect(self) -> Metric:
        if self.mode is None:
            return CounterMetricFamily(self.name, self.documentation, value=self.read())
        return GaugeMetricFamily(self.name, self.documentation, value=self.read())

    def entries(self) -> Iterator[Entry]:
        if self.mode is None:
            yield "counter", f"{self.name}_total", (), (), self.read()
        else:
            yield f"gauge_{self.mode}", self.name, (), (), self.read()


def circuit_readings(circuit: Circuit) -> tuple[Reading, ...]:
    """The circuit breaker in front of Redis: its state and counts."""
    return (
        Reading(
            "kairos_redis_breaker_open",
            "1 while the circuit breaker in front of Redis is open or half open (Redis "
            "calls fail at once but for one probe), 0 when closed (workers: 1 when that "
            "of one live worker is)",
            lambda: 0.0 if circuit.state == "closed" else 1.0,
            mode="livemax",
        ),
        Reading(
            "kairos_redis_breaker_refused",
            "Redis calls the open circuit breaker failed at once",
            lambda: float(circuit.refused),
        ),
        Reading(
            "kairos_redis_breaker_opened",
            "Times the circuit breaker in front of Redis opened",
            lambda: float(circuit.opened),
        ),
    )
