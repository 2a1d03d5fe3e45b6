"""
Over real TLS on loopback: slow clients are not taken for stalled origins.
A client that stops reading for longer than the origin role's response
timeout (a paused download, a video player with a full buffer) gets its
whole body; an upload that lasts longer than that timeout, but keeps
coming, gets its answer.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from tests.harness import HOST, Deployment

SIZE = 32 * 1024 * 1024


class _PausingReader(Protocol):
    """
    GET /big, stop reading at the first bytes for C{pause} seconds, then
    read to the end of the body its Content-Length announces.
    """

    def __init__(self, done: Deferred, pause: float) -> None:
        self.done = done
        self.pause = pause
        self.buffer = b""
        self.head = None
        self.body = 0
        self.paused = False

    def connectionMade(self) -> None:
        self.transport.write(
            b"GET /big HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n\r\n"
        )

    def dataReceived(self, data: bytes) -> None:
        if not self.paused:
            self.paused = True
            self.transport.pauseProducing()
            reactor.callLater(self.pause, self.transport.resumeProducing)
        if self.head is None:
            self.buffer += data
            if b"\r\n\r\n" not in self.buffer:
                return
            self.head, _, data = self.buffer.partition(b"\r\n\r\n")
            length = [
                line
                for line in self.head.lower().split(b"\r\n")
                if line.startswith(b"content-length:")
            ]
            self.length = int(length[0].split(b":")[1]) if length else None
        self.body += len(data)
        if self.length is not None and self.body >= self.length:
            self.transport.loseConnection()

    def connectionLost(self, reason) -> None:
        self.done.callback(self)


class _SteadyUploader(Protocol):
    """
    POST 64 KiB to /upload, 8 KiB every 0.4 s (about 3 s in all).
    """

    def __init__(self, done: Deferred) -> None:
        self.done = done
        self.received = b""
        self.left = 8

    def connectionMade(self) -> None:
        self.transport.write(
            b"POST /upload HTTP/1.1\r\nHost: "
            + HOST.encode()
            + b"\r\nContent-Length: 65536\r\n\r\n"
        )
        self.call = reactor.callLater(0.4, self.more)

    def more(self) -> None:
        if self.left:
            self.left -= 1
            self.transport.write(b"u" * 8192)
            self.call = reactor.callLater(0.4, self.more)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        head, sep, body = self.received.partition(b"\r\n\r\n")
        lengths = [
            line.split(b":")[1]
            for line in head.lower().split(b"\r\n")
            if line.startswith(b"content-length:")
        ]
        if sep and lengths and len(body) >= int(lengths[0]):
            self.transport.loseConnection()

    def connectionLost(self, reason) -> None:
        if self.call.active():
            self.call.cancel()
        self.done.callback(self.received)


class SlowClientTests(TestCase):
    """
    An origin role with a one-second response timeout, and clients slower
    than that.
    """

    timeout = 60

    @inlineCallbacks
    def setUp(self):
        self.d = Deployment()
        yield self.d.start(bigSize=SIZE, originOptions={"responseTimeout": 1.0})
        self.addCleanup(self.d.stop)
        yield self.d.edge.whenLinked()

    @inlineCallbacks
    def test_pausedReaderGetsWholeBody(self):
        """
        A client that reads nothing for three seconds gets the whole body
        afterwards: the origin role's timer does not count time the edge's
        client held the body back.
        """
        done: Deferred = Deferred()
        yield TCP4ClientEndpoint(reactor, "127.0.0.1", self.d.edgePort).connect(
            Factory.forProtocol(lambda: _PausingReader(done, pause=3.0))
        )
        reader = yield done
        self.assertTrue(reader.head.startswith(b"HTTP/1.1 200 "), reader.head)
        self.assertEqual((reader.length, reader.body), (SIZE, SIZE))

    @inlineCallbacks
    def test_steadyUploadLongerThanTimeout(self):
        """
        An upload that takes three seconds, bytes arriving all along, is
        answered (the origin server counts what it got).
        """
        done: Deferred = Deferred()
        yield TCP4ClientEndpoint(reactor, "127.0.0.1", self.d.edgePort).connect(
            Factory.forProtocol(lambda: _SteadyUploader(done))
        )
        answer = yield done
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 "), answer[:200])
        self.assertIn(b"65536 ", answer)
