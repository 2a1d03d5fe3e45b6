"""
Every Prometheus metric Railgun exposes, defined here and only here
(docs/metrics.md lists them; a test checks that it lists each one).

The values are read from the roles' own counters when the endpoint is
scraped (a custom collector): the hot path only adds to integers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from attrs import frozen
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from railgun.admin.views import RoleView
from railgun.stats import OUTCOMES, Histogram


@frozen
class MetricSpec:
    """
    One metric: its name (without C{_total} for a counter), type, labels
    and meaning.
    """

    name: str
    kind: str  # counter, gauge or histogram
    labels: tuple[str, ...]
    help: str

    def family(self) -> Any:
        """
        @return: an empty metric family to add samples to.
        """
        make = {
            "counter": CounterMetricFamily,
            "gauge": GaugeMetricFamily,
            "histogram": HistogramMetricFamily,
        }[self.kind]
        return make(self.name, self.help, labels=list(self.labels))


def _spec(name: str, kind: str, labels: str, help: str) -> MetricSpec:
    return MetricSpec(name, kind, tuple(labels.split()), help)


REQUESTS = _spec(
    "railgun_requests",
    "counter",
    "role host outcome",
    "Requests (edge: client requests; origin role: streams) that ended, by "
    "the host map entry that served them and outcome: same, delta, full, raw, "
    "direct, refused, error.",
)
RESPONSES = _spec(
    "railgun_responses",
    "counter",
    "role class",
    "Responses sent, by status class (1xx..5xx).",
)
BODY_BYTES = _spec(
    "railgun_body_bytes",
    "counter",
    "role kind",
    "Body bytes: served to clients (edge), from origin servers (origin "
    "role), on the link (both).",
)
REQUEST_SECONDS = _spec(
    "railgun_request_duration_seconds",
    "histogram",
    "role",
    "Time from a request's head (a stream's HEADERS) to its end.",
)
ORIGIN_SECONDS = _spec(
    "railgun_origin_fetch_duration_seconds",
    "histogram",
    "role",
    "Time from the start of an origin fetch to its response head.",
)
ENCODE_SECONDS = _spec(
    "railgun_delta_encode_duration_seconds",
    "histogram",
    "role",
    "Time to encode a version (delta or whole body), thread pool wait included.",
)
DELTA_LEVELS = _spec(
    "railgun_delta_level",
    "counter",
    "role level",
    "Deltas encoded, by the zstd level they were made at: the encode-time "
    "budget's best level (19) or the fixed one (delta.level).",
)
ABANDONED = _spec(
    "railgun_delta_abandoned",
    "counter",
    "role",
    "Level-19 deltas abandoned past four times the encode-time budget and made "
    "at the fixed level instead.",
)
PREPARED = _spec(
    "railgun_delta_prepared_bases",
    "counter",
    "role",
    "New versions hashed ahead at the best level, in the background, as the "
    "base of the next delta against them.",
)
PREPARED_BYTES = _spec(
    "railgun_delta_prepared_bytes",
    "gauge",
    "role",
    "Memory held by the versions hashed ahead (bounded by delta.prepared_memory).",
)
LINKS = _spec(
    "railgun_links",
    "gauge",
    "role address state",
    "Links by state: up, or connecting (being dialed again); the origin "
    "role counts the links accepted from edges under address 'edges'.",
)
LINK_RTT = _spec(
    "railgun_link_rtt_seconds",
    "gauge",
    "role address link",
    "Smoothed round-trip time of each link that is up, from PING/PONG.",
)
STREAMS_OPEN = _spec(
    "railgun_streams_open",
    "gauge",
    "role",
    "Streams open on the role's links.",
)
RECONNECTS = _spec(
    "railgun_link_reconnects",
    "counter",
    "role address",
    "Links that came up again after one had closed or failed.",
)
LINK_FAILURES = _spec(
    "railgun_link_failures",
    "counter",
    "role address cause",
    "Dials and HELLO exchanges that failed, by cause (refused, dns, timeout, "
    "tls-unknown-ca, tls-name, tls, token, closed, other), and links that "
    "were up and closed (lost).",
)
FALLBACKS = _spec(
    "railgun_fallbacks",
    "counter",
    "role cause",
    "Fallbacks, by cause: direct (edge fetched the origin itself), "
    "digest-mismatch, decode-error, base-missing-at-origin, origin-encoding.",
)
STORE_HITS = _spec(
    "railgun_store_hits", "counter", "role store", "Version store lookups that hit."
)
STORE_MISSES = _spec(
    "railgun_store_misses",
    "counter",
    "role store",
    "Version store lookups that missed.",
)
STORE_EVICTIONS = _spec(
    "railgun_store_evictions",
    "counter",
    "role store",
    "Versions evicted to make room (memcached: as its stats last said).",
)
STORE_BYTES = _spec(
    "railgun_store_bytes",
    "gauge",
    "role store",
    "Bytes held by the version store.",
)
STORE_ERRORS = _spec(
    "railgun_store_errors",
    "counter",
    "role store",
    "Version store errors (memcached: timeouts, lost connections, bad replies).",
)
READY = _spec(
    "railgun_ready",
    "gauge",
    "role",
    "1 when the role is ready (what /readyz answers), else 0.",
)

#: every metric, in the order exposed.
METRICS = (
    REQUESTS,
    RESPONSES,
    BODY_BYTES,
    REQUEST_SECONDS,
    ORIGIN_SECONDS,
    ENCODE_SECONDS,
    DELTA_LEVELS,
    ABANDONED,
    PREPARED,
    PREPARED_BYTES,
    LINKS,
    LINK_RTT,
    STREAMS_OPEN,
    RECONNECTS,
    LINK_FAILURES,
    FALLBACKS,
    STORE_HITS,
    STORE_MISSES,
    STORE_EVICTIONS,
    STORE_BYTES,
    STORE_ERRORS,
    READY,
)


def _histogram(family: Any, role: str, histogram: Histogram) -> None:
    family.add_metric(
        [role],
        [(bound, float(count)) for bound, count in histogram.cumulative()],
        histogram.sum,
    )


class RailgunCollector(Collector):
    """
    Read the counters of the role views C{views()} returns at each scrape.
    """

    def __init__(self, views: Callable[[], list[RoleView]]) -> None:
        self._views = views

    def collect(self) -> Iterator[Metric]:
        families = {spec.name: spec.family() for spec in METRICS}
        for view in self._views():
            self._collectRole(view, families)
        yield from families.values()

    def _collectRole(self, view: RoleView, families: dict[str, Any]) -> None:
        role = view.role
        stats = view.stats
        add = lambda spec, labels, value: families[spec.name].add_metric(  # noqa: E731
            labels, value
        )
        byLabel: dict[str, Counter[str]] = {}
        for host, counters in stats.hosts().items():
            byLabel.setdefault(view.hostLabel(host), Counter()).update(
                counters.outcomes
            )
        for host, outcomes in sorted(byLabel.items()):
            for outcome in OUTCOMES:
                add(REQUESTS, [role, host, outcome], outcomes[outcome])
        total = stats.total
        for cls, n in sorted(total.statuses.items()):
            add(RESPONSES, [role, cls], n)
        if role == "edge":
            add(BODY_BYTES, [role, "served"], total.bodyBytesServed)
        else:
            add(BODY_BYTES, [role, "origin"], total.bodyBytesFromOrigin)
        add(BODY_BYTES, [role, "link"], total.bodyBytesOnLink)
        _histogram(families[REQUEST_SECONDS.name], role, stats.requestSeconds)
        if role == "origin":
            _histogram(families[ORIGIN_SECONDS.name], role, stats.originSeconds)
            _histogram(families[ENCODE_SECONDS.name], role, stats.encodeSeconds)
            for level, n in sorted(stats.deltaLevels.items()):
                add(DELTA_LEVELS, [role, str(level)], n)
            add(ABANDONED, [role], view.service.abandonedDeltas())
            add(PREPARED, [role], view.service.preparer.prepared)
            add(PREPARED_BYTES, [role], view.service.preparedBytes())
        streams = 0
        for pool in view.pools():
            add(LINKS, [role, pool.address, "up"], pool.up)
            if role == "edge":
                add(LINKS, [role, pool.address, "connecting"], pool.connecting)
                add(RECONNECTS, [role, pool.address], pool.reconnects)
                for cause, n in sorted(pool.failures.items()):
                    add(LINK_FAILURES, [role, pool.address, cause], n)
            for link in pool.links:
                streams += link.openStreams
                if link.rtt is not None:
                    add(LINK_RTT, [role, pool.address, str(link.index)], link.rtt)
        add(STREAMS_OPEN, [role], streams)
        for cause, n in sorted(total.fallbacks.items()):
            add(FALLBACKS, [role, cause], n)
        for name, store in sorted(view.stores().items()):
            add(STORE_HITS, [role, name], store.hits)
            add(STORE_MISSES, [role, name], store.misses)
            add(STORE_EVICTIONS, [role, name], store.evictions)
            add(STORE_BYTES, [role, name], store.bytes)
            add(STORE_ERRORS, [role, name], store.errors)
        add(READY, [role], 1 if view.readiness()[0] else 0)


def makeRegistry(views: Callable[[], list[RoleView]]) -> CollectorRegistry:
    """
    A registry of its own (so that two services in one process each expose
    their own figures) holding Railgun's collector and the process
    collector (process_cpu_seconds_total, process_resident_memory_bytes,
    ...).
    """
    from prometheus_client import ProcessCollector

    registry = CollectorRegistry()
    registry.register(RailgunCollector(views))
    ProcessCollector(registry=registry)
    return registry
