"""
Tests for L{railgun.tls.LinkTLSProtocol}: the link's TLS transport, which
batches Twisted's per-record work, must carry the same bytes in the same
order, with the same handshake and shutdown.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.error import ConnectionDone, NoProtocol
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from railgun.certs import generateDeployment
from railgun.link import LinkClientFactory, LinkServerFactory
from railgun.tls import (
    LinkTLSFactory,
    LinkTLSProtocol,
    batchedTLSAvailable,
    clientOptions,
    credentialsFromDeployment,
    serverOptions,
    wrapLinkClientTLS,
)

from .test_link_protocol import TOKEN, Echo, Recorder

_DEPLOYMENT = generateDeployment("localhost")
_ADDRESS = IPv4Address("TCP", "127.0.0.1", 4000)
_RECORD = 16 * 1024


#: With a Twisted whose TLS internals changed, links use Twisted's own
#: transport (L{batchedTLSAvailable}); these tests then say so instead of
#: failing.
_SKIP = (
    None
    if batchedTLSAvailable()
    else "this Twisted's TLSMemoryBIOProtocol lacks what LinkTLSProtocol needs: "
    "links run on Twisted's own TLS transport"
)


class _Collect(Protocol):
    """
    Keep what arrives, and how many calls it took.
    """

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.reason: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Failure = ConnectionDone) -> None:  # type: ignore[assignment]
        self.reason = reason

    @property
    def received(self) -> bytes:
        return b"".join(self.chunks)


def _tlsFactoryPair(
    serverFactory: Factory, clientFactory: Factory, handshake: bool = True
) -> tuple[LinkTLSProtocol, LinkTLSProtocol, iosim.IOPump]:
    """
    Connect a connection from each factory through L{LinkTLSFactory}s over
    an in-memory pump, with the deployment's real credentials; the
    handshake is run unless C{handshake} is false.
    """
    server = LinkTLSFactory(
        serverOptions(credentialsFromDeployment(_DEPLOYMENT, "origin")),
        False,
        serverFactory,
    ).buildProtocol(_ADDRESS)
    client = LinkTLSFactory(
        clientOptions(credentialsFromDeployment(_DEPLOYMENT, "edge"), "localhost"),
        True,
        clientFactory,
    ).buildProtocol(_ADDRESS)
    pump = iosim.connect(
        server,
        iosim.makeFakeServer(server),
        client,
        iosim.makeFakeClient(client),
        greet=False,
    )
    if handshake:
        pump.flush()
    return server, client, pump


def _tlsPair(
    serverApp: Protocol, clientApp: Protocol, handshake: bool = True
) -> tuple[LinkTLSProtocol, LinkTLSProtocol, iosim.IOPump]:
    """
    L{_tlsFactoryPair} for two given application protocols.
    """
    return _tlsFactoryPair(
        Factory.forProtocol(lambda: serverApp),
        Factory.forProtocol(lambda: clientApp),
        handshake,
    )


class _CountingWrites:
    """
    Count the calls a TLS protocol makes to its lower transport.
    """

    def __init__(self, protocol: LinkTLSProtocol) -> None:
        self.calls = 0
        transport: Any = protocol.transport
        write = transport.write

        def countedWrite(data: bytes) -> None:
            self.calls += 1
            write(data)

        def countedSequence(seq: Any) -> None:
            self.calls += 1
            # iosim's writeSequence joins and calls write: not a second call
            # from the protocol.
            write(b"".join(seq))

        transport.write = countedWrite
        transport.writeSequence = countedSequence


class LinkTLSProtocolTests(SynchronousTestCase):
    """
    L{LinkTLSProtocol} moves bytes as Twisted's TLS transport does, with
    fewer calls.
    """

    skip = _SKIP

    def test_factoryBuildsLinkTLSProtocol(self) -> None:
        """
        L{LinkTLSFactory} wraps every connection in a L{LinkTLSProtocol}.
        """
        server, client, _ = _tlsPair(_Collect(), _Collect())
        self.assertIsInstance(server, LinkTLSProtocol)
        self.assertIsInstance(client, LinkTLSProtocol)

    def test_writeSequenceArrivesInOrder(self) -> None:
        """
        Chunks of every size given to C{writeSequence} arrive intact and in
        order, in both directions.
        """
        serverApp, clientApp = _Collect(), _Collect()
        server, client, pump = _tlsPair(serverApp, clientApp)
        sizes = [1, 9, _RECORD - 1, _RECORD, _RECORD + 1, 65536, 300000, 7]
        chunks = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
        client.writeSequence(chunks)
        server.writeSequence(reversed(chunks))
        pump.flush()
        self.assertEqual(serverApp.received, b"".join(chunks))
        self.assertEqual(clientApp.received, b"".join(reversed(chunks)))

    def test_oneLowerWritePerWriteSequence(self) -> None:
        """
        The ciphertext of a whole C{writeSequence}, many records long, goes
        to the lower transport in one call (Twisted makes one per record).
        """
        serverApp = _Collect()
        _, client, pump = _tlsPair(serverApp, _Collect())
        counter = _CountingWrites(client)
        payload = [b"x" * 100000, b"y" * 100000]  # 13 records
        client.writeSequence(payload)
        self.assertEqual(counter.calls, 1)
        pump.flush()
        self.assertEqual(serverApp.received, b"".join(payload))

    def test_recordsOfOneReadDeliveredTogether(self) -> None:
        """
        The records decrypted from one read reach the application in one
        C{dataReceived} (Twisted delivers each record on its own).
        """
        serverApp = _Collect()
        _, client, pump = _tlsPair(serverApp, _Collect())
        data = bytes(range(256)) * 1024  # 16 records
        client.write(data)
        pump.flush()
        self.assertEqual(serverApp.received, data)
        self.assertEqual(len(serverApp.chunks), 1)

    def test_writesBeforeHandshakeKeepOrder(self) -> None:
        """
        Bytes written before the handshake is done are sent after it, before
        bytes written later, as with Twisted's transport.
        """
        serverApp = _Collect()
        _, client, pump = _tlsPair(serverApp, _Collect(), handshake=False)
        client.writeSequence([b"first ", b"second "])
        client.write(b"third ")
        pump.flush()
        client.writeSequence([b"fourth"])
        pump.flush()
        self.assertEqual(serverApp.received, b"first second third fourth")

    def test_cleanCloseDeliversDataFirst(self) -> None:
        """
        Data sent just before C{loseConnection} arrives before the clean
        close (close_notify) is reported.
        """
        serverApp = _Collect()
        _, client, pump = _tlsPair(serverApp, _Collect())
        client.writeSequence([b"a" * 50000, b"last"])
        client.loseConnection()
        pump.flush()
        self.assertEqual(serverApp.received, b"a" * 50000 + b"last")
        assert serverApp.reason is not None
        self.assertIsInstance(serverApp.reason.value, ConnectionDone)

    def test_noWritesAfterLoseConnection(self) -> None:
        """
        As with Twisted's transport, C{writeSequence} after C{loseConnection}
        (without a producer) is dropped.
        """
        serverApp = _Collect()
        _, client, pump = _tlsPair(serverApp, _Collect())
        client.loseConnection()
        client.writeSequence([b"dropped"])
        pump.flush()
        self.assertEqual(serverApp.received, b"")


@implementer(IStreamClientEndpoint)
class _MemoryEndpoint:
    """
    A client endpoint that builds the protocol on a fake transport.
    """

    def __init__(self) -> None:
        self.factories: list[Any] = []

    def connect(self, factory: Any) -> Any:
        self.factories.append(factory)
        protocol = factory.buildProtocol(_ADDRESS)
        protocol.makeConnection(iosim.makeFakeClient(protocol))
        return succeed(protocol)


class WrapLinkClientTLSTests(SynchronousTestCase):
    """
    L{wrapLinkClientTLS} is C{wrapClientTLS} with L{LinkTLSProtocol}.
    """

    skip = _SKIP

    def test_connectUnwrapsTheApplicationProtocol(self) -> None:
        """
        C{connect} dials with a L{LinkTLSFactory} and fires with the
        application protocol, not the TLS wrapper.
        """
        inner = _MemoryEndpoint()
        endpoint = wrapLinkClientTLS(
            clientOptions(credentialsFromDeployment(_DEPLOYMENT, "edge"), "localhost"),
            inner,
        )
        verifyObject(IStreamClientEndpoint, endpoint)
        app = _Collect()
        result = self.successResultOf(
            endpoint.connect(Factory.forProtocol(lambda: app))
        )
        self.assertIs(result, app)
        self.assertIsInstance(inner.factories[0], LinkTLSFactory)


class LinkOverLinkTLSTests(SynchronousTestCase):
    """
    A whole link runs over L{LinkTLSProtocol}.
    """

    skip = _SKIP

    def test_bulkStreamEchoed(self) -> None:
        """
        A stream's 2 MB body crosses a TLS link both ways intact (many
        frames, records and window updates).
        """
        clock = Clock()
        serverLinks = LinkServerFactory(
            token=TOKEN, clock=clock, streamFactory=lambda stream: Echo()
        )
        clientLinks = LinkClientFactory(token=TOKEN, clock=clock)
        _, _, pump = _tlsFactoryPair(serverLinks, clientLinks, handshake=False)

        def run() -> None:
            for _ in range(200):
                clock.advance(0)
                pump.flush()

        run()
        (link,) = clientLinks.links
        self.assertTrue(link.isReady())
        body = bytes(range(256)) * 8192
        recorder = Recorder()
        stream = link.openStream(recorder, [(b":path", b"/bulk")])
        for offset in range(0, len(body), 100000):
            stream.write(body[offset : offset + 100000])
        stream.loseConnection()
        run()
        self.assertEqual(recorder.body, body)
        self.assertTrue(recorder.readLost)
        assert recorder.reason is not None
        self.assertIsInstance(recorder.reason.value, ConnectionDone)


class BatchedTLSAvailableTests(SynchronousTestCase):
    """
    L{batchedTLSAvailable} notices a Twisted without the internals
    L{LinkTLSProtocol} builds on.
    """

    def test_missingInternal(self) -> None:
        """
        One missing method is enough to fall back.
        """
        import railgun.tls

        self.assertEqual(
            batchedTLSAvailable(), LinkTLSFactory.protocol is LinkTLSProtocol
        )
        self.patch(railgun.tls, "_TLS_INTERNALS", ("_flushSendBIO", "_noSuchInternal"))
        self.assertFalse(batchedTLSAvailable())


class RefusedConnectionTests(TestCase):
    """
    A link factory that refuses a connection (returns L{None}, as the edge's
    link pool does while it stops) under L{LinkTLSFactory}.
    """

    timeout = 10  # without the fix, the dial never ends

    @inlineCallbacks
    def test_refusedDial(self):
        """
        The dial fails cleanly with L{NoProtocol} and the socket is closed,
        instead of a TLS layer with no protocol failing inside the reactor.
        """
        accepted = []
        closed = Deferred()

        class Server(Protocol):
            def connectionMade(self):
                accepted.append(self)

            def connectionLost(self, reason):
                closed.callback(None)

        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(Server)
        )
        self.addCleanup(port.stopListening)

        class Refusing(Factory):
            def buildProtocol(self, addr):
                return None

        endpoint = wrapLinkClientTLS(
            CertificateOptions(verify=False),
            TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port),
        )
        yield self.assertFailure(endpoint.connect(Refusing()), NoProtocol)
        if accepted:
            yield closed
