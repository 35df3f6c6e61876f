"""Prometheus metrics, correct across worker processes.

    visit_tracker_http_requests_total{route,method,status}  counter   requests answered
    visit_tracker_http_request_duration_seconds{route}      histogram time to answer
    visit_tracker_visits_total                              counter   hits the store committed
    visit_tracker_bot_hits_total                            counter   known bots' hits committed
    visit_tracker_batch_size                                histogram hits per group commit
    visit_tracker_store_apply_seconds                       histogram time of one group commit
    visit_tracker_store_errors_total{kind}                  counter   failed store operations
    visit_tracker_event_streams                             gauge     event streams open
    visit_tracker_event_counters                            gauge     counters polled for them
    visit_tracker_event_streams_dropped_total               counter   streams of stalled clients
    visit_tracker_rate_limited_total{class}                 counter   requests refused with 429

`route` is the route's template (`/v1/counters/{namespace}/{key}/hits`), or `unmatched`: never
the raw path, which a client could vary without end. `class` is a rate limit's route class
(`visit`, `hits`, `reads`, `admin`); each limited class has its series from the start, at 0.

With `PROMETHEUS_MULTIPROC_DIR` set (`visit-tracker serve` makes a fresh one at every start),
every process writes its values to files there and whichever answers `/metrics` reads them all.
Without it (one process, tests), values stay in memory.

Per-request figures are tallied in plain Python and handed to prometheus-client once per
event-loop iteration: each of its multiprocess values takes a lock and writes a memory-mapped
file on every change, which per request would cost more than counting the visit itself.
"""

import asyncio
import os
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from math import inf

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROCESS_DIRECTORY = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods kept as labels; any other is `other`, so that clients cannot add series at will."""

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, inf)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, inf)
APPLY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2, inf)


@dataclass(slots=True)
class _LatencyTally:
    """Observations not yet handed over: how many fell in each bucket, and their sum."""

    buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    total: float = 0.0


class Metrics:
    """This process's metrics, and the exposition `/metrics` answers."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "visit_tracker_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "visit_tracker_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.visits = Counter(
            "visit_tracker_visits",
            "Hits the store committed, on every counter: each is an acknowledged visit. Known "
            "bots' hits are not visits.",
            registry=self.registry,
        )
        self.bot_hits = Counter(
            "visit_tracker_bot_hits",
            "Hits of known bots the store committed apart, in their counters' bot hits.",
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "visit_tracker_batch_size",
            "Hits applied by one group commit.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.apply_seconds = Histogram(
            "visit_tracker_store_apply_seconds",
            "Time of one group commit (Store.apply), failed ones included.",
            buckets=APPLY_BUCKETS,
            registry=self.registry,
        )
        self.store_errors = Counter(
            "visit_tracker_store_errors",
            "Store operations that failed, by kind of error.",
            ["kind"],
            registry=self.registry,
        )
        # Summed over the live processes: a worker that stops takes its streams with it.
        self.event_streams = Gauge(
            "visit_tracker_event_streams",
            "Event streams open (GET /v1/counters/{namespace}/{key}/events).",
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self.event_counters = Gauge(
            "visit_tracker_event_counters",
            "Counters whose value is read from the store periodically for the open streams, "
            "once per process however many streams watch each.",
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self.event_streams_dropped = Counter(
            "visit_tracker_event_streams_dropped",
            "Event streams ended because their client took nothing written to it in time.",
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "visit_tracker_rate_limited",
            "Requests refused (429) because their client was over its rate limit, by the "
            "route class whose limit it was.",
            ["class"],
            registry=self.registry,
        )
        self._requests: dict[tuple[str, str, int], int] = {}
        self._latencies: dict[str, _LatencyTally] = {}
        self._refusals: dict[str, int] = {}

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Note one answered request; it reaches the exposition at the end of this iteration.

        Positional parameters: this runs for every request, and keywords cost a little more.
        """
        if not self._requests:
            asyncio.get_running_loop().call_soon(self.flush)
        key = (route, method if method in METHODS else "other", status)
        self._requests[key] = self._requests.get(key, 0) + 1
        tally = self._latencies.get(route)
        if tally is None:
            tally = self._latencies[route] = _LatencyTally()
        tally.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        tally.total += seconds

    def rate_limits_on(self, route_classes: Iterable[str]) -> None:
        """Start the refusals of each of these limited route classes at 0, so that a rate
        over them is known before the first refusal."""
        for route_class in route_classes:
            self.rate_limited.labels(route_class)

    def rate_limit_refused(self, route_class: str) -> None:
        """Note one request refused for its rate limit; it reaches the exposition at the end of
        this iteration, as requests do (a flood of refusals is what it counts)."""
        if not self._refusals:
            asyncio.get_running_loop().call_soon(self.flush)
        self._refusals[route_class] = self._refusals.get(route_class, 0) + 1

    def flush(self) -> None:
        """Hand the requests and refusals noted so far to prometheus-client."""
        requests, self._requests = self._requests, {}
        latencies, self._latencies = self._latencies, {}
        refusals, self._refusals = self._refusals, {}
        for (route, method, status), count in requests.items():
            self.requests.labels(route, method, str(status)).inc(count)
        for route_class, count in refusals.items():
            self.rate_limited.labels(route_class).inc(count)
        for route, tally in latencies.items():
            histogram = self.latency.labels(route)
            # Histogram.observe takes one value; these are its own per-bucket values, which
            # it keeps per bucket (not cumulative) exactly as observe would change them.
            for bucket, count in zip(histogram._buckets, tally.buckets, strict=True):
                if count:
                    bucket.inc(count)
            histogram._sum.inc(tally.total)

    def batch_committed(self, *, size: int, bots: int, seconds: float) -> None:
        self.visits.inc(size - bots)
        if bots:
            self.bot_hits.inc(bots)
        self.batch_size.observe(size)
        self.apply_seconds.observe(seconds)

    def batch_failed(self, error: BaseException, *, seconds: float) -> None:
        self.apply_seconds.observe(seconds)
        self.store_failed(error)

    def store_failed(self, error: BaseException) -> None:
        self.store_errors.labels(type(error).__name__).inc()

    def streams_changed(self, *, streams: int, counters: int) -> None:
        """Note how many event streams are open in this process, and how many counters they
        watch."""
        self.event_streams.set(streams)
        self.event_counters.set(counters)

    def stream_dropped(self) -> None:
        self.event_streams_dropped.inc()

    def exposition(self) -> tuple[bytes, str]:
        """The text of every process's metrics, and its content type."""
        self.flush()
        directory = os.environ.get(MULTIPROCESS_DIRECTORY)
        if directory is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        # prometheus-client leaves these two functions unannotated.
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """Hand over what is pending, and take this process's gauges out of the sums. (The
        multiprocess directory belongs to `visit-tracker serve`, which removes it when it
        stops.)"""
        self.flush()
        directory = os.environ.get(MULTIPROCESS_DIRECTORY)
        if directory is not None:
            multiprocess.mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]
