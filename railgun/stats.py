"""
Counters for what Railgun does, per host and in total: the figures an
operator watches (requests and how each ended, bytes from origins, bytes on
the link and their ratio, how bodies crossed, fallbacks and why, store
hits, latencies).

These plain counters are the one source of truth: the admin endpoint
(L{railgun.admin}) reads them when it is scraped, so counting costs an
integer addition on the hot path, not a Prometheus client call.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter

from attrs import define, field

#: how a request (at the edge) or a stream (at the origin role) ended:
#: how its body crossed the link (C{same}, C{delta}, C{full}, C{raw}), served
#: by the edge's direct fallback (C{direct}), refused (unknown host, bad
#: request), or failed (C{error}: no link, link failure, origin failure,
#: timeout, client gone before the end).
OUTCOMES = ("same", "delta", "full", "raw", "direct", "refused", "error")

#: the status classes counted.
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")

#: the name under which hosts beyond L{Stats.maxHosts} are counted.
OTHER_HOSTS = "(other hosts)"

#: the name under which requests for hosts that are not served (or with no
#: valid Host at all) are counted.
UNKNOWN_HOST = "(unknown host)"

#: upper bounds (seconds) of the request and origin-fetch histograms.
REQUEST_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

#: upper bounds (seconds) of the delta encode histogram.
ENCODE_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)


@define
class Histogram:
    """
    Observations counted into fixed buckets (non-cumulative counts; the
    last one past the largest bound), with their sum.
    """

    bounds: tuple[float, ...]
    counts: list[int] = field()
    sum: float = 0.0

    @counts.default
    def _zeros(self) -> list[int]:
        return [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        """
        Count one observation.
        """
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        """
        @return: how many observations there were.
        """
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """
        @return: C{(upper bound, observations at or below it)} pairs, the
            last one C{"+Inf"}, as Prometheus exposes them.
        """
        total = 0
        out = []
        for bound, n in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out

    def asDict(self) -> dict[str, object]:
        """
        @return: the histogram, JSON-ready.
        """
        return {
            "count": self.count,
            "sum": round(self.sum, 6),
            "buckets": dict(self.cumulative()),
        }


@define
class Counters:
    """
    One set of counters (for a host, or for everything).
    """

    requests: int = 0
    responses: int = 0
    errors: int = 0
    bodyBytesServed: int = 0
    bodyBytesFromOrigin: int = 0
    bodyBytesOnLink: int = 0
    bodies: Counter[str] = field(factory=Counter)
    fallbacks: Counter[str] = field(factory=Counter)
    storeHits: int = 0
    storeMisses: int = 0
    siblingBases: int = 0
    outcomes: Counter[str] = field(factory=Counter)
    statuses: Counter[str] = field(factory=Counter)

    def ratio(self) -> float:
        """
        @return: body bytes that crossed the link as a percentage of the body
            bytes served (100.0 when nothing was saved, 0.0 before any).
        """
        if not self.bodyBytesServed:
            return 0.0
        return 100.0 * self.bodyBytesOnLink / self.bodyBytesServed

    def asDict(self) -> dict[str, object]:
        """
        @return: the counters as plain JSON-ready values.
        """
        return {
            "requests": self.requests,
            "responses": self.responses,
            "errors": self.errors,
            "body_bytes_served": self.bodyBytesServed,
            "body_bytes_from_origin": self.bodyBytesFromOrigin,
            "body_bytes_on_link": self.bodyBytesOnLink,
            "ratio_percent": round(self.ratio(), 3),
            "bodies": dict(self.bodies),
            "fallbacks": dict(self.fallbacks),
            "store_hits": self.storeHits,
            "store_misses": self.storeMisses,
            "sibling_bases": self.siblingBases,
            "outcomes": {o: self.outcomes[o] for o in OUTCOMES},
            "statuses": dict(self.statuses),
        }


_CLASS_OF = dict(enumerate(STATUS_CLASSES, start=1))


def statusClass(status: int) -> str:
    """
    @return: C{"2xx"} for 200, and so on (C{"other"} outside 100-599).
    """
    return _CLASS_OF.get(status // 100, "other")


@define
class Stats:
    """
    Counters in total and per host, and the latency histograms of a role.

    Hosts come from clients (a wildcard or catch-all mapping serves any
    name), so at most C{maxHosts} get counters of their own; the rest share
    L{OTHER_HOSTS}. Requests for hosts that are not served count under
    L{UNKNOWN_HOST} (never under the name the client sent).

    @ivar requestSeconds: from a request's head (a stream's HEADERS) to its
        end.
    @ivar originSeconds: from the origin fetch's start to its response head
        (origin role).
    @ivar encodeSeconds: encoding a version (origin role), thread pool
        wait included.
    @ivar deltaLevels: deltas encoded (origin role), by the zstd level
        they were made at (the budget's best level or the fixed one).
    """

    total: Counters = field(factory=Counters)
    maxHosts: int = 1000
    _hosts: dict[str, Counters] = field(factory=dict)
    requestSeconds: Histogram = field(factory=lambda: Histogram(REQUEST_BUCKETS))
    originSeconds: Histogram = field(factory=lambda: Histogram(REQUEST_BUCKETS))
    encodeSeconds: Histogram = field(factory=lambda: Histogram(ENCODE_BUCKETS))
    deltaLevels: Counter[int] = field(factory=Counter)

    def forHost(self, host: str) -> Counters:
        """
        @return: the counters of C{host}, created on first use.
        """
        counters = self._hosts.get(host)
        if counters is None:
            if len(self._hosts) >= self.maxHosts:
                host = OTHER_HOSTS
                counters = self._hosts.get(host)
            if counters is None:
                counters = self._hosts[host] = Counters()
        return counters

    def hosts(self) -> dict[str, Counters]:
        """
        @return: a copy of the per-host counters.
        """
        return dict(self._hosts)

    def record(self, host: str | None, **increments: int) -> None:
        """
        Add to integer counters of the total and of C{host}.
        """
        targets = [self.total] if host is None else [self.total, self.forHost(host)]
        for counters in targets:
            for name, value in increments.items():
                setattr(counters, name, getattr(counters, name) + value)

    def count(self, host: str | None, kind: str, key: str) -> None:
        """
        Count one event of a keyed kind (C{"bodies"} or C{"fallbacks"}).
        """
        targets = [self.total] if host is None else [self.total, self.forHost(host)]
        for counters in targets:
            getattr(counters, kind)[key] += 1

    def finished(
        self, host: str | None, outcome: str, status: int, seconds: float
    ) -> None:
        """
        Count a request (or stream) that ended: its outcome and status
        class, in total and for its host, and its duration.

        @param host: the served host it was for, L{None} for one that is
            not served (counted under L{UNKNOWN_HOST}).
        @param status: the status sent (0 when none was).
        """
        self.requestSeconds.observe(seconds)
        total = self.total
        counters = self._hosts.get(host or UNKNOWN_HOST)
        if counters is None:
            counters = self.forHost(host or UNKNOWN_HOST)
        total.outcomes[outcome] += 1
        counters.outcomes[outcome] += 1
        if status:
            cls = statusClass(status)
            total.statuses[cls] += 1
            counters.statuses[cls] += 1

    def asDict(self) -> dict[str, object]:
        """
        @return: everything, JSON-ready.
        """
        return {
            "total": self.total.asDict(),
            "hosts": {h: c.asDict() for h, c in sorted(self._hosts.items())},
            "request_seconds": self.requestSeconds.asDict(),
            "origin_seconds": self.originSeconds.asDict(),
            "encode_seconds": self.encodeSeconds.asDict(),
            "delta_levels": {str(k): v for k, v in sorted(self.deltaLevels.items())},
        }
