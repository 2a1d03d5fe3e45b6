"""
The edge against clients and origin role answers that misbehave, in
memory: twisted.web's channel on a string transport, a fake link whose
streams record what is written to them, and a Clock. Each test was first
a demonstration of a defect an adversarial review found.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from railgun.delta.digest import versionDigest
from railgun.edge.http import HEAD_TIMEOUT, SEND_TIMEOUT, EdgeHTTPFactory
from railgun.edge.proxy import EdgeProxy
from railgun.http.routing import HostMap
from railgun.link.errors import ErrorCode, StreamReset
from railgun.stores.memory import MemoryVersionStore
from tests.test_edge_perf import _connect, _Link, _Pool, _Stream


class _WStream(_Stream):
    def __init__(self, rid):
        super().__init__(rid)
        self.written = []
        self.ended = False
        self.producer = None

    def write(self, data):
        self.written.append(data)

    def loseConnection(self):
        self.ended = True

    def registerProducer(self, producer, streaming):
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False

    def reset(self, code):
        # As a LinkStream: the stream is over for its protocol at once.
        super().reset(code)
        if not self.lost:
            self.lost = True
            self.protocol.connectionLost(Failure(StreamReset(code, remote=False)))


class _WLink(_Link):
    def openStream(self, handler, headers, endStream=False):
        stream = _WStream(f"r{len(self.opened)}")
        stream.protocol = handler
        stream.lost = False
        handler.makeConnection(stream)
        self.opened.append((handler, list(headers), stream))
        return stream


def _edge(clock, maxBodyBytes=1 << 20, **kw):
    link = _WLink()
    proxy = EdgeProxy(
        pools=HostMap({"bench.local": _Pool(link)}),
        clock=clock,
        responseTimeout=30,
        **kw,
    )
    factory = EdgeHTTPFactory(
        proxy, reactor=clock, maxHeaderBytes=16384, maxBodyBytes=maxBodyBytes
    )
    return factory, link, proxy


class EarlyAnswerTests(SynchronousTestCase):
    def test_421WithBodyInSamePacket(self):
        """
        A POST to an unknown host, its small body in the same packet as its
        head: the edge answers 421 and the body bytes that follow must not
        raise.
        """
        factory, link, _ = _edge(Clock())
        channel, transport = _connect(factory)
        channel.dataReceived(
            b"POST /x HTTP/1.1\r\nHost: other.example\r\nContent-Length: 5\r\n\r\nhello"
        )
        self.assertIn(b"421", transport.value().split(b"\r\n")[0])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_earlyOriginAnswerThenRestOfBody(self):
        """
        The origin role answers (complete response) before the client has
        sent its whole body; the rest of the body then arrives.
        """
        factory, link, _ = _edge(Clock())
        channel, transport = _connect(factory)
        channel.dataReceived(
            b"POST /x HTTP/1.1\r\nHost: bench.local\r\nContent-Length: 10\r\n\r\nhello"
        )
        handler, headers, stream = link.opened[-1]
        handler.headersReceived(
            [(b":status", b"401"), (b"content-length", b"2")], False
        )
        handler.dataReceived(b"no")
        handler.readConnectionLost()
        self.assertTrue(transport.value().endswith(b"no"))
        channel.dataReceived(b"world")
        self.assertEqual(self.flushLoggedErrors(), [])


class ChunkedOverLimitTests(SynchronousTestCase):
    def test_truncatedChunkedBodyNotEnded(self):
        """
        A chunked body going over maxBodyBytes gets 413; the stream carrying
        it must not be ended cleanly (END_STREAM), which would give the
        origin a truncated body as complete.
        """
        factory, link, _ = _edge(Clock(), maxBodyBytes=10)
        channel, transport = _connect(factory)
        channel.dataReceived(
            b"POST /x HTTP/1.1\r\nHost: bench.local\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n8\r\nworld!!!\r\n0\r\n\r\n"
        )
        handler, headers, stream = link.opened[-1]
        self.assertIn(b"413", transport.value())
        self.assertFalse(
            stream.ended and not stream.resets, "truncated body sent as complete"
        )

    def test_noSecondResponseAfter413(self):
        """
        Once a chunked body got 413, the origin role's answer (had it come
        before the connection closed) is not written after it.
        """
        factory, link, _ = _edge(Clock(), maxBodyBytes=10)
        channel, transport = _connect(factory)
        channel.dataReceived(
            b"POST /x HTTP/1.1\r\nHost: bench.local\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n8\r\nworld!!!\r\n"
        )
        handler, headers, stream = link.opened[-1]
        handler.headersReceived(
            [(b":status", b"200"), (b"content-length", b"2")], False
        )
        handler.dataReceived(b"ok")
        self.assertEqual(transport.value().count(b"HTTP/1.1 "), 1)


class _FakeChannelTransport:
    aborted = False

    def abortConnection(self):
        self.aborted = True


class _FakeRequest:
    def __init__(self):
        self._disconnected = False
        self.finished = False
        self.producer = None
        self.written = []
        self.channel = type("C", (), {})()
        self.channel.transport = _FakeChannelTransport()

        self._finishing = []

    def notifyFinish(self):
        d = Deferred()
        self._finishing.append(d)
        return d

    def clientLeft(self):
        self._disconnected = True
        for d in self._finishing:
            d.errback(Failure(ConnectionDone()))

    def registerProducer(self, producer, streaming):
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None

    def write(self, data):
        self.written.append(data)

    def finish(self):
        self.finished = True


class _OriginBodyTransport:
    """The origin connection as the Agent's body protocol sees it."""

    def __init__(self, relay):
        self.relay = relay
        self.paused = False

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False

    def stopProducing(self):
        from twisted.web._newclient import ResponseFailed

        self.relay.connectionLost(
            Failure(ResponseFailed([Failure(Exception("stopped"))]))
        )


class DirectSlowReaderTests(SynchronousTestCase):
    def test_pausedClientIsNotAStall(self):
        """
        The client stops reading (its socket pauses the origin connection);
        the origin is not stalled, so the client's response must not be cut
        off after response_timeout.
        """
        from railgun.edge.direct import _Relay

        clock = Clock()
        request = _FakeRequest()
        relay = _Relay(request, clock, 30.0)
        origin = _OriginBodyTransport(relay)
        relay.makeConnection(origin)
        relay.dataReceived(b"x" * 65536)
        request.producer.pauseProducing()  # the client's socket is full
        clock.advance(31)
        self.assertFalse(request.channel.transport.aborted, "slow client cut off")
        # Reading again: the origin's silence counts again.
        request.producer.resumeProducing()
        clock.advance(31)
        self.assertTrue(request.channel.transport.aborted)

    def test_clientGoneStopsOrigin(self):
        """
        A client that leaves while the origin connection is paused for it
        has the origin's body stopped, not held until anything happens.
        """
        from railgun.edge.direct import _Relay

        clock = Clock()
        request = _FakeRequest()
        relay = _Relay(request, clock, 30.0)
        stopped = []
        origin = _OriginBodyTransport(relay)
        origin.stopProducing = lambda: stopped.append(True)
        relay.makeConnection(origin)
        relay.dataReceived(b"x" * 65536)
        request.producer.pauseProducing()
        request.clientLeft()
        self.assertEqual(stopped, [True])
        self.assertEqual(clock.getDelayedCalls(), [])


class _FullTransport(StringTransport):
    """
    A client transport whose peer never reads: like Twisted's TCP transport,
    it pauses its streaming producer on every write once over 64 KiB.
    """

    bufferSize = 65536

    def write(self, data):
        super().write(data)
        if (
            self.producer is not None
            and self.streaming
            and len(self.io.getvalue()) > self.bufferSize
        ):
            self.producer.pauseProducing()


class PipelinedAmplificationTests(SynchronousTestCase):
    def test_pipelinedRequestsToNonReadingClient(self):
        """
        One read of pipelined GETs (about 4 KiB) from a client that reads
        nothing: the edge must not queue megabytes of responses for it.
        """
        page = b"<html>" + b"y" * (512 * 1024) + b"</html>"
        digest = versionDigest(page).encode("ascii")
        clock = Clock()
        cache = MemoryVersionStore(
            maxBytes=8 << 20, maxItemBytes=2 << 20, ttl=None, clock=clock
        )
        cache.set(b"bench.local /page", digest + page)
        factory, link, _ = _edge(clock, cache=cache, deltaMaxSize=2 << 20)
        channel = factory.buildProtocol(None)
        transport = _FullTransport(
            peerAddress=IPv4Address("TCP", "192.0.2.7", 40000),
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
        )
        channel.makeConnection(transport)
        request = b"GET /page HTTP/1.1\r\nHost: bench.local\r\n\r\n"
        channel.dataReceived(request * 100)  # ~4 KiB, one read
        answered = 0
        while answered < len(link.opened):
            handler, headers, stream = link.opened[answered]
            answered += 1
            # The origin role: the page has not changed ("same": nothing
            # crosses the link).
            handler.headersReceived(
                [
                    (b":status", b"200"),
                    (b"content-type", b"text/html"),
                    (b"railgun-body", b"same"),
                    (b"railgun-digest", digest),
                ],
                True,
            )
        queued = len(transport.value())
        self.assertLess(queued, 4 << 20)
        # The client reads again: the requests it sent are answered, all of
        # them, in order.
        served = transport.value().count(b"HTTP/1.1 200 ")
        while answered < 100:
            transport.clear()
            channel.resumeProducing()
            served += transport.value().count(b"HTTP/1.1 200 ")
            while answered < len(link.opened):
                handler, headers, stream = link.opened[answered]
                answered += 1
                handler.headersReceived(
                    [
                        (b":status", b"200"),
                        (b"content-type", b"text/html"),
                        (b"railgun-body", b"same"),
                        (b"railgun-digest", digest),
                    ],
                    True,
                )
                served += transport.value().count(b"HTTP/1.1 200 ")
                transport.clear()
        self.assertEqual((answered, served), (100, 100))

    def test_clientNotReadingCutOff(self):
        """
        A client that reads nothing of its response for SEND_TIMEOUT is cut
        off (its stream reset, freeing the origin connection); one that
        reads again in time is not.
        """
        clock = Clock()
        factory, link, _ = _edge(clock)
        channel = factory.buildProtocol(None)
        transport = _FullTransport(
            peerAddress=IPv4Address("TCP", "192.0.2.7", 40000),
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
        )
        transport.abortConnection = lambda: setattr(transport, "aborted", True)
        transport.aborted = False
        channel.makeConnection(transport)
        channel.dataReceived(b"GET /big HTTP/1.1\r\nHost: bench.local\r\n\r\n")
        handler, headers, stream = link.opened[0]
        handler.headersReceived(
            [(b":status", b"200"), (b"content-length", b"%d" % (1 << 20))], False
        )
        handler.dataReceived(b"z" * 100000)  # fills the client's buffer: paused
        clock.advance(SEND_TIMEOUT - 1)
        channel.resumeProducing()  # it read a little
        channel.pauseProducing()
        clock.advance(SEND_TIMEOUT - 1)
        self.assertFalse(transport.aborted)
        clock.advance(1)
        self.assertTrue(transport.aborted)


class RawLengthTests(SynchronousTestCase):
    def _raw(self, announced, sent):
        factory, link, _ = _edge(Clock())
        channel, transport = _connect(factory)
        channel.dataReceived(b"GET /a HTTP/1.1\r\nHost: bench.local\r\n\r\n")
        handler, headers, stream = link.opened[-1]
        handler.headersReceived(
            [(b":status", b"200"), (b"content-length", b"%d" % announced)], False
        )
        handler.dataReceived(sent)
        handler.readConnectionLost()
        return transport

    def test_shortRawBodyNotComplete(self):
        """
        The stream ends cleanly with fewer bytes than the Content-Length it
        announced: the client must not be left on a kept-alive connection
        expecting the rest (it would take the next response for it).
        """
        transport = self._raw(10, b"hello")
        self.assertTrue(transport.disconnecting)

    def test_longRawBodyNotPassedOn(self):
        """
        More bytes than announced: the extra bytes reach the client as the
        start of a next response (response splitting).
        """
        transport = self._raw(2, b"okHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")
        self.assertNotIn(b"evil", transport.value())


class MalformedResponseTests(SynchronousTestCase):
    def test_conflictingLengths(self):
        """
        A raw response head announcing two different lengths is malformed:
        the client gets the 502 saying so (not the one for the stream the
        edge resets because of it).
        """
        factory, link, _ = _edge(Clock())
        channel, transport = _connect(factory)
        channel.dataReceived(b"GET /a HTTP/1.1\r\nHost: bench.local\r\n\r\n")
        handler, headers, stream = link.opened[-1]
        handler.headersReceived(
            [
                (b":status", b"200"),
                (b"content-length", b"2"),
                (b"content-length", b"3"),
            ],
            False,
        )
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 502 "))
        self.assertIn(b"the origin role sent a malformed response", transport.value())
        self.assertEqual(stream.resets, [ErrorCode.PROTOCOL_ERROR])


class SlowHeadTests(SynchronousTestCase):
    def test_headTrickleTimesOut(self):
        """
        A request head trickling in (a byte every 10 s, each one restarting
        twisted.web's idle timeout) gets 408 once HEAD_TIMEOUT has passed
        since its first byte, and the connection closes.
        """
        clock = Clock()
        factory, link, _ = _edge(clock)
        channel, transport = _connect(factory)
        for byte in b"GET / HTTP/1.1\r\nX-A: " + b"a" * 200:
            if transport.disconnecting:
                break
            clock.advance(10)
            channel.dataReceived(bytes([byte]))
        self.assertTrue(transport.disconnecting)
        self.assertTrue(
            transport.value().startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        )
        self.assertLessEqual(clock.seconds(), HEAD_TIMEOUT + 20)
        self.assertEqual(link.opened, [])

    def test_headInTimeServed(self):
        """
        A head that arrives in time, even slowly, is served; the next
        request on the connection gets its own deadline.
        """
        clock = Clock()
        factory, link, _ = _edge(clock)
        channel, transport = _connect(factory)
        request = b"GET / HTTP/1.1\r\nHost: bench.local\r\n\r\n"
        for byte in request:
            clock.advance((HEAD_TIMEOUT - 1) / len(request))
            channel.dataReceived(bytes([byte]))
        self.assertEqual(len(link.opened), 1)
        handler = link.opened[0][0]
        handler.headersReceived(
            [(b":status", b"200"), (b"content-length", b"2")], False
        )
        handler.dataReceived(b"ok")
        handler.readConnectionLost()
        clock.advance(HEAD_TIMEOUT * 0.9)  # idle between requests: not the head's
        channel.dataReceived(request)
        self.assertEqual(len(link.opened), 2)
        self.assertFalse(transport.disconnecting)


class RefetchWithBodyTests(SynchronousTestCase):
    def test_refetchWithSentBodyRefused(self):
        """
        A GET with a body whose version cannot be rebuilt is not asked
        again without its body (which is not kept): the client gets 502.
        """
        factory, link, _ = _edge(Clock())
        channel, transport = _connect(factory)
        channel.dataReceived(
            b"GET /q HTTP/1.1\r\nHost: bench.local\r\nContent-Length: 5\r\n\r\nhello"
        )
        handler, headers, stream = link.opened[0]
        handler.headersReceived(
            [
                (b":status", b"200"),
                (b"content-type", b"text/html"),
                (b"railgun-body", b"full"),
                (b"railgun-digest", b"0" * 32),
            ],
            False,
        )
        handler.dataReceived(b"<p>not matching the digest</p>")
        handler.readConnectionLost()
        self.assertEqual(len(link.opened), 1)
        self.assertTrue(
            transport.value().startswith(b"HTTP/1.1 502 "), transport.value()
        )
        self.assertIn(b"could not be rebuilt", transport.value())


class SlowUploadTests(SynchronousTestCase):
    def test_steadyUploadLongerThanResponseTimeout(self):
        """
        A client uploading steadily (1 KiB every second) for longer than the
        edge's response_timeout (30 s here, 60 s by default): the origin
        cannot answer before it has the body, so a 504 mid-upload is wrong.
        """
        clock = Clock()
        factory, link, _ = _edge(clock)
        channel, transport = _connect(factory)
        channel.dataReceived(
            b"POST /upload HTTP/1.1\r\nHost: bench.local\r\nContent-Length: 102400\r\n\r\n"
        )
        for _ in range(45):
            clock.advance(1)
            channel.dataReceived(b"z" * 1024)
        self.assertEqual(transport.value(), b"")
        # Silence after the upload: the edge's own timeout answers 504.
        clock.advance(30)
        self.assertTrue(
            transport.value().startswith(b"HTTP/1.1 504 "), transport.value()[:60]
        )
        self.assertIn(b"the origin role did not answer in time", transport.value())

    def test_headTimeoutIs504(self):
        """
        No response head within the edge's response_timeout: 504, not the
        502 that resetting the stream would otherwise report first.
        """
        clock = Clock()
        factory, link, _ = _edge(clock)
        channel, transport = _connect(factory)
        channel.dataReceived(b"GET /slow HTTP/1.1\r\nHost: bench.local\r\n\r\n")
        clock.advance(30)
        self.assertTrue(
            transport.value().startswith(b"HTTP/1.1 504 "), transport.value()[:60]
        )
        self.assertEqual(link.opened[0][2].resets, [ErrorCode.CANCEL])


class OriginFormTests(SynchronousTestCase):
    def test_absoluteFormTargets(self):
        """
        An absolute-form target keeps its path and query, a missing path
        becomes "/", and a fragment is dropped (RFC 9112 3.2.2).
        """
        from railgun.edge.proxy import _originForm

        for target, expected in [
            (b"http://h/p?q=1", b"/p?q=1"),
            (b"http://h?q=1", b"/?q=1"),
            (b"https://h:8443", b"/"),
            (b"HTTP://h/a#frag", b"/a"),
            (b"/already?x", b"/already?x"),
        ]:
            self.assertEqual(_originForm(target), expected, target)


class NoTransformTests(SynchronousTestCase):
    def test_noTransformNotCompressed(self):
        """
        A text body the origin marked Cache-Control: no-transform is served
        as it is, even to a client that accepts gzip.
        """
        from railgun.edge.proxy import _clientCoding

        class Request:
            requestHeaders = Headers({b"accept-encoding": [b"gzip"]})

        text = [(b"content-type", b"text/html")]
        self.assertEqual(_clientCoding(Request(), text), b"gzip")
        self.assertIsNone(
            _clientCoding(
                Request(), text + [(b"cache-control", b"public, No-Transform")]
            )
        )
