"""
L{railgun.stats}: counters per host and in total, bounded.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from railgun.stats import OTHER_HOSTS, Stats


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
