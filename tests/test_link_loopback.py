"""
Integration test: a link over a real TCP connection on 127.0.0.1.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from railgun._sockets import _EagerWrites
from railgun.link import LinkClientFactory, LinkServerFactory, StreamProtocol

from .test_link_protocol import TOKEN, Echo


class Collect(StreamProtocol):
    """
    Gather a response and fire C{done} with (headers, body) when the stream
    ends cleanly.
    """

    def __init__(self) -> None:
        self.headers: list[list[tuple[bytes, bytes]]] = []
        self.chunks: list[bytes] = []
        self.done: Deferred[tuple[list[list[tuple[bytes, bytes]]], bytes]] = Deferred()

    def headersReceived(
        self, headers: list[tuple[bytes, bytes]], endStream: bool
    ) -> None:
        self.headers.append(headers)

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Failure = ConnectionDone) -> None:  # type: ignore[assignment]
        if reason.check(ConnectionDone):
            self.done.callback((self.headers, b"".join(self.chunks)))
        else:
            self.done.errback(reason)


class LoopbackTests(TestCase):
    """
    Real sockets: several streams exchange data, then the link closes cleanly.
    """

    timeout = 20

    async def _exchange(self) -> None:
        from twisted.internet import reactor

        serverFactory = LinkServerFactory(
            token=TOKEN, clock=reactor, streamFactory=lambda stream: Echo()
        )
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            serverFactory
        )
        self.addCleanup(port.stopListening)
        clientFactory = LinkClientFactory(token=TOKEN, clock=reactor)
        link = await TCP4ClientEndpoint(
            reactor, "127.0.0.1", port.getHost().port
        ).connect(clientFactory)
        await link.whenReady()

        bodies = [bytes([65 + i]) * (300_000 * (i + 1) + i) for i in range(6)]
        collectors = []
        for i, body in enumerate(bodies):
            collector = Collect()
            stream = link.openStream(collector, [(b":path", b"/%d" % i)])
            stream.write(body)
            stream.loseConnection()
            collectors.append(collector)
        results = await gatherResults([c.done for c in collectors])
        for (headers, body), sent in zip(results, bodies, strict=True):
            self.assertEqual(headers, [[(b":status", b"200")]])
            self.assertEqual(body, sent)
        self.assertEqual(len(serverFactory.links), 1)
        (serverLink,) = serverFactory.links
        # Both ends' sockets: Nagle off, eager writes (railgun._sockets).
        for end in (link, serverLink):
            self.assertTrue(end.transport.getTcpNoDelay())
            self.assertIsInstance(end.transport, _EagerWrites)

        await link.goAway()
        await serverLink.whenClosed()
        self.assertEqual(serverFactory.links, set())
        # Compared once both ends are closed: while the link is open, a
        # WINDOW frame just sent may still be on its way.
        self.assertEqual(link.counters.sent, serverLink.counters.received)
        self.assertEqual(serverLink.counters.sent, link.counters.received)

    def test_streamsOverTcp(self) -> Deferred[None]:
        """
        Six streams echo bodies of 0.3 to 1.8 MB each over one TCP link, and
        a drain closes both ends.
        """
        return Deferred.fromCoroutine(self._exchange())
