"""
Tests for the edge's per-request fast paths: each one must give exactly
what the general path it short-cuts gives.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.abstract import FileDescriptor
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers

from railgun._sockets import TUNED_BUFFER
from railgun.delta.digest import versionDigest
from railgun.edge.http import LARGE_BODY, EdgeHTTPFactory
from railgun.edge.proxy import EdgeProxy
from railgun.http.diagnostic import Flag, RailgunDiagnostic, formatDiagnostic
from railgun.http.headers import addForwarding, validHeaderValue, validHeaderValues
from railgun.http.routing import HostMap
from railgun.link.errors import ErrorCode
from railgun.stores.memory import MemoryVersionStore

PAGE = b"<html>" + b"x" * 2000 + b"</html>"
DIGEST = versionDigest(PAGE).encode("ascii")


class _Stream:
    """
    The edge's view of a link stream, recording what the edge does to it.
    """

    def __init__(self, requestId: str) -> None:
        self.requestId = requestId
        self.resets: list[ErrorCode] = []

    def reset(self, code: ErrorCode) -> None:
        self.resets.append(code)

    def loseConnection(self) -> None:
        pass

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass


class _Link:
    """
    A link that records the streams the edge opens.
    """

    def __init__(self) -> None:
        self.opened: list[tuple[Any, list[tuple[bytes, bytes]], _Stream]] = []

    def openStream(
        self, handler: Any, headers: list[tuple[bytes, bytes]], endStream: bool = False
    ) -> _Stream:
        stream = _Stream(f"r{len(self.opened)}")
        handler.makeConnection(stream)
        self.opened.append((handler, list(headers), stream))
        return stream


class _Pool:
    def __init__(self, link: _Link) -> None:
        self.link = link

    def pick(self, exclude: Any = None) -> tuple[_Link, bool]:
        return self.link, True


def _edge(clock: Clock, cache: Any = None) -> tuple[Any, _Link]:
    link = _Link()
    proxy = EdgeProxy(
        pools=HostMap({"bench.local": _Pool(link)}),
        clock=clock,
        responseTimeout=30,
        cache=cache,
    )
    factory = EdgeHTTPFactory(
        proxy, reactor=clock, maxHeaderBytes=16384, maxBodyBytes=1 << 20
    )
    return factory, link


def _connect(factory: Any) -> tuple[Any, StringTransport]:
    channel = factory.buildProtocol(None)
    transport = StringTransport(
        peerAddress=IPv4Address("TCP", "192.0.2.7", 40000),
        hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
    )
    channel.makeConnection(transport)
    return channel, transport


class _CountingTransport(StringTransport):
    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def getPeer(self) -> Any:
        self.asked.append("peer")
        return super().getPeer()

    def getHost(self) -> Any:
        self.asked.append("host")
        return super().getHost()


class EdgeChannelTests(SynchronousTestCase):
    """
    Tests for what L{railgun.edge.http.EdgeChannel} does once per connection
    instead of once per request.
    """

    def test_addressesAskedOnce(self) -> None:
        """
        Several requests on one connection ask the transport for its
        addresses once, and each request still sees them.
        """
        factory, link = _edge(Clock())
        channel = factory.buildProtocol(None)
        transport = _CountingTransport()
        channel.makeConnection(transport)
        for _ in range(3):
            channel.dataReceived(b"GET /a HTTP/1.1\r\nHost: bench.local\r\n\r\n")
            handler, headers, stream = link.opened[-1]
            handler.headersReceived([(b":status", b"204")], True)
        self.assertEqual(sorted(transport.asked), ["host", "peer"])
        self.assertEqual(len(link.opened), 3)
        self.assertIn(
            (b"x-forwarded-for", transport.getPeer().host.encode()), link.opened[-1][1]
        )

    def test_writeHeadersAsTwisted(self) -> None:
        """
        The head is written in one piece, byte for byte what twisted.web's
        writeHeaders writes as a sequence.
        """
        headers = Headers()
        headers.addRawHeader(b"content-type", b"text/plain")
        headers.addRawHeader(b"set-cookie", b"a=1")
        headers.addRawHeader(b"set-cookie", b"b=2")
        factory, _ = _edge(Clock())
        channel, transport = _connect(factory)
        channel.writeHeaders(b"HTTP/1.1", b"200", b"OK", headers)
        reference = HTTPChannel()
        referenceTransport = StringTransport()
        reference.makeConnection(referenceTransport)
        reference.writeHeaders(b"HTTP/1.1", b"200", b"OK", headers)
        self.assertEqual(transport.value(), referenceTransport.value())
        self.assertTrue(transport.value().endswith(b"\r\n\r\n"))

    def test_writeHeadersPairs(self) -> None:
        """
        Pairs instead of L{Headers} (twisted.web's compatibility path) are
        still sanitized and written.
        """
        factory, _ = _edge(Clock())
        channel, transport = _connect(factory)
        channel.writeHeaders(b"HTTP/1.1", b"200", b"OK", [(b"x-a", b"1\r\n2")])
        self.assertEqual(transport.value(), b"HTTP/1.1 200 OK\r\nX-A: 1 2\r\n\r\n")


class _WritesTransport(StringTransport):
    """
    Records each write the channel makes, as the bytes of that call.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.calls.append(data)
        super().write(data)

    def writeSequence(self, data: Any) -> None:
        data = list(data)
        self.calls.append(b"".join(data))
        super().writeSequence(data)


class OneSendPerResponseTests(SynchronousTestCase):
    """
    The head of a response leaves with the body bytes twisted.web writes
    right after it, in one transport write; the bytes are those of
    twisted.web's own channel.
    """

    def _respond(
        self,
        channelFactory: Any,
        method: bytes,
        code: int,
        length: bool,
        writes: list[bytes],
    ) -> _WritesTransport:
        channel = channelFactory()
        transport = _WritesTransport()
        channel.makeConnection(transport)
        request = channel.requestFactory(channel)
        request.method = method
        request.clientproto = b"HTTP/1.1"
        request.setResponseCode(code)
        if length:
            request.setHeader(b"content-length", b"%d" % sum(map(len, writes)))
        for data in writes:
            request.write(data)
        return transport

    def _both(
        self, method: bytes, code: int, length: bool, writes: list[bytes]
    ) -> tuple[Any, Any]:
        factory, _ = _edge(Clock())
        ours = self._respond(
            lambda: factory.buildProtocol(None), method, code, length, writes
        )
        theirs = self._respond(HTTPChannel, method, code, length, writes)
        self.assertEqual(ours.value(), theirs.value())
        return ours, theirs

    def test_lengthKnown(self) -> None:
        """
        Head and body in one write; later body writes go on their own.
        """
        ours, theirs = self._both(b"GET", 200, True, [b"body", b"more"])
        self.assertEqual(len(ours.calls), 2)
        self.assertTrue(ours.calls[0].endswith(b"\r\n\r\nbody"))
        self.assertEqual(ours.calls[1], b"more")
        self.assertEqual(len(theirs.calls), 3)

    def test_chunked(self) -> None:
        """
        A chunked response's head goes with its first chunk.
        """
        ours, _ = self._both(b"GET", 200, False, [b"body"])
        self.assertEqual(len(ours.calls), 1)
        self.assertTrue(ours.calls[0].endswith(b"\r\n\r\n4\r\nbody\r\n"))

    def test_headAndNoBodyStatus(self) -> None:
        """
        A HEAD request, or a status without a body: the head still leaves,
        alone.
        """
        for method, code in ((b"HEAD", 200), (b"GET", 304), (b"GET", 204)):
            ours, _ = self._both(method, code, False, [b"body"])
            self.assertEqual(len(ours.calls), 1, (method, code))
            self.assertTrue(ours.calls[0].endswith(b"\r\n\r\n"), (method, code))

    def test_headFirst(self) -> None:
        """
        A head written on its own (no body bytes yet: a streamed response
        whose body comes later) is not held back.
        """
        ours, _ = self._both(b"GET", 200, False, [b"", b"late"])
        self.assertEqual(len(ours.calls), 2)
        self.assertTrue(ours.calls[0].endswith(b"\r\n\r\n"))


class EdgeRequestTests(SynchronousTestCase):
    """
    Tests for L{railgun.edge.http.EdgeRequest}'s client-gone notice and
    request handling through the proxy.
    """

    def test_clientGoneResetsStream(self) -> None:
        """
        A client that goes away before its response resets the stream
        carrying its request.
        """
        factory, link = _edge(Clock())
        channel, transport = _connect(factory)
        channel.dataReceived(b"GET /a?x=1 HTTP/1.1\r\nHost: bench.local\r\n\r\n")
        request = channel.requests[0]
        self.assertEqual((request.path, request.args), (b"/a", {}))
        _, headers, stream = link.opened[0]
        self.assertIn((b":path", b"/a?x=1"), headers)
        channel.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(stream.resets, [ErrorCode.CANCEL])

    def test_goneCallbackDroppedOnFinish(self) -> None:
        """
        A finished request lets its callback go, and a later connection
        loss does not call it.
        """
        factory, link = _edge(Clock())
        channel, transport = _connect(factory)
        channel.dataReceived(b"GET /a HTTP/1.1\r\nHost: bench.local\r\n\r\n")
        request = channel.requests[0]
        called: list[Failure] = []
        request.whenGone(called.append)
        request.setResponseCode(204)
        request.finish()
        self.assertIsNone(request._onGone)
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(called, [])

    def test_sameServedFromCache(self) -> None:
        """
        A C{same} answer serves the cached body with the diagnostic header,
        the edge having named its version as the base.
        """
        clock = Clock()
        cache = MemoryVersionStore(
            maxBytes=1 << 20, maxItemBytes=1 << 16, ttl=None, clock=clock
        )
        cache.set(b"bench.local /page", DIGEST + PAGE)
        factory, link = _edge(clock, cache)
        channel, transport = _connect(factory)
        channel.dataReceived(b"GET /page HTTP/1.1\r\nHost: bench.local\r\n\r\n")
        handler, headers, stream = link.opened[0]
        self.assertEqual(
            headers,
            [
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":authority", b"bench.local"),
                (b":path", b"/page"),
                (b"x-forwarded-for", b"192.0.2.7"),
                (b"forwarded", b"for=192.0.2.7;host=bench.local;proto=http"),
                (b"via", b"1.1 railgun"),
                (b"railgun-base", DIGEST),
            ],
        )
        handler.headersReceived(
            [
                (b":status", b"200"),
                (b"content-type", b"text/html"),
                (b"railgun-body", b"same"),
                (b"railgun-digest", DIGEST),
                (b"railgun-flags", b"0020"),
                (b"railgun-origin-time", b"0.25"),
            ],
            True,
        )
        self.assertEqual(
            transport.value(),
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
            b"Content-Length: %d\r\nRailgun: r0 0.00 0.250000 0238 0100\r\n\r\n%s"
            % (len(PAGE), PAGE),
        )

    def test_forwardingCombined(self) -> None:
        """
        A request that already carries forwarding headers has this hop
        appended to them, as L{addForwarding} does; hop-by-hop, Connection-
        named and link-control headers are not forwarded.
        """
        factory, link = _edge(Clock())
        channel, transport = _connect(factory)
        channel.dataReceived(
            b"GET / HTTP/1.1\r\nHost: bench.local\r\nX-Forwarded-For: 198.51.100.1\r\n"
            b"Via: 1.0 other\r\nConnection: keep-alive, x-secret\r\nX-Secret: 1\r\n"
            b"Railgun-Base: 00000000000000000000000000000000\r\nTE: trailers\r\nX-Keep: 2\r\n\r\n"
        )
        _, headers, _ = link.opened[0]
        expected = addForwarding(
            [
                (b"x-forwarded-for", b"198.51.100.1"),
                (b"via", b"1.0 other"),
                (b"x-keep", b"2"),
            ],
            clientAddress="192.0.2.7",
            host=b"bench.local",
            proto="http",
        )
        self.assertEqual(headers[4:], expected)


class FormatDiagnosticTests(SynchronousTestCase):
    """
    Tests for L{formatDiagnostic}.
    """

    @given(
        st.text(
            alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E),
            min_size=1,
            max_size=20,
        ),
        st.floats(min_value=0, max_value=1e9),
        st.floats(min_value=0, max_value=1e6),
        st.integers(min_value=0, max_value=0xFFFF),
    )
    def test_sameAsObject(
        self, requestId: str, ratio: float, seconds: float, flags: int
    ) -> None:
        """
        Valid fields are written as L{RailgunDiagnostic.format} writes them.
        """
        self.assertEqual(
            formatDiagnostic(requestId, ratio, seconds, flags, "0100"),
            RailgunDiagnostic(requestId, ratio, seconds, Flag(flags), "0100").format(),
        )

    def test_sameErrors(self) -> None:
        """
        Invalid fields raise what L{RailgunDiagnostic} raises.
        """
        nan, inf = float("nan"), float("inf")
        for fields in [
            ("a b", 1.0, 1.0, 1, "0100"),
            ("", 1.0, 1.0, 1, "0100"),
            ("a", -1.0, 1.0, 1, "0100"),
            ("a", nan, 1.0, 1, "0100"),
            ("a", 1.0, inf, 1, "0100"),
            ("a", True, 1.0, 1, "0100"),
            ("a", 1.0, 1.0, -1, "0100"),
            ("a", 1.0, 1.0, 0x10000, "0100"),
            ("a", 1.0, 1.0, 1, "01 00"),
        ]:
            expected = self.assertRaises(ValueError, RailgunDiagnostic, *fields)
            actual = self.assertRaises(ValueError, formatDiagnostic, *fields)
            self.assertEqual(str(actual), str(expected))


class ValidHeaderValuesTests(SynchronousTestCase):
    """
    Tests for L{validHeaderValues}.
    """

    @given(st.lists(st.binary(max_size=12), max_size=6))
    def test_sameAsEach(self, values: list[bytes]) -> None:
        """
        The list is valid exactly when each value is.
        """
        self.assertEqual(
            validHeaderValues(values), all(validHeaderValue(v) for v in values)
        )

    def test_lineFeedInside(self) -> None:
        """
        A value holding LF cannot pass for two values.
        """
        self.assertFalse(validHeaderValues([b"a\nb", b"c"]))
        self.assertFalse(validHeaderValues([b"a\n"]))
        self.assertTrue(validHeaderValues([b"a", b"", b"b c"]))


class _SocketLike(FileDescriptor):
    """
    A transport that L{railgun._sockets.tuneForVolume} treats as a socket,
    over a memory reactor.
    """

    def __init__(self) -> None:
        super().__init__(MemoryReactor())
        self.written = b""

    def writeSomeData(self, data: bytes) -> int:
        self.written += bytes(data)
        return len(data)

    def getPeer(self) -> Any:
        return IPv4Address("TCP", "192.0.2.7", 40000)

    def getHost(self) -> Any:
        return IPv4Address("TCP", "127.0.0.1", 8080)


class LargeUploadTests(SynchronousTestCase):
    """
    A connection that starts a large upload reads in large pieces.
    """

    def _start(self, head: bytes) -> _SocketLike:
        factory, _ = _edge(Clock())
        factory = EdgeHTTPFactory(
            factory.proxy, reactor=Clock(), maxHeaderBytes=16384, maxBodyBytes=1 << 30
        )
        channel = factory.buildProtocol(None)
        transport = _SocketLike()
        channel.makeConnection(transport)
        channel.dataReceived(head)
        return transport

    def test_largeBodyTuned(self) -> None:
        """
        A body over 1 MiB, or chunked, raises the connection's read size.
        """
        big = self._start(
            b"PUT /u HTTP/1.1\r\nHost: bench.local\r\nContent-Length: %d\r\n\r\n"
            % (LARGE_BODY + 1)
        )
        self.assertEqual(big.bufferSize, TUNED_BUFFER)
        chunked = self._start(
            b"PUT /u HTTP/1.1\r\nHost: bench.local\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        self.assertEqual(chunked.bufferSize, TUNED_BUFFER)

    def test_smallBodyUntouched(self) -> None:
        """
        A small body leaves the default read size (many client connections,
        each bounded by it).
        """
        small = self._start(
            b"PUT /u HTTP/1.1\r\nHost: bench.local\r\nContent-Length: %d\r\n\r\n"
            % LARGE_BODY
        )
        self.assertEqual(small.bufferSize, FileDescriptor.bufferSize)
