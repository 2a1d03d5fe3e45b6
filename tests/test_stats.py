"""
L{railgun.stats}: counters per host and in total, bounded.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from railgun.edge.http import EdgeHTTPFactory
from railgun.edge.proxy import EdgeProxy
from railgun.http.routing import HostMap
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


class EdgeCountsTests(SynchronousTestCase):
    """
    The edge counts each request once, where it ends (its access log's
    place), with or without an access log.
    """

    def serve(self, data: bytes) -> tuple[Stats, StringTransport]:
        clock = Clock()
        proxy = EdgeProxy(pools=HostMap({}), clock=clock, responseTimeout=30)
        factory = EdgeHTTPFactory(
            proxy, reactor=clock, maxHeaderBytes=16384, maxBodyBytes=1024
        )
        channel = factory.buildProtocol(None)
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(data)
        channel.connectionLost(Failure(ConnectionDone()))
        return proxy.stats, transport

    def test_refused(self):
        """
        A request for a host the edge does not serve is answered 421 and
        counted once, refused, under UNKNOWN_HOST.
        """
        stats, transport = self.serve(b"GET / HTTP/1.1\r\nHost: nothere.test\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 421"))
        self.assertEqual(stats.forHost(UNKNOWN_HOST).outcomes, {"refused": 1})
        self.assertEqual(stats.total.statuses, {"4xx": 1})
        self.assertEqual(stats.requestSeconds.count, 1)
