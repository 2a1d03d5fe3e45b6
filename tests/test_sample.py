"""
The built-in sample origin (L{railgun.sample}), which C{--role both} fronts
when no origin is mapped: pages that change every period, served through
treq's in-memory agent.
"""

from __future__ import annotations

import json

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from railgun.sample import sampleSite


class SampleSiteTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.treq = StubTreq(sampleSite(self.clock, period=5.0).resource)

    def get(self, path: str, method: str = "GET") -> tuple[int, dict, bytes]:
        response = self.successResultOf(
            self.treq.request(method, "http://sample.test" + path)
        )
        body = self.successResultOf(response.content())
        return response.code, response.headers, body

    def test_pageChangesEveryPeriod(self) -> None:
        """
        The HTML page names its edition, which changes once the period has
        passed and not before.
        """
        code, headers, first = self.get("/")
        self.assertEqual(code, 200)
        self.assertEqual(
            headers.getRawHeaders(b"content-type"), [b"text/html; charset=utf-8"]
        )
        self.assertIn(b"<header>Edition 0</header>", first)
        self.clock.advance(4.9)
        self.assertEqual(self.get("/")[2], first)
        self.clock.advance(0.2)
        second = self.get("/")[2]
        self.assertIn(b"<header>Edition 1</header>", second)
        self.assertNotEqual(second, first)
        self.assertEqual(self.get("/index.html")[2], second)

    def test_json(self) -> None:
        """
        The JSON API gives the same edition's items.
        """
        code, headers, body = self.get("/api/items.json")
        self.assertEqual(code, 200)
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"application/json"])
        document = json.loads(body)
        self.assertEqual(document["epoch"], 0)
        self.assertTrue(document["items"])

    def test_head(self) -> None:
        """
        HEAD gets the length of the body GET gets, no body, and no warning
        in the log.
        """
        events: list = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        for path in ("/", "/robots.txt"):
            _, _, body = self.get(path)
            code, headers, nothing = self.get(path, "HEAD")
            self.assertEqual((code, nothing), (200, b""))
            self.assertEqual(
                headers.getRawHeaders(b"content-length"), [b"%d" % len(body)]
            )
        self.assertEqual(
            [e for e in events if "HEAD" in str(e.get("log_format", ""))], []
        )
