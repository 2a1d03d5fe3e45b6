"""
L{railgun.stats}: counters per host and in total, bounded.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyChannel, DummyRequest

from railgun.edge.http import EdgeHTTPFactory, EdgeRequest
from railgun.stats import OTHER_HOSTS, UNKNOWN_HOST, Histogram, Stats, statusClass


class StatsTests(SynchronousTestCase):
    """
    Counting, ratios and the bound on hosts.
    """

    def test_recordAndRatio(self):
        """
        Increments go to the host and the total; the ratio is link bytes
        over served bytes, in percent.
        """
        stats = Stats()
        stats.record("a.test", bodyBytesServed=1000, bodyBytesOnLink=10)
        stats.record("b.test", bodyBytesServed=1000, bodyBytesOnLink=30)
        stats.count("a.test", "bodies", "delta")
        self.assertEqual(stats.total.ratio(), 2.0)
        self.assertEqual(stats.forHost("a.test").ratio(), 1.0)
        self.assertEqual(stats.asDict()["hosts"]["a.test"]["bodies"], {"delta": 1})

    def test_hostsBounded(self):
        """
        Past maxHosts, new hosts share one entry: a client inventing names
        under a wildcard cannot grow memory.
        """
        stats = Stats(maxHosts=3)
        for i in range(10):
            stats.record(f"h{i}.test", requests=1)
        hosts = stats.hosts()
        self.assertEqual(len(hosts), 4)
        self.assertEqual(hosts[OTHER_HOSTS].requests, 7)
        self.assertEqual(stats.total.requests, 10)


class HistogramTests(SynchronousTestCase):
    """
    L{Histogram}: fixed buckets, cumulative as Prometheus exposes them.
    """

    def test_observe(self):
        """
        An observation counts in the first bucket whose bound is at least
        it; past the last bound it counts only in +Inf.
        """
        h = Histogram((0.1, 1.0))
        for v in (0.05, 0.1, 0.5, 7.0):
            h.observe(v)
        self.assertEqual(h.cumulative(), [("0.1", 2), ("1.0", 3), ("+Inf", 4)])
        self.assertEqual(h.count, 4)
        self.assertAlmostEqual(h.sum, 7.65)


class OutcomeTests(SynchronousTestCase):
    """
    Each request counted once with its outcome, status class and time.
    """

    def test_finished(self):
        """
        finished() counts the outcome and status class for the host and the
        total; a host not served counts under UNKNOWN_HOST.
        """
        stats = Stats()
        stats.finished("a.test", "delta", 200, 0.02)
        stats.finished(None, "refused", 421, 0.001)
        self.assertEqual(stats.forHost("a.test").outcomes, {"delta": 1})
        self.assertEqual(stats.forHost(UNKNOWN_HOST).statuses, {"4xx": 1})
        self.assertEqual(stats.total.statuses, {"2xx": 1, "4xx": 1})
        self.assertEqual(stats.requestSeconds.count, 2)
        self.assertEqual(statusClass(99), "other")

    def test_watchFinished(self):
        """
        A watched request counts once, when the edge's HTTP server logs it
        as finished, with the outcome set on it, its status and its
        duration on the clock.
        """
        clock = Clock()
        stats = Stats()
        factory = EdgeHTTPFactory(
            None, reactor=clock, maxHeaderBytes=16384, maxBodyBytes=1024
        )
        channel = DummyChannel()
        channel.factory = factory  # type: ignore[attr-defined]
        request = EdgeRequest(channel)
        stats.watch(request, clock)
        Stats.outcome(request, "error", "a.test")
        Stats.relayed(request, "same", None)
        clock.advance(0.5)
        request.setResponseCode(200)
        request.finish()
        request.connectionLost(Failure(ConnectionDone()))  # not counted again
        self.assertEqual(stats.forHost("a.test").outcomes, {"same": 1})
        self.assertEqual(stats.total.statuses, {"2xx": 1})
        self.assertEqual(stats.requestSeconds.sum, 0.5)

    def test_watchClientGone(self):
        """
        A watched request whose client goes away first counts as an error,
        with no status class when nothing was written.
        """
        stats = Stats()
        request = EdgeRequest(DummyChannel())
        stats.watch(request, Clock())
        Stats.outcome(request, "direct", "a.test")
        request.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(stats.forHost("a.test").outcomes, {"error": 1})
        self.assertEqual(stats.total.statuses, {})

    def test_notWatched(self):
        """
        A request the proxy never saw (refused by the HTTP parser) is not
        counted.
        """
        stats = Stats()
        request = EdgeRequest(DummyChannel())
        Stats.ended(request, finished=False)
        self.assertEqual(stats.total.outcomes, {})

    def test_relayedOriginError(self):
        """
        A response the origin role made itself counts as refused (unmapped
        host, bad request) or error, not as the raw body it crossed as.
        """
        request = DummyRequest([b""])
        Stats.relayed(request, "raw", b"unmapped-host")
        self.assertEqual(request.railgunOutcome, "refused")
        Stats.relayed(request, "raw", b"origin-timeout")
        self.assertEqual(request.railgunOutcome, "error")
