"""
Who may use a link: mutual TLS (certificates from the deployment's CA, of
the right kind) and the token in HELLO. A peer that fails any of them gets
no stream served, checked over real TLS on loopback.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.internet.task import deferLater
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from railgun.certs import generateDeployment
from railgun.http.messages import RequestHead
from railgun.link.errors import ErrorCode, ProtocolError
from railgun.link.factory import LinkClientFactory
from railgun.link.frames import Headers, Hello, Settings
from railgun.link.headerblock import HeaderBlockEncoder
from railgun.link.protocol import StreamProtocol
from railgun.tls import clientOptions, credentialsFromDeployment
from tests.harness import HOST, TOKEN, Deployment


class EdgeRefusedTests(TestCase):
    """
    An edge with the wrong token or certificate gets no link: its clients
    get a clear 503, and the origin role serves nothing.
    """

    timeout = 30

    @inlineCallbacks
    def check(self, **options):
        """
        Start a deployment with C{options}, check the edge got no link.

        @return: (a Deferred of) the edge pool's log lines meanwhile.
        """
        events: list = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        d = Deployment()
        yield d.start(**options)
        self.addCleanup(d.stop)
        # Give the edge time to dial (and be refused) a few times.
        yield deferLater(reactor, 0.5, lambda: None)
        pool = list(d.edge.pools.values())[0]
        self.assertEqual(pool.readyCount(), 0)
        response, body = yield d.fetch("/echo")
        self.assertEqual(response.code, 503)
        self.assertIn(b"no link", body)
        self.assertTrue(
            response.headers.getRawHeaders(b"railgun")[0].startswith(b"direct (")
        )
        self.assertEqual(d.origin.stats.total.requests, 0)
        return [
            formatEvent(e)
            for e in events
            if e.get("log_namespace") == "railgun.edge.links"
        ]

    @inlineCallbacks
    def test_wrongToken(self):
        """
        A wrong token in HELLO: refused, and the edge's log says to give
        both roles the same token.
        """
        lines = yield self.check(edgeToken=b"not-the-token")
        self.assertTrue(
            any("AUTH_FAILED" in line and "same link token" in line for line in lines),
            lines,
        )

    @inlineCallbacks
    def test_certificateForAnotherName(self):
        """
        An origin role certificate made for another name than the one the
        edge checks: refused during TLS, and the edge's log names the
        name it checked and the option that fixes it.
        """
        lines = yield self.check(tlsDeployment=generateDeployment("other.test"))
        self.assertTrue(
            any(
                "does not carry the name 'localhost'" in line and "--tls-name" in line
                for line in lines
            ),
            lines,
        )

    def test_certificateFromAnotherCA(self):
        """
        An edge certificate signed by another CA: refused during TLS.
        """
        other = generateDeployment("localhost")
        return self.check(edgeCredentials=credentialsFromDeployment(other, "edge"))

    def test_originCertificateAsClient(self):
        """
        The origin role's own certificate presented as a client certificate
        (right CA, wrong purpose): refused.
        """
        deployment = generateDeployment("localhost")
        return self.check(
            tlsDeployment=deployment,
            edgeCredentials=credentialsFromDeployment(deployment, "origin"),
        )


class _Collector(StreamProtocol):
    def __init__(self):
        self.headers = []
        self.lost = Deferred()

    def headersReceived(self, headers, endStream):
        self.headers.append(headers)

    def connectionLost(self, reason):
        self.reason = reason
        self.lost.callback(None)


class RawPeerTests(TestCase):
    """
    Peers that are not a Railgun edge, talking to the link port directly.
    """

    timeout = 30

    @inlineCallbacks
    def setUp(self):
        self.d = Deployment()
        yield self.d.start()
        self.addCleanup(self.d.stop)

    def request(self):
        return RequestHead(b"GET", b"http", HOST.encode(), b"/echo", []).toLinkHeaders()

    @inlineCallbacks
    def test_noClientCertificate(self):
        """
        A TLS client without a certificate that sends a valid HELLO and a
        request is disconnected without an answer.
        """
        received = []
        closed = Deferred()

        class Raw(Protocol):
            def connectionMade(self):
                hello = Hello(1, TOKEN, Settings(), ()).encode()
                block = HeaderBlockEncoder().encode(self.factory.headers)
                self.transport.write(hello + Headers(1, block, True).encode())

            def dataReceived(self, data):
                received.append(data)

            def connectionLost(self, reason):
                closed.callback(None)

        factory = Factory.forProtocol(Raw)
        factory.headers = [(b":request-id", b"00")] + self.request()
        endpoint = wrapClientTLS(
            CertificateOptions(verify=False),  # presents no certificate
            TCP4ClientEndpoint(reactor, "127.0.0.1", self.d.linkPort),
        )
        yield endpoint.connect(factory)
        yield closed
        self.assertEqual(b"".join(received), b"")
        self.assertEqual(self.d.origin.stats.total.requests, 0)

    @inlineCallbacks
    def test_wrongTokenWithValidCertificate(self):
        """
        A peer with a valid edge certificate but a wrong token is told
        AUTH_FAILED and its stream is never served.
        """
        factory = LinkClientFactory(token=b"wrong", clock=reactor, pingInterval=0)
        options = clientOptions(
            credentialsFromDeployment(self.d.tlsDeployment, "edge"), "localhost"
        )
        endpoint = wrapClientTLS(
            options, TCP4ClientEndpoint(reactor, "127.0.0.1", self.d.linkPort)
        )
        link = yield endpoint.connect(factory)
        ready = link.whenReady()
        failure = yield self.assertFailure(ready, ProtocolError)
        self.assertEqual(failure.code, ErrorCode.AUTH_FAILED)
        yield link.whenClosed()
        self.assertEqual(self.d.origin.stats.total.requests, 0)

    @inlineCallbacks
    def test_rightPeerServed(self):
        """
        The same raw link with the right token is served (so the two
        refusals above are about the credentials, not the test's client).
        """
        factory = LinkClientFactory(token=TOKEN, clock=reactor, pingInterval=0)
        options = clientOptions(
            credentialsFromDeployment(self.d.tlsDeployment, "edge"), "localhost"
        )
        endpoint = wrapClientTLS(
            options, TCP4ClientEndpoint(reactor, "127.0.0.1", self.d.linkPort)
        )
        link = yield endpoint.connect(factory)
        yield link.whenReady()
        collector = _Collector()
        link.openStream(collector, self.request(), endStream=True)
        yield collector.lost
        self.assertEqual(collector.headers[0][0], (b":status", b"200"))
        self.assertEqual(self.d.origin.stats.total.requests, 1)
        yield link.goAway()


class FallbackTests(TestCase):
    """
    Where the configuration names a direct fallback, clients are served
    straight from the origin while no link is up.
    """

    timeout = 30

    @inlineCallbacks
    def test_directFallback(self):
        """
        With no usable link (the edge's token is refused), a request for a
        Host with a fallback is fetched from the origin directly, marked
        'Railgun: direct (...)', body and status intact, request body too.
        """
        import io

        from twisted.web.client import FileBodyProducer

        d2 = Deployment()
        yield d2.start(edgeToken=b"refused", fallbackToOrigin=True)
        self.addCleanup(d2.stop)
        yield deferLater(reactor, 0.3, lambda: None)
        response, body = yield d2.fetch(
            "/echo?x=1", method=b"POST", body=FileBodyProducer(io.BytesIO(b"payload"))
        )
        self.assertEqual(response.code, 200)
        self.assertEqual(body, b"payload")
        self.assertEqual(response.headers.getRawHeaders(b"x-uri"), [b"/echo?x=1"])
        [marker] = response.headers.getRawHeaders(b"railgun")
        self.assertTrue(marker.startswith(b"direct ("), marker)
        self.assertEqual(d2.edge.stats.total.fallbacks["direct"], 1)
        self.assertEqual(d2.origin.stats.total.requests, 0)

    @inlineCallbacks
    def test_directBodyStallCutOff(self):
        """
        A direct fetch whose body stalls for the response timeout is cut off:
        the client sees the response fail, not end, even when the body has
        no length (its end would be the origin's close).
        """
        from twisted.internet.endpoints import TCP4ServerEndpoint
        from twisted.internet.protocol import Factory
        from twisted.web.client import PartialDownloadError, ResponseFailed, readBody
        from twisted.web.http_headers import Headers

        from tests.harness import HOST, StallingOrigin

        factory = Factory()
        factory.protocol = lambda: StallingOrigin(
            b"application/octet-stream", b"partial"
        )
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            factory
        )
        self.addCleanup(port.stopListening)
        d2 = Deployment()
        yield d2.start(
            originURL=f"http://127.0.0.1:{port.getHost().port}",
            edgeToken=b"refused",
            fallbackToOrigin=True,
            edgeOptions={"responseTimeout": 1.0},
        )
        self.addCleanup(d2.stop)
        yield deferLater(reactor, 0.3, lambda: None)
        response = yield d2.agent.request(
            b"GET", d2.url("/"), Headers({b"host": [HOST.encode()]})
        )
        self.assertEqual(response.code, 200)
        self.assertTrue(
            response.headers.getRawHeaders(b"railgun")[0].startswith(b"direct (")
        )
        yield self.assertFailure(
            readBody(response), ResponseFailed, PartialDownloadError
        )


class HTTPSOriginTests(TestCase):
    """
    HTTPS origin servers are verified unless the configuration says not to.
    """

    timeout = 30

    @inlineCallbacks
    def startHTTPSOrigin(self):
        from twisted.internet.ssl import CertificateOptions

        from tests.harness import originSite

        # A certificate for "localhost" from a CA nobody trusts.
        identity = credentialsFromDeployment(
            generateDeployment("localhost"), "origin"
        ).identity
        options = CertificateOptions(
            privateKey=identity.privateKey.original, certificate=identity.original
        )
        site, _ = originSite()
        port = yield reactor.listenSSL(0, site, options, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return f"https://localhost:{port.getHost().port}"

    @inlineCallbacks
    def test_untrustedOriginRefused(self):
        """
        An HTTPS origin whose certificate does not verify gets 502.
        """
        url = yield self.startHTTPSOrigin()
        d = Deployment()
        yield d.start(originURL=url)
        self.addCleanup(d.stop)
        yield d.edge.whenLinked()
        response, body = yield d.fetch("/echo")
        self.assertEqual(response.code, 502)

    @inlineCallbacks
    def test_verificationOff(self):
        """
        With verify_origin_tls off, the same origin is served over HTTPS.
        """
        url = yield self.startHTTPSOrigin()
        d = Deployment()
        yield d.start(originURL=url, originOptions={"verifyOriginTLS": False})
        self.addCleanup(d.stop)
        yield d.edge.whenLinked()
        response, body = yield d.fetch("/echo")
        self.assertEqual(response.code, 200)
        self.assertEqual(body, b"echo")
