"""
Tests for L{railgun.link.protocol}: the link in memory, with a L{Clock}, over
L{twisted.test.iosim} pairs or against a hand-driven peer on a
L{StringTransport}.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IConsumer,
    IHalfCloseableProtocol,
    IPushProducer,
    ITransport,
)
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from railgun.link import (
    ErrorCode,
    LinkClientFactory,
    LinkLost,
    LinkProtocol,
    LinkServerFactory,
    LinkStream,
    LinkUnavailable,
    ProtocolError,
    Settings,
    StreamProtocol,
    StreamRefused,
    StreamReset,
    StreamState,
)
from railgun.link.frames import (
    Data,
    FrameParser,
    GoAway,
    Headers,
    Hello,
    Ping,
    Pong,
    Reset,
    Unknown,
    Window,
    frameHeader,
)
from railgun.link.headerblock import HeaderBlockEncoder

TOKEN = b"s3cret-token"


class Recorder(StreamProtocol):
    """
    Record every callback of a stream.
    """

    def __init__(self) -> None:
        self.headers: list[tuple[list[tuple[bytes, bytes]], bool]] = []
        self.chunks: list[bytes] = []
        self.readLost = False
        self.reason: Failure | None = None
        self.events: list[str] = []

    def connectionMade(self) -> None:
        self.events.append("made")

    def headersReceived(
        self, headers: list[tuple[bytes, bytes]], endStream: bool
    ) -> None:
        self.events.append("headers")
        self.headers.append((headers, endStream))

    def dataReceived(self, data: bytes) -> None:
        self.events.append("data")
        self.chunks.append(data)

    def readConnectionLost(self) -> None:
        self.events.append("readLost")
        self.readLost = True

    def connectionLost(self, reason: Failure = ConnectionDone) -> None:  # type: ignore[assignment]
        self.events.append("lost")
        self.reason = reason

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def done(self) -> bool:
        return self.reason is not None


class Echo(Recorder):
    """
    Answer with a 200 header block, echo the body, end when the peer ends.
    """

    def headersReceived(
        self, headers: list[tuple[bytes, bytes]], endStream: bool
    ) -> None:
        super().headersReceived(headers, endStream)
        if len(self.headers) == 1:
            self.transport.sendHeaders([(b":status", b"200")])

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        self.transport.write(data)

    def readConnectionLost(self) -> None:
        super().readConnectionLost()
        self.transport.loseConnection()


class Sender(Recorder):
    """
    Answer with a header block and C{size} bytes, then end.
    """

    size = 0

    def headersReceived(
        self, headers: list[tuple[bytes, bytes]], endStream: bool
    ) -> None:
        super().headersReceived(headers, endStream)
        self.transport.sendHeaders([(b":status", b"200")])
        self.transport.write(b"s" * self.size)
        self.transport.loseConnection()


@implementer(IPushProducer)
class PushProducer:
    """
    Record pause/resume/stop calls.
    """

    def __init__(self) -> None:
        self.paused = False
        self.stopped = False
        self.pauses = 0

    def pauseProducing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.stopped = True


class Pair:
    """
    A dialer and an accepting link connected in memory by iosim.
    """

    def __init__(
        self,
        serverStreams: Any = Echo,
        clientStreams: Any = None,
        serverOptions: dict[str, Any] | None = None,
        clientOptions: dict[str, Any] | None = None,
        clientToken: bytes = TOKEN,
    ) -> None:
        self.clock = Clock()
        self.serverProtocols: list[Any] = []
        self.clientProtocols: list[Any] = []

        def serverFactory(stream: LinkStream) -> Any:
            protocol = serverStreams()
            self.serverProtocols.append(protocol)
            return protocol

        def clientFactory(stream: LinkStream) -> Any:
            protocol = clientStreams()
            self.clientProtocols.append(protocol)
            return protocol

        self.client, self.server, self.pump = iosim.connectedServerAndClient(
            lambda: LinkProtocol(
                isDialer=False,
                token=TOKEN,
                clock=self.clock,
                streamFactory=serverFactory if serverStreams else None,
                **(serverOptions or {}),
            ),
            lambda: LinkProtocol(
                isDialer=True,
                token=clientToken,
                clock=self.clock,
                streamFactory=clientFactory if clientStreams else None,
                **(clientOptions or {}),
            ),
            clock=self.clock,
        )

    def flush(self) -> None:
        self.pump.flush()


class RawPeer:
    """
    Drive one link by hand: write frames into it, read the frames it wrote.
    """

    def __init__(
        self, test: SynchronousTestCase, isDialer: bool = False, **options: Any
    ):
        self.clock = Clock()
        self.protocols: list[Recorder] = []
        if "streamFactory" not in options:
            options["streamFactory"] = self._factory
        self.link = LinkProtocol(
            isDialer=isDialer, token=TOKEN, clock=self.clock, **options
        )
        self.transport = StringTransport()
        self.link.makeConnection(self.transport)
        self.parser = FrameParser(16777215, 16777215)
        self.encoder = HeaderBlockEncoder()
        self.closedDeferred = self.link.whenClosed()

    def _factory(self, stream: LinkStream) -> Recorder:
        protocol = Recorder()
        self.protocols.append(protocol)
        return protocol

    def send(self, *frames: Any) -> None:
        self.link.dataReceived(b"".join(f.encode() for f in frames))

    def sendBytes(self, data: bytes) -> None:
        self.link.dataReceived(data)

    def received(self) -> list[Any]:
        self.clock.advance(0)
        data = self.transport.value()
        self.transport.clear()
        return self.parser.feed(data)

    def hello(self, token: bytes = TOKEN, **settings: Any) -> list[Any]:
        self.send(Hello(1, token, Settings(**settings)))
        return self.received()

    def headers(
        self,
        streamId: int,
        headers: list[tuple[bytes, bytes]] | None = None,
        endStream: bool = False,
        requestId: bytes = b"0123abcd",
    ) -> Headers:
        block = [(b":request-id", requestId)] if requestId else []
        block += headers if headers is not None else [(b":path", b"/")]
        return Headers(streamId, self.encoder.encode(block), endStream)


def goAways(frames: list[Any]) -> list[GoAway]:
    return [f for f in frames if isinstance(f, GoAway)]


class InterfaceTests(SynchronousTestCase):
    """
    The link's objects provide the interfaces they claim.
    """

    def test_interfaces(self) -> None:
        """
        LinkStream is a transport, consumer and push producer; LinkProtocol a
        push producer; StreamProtocol half-closeable.
        """
        pair = Pair()
        stream = pair.client.openStream(Recorder(), [])
        verifyObject(ITransport, stream)
        verifyObject(IConsumer, stream)
        verifyObject(IPushProducer, stream)
        verifyObject(IPushProducer, pair.client)
        verifyObject(IHalfCloseableProtocol, StreamProtocol())


class HandshakeTests(SynchronousTestCase):
    """
    The HELLO exchange, authentication and what may precede it.
    """

    def test_helloExchange(self) -> None:
        """
        Both sides become ready and learn each other's settings and codecs.
        """
        pair = Pair(
            serverOptions={
                "settings": Settings(maxConcurrentStreams=7),
                "codecs": ["zstd"],
            },
            clientOptions={"settings": Settings(maxFrameSize=20000)},
        )
        self.assertTrue(pair.client.isReady())
        self.assertTrue(pair.server.isReady())
        self.assertIs(self.successResultOf(pair.client.whenReady()), pair.client)
        self.assertIs(self.successResultOf(pair.server.whenReady()), pair.server)
        self.assertEqual(pair.client.peerSettings.maxConcurrentStreams, 7)
        self.assertEqual(pair.server.peerSettings.maxFrameSize, 20000)
        self.assertEqual(pair.client.peerCodecs, ("zstd",))
        self.assertFalse(pair.client.isDraining())

    def test_dialerSendsHelloFirst(self) -> None:
        """
        The dialer writes HELLO on connectionMade and is ready only when the
        peer's HELLO arrives.
        """
        peer = RawPeer(self, isDialer=True)
        (hello,) = peer.received()
        self.assertEqual((hello.version, hello.token), (1, TOKEN))
        d = peer.link.whenReady()
        self.assertNoResult(d)
        self.assertRaises(LinkUnavailable, peer.link.openStream, Recorder(), [])
        peer.send(Hello(1, b"", Settings()))
        self.assertIs(self.successResultOf(d), peer.link)

    def test_acceptorAnswersHello(self) -> None:
        """
        The accepting side answers a good HELLO with its own, empty token.
        """
        peer = RawPeer(self)
        self.assertEqual(peer.received(), [])
        (hello,) = peer.hello()
        self.assertEqual(hello.token, b"")
        self.assertTrue(peer.link.isReady())

    def test_wrongToken(self) -> None:
        """
        A wrong token gets GOAWAY AUTH_FAILED and a close; streams sent right
        behind it are never served.
        """
        peer = RawPeer(self)
        peer.sendBytes(
            Hello(1, b"wrong", Settings()).encode() + peer.headers(1).encode()
        )
        frames = peer.received()
        self.assertEqual([f.code for f in goAways(frames)], [ErrorCode.AUTH_FAILED])
        self.assertEqual(len(frames), 1)
        self.assertTrue(peer.transport.disconnecting)
        self.assertEqual(peer.protocols, [])
        self.assertEqual(peer.link.stats.streamsAccepted, 0)
        failure = self.failureResultOf(peer.link.whenReady(), ProtocolError)
        self.assertEqual(failure.value.code, ErrorCode.AUTH_FAILED)

    def test_wrongTokenSeenByDialer(self) -> None:
        """
        The dialer with a wrong token sees whenReady fail with AUTH_FAILED and
        the link closed.
        """
        pair = Pair(clientToken=b"bad")
        failure = self.failureResultOf(pair.client.whenReady(), ProtocolError)
        self.assertEqual(failure.value.code, ErrorCode.AUTH_FAILED)
        self.successResultOf(pair.client.whenClosed())
        self.successResultOf(pair.server.whenClosed())
        self.assertEqual(pair.serverProtocols, [])

    def test_frameBeforeHello(self) -> None:
        """
        Any frame but HELLO first is a PROTOCOL_ERROR.
        """
        for frame in (
            Ping(b"12345678"),
            Window(0, 5),
            Unknown(0x40, 0, 0, b""),
            Data(1, b"x"),
            Headers(1, b"\x82"),
        ):
            peer = RawPeer(self)
            peer.send(frame)
            (goAway,) = peer.received()
            self.assertEqual(goAway.code, ErrorCode.PROTOCOL_ERROR)
            self.assertIn("before HELLO", goAway.reason)
            self.assertTrue(peer.transport.disconnecting)
            self.failureResultOf(peer.link.whenReady(), ProtocolError)

    def test_secondHello(self) -> None:
        """
        A second HELLO is a PROTOCOL_ERROR.
        """
        peer = RawPeer(self)
        peer.hello()
        peer.send(Hello(1, TOKEN, Settings()))
        (goAway,) = peer.received()
        self.assertEqual(goAway.code, ErrorCode.PROTOCOL_ERROR)

    def test_badVersion(self) -> None:
        """
        A HELLO of another version is answered with UNSUPPORTED_VERSION.
        """
        peer = RawPeer(self)
        peer.send(Hello(2, TOKEN, Settings()))
        (goAway,) = peer.received()
        self.assertEqual(goAway.code, ErrorCode.UNSUPPORTED_VERSION)

    def test_helloTimeout(self) -> None:
        """
        No HELLO within helloTimeout closes the link with HELLO_TIMEOUT.
        """
        peer = RawPeer(self, helloTimeout=3.0)
        early = peer.link.whenReady()
        peer.clock.advance(2.9)
        self.assertFalse(peer.transport.disconnecting)
        peer.clock.advance(0.2)
        (goAway,) = peer.received()
        self.assertEqual(goAway.code, ErrorCode.HELLO_TIMEOUT)
        self.assertTrue(peer.transport.disconnecting)
        failure = self.failureResultOf(early, ProtocolError)
        self.assertEqual(failure.value.code, ErrorCode.HELLO_TIMEOUT)
        self.failureResultOf(peer.link.whenReady(), ProtocolError)
        peer.link.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(peer.closedDeferred)


class StreamTests(SynchronousTestCase):
    """
    Streams in both directions: headers, data, half-close, reset.
    """

    def test_requestResponse(self) -> None:
        """
        A request with a body is answered and both sides end cleanly; the
        request id travels and is removed from the headers handed up.
        """
        pair = Pair()
        client = Recorder()
        stream = pair.client.openStream(client, [(b":path", b"/x")])
        self.assertEqual(client.events, ["made"])
        self.assertIs(client.transport, stream)
        stream.write(b"hello ")
        stream.writeSequence([b"wor", b"ld"])
        stream.loseConnection()
        pair.flush()
        (server,) = pair.serverProtocols
        self.assertEqual(server.headers, [([(b":path", b"/x")], False)])
        self.assertEqual(server.transport.requestId, stream.requestId)
        self.assertEqual(len(stream.requestId), 20)
        self.assertEqual(server.body, b"hello world")
        self.assertEqual(client.headers, [([(b":status", b"200")], False)])
        self.assertEqual(client.body, b"hello world")
        self.assertEqual(client.events[-2:], ["readLost", "lost"])
        client.reason.trap(ConnectionDone)
        server.reason.trap(ConnectionDone)
        self.assertEqual(stream.state, StreamState.CLOSED)
        self.assertEqual(pair.client.openStreamCount, 0)
        self.assertEqual(pair.server.openStreamCount, 0)
        self.assertEqual(stream.counters.sent, 11)
        self.assertEqual(stream.counters.received, 11)
        self.assertEqual(pair.client.counters.sent, pair.server.counters.received)
        self.assertEqual(pair.client.stats.framesSent, pair.server.stats.framesReceived)
        self.assertEqual(pair.client.stats.streamsOpened, 1)
        self.assertEqual(pair.server.stats.streamsAccepted, 1)

    def test_endStreamOnHeaders(self) -> None:
        """
        Opening with endStream=True sends no body; the peer sees the end.
        """
        pair = Pair()
        client = Recorder()
        pair.client.openStream(client, [(b":method", b"GET")], endStream=True)
        pair.flush()
        (server,) = pair.serverProtocols
        self.assertEqual(server.headers, [([(b":method", b"GET")], True)])
        self.assertTrue(server.readLost)
        self.assertTrue(client.done)

    def test_manyStreamsBothDirections(self) -> None:
        """
        Streams opened by both sides at once carry distinct data both ways.
        """
        pair = Pair(clientStreams=Echo)
        fromClient, fromServer = [], []
        for i in range(20):
            for link, out in ((pair.client, fromClient), (pair.server, fromServer)):
                protocol = Recorder()
                stream = link.openStream(protocol, [(b":path", b"/%d" % i)])
                stream.write(b"%d:" % i * (1000 + i))
                stream.loseConnection()
                out.append((i, protocol, stream))
        pair.flush()
        for out in (fromClient, fromServer):
            for i, protocol, _stream in out:
                self.assertEqual(protocol.body, b"%d:" % i * (1000 + i))
                protocol.reason.trap(ConnectionDone)
        self.assertEqual(
            sorted(s.streamId for _, _, s in fromClient), list(range(1, 40, 2))
        )
        self.assertEqual(
            sorted(s.streamId for _, _, s in fromServer), list(range(2, 41, 2))
        )
        self.assertEqual(len(pair.serverProtocols), 20)
        self.assertEqual(len(pair.clientProtocols), 20)

    def test_interleaving(self) -> None:
        """
        A small stream opened behind a huge one completes first: frames are
        interleaved round-robin.
        """
        pair = Pair()
        big, small = Recorder(), Recorder()
        bigStream = pair.client.openStream(big, [])
        bigStream.write(b"B" * (4 * 1024 * 1024))
        bigStream.loseConnection()
        smallStream = pair.client.openStream(small, [])
        smallStream.write(b"small")
        smallStream.loseConnection()
        for _ in range(4):
            pair.pump.pump()
        self.assertTrue(small.done)
        self.assertFalse(big.done)
        pair.flush()
        self.assertEqual(len(big.body), 4 * 1024 * 1024)

    def test_trailers(self) -> None:
        """
        Headers sent after data (trailers) arrive after that data, with the end.
        """
        pair = Pair(serverStreams=Recorder)
        stream = pair.client.openStream(Recorder(), [])
        stream.write(b"body")
        stream.sendHeaders([(b"x-checksum", b"abc")], endStream=True)
        self.assertRaises(RuntimeError, stream.sendHeaders, [])
        pair.flush()
        (server,) = pair.serverProtocols
        self.assertEqual(
            server.events, ["made", "headers", "data", "headers", "readLost"]
        )
        self.assertEqual(server.headers[1], ([(b"x-checksum", b"abc")], True))

    def test_halfClose(self) -> None:
        """
        After the client ends its side, the server still sends; the stream
        ends cleanly when both sides ended.
        """
        pair = Pair(serverStreams=Recorder)
        client = Recorder()
        stream = pair.client.openStream(client, [], endStream=True)
        pair.flush()
        (server,) = pair.serverProtocols
        self.assertTrue(server.readLost)
        self.assertFalse(server.done)
        self.assertEqual(stream.state, StreamState.HALF_CLOSED_LOCAL)
        server.transport.sendHeaders([(b":status", b"200")])
        server.transport.write(b"late")
        pair.flush()
        self.assertEqual(client.body, b"late")
        self.assertFalse(client.done)
        server.transport.loseConnection()
        pair.flush()
        client.reason.trap(ConnectionDone)
        server.reason.trap(ConnectionDone)

    def test_resetByClient(self) -> None:
        """
        A reset by the opener fails both ends with StreamReset, local and
        remote, and the link stays usable.
        """
        pair = Pair(serverStreams=Recorder)
        client = Recorder()
        stream = pair.client.openStream(client, [])
        pair.flush()
        stream.reset(ErrorCode.CANCEL)
        self.assertFalse(client.reason.value.remote)
        pair.flush()
        (server,) = pair.serverProtocols
        self.assertEqual(server.reason.value.code, ErrorCode.CANCEL)
        self.assertTrue(server.reason.value.remote)
        self.assertEqual(pair.server.openStreamCount, 0)
        stream.write(b"ignored after reset")
        stream.reset()
        pair.flush()
        self.assertEqual(server.chunks, [])
        self.assertTrue(pair.client.isReady())

    def test_resetByServer(self) -> None:
        """
        A reset by the accepting side reaches the opener as a remote StreamReset.
        """
        pair = Pair(serverStreams=Recorder)
        client = Recorder()
        pair.client.openStream(client, [])
        pair.flush()
        pair.serverProtocols[0].transport.reset(ErrorCode.INTERNAL_ERROR)
        pair.flush()
        client.reason.trap(StreamReset)
        self.assertEqual(client.reason.value.code, ErrorCode.INTERNAL_ERROR)
        self.assertTrue(client.reason.value.remote)

    def test_abortAndStopProducing(self) -> None:
        """
        abortConnection and stopProducing reset the stream with CANCEL.
        """
        pair = Pair(serverStreams=Recorder)
        first, second = Recorder(), Recorder()
        pair.client.openStream(first, []).abortConnection()
        pair.client.openStream(second, []).stopProducing()
        for protocol in (first, second):
            self.assertEqual(protocol.reason.value.code, ErrorCode.CANCEL)
        pair.flush()
        # Never-sent streams need no RESET: the server saw nothing.
        self.assertEqual(pair.serverProtocols, [])
        self.assertEqual(pair.server.stats.framesReceived, 1)

    def test_dataAfterResetCredited(self) -> None:
        """
        DATA arriving for a stream we reset is dropped but credited to the
        connection window.
        """
        peer = RawPeer(self, settings=Settings(connectionWindow=65535))
        peer.hello()
        peer.send(peer.headers(1))
        (protocol,) = peer.protocols
        protocol.transport.reset()
        self.assertEqual(peer.received(), [Reset(1, ErrorCode.CANCEL)])
        for _ in range(4):
            peer.send(Data(1, b"x" * 10000))
        self.assertEqual(protocol.chunks, [])
        self.assertEqual(peer.received(), [Window(0, 40000)])
        self.assertEqual(peer.link.connection.credit.window, 65535)

    def test_pausedConsumerDelaysEnd(self) -> None:
        """
        A paused consumer gets buffered data, then readConnectionLost, then
        connectionLost, only on resume, even after the stream closed on the
        wire and stopped counting against the link.
        """
        Sender.size = 1000
        pair = Pair(serverStreams=Sender)
        client = Recorder()
        stream = pair.client.openStream(client, [], endStream=True)
        stream.pauseProducing()
        pair.flush()
        self.assertEqual(client.events, ["made"])
        self.assertEqual(stream.state, StreamState.CLOSED)
        self.assertEqual(pair.client.openStreamCount, 0)
        stream.resumeProducing()
        self.assertEqual(client.events, ["made", "headers", "data", "readLost", "lost"])
        self.assertEqual(client.body, b"s" * 1000)
        client.reason.trap(ConnectionDone)

    def test_handlerExceptionResetsStream(self) -> None:
        """
        An exception in a stream handler resets that stream with
        INTERNAL_ERROR; the link carries on.
        """

        class Broken(Recorder):
            def dataReceived(self, data: bytes) -> None:
                raise ValueError("handler bug")

        pair = Pair(serverStreams=Broken)
        client = Recorder()
        stream = pair.client.openStream(client, [])
        stream.write(b"boom")
        pair.flush()
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(client.reason.value.code, ErrorCode.INTERNAL_ERROR)
        self.assertTrue(pair.client.isReady())
        other = Recorder()
        pair.client.openStream(other, [])
        pair.flush()
        self.assertEqual(len(pair.serverProtocols), 2)

    def test_factoryException(self) -> None:
        """
        A stream factory that raises resets the stream with INTERNAL_ERROR.
        """

        def broken() -> Recorder:
            raise RuntimeError("no handler")

        pair = Pair(serverStreams=broken)
        client = Recorder()
        pair.client.openStream(client, [])
        pair.flush()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(client.reason.value.code, ErrorCode.INTERNAL_ERROR)

    def test_noStreamFactoryRefuses(self) -> None:
        """
        Without a stream factory, peer streams are refused (retriable).
        """
        pair = Pair()
        protocol = Recorder()
        pair.server.openStream(protocol, [])
        pair.flush()
        protocol.reason.trap(StreamRefused)
        self.assertEqual(pair.client.stats.streamsRefused, 1)

    def test_linkLostFailsStreams(self) -> None:
        """
        When the connection drops, open streams fail with LinkLost.
        """
        pair = Pair(serverStreams=Recorder)
        client = Recorder()
        pair.client.openStream(client, [])
        pair.flush()
        pair.client.transport.loseConnection()
        pair.flush()
        client.reason.trap(LinkLost)
        pair.serverProtocols[0].reason.trap(LinkLost)
        self.successResultOf(pair.client.whenClosed())
        self.failureResultOf(pair.client.whenReady(), LinkLost)
        self.assertRaises(LinkUnavailable, pair.client.openStream, Recorder(), [])

    def test_headersTooBig(self) -> None:
        """
        Headers that could exceed the peer's header-block limit are refused
        before anything is sent.
        """
        pair = Pair(serverOptions={"settings": Settings(maxHeaderBlock=1024)})
        self.assertRaises(
            ValueError, pair.client.openStream, Recorder(), [(b"x-big", b"v" * 2000)]
        )
        self.assertEqual(pair.client.openStreamCount, 0)
        stream = pair.client.openStream(Recorder(), [(b"x-ok", b"v" * 100)])
        self.assertRaises(ValueError, stream.sendHeaders, [(b"x-big", b"v" * 2000)])


class FlowControlTests(SynchronousTestCase):
    """
    Windows, credit on consumption, and producers.
    """

    def test_pausedStreamStallsAlone(self) -> None:
        """
        A stream whose consumer pauses stops at its window while another
        stream keeps flowing; credit returns when the consumer resumes.
        """
        window = 65536
        Sender.size = 512 * 1024
        pair = Pair(
            serverStreams=Sender,
            clientOptions={"settings": Settings(initialStreamWindow=window)},
        )
        slow, fast = Recorder(), Recorder()
        slowStream = pair.client.openStream(slow, [], endStream=True)
        slowStream.pauseProducing()
        pair.client.openStream(fast, [], endStream=True)
        pair.flush()
        self.assertEqual(len(fast.body), 512 * 1024)
        self.assertTrue(fast.done)
        self.assertEqual(slow.body, b"")
        self.assertEqual(slow.headers, [])
        self.assertEqual(slowStream.inboundBytes, window)
        serverSlow = pair.serverProtocols[0].transport
        self.assertEqual(serverSlow.record.sendWindow, 0)
        self.assertEqual(serverSlow.record.outboundBytes, 512 * 1024 - window)
        slowStream.resumeProducing()
        pair.flush()
        self.assertEqual(len(slow.body), 512 * 1024)
        self.assertTrue(slow.done)
        self.assertEqual(pair.client.connection.credit.bufferedBytes, 0)

    def test_pausedStreamsBoundedByMaxBufferedBytes(self) -> None:
        """
        Past maxBufferedBytes of paused data, connection credit is withheld
        until the data is consumed.
        """
        Sender.size = 200000
        pair = Pair(
            serverStreams=Sender,
            clientOptions={
                "settings": Settings(
                    initialStreamWindow=150000, connectionWindow=200000
                ),
                "maxBufferedBytes": 100000,
            },
        )
        streams = []
        for _ in range(3):
            protocol = Recorder()
            stream = pair.client.openStream(protocol, [], endStream=True)
            stream.pauseProducing()
            streams.append((protocol, stream))
        pair.flush()
        buffered = pair.client.connection.credit.bufferedBytes
        # Credit stopped once buffered data passed the limit: the peer's
        # connection window ran dry below 100000 + one window of data.
        self.assertLessEqual(buffered, 100000 + 200000)
        self.assertEqual(pair.server.connection.scheduler.sendWindow, 0)
        for _protocol, stream in streams:
            stream.resumeProducing()
        pair.flush()
        for protocol, _ in streams:
            self.assertEqual(len(protocol.body), 200000)
        self.assertEqual(pair.client.connection.credit.bufferedBytes, 0)

    def test_creditBatching(self) -> None:
        """
        Stream credit is sent once half the initial window is consumed.
        """
        peer = RawPeer(self, settings=Settings(initialStreamWindow=100000))
        peer.hello()
        peer.send(peer.headers(1))
        peer.send(Data(1, b"x" * 49999))
        self.assertEqual(peer.received(), [])
        peer.send(Data(1, b"x"))
        self.assertEqual(peer.received(), [Window(1, 50000)])

    def test_creditWhenWindowEmpty(self) -> None:
        """
        When the stream window drops to 0, whatever was consumed is credited.
        """
        peer = RawPeer(self, settings=Settings(initialStreamWindow=1000))
        peer.hello()
        peer.send(peer.headers(1))
        (protocol,) = peer.protocols
        protocol.transport.pauseProducing()
        peer.send(Data(1, b"x" * 1000))
        self.assertEqual(peer.received(), [])
        protocol.transport.resumeProducing()
        self.assertEqual(peer.received(), [Window(1, 1000)])
        self.assertEqual(protocol.body, b"x" * 1000)

    def test_sendRespectsWindows(self) -> None:
        """
        A sender never exceeds the stream window or the peer's frame size.
        """
        peer = RawPeer(self)
        peer.hello(initialStreamWindow=40000, maxFrameSize=16384)
        peer.send(peer.headers(1))
        (protocol,) = peer.protocols
        protocol.transport.write(b"y" * 100000)
        frames = peer.received()
        sizes = [len(f.data) for f in frames if isinstance(f, Data)]
        self.assertEqual(sizes, [16384, 16384, 40000 - 32768])
        self.assertEqual(peer.received(), [])
        peer.send(Window(1, 100000))
        sizes = [len(f.data) for f in peer.received() if isinstance(f, Data)]
        self.assertEqual(sum(sizes), 60000)
        self.assertTrue(all(s <= 16384 for s in sizes))

    def test_connectionWindowOverflowError(self) -> None:
        """
        DATA beyond the connection window is a FLOW_CONTROL_ERROR for the link.
        """
        peer = RawPeer(self, settings=Settings(connectionWindow=65535))
        peer.hello()
        peer.send(peer.headers(1))
        peer.send(Data(1, b"x" * 65535), Data(1, b"x"))
        self.assertEqual(
            [g.code for g in goAways(peer.received())], [ErrorCode.FLOW_CONTROL_ERROR]
        )
        peer.protocols[0].reason.trap(LinkLost)

    def test_streamWindowOverflowResets(self) -> None:
        """
        DATA beyond a stream window resets that stream with FLOW_CONTROL_ERROR.
        """
        peer = RawPeer(self, settings=Settings(initialStreamWindow=100))
        peer.hello()
        peer.send(peer.headers(1), Data(1, b"x" * 101))
        self.assertEqual(peer.received(), [Reset(1, ErrorCode.FLOW_CONTROL_ERROR)])
        self.assertTrue(peer.link.isReady())

    def test_windowOverflowError(self) -> None:
        """
        WINDOW increments taking a window past 2^31-1 are FLOW_CONTROL_ERRORs.
        """
        for streamId in (0, 1):
            peer = RawPeer(self)
            peer.hello()
            peer.send(peer.headers(1))
            peer.send(Window(streamId, 0x7FFFFFFF))
            self.assertEqual(
                [g.code for g in goAways(peer.received())],
                [ErrorCode.FLOW_CONTROL_ERROR],
            )

    def test_producerPausedByWindow(self) -> None:
        """
        A stream's producer is paused when its window stalls the queue, and
        resumed when credit drains it.
        """
        pair = Pair(
            serverStreams=Recorder,
            serverOptions={"settings": Settings(initialStreamWindow=65536)},
        )
        stream = pair.client.openStream(Recorder(), [])
        producer = PushProducer()
        stream.registerProducer(producer, True)
        pair.flush()
        server = pair.serverProtocols[0]
        server.transport.pauseProducing()
        stream.write(b"p" * 65536)
        self.assertTrue(producer.paused)
        pair.flush()
        self.assertFalse(producer.paused)
        stream.write(b"q" * 100000)
        pair.flush()
        # The server consumer is paused: the window is used up and the rest
        # waits, above the high-water mark.
        self.assertTrue(producer.paused)
        self.assertEqual(stream.record.sendWindow, 0)
        server.transport.resumeProducing()
        pair.flush()
        self.assertFalse(producer.paused)
        self.assertEqual(len(server.body), 165536)
        stream.unregisterProducer()
        stream.loseConnection()
        server.transport.loseConnection()
        pair.flush()
        self.assertFalse(producer.stopped)

    def test_producerStoppedOnReset(self) -> None:
        """
        A reset stops the stream's registered producer.
        """
        pair = Pair(serverStreams=Recorder)
        stream = pair.client.openStream(Recorder(), [])
        producer = PushProducer()
        stream.registerProducer(producer, True)
        self.assertRaises(RuntimeError, stream.registerProducer, PushProducer(), True)
        stream.reset()
        self.assertTrue(producer.stopped)
        late = PushProducer()
        stream.registerProducer(late, True)
        self.assertTrue(late.stopped)

    def test_pullProducer(self) -> None:
        """
        A pull producer is driven one chunk per reactor turn until it
        unregisters.
        """
        pair = Pair(serverStreams=Recorder)
        stream = pair.client.openStream(Recorder(), [])

        class Pull:
            count = 0

            def resumeProducing(self) -> None:
                self.count += 1
                stream.write(b"%d," % self.count)
                if self.count == 5:
                    stream.unregisterProducer()
                    stream.loseConnection()

            def stopProducing(self) -> None:
                pass

        stream.registerProducer(Pull(), False)
        pair.flush()
        self.assertEqual(pair.serverProtocols[0].body, b"1,2,3,4,5,")
        self.assertTrue(pair.serverProtocols[0].readLost)

    def test_transportPauseStopsData(self) -> None:
        """
        While the transport is paused the link sends no DATA and pauses
        stream producers; control frames wait; resume sends everything.
        """
        peer = RawPeer(self)
        peer.hello()
        peer.send(peer.headers(1))
        stream = peer.protocols[0].transport
        producer = PushProducer()
        stream.registerProducer(producer, True)
        peer.link.pauseProducing()
        self.assertTrue(producer.paused)
        stream.write(b"z" * 1000)
        peer.send(Ping(b"abcdefgh"))
        self.assertEqual(peer.received(), [])
        peer.link.resumeProducing()
        self.assertFalse(producer.paused)
        frames = peer.received()
        self.assertEqual(frames, [Pong(b"abcdefgh"), Data(1, b"z" * 1000)])

    def test_controlBufferBound(self) -> None:
        """
        Control frames piling up while the transport is paused abort the link.
        """
        peer = RawPeer(self)
        peer.link.maxControlBytes = 100
        peer.hello()
        peer.send(peer.headers(1))
        peer.link.pauseProducing()
        for _ in range(6):
            peer.send(Ping(b"abcdefgh"))
        self.assertTrue(peer.transport.disconnecting)
        peer.protocols[0].reason.trap(LinkLost)
        self.assertEqual(self.flushLoggedErrors(), [])


class LimitTests(SynchronousTestCase):
    """
    Limits a peer must respect.
    """

    def test_refusedPastMaxConcurrent(self) -> None:
        """
        A stream past our MAX_CONCURRENT_STREAMS is refused, not the link.
        """
        peer = RawPeer(self, settings=Settings(maxConcurrentStreams=2))
        peer.hello()
        peer.send(peer.headers(1), peer.headers(3), peer.headers(5))
        self.assertEqual(peer.received(), [Reset(5, ErrorCode.REFUSED_STREAM)])
        self.assertEqual(len(peer.protocols), 2)
        peer.protocols[0].transport.reset()
        peer.send(peer.headers(7))
        self.assertEqual(len(peer.protocols), 3)

    def test_openStreamAtPeerLimit(self) -> None:
        """
        openStream refuses to go past the peer's MAX_CONCURRENT_STREAMS.
        """
        pair = Pair(serverOptions={"settings": Settings(maxConcurrentStreams=2)})
        first = pair.client.openStream(Recorder(), [])
        pair.client.openStream(Recorder(), [])
        self.assertRaises(LinkUnavailable, pair.client.openStream, Recorder(), [])
        first.reset()
        pair.client.openStream(Recorder(), [])

    def test_streamIdRules(self) -> None:
        """
        A peer stream id not above the last, of the wrong parity, or a frame
        on a stream that never existed is a PROTOCOL_ERROR (late frames on
        closed streams are ignored).
        """
        cases = [
            [Data(1, b"x")],  # DATA before the stream opened
            [Window(3, 1)],
            [Reset(9, 0)],
        ]
        for frames in cases:
            peer = RawPeer(self)
            peer.hello()
            peer.send(*frames)
            self.assertEqual(
                [g.code for g in goAways(peer.received())], [ErrorCode.PROTOCOL_ERROR]
            )
        # Wrong parity: the accepting side opens even ids, so the dialer may
        # not send HEADERS on an even id the acceptor never opened.
        peer = RawPeer(self)
        peer.hello()
        peer.send(peer.headers(2))
        self.assertEqual(
            [g.code for g in goAways(peer.received())], [ErrorCode.PROTOCOL_ERROR]
        )
        # Not above the last: ignored as a late frame, never a new stream.
        peer = RawPeer(self)
        peer.hello()
        peer.send(peer.headers(5), peer.headers(3))
        self.assertEqual(len(peer.protocols), 1)
        self.assertTrue(peer.link.isReady())

    def test_badRequestId(self) -> None:
        """
        An opening block without a valid :request-id is refused with a RESET.
        """
        peer = RawPeer(self)
        peer.hello()
        peer.send(peer.headers(1, requestId=b""), peer.headers(3, requestId=b"xyz!"))
        self.assertEqual(
            peer.received(),
            [Reset(1, ErrorCode.PROTOCOL_ERROR), Reset(3, ErrorCode.PROTOCOL_ERROR)],
        )
        self.assertEqual(peer.protocols, [])

    def test_requestIdAnywhere(self) -> None:
        """
        The request id is taken from the first :request-id wherever it is,
        and every :request-id is removed from the headers handed up.
        """
        peer = RawPeer(self)
        peer.hello()
        peer.send(
            peer.headers(1, [(b":path", b"/a"), (b":request-id", b"ff")]),
            Headers(
                3,
                peer.encoder.encode(
                    [
                        (b":path", b"/b"),
                        (b":request-id", b"abc"),
                        (b":request-id", b"d"),
                    ]
                ),
            ),
        )
        self.assertEqual(
            [(p.transport.requestId, p.headers[0][0]) for p in peer.protocols],
            [("0123abcd", [(b":path", b"/a")]), ("abc", [(b":path", b"/b")])],
        )

    def test_rapidReset(self) -> None:
        """
        Streams opened and reset faster than maxResetsPerSecond get
        ENHANCE_YOUR_CALM; the same count spread over time is fine.
        """
        peer = RawPeer(self, maxResetsPerSecond=10)
        peer.hello()
        for i in range(10):
            peer.send(peer.headers(2 * i + 1), Reset(2 * i + 1, ErrorCode.CANCEL))
            peer.clock.advance(0.2)
        self.assertTrue(peer.link.isReady())
        for i in range(10, 21):
            peer.send(peer.headers(2 * i + 1), Reset(2 * i + 1, ErrorCode.CANCEL))
        self.assertEqual(
            [g.code for g in goAways(peer.received())], [ErrorCode.ENHANCE_YOUR_CALM]
        )

    def test_refusalsCountAsResets(self) -> None:
        """
        Refused streams count toward the rapid-reset limit.
        """
        peer = RawPeer(
            self, maxResetsPerSecond=5, settings=Settings(maxConcurrentStreams=0)
        )
        peer.hello()
        for i in range(6):
            peer.send(peer.headers(2 * i + 1))
        self.assertEqual(goAways(peer.received())[0].code, ErrorCode.ENHANCE_YOUR_CALM)

    def test_provokedResetsCount(self) -> None:
        """
        Resets the link sends because the peer broke a stream rule (DATA
        after END_STREAM, HEADERS after END_STREAM, DATA beyond the stream
        window) count toward the rapid-reset limit too ("MadeYouReset"):
        a peer cannot have stream after stream opened and reset without
        sending a RESET itself.
        """
        peer = RawPeer(self, maxResetsPerSecond=10)
        peer.hello()
        for i in range(4):
            sid = 2 * i + 1
            peer.send(peer.headers(sid, endStream=True), Data(sid, b"x"))
            sid += 8
            peer.send(peer.headers(sid, endStream=True), peer.headers(sid))
        self.assertTrue(peer.link.isReady())
        for i in range(8, 14):
            sid = 2 * i + 1
            peer.send(peer.headers(sid, endStream=True), Data(sid, b"x"))
        frames = peer.received()
        # Eight provoked resets were fine; the eleventh went over the limit.
        self.assertEqual(len([f for f in frames if isinstance(f, Reset)]), 11)
        self.assertEqual(
            [g.code for g in goAways(frames)], [ErrorCode.ENHANCE_YOUR_CALM]
        )

    def test_pingFlood(self) -> None:
        """
        More than maxPingsPerSecond PINGs get ENHANCE_YOUR_CALM.
        """
        peer = RawPeer(self)
        peer.hello()
        peer.send(*[Ping(b"%08d" % i) for i in range(100)])
        frames = peer.received()
        self.assertEqual(len(frames), 100)
        self.assertEqual(frames[-1], Pong(b"00000099"))
        peer.send(Ping(b"flooding"))
        self.assertEqual(
            [g.code for g in goAways(peer.received())], [ErrorCode.ENHANCE_YOUR_CALM]
        )

    def test_frameTooLarge(self) -> None:
        """
        A frame above our MAX_FRAME_SIZE is a FRAME_SIZE_ERROR.
        """
        peer = RawPeer(self, settings=Settings(maxFrameSize=16384))
        peer.hello()
        peer.send(peer.headers(1))
        peer.sendBytes(frameHeader(0, 0, 1, 16385))
        self.assertEqual(
            [g.code for g in goAways(peer.received())], [ErrorCode.FRAME_SIZE_ERROR]
        )

    def test_headerBlockTooLarge(self) -> None:
        """
        HEADERS above MAX_HEADER_BLOCK is a FRAME_SIZE_ERROR.
        """
        peer = RawPeer(self, settings=Settings(maxHeaderBlock=1024))
        peer.hello()
        peer.sendBytes(frameHeader(1, 0, 1, 1025))
        self.assertEqual(
            [g.code for g in goAways(peer.received())], [ErrorCode.FRAME_SIZE_ERROR]
        )

    def test_headerListTooLarge(self) -> None:
        """
        A header list decoding past maxHeaderListSize is a COMPRESSION_ERROR.
        """
        peer = RawPeer(self, maxHeaderListSize=4096)
        peer.hello()
        peer.send(peer.headers(1, [(b"x-big", b"v" * 5000)]))
        self.assertEqual(
            [g.code for g in goAways(peer.received())], [ErrorCode.COMPRESSION_ERROR]
        )
        self.assertEqual(peer.protocols, [])

    def test_badHeaderBlock(self) -> None:
        """
        An undecodable HPACK block is a COMPRESSION_ERROR.
        """
        peer = RawPeer(self)
        peer.hello()
        peer.send(Headers(1, b"\xff\xff\xff\xff"))
        self.assertEqual(
            [g.code for g in goAways(peer.received())], [ErrorCode.COMPRESSION_ERROR]
        )

    def test_tooManyHeaderBlocks(self) -> None:
        """
        Endless HEADERS frames on one stream get it reset.
        """
        peer = RawPeer(self)
        peer.hello()
        peer.send(*[peer.headers(1) for _ in range(17)])
        self.assertEqual(peer.received(), [Reset(1, ErrorCode.ENHANCE_YOUR_CALM)])

    def test_unknownFrameIgnored(self) -> None:
        """
        A frame of unknown type is counted and ignored.
        """
        peer = RawPeer(self)
        peer.hello()
        peer.send(Unknown(0x42, 0xFF, 7, b"future"), Ping(b"stillok!"))
        self.assertEqual(peer.received(), [Pong(b"stillok!")])
        self.assertEqual(peer.link.stats.unknownFrames, 1)

    def test_dataAfterEndStream(self) -> None:
        """
        DATA after the peer's END_STREAM resets the stream with STREAM_CLOSED.
        """
        peer = RawPeer(self)
        peer.hello()
        peer.send(peer.headers(1, endStream=True), Data(1, b"late"))
        self.assertEqual(peer.received(), [Reset(1, ErrorCode.STREAM_CLOSED)])

    def test_garbageAfterHello(self) -> None:
        """
        Garbage after HELLO closes the link with a GOAWAY, streams LinkLost.
        """
        peer = RawPeer(self)
        peer.hello()
        peer.send(peer.headers(1))
        peer.sendBytes(b"\x00\x00\x04\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00")
        (goAway,) = goAways(peer.received())
        self.assertEqual(goAway.code, ErrorCode.PROTOCOL_ERROR)
        self.assertEqual(goAway.lastStreamId, 1)
        peer.protocols[0].reason.trap(LinkLost)
        peer.sendBytes(b"more ignored")


class LivenessTests(SynchronousTestCase):
    """
    PING/PONG round-trip time and dead-peer detection.
    """

    def test_pingRtt(self) -> None:
        """
        Each side pings every pingInterval and records the RTT of the PONG.
        """
        pair = Pair()
        self.assertIsNone(pair.client.rtt)
        pair.clock.advance(10)
        pair.clock.advance(0)  # flush: the PINGs are written
        pair.clock.advance(0.05)
        pair.flush()
        self.assertAlmostEqual(pair.client.lastRtt, 0.05)
        self.assertAlmostEqual(pair.client.rtt, 0.05)
        self.assertAlmostEqual(pair.server.lastRtt, 0.05)
        pair.clock.advance(9.95)
        pair.clock.advance(0)
        pair.clock.advance(0.13)
        pair.flush()
        self.assertAlmostEqual(pair.client.lastRtt, 0.13)
        self.assertAlmostEqual(pair.client.rtt, 0.875 * 0.05 + 0.125 * 0.13)
        self.assertEqual(pair.client.stats.pingsSent, 2)
        self.assertEqual(pair.client.stats.pongsReceived, 2)

    def test_pingTimeout(self) -> None:
        """
        No PONG within pingTimeout aborts the link and fails its streams with
        LinkLost.
        """
        peer = RawPeer(self, pingInterval=5.0, pingTimeout=7.0)
        peer.hello()
        peer.send(peer.headers(1))
        peer.clock.advance(5)
        (ping,) = peer.received()
        self.assertIsInstance(ping, Ping)
        peer.clock.advance(5)
        self.assertEqual(peer.received(), [])  # no second PING while one is out
        self.assertFalse(peer.transport.disconnecting)
        peer.clock.advance(2)
        self.assertTrue(peer.transport.disconnecting)
        peer.protocols[0].reason.trap(LinkLost)
        peer.link.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(peer.closedDeferred)
        self.assertEqual(peer.clock.getDelayedCalls(), [])

    def test_pongKeepsAlive(self) -> None:
        """
        A PONG in time keeps the link up, and pingInterval=0 disables pings.
        """
        peer = RawPeer(self, pingInterval=5.0, pingTimeout=7.0)
        peer.hello()
        for _ in range(5):
            peer.clock.advance(5)
            (ping,) = peer.received()
            peer.send(Pong(ping.opaque))
        self.assertTrue(peer.link.isReady())
        quiet = RawPeer(self, pingInterval=0)
        quiet.hello()
        quiet.clock.advance(100)
        self.assertEqual(quiet.received(), [])


class DrainTests(SynchronousTestCase):
    """
    GOAWAY: draining one side, both sides, and errors.
    """

    def test_goAwayDrain(self) -> None:
        """
        After GOAWAY, streams above the last accepted id fail with
        StreamRefused, open ones finish, then the link closes.
        """
        pair = Pair(serverStreams=Recorder)
        first = Recorder()
        firstStream = pair.client.openStream(first, [])
        pair.flush()
        closed = pair.server.goAway(reason="maintenance")
        self.assertTrue(pair.server.isDraining())
        self.assertRaises(LinkUnavailable, pair.server.openStream, Recorder(), [])
        late = Recorder()
        pair.client.openStream(late, [])  # crosses the GOAWAY
        pair.flush()
        late.reason.trap(StreamRefused)
        self.assertTrue(pair.client.isDraining())
        self.assertRaises(LinkUnavailable, pair.client.openStream, Recorder(), [])
        self.assertEqual(len(pair.serverProtocols), 1)
        self.assertNoResult(closed)
        server = pair.serverProtocols[0]
        server.transport.write(b"final")
        server.transport.loseConnection()
        firstStream.loseConnection()
        pair.flush()
        self.assertEqual(first.body, b"final")
        first.reason.trap(ConnectionDone)
        self.successResultOf(closed)
        self.successResultOf(pair.client.whenClosed())

    def test_goAwayIdle(self) -> None:
        """
        Draining a link without streams closes it at once.
        """
        pair = Pair()
        d = pair.client.goAway()
        pair.flush()
        self.successResultOf(d)
        self.successResultOf(pair.server.whenClosed())
        # Once closed, goAway just reports the close.
        self.successResultOf(pair.client.goAway())

    def test_drainTimeout(self) -> None:
        """
        Streams still open drainTimeout after GOAWAY are failed and the link
        aborted.
        """
        pair = Pair(serverStreams=Recorder, serverOptions={"drainTimeout": 5.0})
        client = Recorder()
        pair.client.openStream(client, [])
        pair.flush()
        closed = pair.server.goAway()
        pair.flush()
        pair.clock.advance(5)
        pair.flush()
        pair.serverProtocols[0].reason.trap(LinkLost)
        client.reason.trap(LinkLost)
        self.successResultOf(closed)

    def test_goAwayWithError(self) -> None:
        """
        goAway with an error code closes at once; the peer fails its streams
        and whenReady-style waiters see the code.
        """
        pair = Pair(serverStreams=Recorder)
        client = Recorder()
        pair.client.openStream(client, [])
        pair.flush()
        closed = pair.server.goAway(ErrorCode.INTERNAL_ERROR, "bye")
        pair.flush()
        self.successResultOf(closed)
        client.reason.trap(LinkLost)
        pair.serverProtocols[0].reason.trap(LinkLost)

    def test_peerGoAwayRefusesAbove(self) -> None:
        """
        A received GOAWAY fails only our streams above its last stream id.
        """
        peer = RawPeer(self, isDialer=True)
        peer.received()
        peer.send(Hello(1, b"", Settings()))
        protocols = [Recorder() for _ in range(3)]
        for p in protocols:
            peer.link.openStream(p, [])
        peer.received()
        peer.send(GoAway(3, ErrorCode.NO_ERROR, "drain"))
        self.assertIsNone(protocols[0].reason)
        self.assertIsNone(protocols[1].reason)
        protocols[2].reason.trap(StreamRefused)
        self.assertTrue(peer.link.isDraining())

    def test_errorGoAwayWhileDraining(self) -> None:
        """
        A GOAWAY with an error after a graceful one, refusing the streams
        the drain was waiting for, closes the link once: the drain ending
        on the way does not close the transport a second time.
        """
        peer = RawPeer(self, isDialer=True)
        peer.received()
        peer.send(Hello(1, b"", Settings()))
        protocols = [Recorder() for _ in range(2)]
        for p in protocols:
            peer.link.openStream(p, [])
        peer.received()
        peer.send(GoAway(3, ErrorCode.NO_ERROR, "drain"))
        self.assertTrue(peer.link.isDraining())
        peer.send(GoAway(0, ErrorCode.INTERNAL_ERROR, "gone"))
        for p in protocols:
            self.assertIsNotNone(p.reason)
        self.assertTrue(peer.transport.disconnecting)
        self.assertFalse(peer.link.isReady())

    def test_factoryGoAwayAll(self) -> None:
        """
        The server factory tracks live links and drains them all.
        """
        clock = Clock()
        serverFactory = LinkServerFactory(
            token=TOKEN, clock=clock, streamFactory=lambda s: Recorder(), pingInterval=0
        )
        clientFactory = LinkClientFactory(token=TOKEN, clock=clock)
        pumps = []
        for _ in range(2):
            client, server, pump = iosim.connectedServerAndClient(
                lambda: serverFactory.buildProtocol(None),
                lambda: clientFactory.buildProtocol(None),
                clock=clock,
            )
            self.assertTrue(client.isReady())
            pumps.append(pump)
        self.assertEqual(len(serverFactory.links), 2)
        self.assertEqual(len(clientFactory.links), 2)
        d = serverFactory.goAwayAll()
        for pump in pumps:
            pump.flush()
        self.successResultOf(d)
        self.assertEqual(serverFactory.links, set())
        self.assertEqual(clientFactory.links, set())


randomFrames = st.lists(
    st.one_of(
        st.builds(Data, st.integers(1, 9), st.binary(max_size=50), st.booleans()),
        st.builds(
            Headers,
            st.integers(1, 9),
            st.one_of(
                st.binary(max_size=20),
                st.just(HeaderBlockEncoder().encode([(b":request-id", b"ab")])),
            ),
            st.booleans(),
        ),
        st.builds(Window, st.integers(0, 9), st.integers(1, 0x7FFFFFFF)),
        st.builds(Reset, st.integers(1, 9), st.integers(0, 20)),
        st.builds(Ping, st.binary(min_size=8, max_size=8)),
        st.builds(Pong, st.binary(min_size=8, max_size=8)),
        st.builds(GoAway, st.integers(0, 9), st.integers(0, 20), st.text(max_size=10)),
        st.builds(Hello, st.just(1), st.just(TOKEN)),
        st.builds(Unknown, st.integers(8, 255), st.just(0), st.just(0), st.just(b"")),
    ),
    max_size=25,
)


class FuzzTests(SynchronousTestCase):
    """
    Arbitrary frame sequences never break the link's own invariants.
    """

    @settings(max_examples=300, deadline=None)
    @given(randomFrames, st.booleans())
    def test_randomFrames(self, frames: list[Any], dialer: bool) -> None:
        """
        Whatever frames follow the HELLO, the link raises nothing, logs no
        unexpected error, and is either still ready or has sent a GOAWAY and
        closed.
        """
        peer = RawPeer(self, isDialer=dialer)
        peer.received()
        peer.send(Hello(1, b"" if dialer else TOKEN, Settings()))
        if dialer:
            for _ in range(2):
                peer.link.openStream(Recorder(), [])
        for frame in frames:
            peer.send(frame)
            peer.clock.advance(0.01)
        out = peer.received()
        self.assertEqual(self.flushLoggedErrors(), [])
        if not peer.link.isReady():
            self.assertTrue(peer.transport.disconnecting)
        if goAways(out):
            self.assertTrue(peer.transport.disconnecting)


class DeliveryTests(SynchronousTestCase):
    """
    Handlers hear of a change only once the link has made all of it, and
    never from inside another of their own callbacks.
    """

    def test_linkLostSeenWhole(self) -> None:
        """
        When the link is lost, every stream's handler sees it already
        without any open stream: none hears of it half way through.
        """
        peer = RawPeer(self, isDialer=True)
        peer.send(Hello(1, b"", Settings()))
        seen: list[tuple[int, bool]] = []

        class Watcher(Recorder):
            def connectionLost(self, reason: Failure = ConnectionDone) -> None:  # type: ignore[assignment]
                super().connectionLost(reason)
                seen.append((peer.link.openStreamCount, peer.link.isReady()))

        for _ in range(3):
            peer.link.openStream(Watcher(), [])
        peer.link.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(seen, [(0, False)] * 3)

    def test_closeFromInsideHandler(self) -> None:
        """
        A handler that closes the link from its C{headersReceived} hears
        C{connectionLost} after that call returned, not inside it.
        """
        peer = RawPeer(self, isDialer=True)
        peer.send(Hello(1, b"", Settings()))

        class Closer(Recorder):
            def headersReceived(
                self, headers: list[tuple[bytes, bytes]], endStream: bool
            ) -> None:
                super().headersReceived(headers, endStream)
                peer.link.goAway(ErrorCode.INTERNAL_ERROR, "handler gave up")
                self.events.append("returned")

        closer = Closer()
        peer.link.openStream(closer, [])
        peer.received()
        peer.send(Headers(1, peer.encoder.encode([(b":status", b"200")]), False))
        self.assertEqual(closer.events, ["made", "headers", "returned", "lost"])
        closer.reason.trap(LinkLost)
        self.assertTrue(peer.transport.disconnecting)
