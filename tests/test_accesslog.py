"""
The access log of both roles over a real deployment (real TLS links on
loopback): one line per client request at the edge and one per stream at
the origin role, with the right fields, and the same request id at both.
"""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase
from twisted.web.client import FileBodyProducer

from railgun.logs import AccessLog, formatAccessText
from tests.harness import HOST, Deployment


class AccessLogTests(TestCase):
    """
    A known mix of requests through an edge and an origin role, each role
    writing its access records to a list.
    """

    timeout = 30

    @inlineCallbacks
    def setUp(self):
        self.records: list[Any] = []
        self.d = Deployment()
        yield self.d.start(accessLog=self.records.append)
        self.addCleanup(self.d.stop)
        yield self.d.edge.whenLinked()

    def byRole(self, role: str) -> list[Any]:
        return [r for r in self.records if r.role == role]

    @inlineCallbacks
    def waitForRecords(self, role: str, count: int):
        for _ in range(250):
            if len(self.byRole(role)) >= count:
                return
            yield deferLater(reactor, 0.02, lambda: None)
        self.fail(f"{len(self.byRole(role))} {role} records, not {count}")

    @inlineCallbacks
    def test_knownMix(self):
        """
        Each request gives exactly one edge line and each stream one origin
        line, with host, method, path, status, outcome, bytes served and on
        the link, origin time and client; the edge's line and the origin
        role's line of one request carry the same request id.
        """
        sent = []

        @inlineCallbacks
        def fetch(path, method=b"GET", host=HOST, body=None):
            producer = FileBodyProducer(_Bytes(body)) if body is not None else None
            response, content = yield self.d.fetch(
                path, method=method, host=host, body=producer
            )
            sent.append((method.decode(), host, path, response.code, content))

        yield fetch("/static")  # full (compressed text)
        yield fetch("/static")  # same
        # A delta against the /static version, a sibling base the edge
        # names: level 19 (the default budget) makes it smaller than the
        # compressed body.
        yield fetch("/changing")
        yield fetch("/changing")  # delta against the first edition
        yield fetch("/echo", method=b"POST", body=b"x" * 5000)  # raw
        yield fetch("/", host="nowhere.test")  # refused by the edge (421)
        yield fetch("/static", host="unmapped.test")  # refused by the origin role
        yield self.waitForRecords("edge", 7)
        yield self.waitForRecords("origin", 6)
        # (Nothing more arrives.)
        yield deferLater(reactor, 0.1, lambda: None)
        edge, origin = self.byRole("edge"), self.byRole("origin")
        self.assertEqual(len(edge), 7, edge)
        self.assertEqual(len(origin), 6, origin)
        self.assertEqual(
            [r.outcome for r in edge],
            ["full", "same", "delta", "delta", "raw", "refused", "refused"],
        )
        for record, (method, host, path, status, content) in zip(
            edge, sent, strict=True
        ):
            self.assertEqual(
                (record.method, record.host, record.path, record.status),
                (method, host, path, status),
            )
            self.assertEqual(record.served, len(content), record)
            self.assertEqual(record.client, "127.0.0.1")
            self.assertGreaterEqual(record.totalSeconds, 0)
        self.assertEqual([r.status for r in edge][-2:], [421, 421])
        # The edge refused nowhere.test itself: no stream, no origin line.
        self.assertEqual(edge[5].rid, "-")
        self.assertEqual(edge[5].linkBytes, 0)
        self.assertIsNone(edge[5].originSeconds)
        byRid = {r.rid: r for r in origin}
        self.assertEqual(len(byRid), 6)
        streamed = edge[:5] + edge[6:]
        self.assertEqual(set(byRid), {r.rid for r in streamed})
        for record in streamed:
            other = byRid[record.rid]
            self.assertEqual(
                (other.host, other.method, other.path, other.status, other.outcome),
                (
                    record.host,
                    record.method,
                    record.path,
                    record.status,
                    record.outcome,
                ),
            )
            # Body bytes on the link, counted at both ends.
            self.assertEqual(other.linkBytes, record.linkBytes, record)
            self.assertIn("railgun-edge", other.client)
        same, delta, raw = edge[1], edge[3], edge[4]
        self.assertEqual(same.linkBytes, 0)
        self.assertLess(delta.linkBytes, delta.served)
        self.assertEqual(raw.linkBytes, raw.served)
        # The origin role fetched all but the unmapped host, and says how
        # long the origin server took; the edge read the same time.
        for record in streamed[:-1]:
            other = byRid[record.rid]
            self.assertIsNotNone(other.originSeconds)
            self.assertAlmostEqual(record.originSeconds, other.originSeconds, places=5)
            self.assertEqual(other.served, byRid[record.rid].served)
        self.assertEqual(byRid[edge[0].rid].served, len(sent[0][4]))
        self.assertIsNone(byRid[edge[6].rid].originSeconds)

    @inlineCallbacks
    def test_ridOnEveryLine(self):
        """
        The log lines about a request that fails at the edge (no response
        head in time, a 504) name its request id, the one in its access
        line and in the origin role's.
        """
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.d.edge.proxy.responseTimeout = 0.2
        response, _ = yield self.d.fetch("/hang")
        self.assertEqual(response.code, 504)
        yield self.waitForRecords("origin", 1)
        [edge] = self.byRole("edge")
        [origin] = self.byRole("origin")
        self.assertEqual((edge.outcome, edge.status), ("error", 504))
        self.assertEqual(origin.rid, edge.rid)
        self.assertEqual(origin.outcome, "error")
        about = [e for e in events if "origin role" in e.get("log_format", "")]
        self.assertTrue(about, events)
        for event in about:
            self.assertEqual(event.get("rid"), edge.rid, event)

    @inlineCallbacks
    def test_noLinkHasAnId(self):
        """
        A request answered 503 because no link is up still has a request id
        (the edge's own), in its log line and its access line.
        """
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        yield self.d.origin.stopService()
        for _ in range(250):
            if not self.d.edge.proxy.pools.lookup(HOST).isConnecting():
                response, _ = yield self.d.fetch("/static")
                if response.code == 503:
                    break
            yield deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(response.code, 503)
        edge = self.byRole("edge")[-1]
        self.assertEqual((edge.status, edge.outcome), (503, "error"))
        self.assertEqual(len(edge.rid), 20)
        lines = [e for e in events if e.get("rid") == edge.rid]
        self.assertTrue(lines, events)


class DirectAccessLogTests(TestCase):
    """
    The access line of a request the edge serves through its direct
    fallback.
    """

    timeout = 30

    @inlineCallbacks
    def test_direct(self):
        """
        With no link up, a request served directly from the origin server
        has one access line at the edge, outcome C{direct}, with its status,
        the bytes served, nothing on the link, and an edge-made request id.
        """
        records: list[Any] = []
        d = Deployment()
        yield d.start(accessLog=records.append, fallbackToOrigin=True)
        self.addCleanup(d.stop)
        yield d.edge.whenLinked()
        yield d.origin.stopService()
        for _ in range(250):
            if not d.edge.proxy.pools.lookup(HOST).isConnecting():
                break
            yield deferLater(reactor, 0.02, lambda: None)
        del records[:]
        response, body = yield d.fetch("/static")
        self.assertEqual(response.code, 200)
        self.assertTrue(
            response.headers.getRawHeaders(b"railgun")[0].startswith(b"direct")
        )
        for _ in range(100):
            if records:
                break
            yield deferLater(reactor, 0.02, lambda: None)
        [record] = records
        self.assertEqual(
            (
                record.role,
                record.outcome,
                record.status,
                record.served,
                record.linkBytes,
            ),
            ("edge", "direct", 200, len(body), 0),
        )
        self.assertEqual(len(record.rid), 20)


class _Bytes:
    """
    A file of bytes, for L{FileBodyProducer}.
    """

    def __init__(self, data: bytes) -> None:
        from io import BytesIO

        self._file = BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._file.read(n)

    def seek(self, *args: Any) -> int:
        return self._file.seek(*args)

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()


class AccessLogFileTests(TestCase):
    """
    L{AccessLog} as the roles use it: a text line per record, with a
    certificate subject (spaces in it) kept in one field.
    """

    def test_clientWithSpaces(self):
        """
        The origin role's client field (the edge's certificate subject, with
        spaces) is quoted, so a text line still splits into its fields.
        """
        from railgun.logs import AccessRecord

        record = AccessRecord(
            "origin",
            "abc",
            "h",
            "GET",
            "/",
            200,
            "full",
            10,
            5,
            0.1,
            0.2,
            "CN=railgun-edge,O=Railgun for Twisted",
        )
        line = formatAccessText(record, 0)
        self.assertTrue(
            line.endswith(
                "client=" + json.dumps("CN=railgun-edge,O=Railgun for Twisted")
            )
        )
        out = StringIO()
        log = AccessLog(lambda: out, formatAccessText, ownsFile=False)
        log.write(record)
        self.assertEqual(out.getvalue().count("\n"), 1)
