"""Prometheus metrics, one registry per app; streams see only the StreamObserver protocol.

One process: the app's registry holds the hub's metrics and the process's own (`process_*`:
CPU, memory, open file descriptors). With `hub serve --workers N` the supervisor gives its
workers one directory (`shared_directory`, PROMETHEUS_MULTIPROC_DIR): every worker writes its
metrics to its own files there, and whichever worker answers a scrape reads them all, so one
scrape covers every worker (prometheus-client's multiprocess mode). Counters and histograms are
summed over every worker that ran (a restarted worker's counts are not lost), open streams over
the live workers only, and `process_*` come once per live worker, labelled with its `pid`.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import re
import shutil
import tempfile
from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

SHARED_DIRECTORY = "PROMETHEUS_MULTIPROC_DIR"

# With workers, deliveries (the hot path: one call per event written) are counted in a plain
# integer and written to the worker's file at most this many seconds later.
_FLUSH_DELAY = 0.5


class _Delivered(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "hub_events_delivered", "Events written to streams (live and backfilled)."
        )
        family.add_metric([], self._metrics.delivered_total)
        yield family


def _live_workers(directory: str) -> list[int]:
    """Workers whose open-streams gauge file is there (the supervisor removes a dead one's)."""
    pids = []
    for path in glob.glob(os.path.join(directory, "gauge_livesum_*.db")):
        found = re.fullmatch(r"gauge_livesum_(\d+)\.db", os.path.basename(path))
        if found and os.path.exists(f"/proc/{found[1]}"):
            pids.append(int(found[1]))
    return sorted(pids)


class _WorkerProcesses(Collector):
    """`process_*` of every live worker, each sample labelled with the worker's pid."""

    def __init__(self, directory: str) -> None:
        self._directory = directory

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for pid in _live_workers(self._directory):
            collector = ProcessCollector(pid=lambda pid=pid: pid, registry=None)  # type: ignore[misc]
            for family in collector.collect():
                into = merged.setdefault(
                    family.name,
                    Metric(family.name, family.documentation, family.type, family.unit),
                )
                for sample in family.samples:
                    into.add_sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value)
        yield from merged.values()


def _values_in_files() -> None:
    """Metrics created from now on keep their values in this process's files in the shared
    directory. prometheus-client picks that when first imported; the supervisor's workers get
    the directory after that, so it is picked here, before their metrics are made."""
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._directory = os.environ.get(SHARED_DIRECTORY) or None
        # Counted on every delivery: a plain integer, read by the registry at scrape time
        # (or, with workers, written to this worker's file soon after).
        self.delivered_total = 0
        self._flushed = 0
        self._flush_pending = False
        if self._directory:
            _values_in_files()
            multiprocess.MultiProcessCollector(self.registry, self._directory)  # type: ignore[no-untyped-call]
            self.registry.register(_WorkerProcesses(self._directory))
            r: CollectorRegistry | None = None  # in the files, read by the collector above
            self._delivered_shared: Counter | None = Counter(
                "hub_events_delivered", "Events written to streams (live and backfilled)."
            )
        else:
            r = self.registry
            ProcessCollector(registry=r)
            r.register(_Delivered(self))
            self._delivered_shared = None
        self.open_streams = Gauge(
            "hub_open_streams", "Open SSE streams.", registry=r, multiprocess_mode="livesum"
        )
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
        if self._delivered_shared is not None and not self._flush_pending:
            self._flush_soon()

    def _flush_soon(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # outside the event loop: at once
            self._flush()
            return
        self._flush_pending = True
        loop.call_later(_FLUSH_DELAY, self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        if self._delivered_shared is not None and self.delivered_total != self._flushed:
            self._delivered_shared.inc(self.delivered_total - self._flushed)
            self._flushed = self.delivered_total

    def backfilled_events(self, count: int) -> None:
        self.backfilled.inc(count)

    def reset_sent(self, reason: str) -> None:
        self.resets.labels(reason).inc()

    def slow_consumer(self) -> None:
        self.slow_consumers.inc()

    def render(self) -> bytes:
        self._flush()
        return generate_latest(self.registry)


@contextlib.contextmanager
def shared_directory() -> Iterator[str]:
    """The workers' metrics directory, for as long as the supervisor runs: PROMETHEUS_MULTIPROC_DIR
    when set (emptied first: a previous run's counts are not this run's), else a new temporary
    one, removed at the end. Set in the environment, which the forked workers inherit."""
    given = os.environ.get(SHARED_DIRECTORY)
    if given:
        os.makedirs(given, exist_ok=True)
        for stale in glob.glob(os.path.join(given, "*.db")):
            os.remove(stale)
        yield given
        return
    directory = tempfile.mkdtemp(prefix="hub-metrics-")
    os.environ[SHARED_DIRECTORY] = directory
    try:
        yield directory
    finally:
        os.environ.pop(SHARED_DIRECTORY, None)
        shutil.rmtree(directory, ignore_errors=True)


def worker_ended(pid: int, directory: str) -> None:
    """A worker is gone: its open streams no longer count (its counters still do)."""
    multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
