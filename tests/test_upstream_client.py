"""
The origin HTTP client (L{railgun.upstream.client}) against origin servers
that misbehave: a body with no length cut by a reset, and responses nobody
asked for on a pooled connection. Both can only make a proxy serve a wrong
body; neither may.
"""

from __future__ import annotations

import select
import socket
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import (
    Agent,
    PartialDownloadError,
    PotentialDataLoss,
    ResponseFailed,
    readBody,
)
from twisted.web.http_headers import Headers
from zope.interface import implementer

from railgun._compat.httpclient import GuardedConnectionPool, OutOfStep
from railgun.http.diagnostic import Flag, RailgunDiagnostic
from railgun.http.messages import RequestHead
from railgun.http.routing import parseOriginURL
from railgun.upstream.client import fetchFromOrigin, makeOriginClient
from tests.harness import HOST, Deployment
from tests.test_origin_robustness import _Base

CLOSE_DELIMITED = b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\nconnection: close\r\n\r\n"


def _response(body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n%s\r\n%s"
        % (len(body), extra, body)
    )


def _sendNow(transport: Any, data: bytes) -> None:
    """
    Put C{data} in the kernel's hands at once (Twisted's own write waits for
    the next reactor turn), so that it is on its way before what the test
    does next (the origins below turn Nagle's algorithm off, so nothing
    holds it back).
    """
    sent = transport.getHandle().send(data)
    assert sent == len(data), (sent, len(data))


class ResettingOrigin(Protocol):
    """
    A raw origin that answers with a body with no length (close-delimited),
    sends C{first} of it, and on L{cut} sends C{second} and then either
    resets the connection (SO_LINGER 0: an RST, what a crashing origin or a
    middlebox gives) or closes it cleanly (a FIN).
    """

    def __init__(self, contentType: bytes, first: bytes, second: bytes) -> None:
        self._head = CLOSE_DELIMITED % contentType + first
        self._second = second
        self._received = b""

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)  # type: ignore[union-attr]
        self.factory.connections.append(self)  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        self._received += data
        if self._head and b"\r\n\r\n" in self._received:
            _sendNow(self.transport, self._head)
            self._head = b""
            if self.factory.cutAtOnce:  # type: ignore[attr-defined]
                self.cut(self.factory.reset)  # type: ignore[attr-defined]

    def cut(self, reset: bool) -> None:
        _sendNow(self.transport, self._second)
        if reset:
            # Twisted's abortConnection sets SO_LINGER 0 and closes: an RST
            # (the bytes above are already sent).
            self.transport.abortConnection()  # type: ignore[union-attr]
        else:
            self.transport.loseConnection()  # type: ignore[union-attr]


@inlineCallbacks
def listenResetting(
    test: TestCase,
    contentType: bytes,
    first: bytes,
    second: bytes,
    *,
    reset: bool,
    cutAtOnce: bool = False,
) -> Any:
    factory = Factory.forProtocol(
        lambda: ResettingOrigin(contentType, first, second)  # type: ignore[arg-type]
    )
    factory.connections = []  # type: ignore[attr-defined]
    factory.reset = reset  # type: ignore[attr-defined]
    factory.cutAtOnce = cutAtOnce  # type: ignore[attr-defined]
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    test.addCleanup(port.stopListening)
    return factory, f"http://127.0.0.1:{port.getHost().port}"


class _Body(Protocol):
    """
    Collect a response body; on its first bytes, call C{onFirst}.
    """

    def __init__(self, onFirst: Any) -> None:
        self.data: list[bytes] = []
        self.done: Deferred[list[Failure]] = Deferred()
        self._onFirst = onFirst

    def dataReceived(self, data: bytes) -> None:
        self.data.append(data)
        if len(self.data) == 1:
            self._onFirst()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.done.callback([reason])


class CloseDelimitedTests(TestCase):
    """
    A body with no length ends when its origin closes the connection: a
    clean close (FIN) ends it, anything else (an RST) breaks it.
    """

    timeout = 20

    def setUp(self) -> None:
        self.client, self.pool = makeOriginClient(
            reactor, connectTimeout=5, maxConnectionsPerOrigin=2
        )
        self.addCleanup(self.pool.closeCachedConnections)

    @inlineCallbacks
    def _fetch(self, reset: bool) -> Any:
        factory, url = yield listenResetting(
            self, b"text/html", b"<p>first", b" second", reset=reset
        )
        response = yield fetchFromOrigin(
            self.client,
            reactor,
            parseOriginURL(url),
            b"GET",
            b"/",
            Headers({b"host": [b"o.test"]}),
            None,
            10,
        )
        body = _Body(lambda: factory.connections[0].cut(reset))
        response.deliverBody(body)
        [reason] = yield body.done
        return b"".join(body.data), reason

    @inlineCallbacks
    def test_resetIsAFailure(self) -> None:
        """
        A close-delimited body whose connection is reset ends with
        C{ResponseFailed} (carrying the C{ConnectionLost}), not with the
        C{PotentialDataLoss} of a clean close: the bytes read are not the
        whole body.
        """
        data, reason = yield self._fetch(reset=True)
        self.assertTrue(reason.check(ResponseFailed), reason)
        self.assertTrue(
            any(r.check(ConnectionLost) for r in reason.value.reasons), reason
        )
        self.assertTrue(data.startswith(b"<p>first"))

    @inlineCallbacks
    def test_cleanCloseEndsIt(self) -> None:
        """
        A close-delimited body whose origin closes cleanly is complete:
        C{PotentialDataLoss}, as Twisted reports it, with every byte.
        """
        data, reason = yield self._fetch(reset=False)
        self.assertTrue(reason.check(PotentialDataLoss), reason)
        self.assertEqual(data, b"<p>first second")


class _TLSClosingOrigin(Protocol):
    """
    A raw origin behind TLS that answers with a body with no length and
    closes: with a close_notify alert first (C{alert}), or with a bare FIN
    under the TLS layer (a truncation, to TLS).
    """

    def __init__(self, alert: bool) -> None:
        self._alert = alert
        self._received = b""

    def dataReceived(self, data: bytes) -> None:
        self._received += data
        if b"\r\n\r\n" in self._received:
            self._received = b""
            self.transport.write(CLOSE_DELIMITED % b"text/html" + b"<p>whole</p>")  # type: ignore[union-attr]
            if self._alert:
                self.transport.loseConnection()  # type: ignore[union-attr]
            else:
                # The TCP connection under TLS: its buffer (the encrypted
                # response) is sent, then a FIN, and no alert.
                self.transport.transport.loseConnection()  # type: ignore[union-attr]


class TLSCloseDelimitedTests(TestCase):
    """
    Over TLS, a body with no length is complete only when the origin's
    close is a TLS close (close_notify), not a bare TCP one.
    """

    timeout = 20

    @inlineCallbacks
    def _fetch(self, alert: bool) -> Any:
        from twisted.internet.ssl import CertificateOptions
        from twisted.protocols.tls import TLSMemoryBIOFactory

        from railgun.certs import generateDeployment
        from railgun.tls import credentialsFromDeployment

        identity = credentialsFromDeployment(
            generateDeployment("localhost"), "origin"
        ).identity
        options = CertificateOptions(
            privateKey=identity.privateKey.original, certificate=identity.original
        )
        factory = TLSMemoryBIOFactory(
            options, False, Factory.forProtocol(lambda: _TLSClosingOrigin(alert))
        )
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            factory
        )
        self.addCleanup(port.stopListening)
        client, pool = makeOriginClient(
            reactor, connectTimeout=5, maxConnectionsPerOrigin=2, verifyTLS=False
        )
        self.addCleanup(pool.closeCachedConnections)
        response = yield fetchFromOrigin(
            client,
            reactor,
            parseOriginURL(f"https://localhost:{port.getHost().port}"),
            b"GET",
            b"/",
            Headers({b"host": [b"o.test"]}),
            None,
            10,
        )
        body = _Body(lambda: None)
        response.deliverBody(body)
        [reason] = yield body.done
        return b"".join(body.data), reason

    @inlineCallbacks
    def test_closeNotifyEndsIt(self) -> None:
        """
        A close_notify alert, then the close: the body is complete.
        """
        data, reason = yield self._fetch(alert=True)
        self.assertTrue(reason.check(PotentialDataLoss), reason)
        self.assertEqual(data, b"<p>whole</p>")

    @inlineCallbacks
    def test_bareCloseIsAFailure(self) -> None:
        """
        A TCP close with no close_notify (what a truncation attack, or a
        crash, looks like to TLS) fails the body.
        """
        data, reason = yield self._fetch(alert=False)
        self.assertTrue(reason.check(ResponseFailed), reason)


class StrayOrigin(Protocol):
    """
    A raw origin that answers each request with a body naming its path, and
    writes one more complete response (the stray, with another user's
    cookie) when the test calls L{stray}.
    """

    def connectionMade(self) -> None:
        self._received = b""
        self.transport.setTcpNoDelay(True)  # type: ignore[union-attr]
        self.factory.connections.append(self)  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        self._received += data
        while b"\r\n\r\n" in self._received:
            head, self._received = self._received.split(b"\r\n\r\n", 1)
            path = head.split(b" ", 2)[1]
            _sendNow(self.transport, _response(b"page " + path))

    def stray(self) -> None:
        _sendNow(self.transport, STRAY)


STRAY = _response(b"STRAY: someone else's page", b"set-cookie: session=other\r\n")


class StrayFirstOrigin(StrayOrigin):
    """
    An origin whose answer to each request after the first on a connection
    comes right behind a stray response (one it meant for an earlier
    request, late): both in one write.
    """

    answered = 0

    def dataReceived(self, data: bytes) -> None:
        self._received += data
        while b"\r\n\r\n" in self._received:
            head, self._received = self._received.split(b"\r\n\r\n", 1)
            path = head.split(b" ", 2)[1]
            stray = STRAY if self.answered else b""
            self.answered += 1
            _sendNow(self.transport, stray + _response(b"page " + path))


class StrayResponseLoopbackTests(TestCase):
    """
    An origin that writes a complete response nobody asked for, after a real
    one, on a connection the pool keeps: no later request gets it.
    """

    timeout = 20

    @inlineCallbacks
    def setUp(self) -> Any:
        self.factory = Factory.forProtocol(StrayOrigin)
        self.factory.connections = []  # type: ignore[attr-defined]
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            self.factory
        )
        self.addCleanup(port.stopListening)
        self.target = parseOriginURL(f"http://127.0.0.1:{port.getHost().port}")
        self.client, self.pool = makeOriginClient(
            reactor, connectTimeout=5, maxConnectionsPerOrigin=2
        )
        self.addCleanup(self.pool.closeCachedConnections)

    def get(self, path: bytes) -> Deferred[Any]:
        return fetchFromOrigin(
            self.client,
            reactor,
            self.target,
            b"GET",
            path,
            Headers({b"host": [b"o.test"]}),
            None,
            10,
        )

    @inlineCallbacks
    def test_strayAfterResponse(self) -> None:
        """
        A second complete response, written once the client has read the
        first (as an origin writing it ~20 ms later does) and waiting in the
        socket when the next request is made, answers no request: the
        connection is closed and each later request gets its own body.
        """
        bodies = []
        for i in range(4):
            path = b"/%d" % i
            response = yield self.get(path)
            clientSocket = _clientSocket(response)
            bodies.append((path, (yield readBody(response))))
            # The origin answers twice; the stray reaches the client's
            # socket before the next request is made.
            self.factory.connections[-1].stray()
            readable, _, _ = select.select([clientSocket], [], [], 10)
            self.assertTrue(readable)
        self.assertEqual(bodies, [(b"/%d" % i, b"page /%d" % i) for i in range(4)])
        # One connection per request: none was reused after its stray.
        self.assertEqual(len(self.factory.connections), 4)

    @inlineCallbacks
    def test_strayReadWhileIdle(self) -> None:
        """
        A stray response read while the connection waits in the pool closes
        it: the origin sees it closed, and the next request gets its own
        body on a new connection.
        """
        response = yield self.get(b"/a")
        self.assertEqual((yield readBody(response)), b"page /a")
        closed = Deferred()
        first = self.factory.connections[0]
        first.connectionLost = lambda reason: closed.callback(None)
        first.stray()
        yield closed
        response = yield self.get(b"/b")
        self.assertEqual((yield readBody(response)), b"page /b")
        self.assertEqual(len(self.factory.connections), 2)


class _HostRecordingOrigin(StrayOrigin):
    """
    A L{StrayOrigin} that records the Host of every request per connection.
    """

    def connectionMade(self) -> None:
        super().connectionMade()
        self.hosts: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        for line in data.split(b"\r\n"):
            if line.lower().startswith(b"host:"):
                self.hosts.append(line.split(b":", 1)[1].strip())
        super().dataReceived(data)


class SitePoolTests(TestCase):
    """
    Two sites (Hosts) served by one origin server never share a pooled
    connection, so a stray response can only reach the site it came from.
    """

    timeout = 20

    @inlineCallbacks
    def test_connectionsPerSite(self) -> None:
        """
        Alternate requests for two Hosts to one origin server go over two
        connections, each carrying one Host only; and a stray written on
        site A's connection while its next request is out answers site A,
        never site B.
        """
        factory = Factory.forProtocol(_HostRecordingOrigin)
        factory.connections = []  # type: ignore[attr-defined]
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            factory
        )
        self.addCleanup(port.stopListening)
        target = parseOriginURL(f"http://127.0.0.1:{port.getHost().port}")
        client, pool = makeOriginClient(
            reactor, connectTimeout=5, maxConnectionsPerOrigin=2
        )
        self.addCleanup(pool.closeCachedConnections)

        def get(host: bytes, path: bytes) -> Any:
            return fetchFromOrigin(
                client,
                reactor,
                target,
                b"GET",
                path,
                Headers({b"host": [host]}),
                None,
                10,
            )

        for i in range(3):
            for host in (b"a.test", b"B.test"):
                response = yield get(host, b"/%d" % i)
                self.assertEqual((yield readBody(response)), b"page /%d" % i)
        self.assertEqual(len(factory.connections), 2)
        self.assertEqual(
            sorted(tuple(sorted(set(c.hosts))) for c in factory.connections),
            [(b"B.test",), (b"a.test",)],
        )


class IdleCapTests(SynchronousTestCase):
    """
    The pool keeps at most C{maxIdle} idle connections over all keys.
    """

    def test_oldestClosed(self) -> None:
        """
        A third idle connection over a cap of two closes the oldest.
        """
        clock = MemoryReactorClock()
        pool = GuardedConnectionPool(clock, persistent=True)
        pool.maxIdle = 2
        endpoint = _MemoryEndpoint()
        agent = Agent.usingEndpointFactory(clock, _EndpointFactory(endpoint), pool=pool)
        for index, host in enumerate((b"o1.test", b"o2.test", b"o3.test")):
            d = agent.request(b"GET", b"http://" + host + b"/")
            endpoint.connections[index][0].dataReceived(_response(host))
            self.assertEqual(
                self.successResultOf(readBody(self.successResultOf(d))), host
            )
        self.assertEqual(
            [transport.disconnecting for _, transport in endpoint.connections],
            [True, False, False],
        )
        # The closed one is out of the pool: a new request for o1 dials anew.
        agent.request(b"GET", b"http://o1.test/")
        self.assertEqual(len(endpoint.connections), 4)


class StrayBeforeAnswerLoopbackTests(TestCase):
    """
    A stray response that reaches the client just before the real answer to
    its next request, in the same read.
    """

    timeout = 20

    @inlineCallbacks
    def test_noWrongBody(self) -> None:
        """
        The request the stray would have answered fails instead (the origin
        role answers 502), and the connection is closed: every later
        request gets its own body, none gets the stray.
        """
        factory = Factory.forProtocol(StrayFirstOrigin)
        factory.connections = []  # type: ignore[attr-defined]
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            factory
        )
        self.addCleanup(port.stopListening)
        target = parseOriginURL(f"http://127.0.0.1:{port.getHost().port}")
        client, pool = makeOriginClient(
            reactor, connectTimeout=5, maxConnectionsPerOrigin=2
        )
        self.addCleanup(pool.closeCachedConnections)
        results = []
        for i in range(4):
            path = b"/%d" % i
            try:
                response = yield fetchFromOrigin(
                    client,
                    reactor,
                    target,
                    b"GET",
                    path,
                    Headers({b"host": [b"o.test"]}),
                    None,
                    10,
                )
                results.append((yield readBody(response)))
            except ResponseFailed as e:
                self.assertTrue(e.reasons[0].check(OutOfStep), e.reasons)
                results.append(None)
        # Each connection answers its first request well; its second comes
        # behind a stray and fails; the pool then uses a new connection.
        self.assertEqual(results, [b"page /0", None, b"page /2", None])


def _clientSocket(response: Any) -> socket.socket:
    # (The test's peek at the client's socket: TransportProxyProducer keeps
    # the connection's transport as _producer.)
    return response.original._transport._producer.getHandle()  # type: ignore[no-any-return]


@implementer(IStreamClientEndpoint)
class _MemoryEndpoint:
    """
    Connections to an origin in memory: each a protocol on a
    L{StringTransport} the test writes the origin's bytes to.
    """

    def __init__(self) -> None:
        self.connections: list[tuple[Any, StringTransport]] = []

    def connect(self, factory: Any) -> Deferred[Any]:
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.connections.append((protocol, transport))
        return succeed(protocol)


class _EndpointFactory:
    def __init__(self, endpoint: _MemoryEndpoint) -> None:
        self._endpoint = endpoint

    def endpointForURI(self, uri: Any) -> _MemoryEndpoint:
        return self._endpoint


class GuardedPoolTests(SynchronousTestCase):
    """
    The guarded pool in memory: a connection that receives bytes with no
    request outstanding is closed and never handed out again.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.pool = GuardedConnectionPool(self.clock, persistent=True)
        self.endpoint = _MemoryEndpoint()
        self.agent = Agent.usingEndpointFactory(
            self.clock, _EndpointFactory(self.endpoint), pool=self.pool
        )

    def request(self, path: bytes) -> Deferred[Any]:
        return self.agent.request(b"GET", b"http://o.test" + path)

    def answer(self, index: int, data: bytes) -> None:
        self.endpoint.connections[index][0].dataReceived(data)

    def body(self, d: Deferred[Any]) -> bytes:
        return self.successResultOf(readBody(self.successResultOf(d)))  # type: ignore[no-any-return]

    def test_bytesWhileIdle(self) -> None:
        """
        Bytes that arrive after a response, while the connection waits in
        the pool, close it at once (an abort) and take it out of the pool:
        the next request goes out on a new connection.
        """
        d = self.request(b"/a")
        self.answer(0, _response(b"A"))
        self.assertEqual(self.body(d), b"A")
        self.answer(0, _response(b"STRAY"))
        self.assertTrue(self.endpoint.connections[0][1].disconnecting)
        d = self.request(b"/b")
        self.assertEqual(len(self.endpoint.connections), 2)
        self.assertEqual(self.endpoint.connections[0][1].value().count(b"GET"), 1)
        self.answer(1, _response(b"B"))
        self.assertEqual(self.body(d), b"B")
        # Out of the pool: its cached-connection timeout went with it (the
        # one left is the new connection's).
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_bytesAfterResponseInSameRead(self) -> None:
        """
        Bytes that come in the same read as the end of a response (Twisted
        drops them and keeps the connection) show the origin out of step:
        that response fails (it may be a stray that came just before the
        real answer), and the connection is closed, not pooled.
        """
        d = self.request(b"/a")
        self.answer(0, _response(b"A") + _response(b"STRAY"))
        failure = self.failureResultOf(readBody(self.successResultOf(d)))
        self.assertTrue(failure.check(ResponseFailed))
        self.assertTrue(failure.value.reasons[0].check(OutOfStep))
        self.assertTrue(self.endpoint.connections[0][1].disconnecting)
        d = self.request(b"/b")
        self.assertEqual(len(self.endpoint.connections), 2)
        self.answer(1, _response(b"B"))
        self.assertEqual(self.body(d), b"B")

    def test_wellBehavedReused(self) -> None:
        """
        A connection whose origin sends nothing unasked is reused.
        """
        for path in (b"/a", b"/b", b"/c"):
            d = self.request(path)
            self.answer(0, _response(path))
            self.assertEqual(self.body(d), path)
        self.assertEqual(len(self.endpoint.connections), 1)
        self.assertFalse(self.endpoint.connections[0][1].disconnecting)


class UnframedBodyTests(_Base):
    """
    The origin role with a body that would be a version but has no length
    of its own (its end was the origin closing the connection).
    """

    def test_cleanCloseRelayedNotKept(self) -> None:
        """
        A close-delimited text body that ended with a clean close is relayed
        whole and raw (with the length it turned out to have), and is not
        stored as a version: the close may be a truncation the origin meant.
        """
        page = b"<p>a page with no length</p>\n" * 40
        collector, _ = self.open(
            RequestHead(b"GET", b"http", b"www.example.test", b"/page", [])
        )
        response, _ = self.agent.respond(0, 200, {b"content-type": [b"text/html"]})
        response._bodyDataReceived(page)
        response._bodyDataFinished(Failure(PotentialDataLoss()))
        self.flush()
        control = self.control(collector)
        self.assertEqual(control[b"railgun-body"], b"raw")
        self.assertNotIn(b"railgun-digest", control)
        self.assertEqual(b"".join(collector.body), page)
        self.assertEqual(self.context.stats.total.fallbacks.get("origin-unframed"), 1)
        from railgun.delta.digest import versionDigest

        self.assertIsNone(
            self.successResultOf(self.store.get(versionDigest(page).encode()))
        )


class ThroughTheEdgeTests(TestCase):
    """
    Edge, link, origin role and a misbehaving origin on loopback: the edge's
    client gets the origin's exact body, or a clean error, never a body
    presented as complete that is not.
    """

    timeout = 30

    @inlineCallbacks
    def deploy(self, contentType: bytes, *, reset: bool, direct: bool = False) -> Any:
        factory, url = yield listenResetting(
            self,
            contentType,
            b"<p>" + b"first half " * 100,
            b"second half</p>",
            reset=reset,
            cutAtOnce=True,
        )
        d = Deployment()
        yield d.start(
            originURL=url,
            **(dict(edgeToken=b"refused", fallbackToOrigin=True) if direct else {}),
        )
        self.addCleanup(d.stop)
        if not direct:
            yield d.edge.whenLinked()
        return d

    def diagnostic(self, response: Any) -> RailgunDiagnostic:
        [value] = response.headers.getRawHeaders(b"railgun")
        return RailgunDiagnostic.parse(value)

    @inlineCallbacks
    def test_resetBeforeHead(self) -> None:
        """
        A reset ends a close-delimited text body the origin role holds as a
        version: the client gets a 502, not the truncated body.
        """
        d = yield self.deploy(b"text/html", reset=True)
        response, body = yield d.fetch("/")
        self.assertEqual(response.code, 502)
        self.assertEqual(body, b"the origin server broke off the body\n")

    @inlineCallbacks
    def assertNeverComplete(self, d: Deployment) -> Any:
        """
        The edge's client gets no complete response: its connection is
        aborted, after the response head or before it.

        @return: the response, or L{None} when the head was lost.
        """
        try:
            response = yield d.agent.request(
                b"GET", d.url("/"), Headers({b"host": [HOST.encode()]})
            )
        except ResponseFailed:
            return None  # aborted before the head reached the client
        self.assertEqual(response.code, 200)
        yield self.assertFailure(
            readBody(response), ResponseFailed, PartialDownloadError
        )
        return response

    @inlineCallbacks
    def test_resetAfterHead(self) -> None:
        """
        A reset ends a close-delimited body already streaming (not a
        version): the client's response fails, with no final chunk.
        """
        d = yield self.deploy(b"application/octet-stream", reset=True)
        yield self.assertNeverComplete(d)
        self.assertEqual(d.origin.stats.total.errors, 1)

    @inlineCallbacks
    def test_cleanCloseRelayedNotKept(self) -> None:
        """
        A close-delimited text body that ends with a clean close reaches the
        client whole, raw, and is kept by neither end: the next request names
        no base.
        """
        d = yield self.deploy(b"text/html", reset=False)
        expected = b"<p>" + b"first half " * 100 + b"second half</p>"
        for _ in range(2):
            response, body = yield d.fetch("/")
            self.assertEqual((response.code, body), (200, expected))
            diagnostic = self.diagnostic(response)
            self.assertFalse(diagnostic.flags & Flag.BASE_SENT, diagnostic)
        self.assertEqual(d.origin.stats.total.fallbacks.get("origin-unframed"), 2)
        self.assertEqual(dict(d.origin.stats.total.bodies), {"raw": 2})

    @inlineCallbacks
    def test_directFallbackReset(self) -> None:
        """
        The edge's direct fallback (the same origin client) also fails a
        close-delimited body cut by a reset: the client's response fails.
        """
        d = yield self.deploy(b"text/html", reset=True, direct=True)
        self.assertIsInstance(d.edge._fallbackPool, GuardedConnectionPool)
        response = yield self.assertNeverComplete(d)
        self.assertEqual(d.edge.stats.total.fallbacks.get("direct"), 1)
        self.assertEqual(d.origin.stats.total.requests, 0)
        if response is not None:
            [marker] = response.headers.getRawHeaders(b"railgun")
            self.assertTrue(marker.startswith(b"direct ("), marker)
