"""
Rate-limited log lines (L{railgun._lograte}): an outage logs a line per
kind every 10 s, with the count of those suppressed, instead of one per
request (issue 11, item 9: 21.7 MB of edge log in 40 s of an origin role
down). The helper alone, then where both roles use it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import error as ierror
from twisted.internet.defer import fail
from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IAgent
from zope.interface import implementer

from railgun._lograte import RateLimitedLogger, RepeatLimiter
from railgun.http.messages import RequestHead
from tests.test_edge_perf import _connect
from tests.test_edge_robustness import _edge
from tests.test_origin_handler import _HandlerBase


def _capture(test: SynchronousTestCase, namespace: str) -> list[dict[str, Any]]:
    """
    @return: a list that receives the events logged in C{namespace} until
        the end of C{test}.
    """
    events: list[dict[str, Any]] = []

    def observer(event: dict[str, Any]) -> None:
        if event.get("log_namespace") == namespace:
            events.append(event)

    globalLogPublisher.addObserver(observer)
    test.addCleanup(globalLogPublisher.removeObserver, observer)
    return events


class RateLimitedLoggerTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.events: list[dict[str, Any]] = []
        self.log = RateLimitedLogger(Logger(observer=self.events.append), self.clock)

    def test_repeatsSuppressedAndCounted(self):
        """
        One line per kind per 10 s; the next one says how many were
        suppressed, and over how long, in its text and its fields.
        """
        for i in range(100):
            self.log.info("request {rid} for {host}: no link", rid=i, host="a")
            self.clock.advance(0.05)
        self.assertEqual(len(self.events), 1)
        self.assertEqual(formatEvent(self.events[0]), "request 0 for a: no link")
        self.clock.advance(5.1)
        self.assertTrue(
            self.log.info("request {rid} for {host}: no link", rid=100, host="a")
        )
        self.assertEqual(len(self.events), 2)
        self.assertEqual(
            formatEvent(self.events[1]),
            "request 100 for a: no link (99 similar lines suppressed in the last 10 s)",
        )
        self.assertEqual(self.events[1]["log_suppressed"], 99)
        self.assertEqual(self.events[1]["log_level"], LogLevel.info)

    def test_nothingSuppressedNoNote(self):
        """
        A line after a quiet interval has no note.
        """
        self.log.warn("x {host}", host="a")
        self.clock.advance(60)
        self.log.warn("x {host}", host="a")
        self.assertEqual([formatEvent(e) for e in self.events], ["x a", "x a"])
        self.assertEqual(self.events[1]["log_suppressed"], 0)

    def test_kinds(self):
        """
        A different format, host or code is another kind; other fields (a
        request id, a message) are not.
        """
        self.log.info("a {host} {why}", host="h1", why="1")
        self.log.info("a {host} {why}", host="h1", why="2")
        self.log.info("a {host} {why}", host="h2", why="1")
        self.log.info("b {host}", host="h1")
        self.log.error("c {code}", code="origin-dns")
        self.log.error("c {code}", code="origin-unreachable")
        self.log.error("c {code}", code="origin-dns")
        self.assertEqual(
            [formatEvent(e) for e in self.events],
            ["a h1 1", "a h2 1", "b h1", "c origin-dns", "c origin-unreachable"],
        )

    def test_boundedKinds(self):
        """
        The limiter forgets kinds past its bound, the stale ones first.
        """
        limiter = RepeatLimiter(self.clock, 10.0, maxKinds=4)
        for kind in range(4):
            self.assertEqual(limiter.admit(kind), (0, 0.0))
        self.clock.advance(20)
        self.assertEqual(limiter.admit(0), (0, 20.0))
        self.assertEqual(limiter.admit(4), (0, 0.0))
        self.assertEqual(len(limiter._last), 2)  # 1, 2 and 3 were stale
        for kind in range(5, 20):
            self.assertIsNotNone(limiter.admit(kind))
            self.assertLessEqual(len(limiter._last), 4)


class _NoLinkPool:
    """
    A pool with no link up: every request gets 503.
    """

    def pick(self, exclude: Any = None) -> None:
        return None

    def isConnecting(self) -> bool:
        return False  # dialing failed: no request waits for a link


class EdgeOutageTests(SynchronousTestCase):
    def test_503sLogOncePerInterval(self):
        """
        200 requests answered 503 during an outage log one line, and the
        next after 10 s counts the other 199.
        """
        events = _capture(self, "railgun.edge.proxy")
        clock = Clock()
        factory, _, proxy = _edge(clock)
        proxy.pools = proxy.pools.mapValues(lambda pool: _NoLinkPool())
        channel, transport = _connect(factory)
        for _ in range(200):
            channel.dataReceived(b"GET / HTTP/1.1\r\nHost: bench.local\r\n\r\n")
        self.assertEqual(transport.value().count(b"HTTP/1.1 503 "), 200)
        self.assertEqual(len(events), 1)
        clock.advance(10)
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: bench.local\r\n\r\n")
        self.assertEqual(len(events), 2)
        self.assertIn("199 similar lines suppressed", formatEvent(events[1]))


@implementer(IAgent)
class _RefusingAgent:
    """
    The origin server is down: every connection is refused.
    """

    def request(self, method, uri, headers=None, bodyProducer=None):
        return fail(ierror.ConnectionRefusedError())

    def flush(self) -> None:
        pass


class OriginOutageTests(_HandlerBase):
    def makeAgent(self, root):
        return _RefusingAgent()

    def test_fetchFailuresLogOncePerInterval(self):
        """
        50 streams whose origin fetch fails the same way (502) log one line,
        and the next after 10 s counts the other 49.
        """
        events = _capture(self, "railgun.origin.handler")
        head = RequestHead(b"GET", b"https", b"www.example.test", b"/page", [])
        for _ in range(50):
            collector = self.exchange(head)
            self.assertIn((b":status", b"502"), collector.heads[0])
        self.assertEqual(len(events), 1)
        self.clock.advance(10)
        self.exchange(head)
        self.assertEqual(len(events), 2)
        self.assertIn("49 similar lines suppressed", formatEvent(events[1]))
