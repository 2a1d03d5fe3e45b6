"""
Request bodies stream through the edge as they arrive: L{RequestBody} on its
own, and a body seen at the origin before the client has finished sending it.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from railgun.edge.body import HOLD_LIMIT, RequestBody
from tests.harness import HOST, Deployment


class _Consumer:
    def __init__(self):
        self.data = []
        self.producer = None

    def registerProducer(self, producer, streaming):
        assert streaming
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None

    def write(self, data):
        self.data.append(data)


class RequestBodyTests(SynchronousTestCase):
    """
    L{RequestBody} holds only what no consumer takes, pauses the client
    beyond a bound, and relays in order.
    """

    def setUp(self):
        self.reading = []
        self.body = RequestBody(
            None,
            lambda: self.reading.append("pause"),
            lambda: self.reading.append("resume"),
        )

    def test_heldUntilAttached(self):
        """
        Data before a consumer is attached is held, then written in order
        when one is.
        """
        self.body.dataReceived(b"a")
        self.body.dataReceived(b"b")
        consumer = _Consumer()
        self.body.attach(consumer, lambda: None)
        self.body.dataReceived(b"c")
        self.assertEqual(consumer.data, [b"a", b"b", b"c"])
        self.assertEqual(self.body.forwarded, 3)

    def test_pausesReadingBeyondLimit(self):
        """
        Holding HOLD_LIMIT bytes pauses reading from the client; the consumer
        taking them resumes it.
        """
        self.body.dataReceived(b"x" * (HOLD_LIMIT - 1))
        self.assertEqual(self.reading, [])
        self.body.dataReceived(b"x")
        self.assertEqual(self.reading, ["pause"])
        consumer = _Consumer()
        self.body.attach(consumer, lambda: None)
        self.assertEqual(self.reading, ["pause", "resume"])
        self.assertEqual(sum(map(len, consumer.data)), HOLD_LIMIT)

    def test_consumerPauses(self):
        """
        A paused consumer gets nothing; resumed, it gets what was held.
        """
        consumer = _Consumer()
        self.body.attach(consumer, lambda: None)
        consumer.producer.pauseProducing()
        self.body.dataReceived(b"held")
        self.assertEqual(consumer.data, [])
        consumer.producer.resumeProducing()
        self.assertEqual(consumer.data, [b"held"])

    def test_endAfterAllWritten(self):
        """
        onEnd is called once the body is complete and all of it was
        written, and the consumer is released.
        """
        ended = []
        consumer = _Consumer()
        self.body.attach(consumer, lambda: ended.append(True))
        consumer.producer.pauseProducing()
        self.body.dataReceived(b"last")
        self.body.finished()
        self.assertEqual(ended, [])
        consumer.producer.resumeProducing()
        self.assertEqual(ended, [True])
        self.assertIsNone(consumer.producer)

    def test_detachDiscards(self):
        """
        After detach, arriving data is dropped and reading resumes.
        """
        self.body.dataReceived(b"x" * HOLD_LIMIT)
        self.body.detach()
        self.assertEqual(self.reading, ["pause", "resume"])
        self.body.dataReceived(b"more")
        consumer = _Consumer()
        self.body.attach(consumer, lambda: None)
        self.assertEqual(consumer.data, [])

    def test_releaseKeepsBody(self):
        """
        A consumer released before taking anything (its stream failed) leaves
        the body for the next one.
        """
        first = _Consumer()
        self.body.attach(first, lambda: None)
        first.producer.pauseProducing()
        self.body.dataReceived(b"data")
        first.producer.stopProducing()
        second = _Consumer()
        self.body.attach(second, lambda: None)
        self.assertEqual(second.data, [b"data"])


class _RecordingOrigin(Protocol):
    """
    A raw origin server recording what it receives, never answering.
    """

    def connectionMade(self):
        self.factory.connections.append(self)
        self.received = b""

    def dataReceived(self, data):
        self.received += data


class StreamingUploadTests(TestCase):
    """
    The origin sees the start of a body while the client is still sending.
    """

    timeout = 30

    @inlineCallbacks
    def test_bodyStreamsBeforeComplete(self):
        """
        A client sends a request head and half its body, then waits: the
        origin server already has the head and that half.
        """
        factory = Factory.forProtocol(_RecordingOrigin)
        factory.connections = []
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            factory
        )
        self.addCleanup(port.stopListening)
        d = Deployment()
        yield d.start(originURL=f"http://127.0.0.1:{port.getHost().port}")
        self.addCleanup(d.stop)
        yield d.edge.whenLinked()

        half = b"A" * 50_000
        client = yield TCP4ClientEndpoint(reactor, "127.0.0.1", d.edgePort).connect(
            Factory.forProtocol(Protocol)
        )
        self.addCleanup(client.transport.abortConnection)
        client.transport.write(
            b"PUT /upload HTTP/1.1\r\nHost: "
            + HOST.encode()
            + b"\r\nContent-Length: 100000\r\n\r\n"
            + half
        )
        deadline = reactor.seconds() + 10
        while True:
            received = factory.connections[0].received if factory.connections else b""
            if received.endswith(half):
                break
            self.assertLess(
                reactor.seconds(), deadline, f"origin got {len(received)} bytes"
            )
            yield deferLater(reactor, 0.02, lambda: None)
        head, _, body = received.partition(b"\r\n\r\n")
        self.assertIn(b"PUT /upload HTTP/1.1", head)
        self.assertIn(b"Content-Length: 100000", head)
        self.assertEqual(body, half)
