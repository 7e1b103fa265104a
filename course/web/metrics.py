"""The search service's Prometheus metrics, in a registry of its own per app (so several apps can live in one
process): search latency and result counts, cache outcomes, errors and how fast they failed, and the embedding
provider's breaker and events, read at scrape time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily

from course.resilience import GuardedEmbedder


class Metrics:
    """The service's Prometheus metrics, in a registry of its own (so several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.search_seconds = Histogram(
            "search_request_seconds",
            "Time to answer POST /search, by result-cache outcome.",
            ["cache"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.results = Histogram(
            "search_results",
            "Results returned per search.",
            registry=self.registry,
            buckets=(0, 1, 2, 5, 10, 20, 50, 100),
        )
        self.query_seconds = Histogram(
            "search_query_seconds",
            "Time of the database part of a search (result-cache misses), by mode.",
            ["mode"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.embedding_seconds = Histogram(
            "embedding_request_seconds",
            "Time to embed a query with the provider (cache misses only).",
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.cache = Counter(
            "search_cache_requests_total",
            "Cache lookups by cache and outcome.",
            ["cache", "outcome"],
            registry=self.registry,
        )
        self.errors = Counter("search_errors_total", "Failed requests by kind.", ["kind"], registry=self.registry)
        self.failed_seconds = Histogram(
            "search_failed_seconds",
            "Time to answer a failed POST /search, by error kind (how fast it failed).",
            ["kind"],
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
        )
        self.breaker = Gauge(
            "embedding_breaker_state",
            "The provider's circuit breaker: 0 closed, 1 half-opened, 2 open.",
            registry=self.registry,
        )
        self._embedder: GuardedEmbedder | None = None
        self.registry.register(self)  # collect() below: the provider's own counters, read at scrape time

    def watch(self, embedder: GuardedEmbedder) -> None:
        self._embedder = embedder
        self.breaker.set_function(lambda: {"closed": 0, "half-opened": 1, "open": 2}[embedder.state])

    def collect(self):
        """embedding_provider_events_total{event}: requests sent, retries, failures by kind, calls coalesced with
        an identical one in flight, and calls refused at once by the open breaker."""
        family = CounterMetricFamily(
            "embedding_provider_events", "Embedding provider activity by event.", labels=["event"]
        )
        if self._embedder is not None:
            for event, n in sorted((self._embedder.stats or {}).items()):
                family.add_metric([event], n)
            family.add_metric(["coalesced"], self._embedder.coalesced)
            family.add_metric(["rejected_by_breaker"], self._embedder.rejected)
        yield family

    def describe(self):
        return []
