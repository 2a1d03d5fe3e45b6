"""
The origin role against origin servers and edges that misbehave, in memory:
two links joined by L{twisted.test.iosim}, the origin role's real treq
client over an agent whose responses each test writes byte by byte (real
L{twisted.web._newclient.Response} objects), and a Clock.
"""

from __future__ import annotations

import gzip
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionAborted
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web._newclient import Request, Response, TransportProxyProducer
from twisted.web.client import PotentialDataLoss
from twisted.web.http_headers import Headers

from railgun.delta.digest import versionDigest
from railgun.http.messages import RequestHead, ResponseHead, splitControl
from railgun.origin.handler import OriginStreamHandler
from tests.test_origin_handler import _Collector, _HandlerBase


class _OriginTransport(StringTransport):
    """
    A connection to an origin: as a TCP transport, resuming it once it was
    stopped (closed) does nothing.
    """

    def resumeProducing(self) -> None:
        if self.producerState != "stopped":
            super().resumeProducing()


class _ScriptedAgent:
    """
    An L{IAgent} whose responses the test writes: every request waits until
    C{respond} gives it a response, whose body the test then delivers.
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def request(self, method, uri, headers=None, bodyProducer=None):
        d: Deferred[Response] = Deferred()
        self.requests.append(
            dict(method=method, uri=uri, headers=headers, body=bodyProducer, d=d)
        )
        return d

    def respond(
        self, index: int, code: int, headers: dict
    ) -> tuple[Response, _OriginTransport]:
        transport = _OriginTransport()
        # As HTTP11ClientProtocol gives it: through a proxy that forgets the
        # transport once stopped.
        response = Response._construct(
            (b"HTTP", 1, 1),
            code,
            b"X",
            Headers(headers),
            TransportProxyProducer(transport),
            None,
        )
        self.requests[index]["d"].callback(response)
        return response, transport


GET = RequestHead(b"GET", b"http", b"www.example.test", b"/page", [])


class _Base(_HandlerBase):
    """
    The origin role's link in memory, its origin a L{_ScriptedAgent}.
    """

    def makeAgent(self, root: Any) -> _ScriptedAgent:
        return _ScriptedAgent()

    def setUp(self) -> None:
        super().setUp()
        self.store = self.context.store

    def open(self, head: RequestHead, endStream: bool = True) -> tuple[_Collector, Any]:
        collector = _Collector()
        collector.lost = None
        collector.connectionLost = lambda reason: setattr(collector, "lost", reason)
        stream = self.dialer.openStream(
            collector, head.toLinkHeaders(), endStream=endStream
        )
        self.pump.flush()
        return collector, stream

    def flush(self) -> None:
        for _ in range(5):
            self.pump.flush()

    def control(self, collector: _Collector) -> dict[bytes, bytes]:
        return splitControl(ResponseHead.fromLinkHeaders(collector.heads[0]).headers)[1]


class GzipFromOriginTests(_Base):
    """
    An origin that sends gzip although asked for identity: its body is
    relayed in its coding, or decoded strictly for a version; never by
    treq's decoder, which stops at the first gzip member, misses a truncated
    stream and inflates without bound.
    """

    def test_twoMembersOneVersion(self) -> None:
        """
        A gzip body of two members (RFC 1952 2.2) is one version: both.
        """
        a, b = b"<p>first half</p>\n" * 500, b"<p>second half</p>\n" * 500
        gz = gzip.compress(a) + gzip.compress(b)
        collector, _ = self.open(GET)
        response, _ = self.agent.respond(
            0,
            200,
            {
                b"content-type": [b"text/html"],
                b"content-encoding": [b"gzip"],
                b"content-length": [b"%d" % len(gz)],
            },
        )
        response._bodyDataReceived(gz)
        response._bodyDataFinished()
        self.flush()
        control = self.control(collector)
        self.assertEqual(control[b"railgun-body"], b"full")
        self.assertEqual(control[b"railgun-length"], b"%d" % len(a + b))
        self.assertEqual(control[b"railgun-digest"], versionDigest(a + b).encode())

    def test_truncatedNeverAVersion(self) -> None:
        """
        A gzip body with no length cut short by the origin's close is not
        taken for a version nor stored: it is relayed as it came, in its
        coding, so the client's decoder sees the cut.
        """
        page = b"".join(b"<p>item %d of the page</p>\n" % i for i in range(3000))
        whole = gzip.compress(page)
        cut = whole[: len(whole) // 2]
        collector, _ = self.open(GET)
        response, _ = self.agent.respond(
            0, 200, {b"content-type": [b"text/html"], b"content-encoding": [b"gzip"]}
        )
        response._bodyDataReceived(cut)
        response._bodyDataFinished(Failure(PotentialDataLoss()))
        self.flush()
        head = ResponseHead.fromLinkHeaders(collector.heads[0])
        self.assertEqual(self.control(collector)[b"railgun-body"], b"raw")
        self.assertIn((b"content-encoding", b"gzip"), head.headers)
        self.assertEqual(b"".join(collector.body), cut)
        self.assertIsNone(
            self.successResultOf(self.store.get(versionDigest(page).encode()))
        )

    def test_relayedNotInflated(self) -> None:
        """
        A gzip body that is not a version (not text) crosses as the origin
        sent it: ten kilobytes on the wire stay ten kilobytes, whatever they
        inflate to.
        """
        chunks: list[int] = []
        original = OriginStreamHandler._bodyChunk
        self.patch(
            OriginStreamHandler,
            "_bodyChunk",
            lambda handler, data: (chunks.append(len(data)), original(handler, data))[
                1
            ],
        )
        bomb = gzip.compress(b"\0" * (10 * 1024 * 1024))
        collector, _ = self.open(
            RequestHead(b"GET", b"http", b"www.example.test", b"/bin", [])
        )
        response, _ = self.agent.respond(
            0,
            200,
            {
                b"content-type": [b"application/octet-stream"],
                b"content-encoding": [b"gzip"],
            },
        )
        response._bodyDataReceived(bomb)
        response._bodyDataFinished(Failure(PotentialDataLoss()))
        self.flush()
        self.assertEqual(chunks, [len(bomb)])
        self.assertEqual(b"".join(collector.body), bomb)
        head = ResponseHead.fromLinkHeaders(collector.heads[0])
        self.assertIn((b"content-encoding", b"gzip"), head.headers)


class TimerTests(_Base):
    """
    The response timer measures the origin's silence, not a long upload's
    length nor a slow client's.
    """

    def test_progressingUploadNotCut(self) -> None:
        """
        A request body that keeps arriving for longer than the response
        timeout is not cut with 504.
        """
        head = RequestHead(
            b"POST",
            b"http",
            b"www.example.test",
            b"/upload",
            [(b"content-length", b"%d" % (40 * 1000))],
        )
        collector, stream = self.open(head, endStream=False)
        consumer = StringTransport()
        self.agent.requests[0]["body"].startProducing(consumer)
        for _ in range(40):  # 1,000 bytes a second for 40 s; the timeout is 10 s
            stream.write(b"x" * 1000)
            self.flush()
            self.clock.advance(1)
        self.flush()
        self.assertEqual(len(consumer.value()), 40 * 1000)
        self.assertEqual(collector.heads, [])
        # Silence after the upload: the timer runs again.
        self.clock.advance(10)
        self.flush()
        self.assertEqual(ResponseHead.fromLinkHeaders(collector.heads[0]).status, 504)

    def test_slowReaderNotAnOriginStall(self) -> None:
        """
        A raw body the edge is not taking (flow control paused the origin
        connection) is not reset as an origin stall; once the edge takes
        data again, the origin's silence counts again.
        """
        collector, stream = self.open(
            RequestHead(b"GET", b"http", b"www.example.test", b"/bin", [])
        )
        stream.pauseProducing()  # the edge's client reads nothing
        response, transport = self.agent.respond(
            0, 200, {b"content-type": [b"application/octet-stream"]}
        )
        for _ in range(64):  # the origin sends whenever it is not paused
            if transport.producerState == "producing":
                response._bodyDataReceived(b"y" * 65536)
            self.flush()
        self.assertEqual(transport.producerState, "paused")
        self.clock.advance(60)
        self.flush()
        self.assertIsNone(collector.lost)
        self.assertEqual(transport.producerState, "paused")
        stream.resumeProducing()
        self.flush()
        self.assertEqual(transport.producerState, "producing")
        self.clock.advance(10)
        self.assertEqual(transport.producerState, "stopped")
        response._bodyDataFinished(Failure(ConnectionAborted()))
        self.flush()
        self.assertIsNotNone(collector.lost)


class EdgeInputTests(_Base):
    """
    What an edge sends is not trusted to be clean.
    """

    def test_connectionHeadersNotForwarded(self) -> None:
        """
        Connection-specific request headers never reach the origin
        connection (shared by every edge): no Transfer-Encoding beside a
        Content-Length.
        """
        head = RequestHead(
            b"POST",
            b"http",
            b"www.example.test",
            b"/x",
            [
                (b"content-length", b"4"),
                (b"transfer-encoding", b"chunked"),
                (b"connection", b"keep-alive, x-private"),
                (b"x-private", b"1"),
                (b"x-kept", b"2"),
            ],
        )
        self.open(head, endStream=False)
        request = self.agent.requests[0]
        wire = StringTransport()
        Request(
            b"POST", b"/x", request["headers"], request["body"], persistent=True
        ).writeTo(wire)
        sent = wire.value().lower()
        self.assertIn(b"content-length: 4", sent)
        self.assertIn(b"x-kept: 2", sent)
        for name in (b"transfer-encoding", b"connection: keep-alive", b"x-private"):
            self.assertNotIn(name, sent)

    def test_contentLengthStrict(self) -> None:
        """
        A Content-Length that is not digits only, or two that differ, get
        400 and no fetch.
        """
        for lengths in ([b"-1"], [b"+5"], [b"1_0"], [b"\xd9\xa1"], [b"4", b"5"]):
            head = RequestHead(
                b"POST",
                b"http",
                b"www.example.test",
                b"/x",
                [(b"content-length", value) for value in lengths],
            )
            collector, _ = self.open(head, endStream=False)
            self.flush()
            self.assertEqual(
                ResponseHead.fromLinkHeaders(collector.heads[0]).status, 400, lengths
            )
        self.assertEqual(self.agent.requests, [])


class BudgetTests(_Base):
    def test_bodiesAwaitingStoreStillCounted(self) -> None:
        """
        Bodies held for versions count against the shared budget until they
        are sent, also while waiting for the store.
        """
        pending: list[Deferred[Any]] = []

        class SlowStore:
            def get(self, key):
                d: Deferred[Any] = Deferred()
                pending.append(d)
                return d

            def set(self, key, value):
                return Deferred()

        self.context.store = SlowStore()
        body = b"<p>page</p>\n" * 40000
        base = versionDigest(b"other")
        for i in range(3):
            head = RequestHead(
                b"GET",
                b"http",
                b"www.example.test",
                b"/p%d" % i,
                [(b"railgun-base", base.encode())],
            )
            self.open(head)
            response, _ = self.agent.respond(i, 200, {b"content-type": [b"text/html"]})
            response._bodyDataReceived(body)
            response._bodyDataFinished()
        self.flush()
        self.assertEqual(len(pending), 3)
        self.assertEqual(self.context.held, 3 * len(body))
        for d in pending:
            d.callback(None)
        self.flush()
        self.assertEqual(self.context.held, 0)


class UnsendableHeadTests(_Base):
    def test_unsendableHeadReleasesOrigin(self) -> None:
        """
        A response whose head cannot cross the link (a header value with a
        control character, which Twisted's client accepts) gets 502, and
        the origin response is stopped, not left buffering its body.
        """
        collector, _ = self.open(
            RequestHead(b"GET", b"http", b"www.example.test", b"/bin", [])
        )
        response, transport = self.agent.respond(
            0,
            200,
            {b"content-type": [b"application/octet-stream"], b"x-bad": [b"a\x01b"]},
        )
        self.flush()
        head = ResponseHead.fromLinkHeaders(collector.heads[0])
        self.assertEqual(head.status, 502)
        self.assertEqual(
            splitControl(head.headers)[1][b"railgun-error"], b"origin-failed"
        )
        self.assertEqual(transport.producerState, "stopped")

    def test_tooLargeHeadForAVersion(self) -> None:
        """
        A text response with more headers than a link header block may
        carry gets 502 (its body was being held as a version), and the
        budget is released.
        """
        collector, _ = self.open(GET)
        many = {b"x-h%d" % i: [b"v" * 200] for i in range(400)}
        response, _ = self.agent.respond(
            0, 200, {b"content-type": [b"text/html"], **many}
        )
        response._bodyDataReceived(b"<p>page</p>")
        response._bodyDataFinished()
        self.flush()
        self.assertEqual(ResponseHead.fromLinkHeaders(collector.heads[0]).status, 502)
        self.assertEqual(self.context.held, 0)
