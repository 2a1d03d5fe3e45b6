"""
L{railgun._sockets}: read size, eager writes and no-delay on the socket
under a transport's wrapping layers.
"""

from __future__ import annotations

import os

from twisted.internet import reactor, tcp
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    wrapClientTLS,
)
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IPullProducer, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.internet.task import deferLater
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from railgun._sockets import (
    TUNED_BUFFER,
    _EagerWrites,
    noDelay,
    tuneForVolume,
    writeEagerly,
)


@inlineCallbacks
def _connectTLS(case):
    """
    Connect a TLS client to a loopback TCP server, for C{case}.

    @return: a Deferred of the client protocol, over a TLS transport.
    """
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Factory.forProtocol(Protocol)
    )
    case.addCleanup(port.stopListening)
    endpoint = wrapClientTLS(
        CertificateOptions(verify=False),
        TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port),
    )
    protocol = yield endpoint.connect(Factory.forProtocol(Protocol))
    case.addCleanup(protocol.transport.abortConnection)
    return protocol


class TuneTests(SynchronousTestCase):
    """
    Transports that are not sockets are left alone.
    """

    def test_inMemory(self):
        """
        An in-memory transport (no socket) is not touched.
        """
        transport = StringTransport()
        tuneForVolume(transport)
        self.assertFalse(hasattr(transport, "bufferSize"))


class TuneSocketTests(TestCase):
    """
    Real TCP and TLS transports get the larger buffer on their socket.
    """

    @inlineCallbacks
    def test_throughTLS(self):
        """
        A TLS transport's underlying TCP transport is tuned.
        """
        protocol = yield _connectTLS(self)
        tuneForVolume(protocol.transport)
        self.assertEqual(protocol.transport.transport.bufferSize, TUNED_BUFFER)


class _Collect(Protocol):
    """
    Keeps what it receives; C{done} fires with it when the connection ends.
    """

    def __init__(self):
        self.received = []
        self.done = Deferred()

    def dataReceived(self, data):
        self.received.append(data)

    def connectionLost(self, reason):
        self.done.callback(b"".join(self.received))


class _Lost(Protocol):
    """
    Remembers why its connection ended.
    """

    reason = None

    def __init__(self):
        self.lost = Deferred()

    def connectionLost(self, reason):
        self.reason = reason
        self.lost.callback(None)


class EagerWriteTests(TestCase):
    """
    L{writeEagerly} on real loopback TCP connections: what is written to an
    idle socket leaves in C{write()}; everything else keeps Twisted's
    behaviour (order, back-pressure, producers, errors).
    """

    @inlineCallbacks
    def _connect(self, client=Protocol, server=None):
        """
        Connect a C{client} protocol to a server whose connections are
        C{_Collect}s (or C{server}'s).

        @return: (client protocol, Deferred of the server protocol)
        """
        accepted = Deferred()

        class Accept(Factory):
            def buildProtocol(self, addr):
                protocol = (server or _Collect)()
                reactor.callLater(0, accepted.callback, protocol)
                return protocol

        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Accept()
        )
        self.addCleanup(port.stopListening)
        protocol = yield TCP4ClientEndpoint(
            reactor, "127.0.0.1", port.getHost().port
        ).connect(Factory.forProtocol(client))
        self.addCleanup(protocol.transport.abortConnection)
        return protocol, accepted

    def assertNothingWaiting(self, transport):
        self.assertEqual(transport._tempDataLen, 0)
        self.assertEqual(transport.offset, len(transport.dataBuffer))
        self.assertNotIn(transport, reactor.getWriters())

    def test_notASocket(self):
        """
        An in-memory transport is left alone.
        """
        self.assertFalse(writeEagerly(StringTransport()))

    @inlineCallbacks
    def test_sendsInWrite(self):
        """
        A small write to an eager transport has left when C{write()}
        returns: nothing is buffered and the reactor does not watch the
        socket for writability. Twisted's own transport waits for the
        reactor (the control).
        """
        protocol, accepted = yield self._connect()
        transport = protocol.transport
        transport.write(b"before")
        self.assertIn(transport, reactor.getWriters())
        self.assertTrue(writeEagerly(protocol))
        self.assertTrue(writeEagerly(protocol))  # idempotent
        yield deferLater(reactor, 0.01, lambda: None)
        transport.write(b"x" * 1000)
        self.assertNothingWaiting(transport)
        transport.writeSequence([b"a", b"b", b"c"])
        self.assertNothingWaiting(transport)
        transport.loseConnection()
        server = yield accepted
        received = yield server.done
        self.assertEqual(received, b"before" + b"x" * 1000 + b"abc")

    @inlineCallbacks
    def test_largeWritesKeepOrder(self):
        """
        A write larger than the socket takes sends what it can and buffers
        the rest; writes after it queue behind it, and everything arrives in
        order.
        """
        protocol, accepted = yield self._connect()
        transport = protocol.transport
        self.assertTrue(writeEagerly(transport))
        big = os.urandom(16 * 1024 * 1024)
        transport.write(big)
        self.assertGreater(transport._tempDataLen, 0)  # the socket was full
        # Let the peer empty the socket while the rest waits in the buffer
        # (the reactor is kept from sending it meanwhile): the socket would
        # take the next write at once, which must still queue behind.
        reactor.removeWriter(transport)
        yield deferLater(reactor, 0.2, lambda: None)
        transport.write(b"tail")
        reactor.addWriter(transport)
        transport.writeSequence([b"-", b"end"])
        transport.loseConnection()
        server = yield accepted
        received = yield server.done
        self.assertEqual(len(received), len(big) + 8)
        self.assertTrue(received == big + b"tail-end")

    @inlineCallbacks
    def test_pullProducer(self):
        """
        A pull producer is asked for more each time its write has drained,
        as with Twisted's transport: an eager write would leave nothing to
        drain, so none is made while one is registered.
        """
        protocol, accepted = yield self._connect()
        transport = protocol.transport
        self.assertTrue(writeEagerly(transport))

        @implementer(IPullProducer)
        class Chunks:
            sent = 0

            def resumeProducing(self):
                if self.sent == 50:
                    transport.unregisterProducer()
                    transport.loseConnection()
                    return
                self.sent += 1
                transport.write(b"%03d" % self.sent)

            def stopProducing(self):
                pass

        transport.registerProducer(Chunks(), False)
        server = yield accepted
        received = yield server.done
        self.assertEqual(received, b"".join(b"%03d" % i for i in range(1, 51)))

    @inlineCallbacks
    def test_streamingProducerPaused(self):
        """
        A streaming producer is paused when a write leaves more than
        C{bufferSize} buffered, and resumed once it has drained.
        """

        class Slow(_Collect):
            def connectionMade(self):
                self.transport.pauseProducing()

        protocol, accepted = yield self._connect(server=Slow)
        transport = protocol.transport
        self.assertTrue(writeEagerly(transport))
        calls = []

        @implementer(IPushProducer)
        class Producer:
            def pauseProducing(self):
                calls.append("pause")

            def resumeProducing(self):
                calls.append("resume")

            def stopProducing(self):
                pass

        transport.registerProducer(Producer(), True)
        transport.write(b"z" * (16 * 1024 * 1024))
        self.assertEqual(calls, ["pause"])
        server = yield accepted
        server.transport.resumeProducing()
        while calls == ["pause"]:
            yield deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(calls, ["pause", "resume"])
        transport.unregisterProducer()
        transport.loseConnection()
        received = yield server.done
        self.assertEqual(len(received), 16 * 1024 * 1024)

    @inlineCallbacks
    def test_peerGone(self):
        """
        Writing after the peer has closed raises nothing in C{write()}: the
        connection is lost through the reactor, as with Twisted's transport.
        """

        class Closes(_Collect):
            def connectionMade(self):
                self.transport.abortConnection()

        protocol, accepted = yield self._connect(client=_Lost, server=Closes)
        transport = protocol.transport
        self.assertTrue(writeEagerly(transport))
        yield accepted
        yield deferLater(reactor, 0.05, lambda: None)
        if transport.connected:
            for _ in range(100):
                transport.write(b"y" * 65536)
        yield protocol.lost
        self.assertTrue(protocol.reason.check(ConnectionDone, ConnectionLost))

    @inlineCallbacks
    def test_throughTLS(self):
        """
        Under a TLS layer, the TCP transport beneath is made eager (real
        TLS links over eager transports: tests.test_integration).
        """
        protocol = yield _connectTLS(self)
        self.assertTrue(writeEagerly(protocol.transport))
        self.assertIsInstance(protocol.transport.transport, _EagerWrites)

    def test_onlyTwistedsOwnClasses(self):
        """
        A subclass of Twisted's TCP transport (which may override writing)
        is not changed.
        """

        class Custom(tcp.Server):
            def __init__(self):
                pass

        self.assertFalse(writeEagerly(Custom()))


class NoDelayTests(TestCase):
    """
    L{noDelay} turns Nagle's algorithm off on the socket under a transport.
    """

    @inlineCallbacks
    def test_noDelay(self):
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(Protocol)
        )
        self.addCleanup(port.stopListening)
        protocol = yield TCP4ClientEndpoint(
            reactor, "127.0.0.1", port.getHost().port
        ).connect(Factory.forProtocol(Protocol))
        self.addCleanup(protocol.transport.abortConnection)
        self.assertFalse(protocol.transport.getTcpNoDelay())
        noDelay(protocol)
        self.assertTrue(protocol.transport.getTcpNoDelay())
        noDelay(StringTransport())  # not a socket: nothing to do
