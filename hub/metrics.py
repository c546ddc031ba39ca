"""Prometheus metrics, one registry per app; streams see only the StreamObserver protocol."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector


class _Delivered(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "hub_events_delivered", "Events written to streams (live and backfilled)."
        )
        family.add_metric([], self._metrics.delivered_total)
        yield family


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.open_streams = Gauge("hub_open_streams", "Open SSE streams.", registry=r)
        # Counted on every delivery: a plain integer, read by the registry at scrape time.
        self.delivered_total = 0
        r.register(_Delivered(self))
        self.backfilled = Counter(
            "hub_backfilled_events", "Events written to streams from history.", registry=r
        )
        self.resets = Counter(
            "hub_resets_sent", "hub.reset events sent, by reason.", ["reason"], registry=r
        )
        self.slow_consumers = Counter(
            "hub_slow_consumers_dropped", "Streams closed for falling behind.", registry=r
        )
        self.publishes = Counter(
            "hub_publishes", "Publish requests, by outcome.", ["outcome"], registry=r
        )
        self.publish_latency = Histogram(
            "hub_publish_latency_seconds",
            "Time to append a publish to every target's history.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.broker_reconnects = Counter(
            "hub_broker_reconnects", "Reconnects of the broker's pub/sub connection.", registry=r
        )

    # StreamObserver: what a stream reports as it goes.
    def delivered(self, count: int) -> None:
        self.delivered_total += count

    def backfilled_events(self, count: int) -> None:
        self.backfilled.inc(count)

    def reset_sent(self, reason: str) -> None:
        self.resets.labels(reason).inc()

    def slow_consumer(self) -> None:
        self.slow_consumers.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
