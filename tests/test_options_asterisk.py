"""
C{OPTIONS *} (the asterisk form, RFC 9112 3.2.4) crosses both roles to the
origin server as C{OPTIONS * HTTP/1.1}, over real sockets on loopback: the
origin role once failed it with 502 and a traceback (C{urlFor} raised).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase
from twisted.web.client import readBody
from twisted.web.http_headers import Headers

from railgun.http.routing import parseOriginURL
from railgun.upstream.client import fetchFromOrigin, makeOriginClient
from tests.harness import HOST, Deployment, rawRequest


class _RecordingOrigin(Protocol):
    """
    An origin server that records each request head it gets and answers
    it with an empty 200 listing the methods it allows.
    """

    def __init__(self, heads: list[bytes]) -> None:
        self._heads = heads
        self._buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while b"\r\n\r\n" in self._buffer:
            head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
            self._heads.append(head)
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nAllow: GET, OPTIONS\r\nContent-Length: 0\r\n\r\n"
            )


class OptionsAsteriskTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def setUp(self) -> Any:
        self.heads: list[bytes] = []
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(lambda: _RecordingOrigin(self.heads))
        )
        self.addCleanup(port.stopListening)
        self.originURL = f"http://127.0.0.1:{port.getHost().port}"

    @inlineCallbacks
    def test_originFetch(self) -> Any:
        """
        The origin role's fetch sends C{*} as the request target, to the
        origin's authority, whatever the origin's base path.
        """
        client, pool = makeOriginClient(
            reactor, connectTimeout=5, maxConnectionsPerOrigin=1
        )
        self.addCleanup(pool.closeCachedConnections)
        target = parseOriginURL(self.originURL + "/app")
        response = yield fetchFromOrigin(
            client,
            reactor,
            target,
            b"OPTIONS",
            b"*",
            Headers({b"host": [b"www.example.test"]}),
            None,
            10,
        )
        yield readBody(response)
        self.assertEqual(response.code, 200)
        requestLine, _, fields = self.heads[0].partition(b"\r\n")
        self.assertEqual(requestLine, b"OPTIONS * HTTP/1.1")
        self.assertIn(b"host: www.example.test", fields.lower())

    @inlineCallbacks
    def test_throughBothRoles(self) -> Any:
        """
        A client's C{OPTIONS *} to the edge reaches the origin server as
        C{OPTIONS *}, and its answer comes back.
        """
        d = Deployment()
        yield d.start(originURL=self.originURL)
        self.addCleanup(d.stop)
        yield d.edge.whenLinked()
        answer = yield rawRequest(
            d.edgePort,
            b"OPTIONS * HTTP/1.1\r\nHost: "
            + HOST.encode()
            + b"\r\nConnection: close\r\n\r\n",
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 "), answer[:200])
        self.assertIn(b"Allow: GET, OPTIONS", answer)
        self.assertEqual(self.heads[0].partition(b"\r\n")[0], b"OPTIONS * HTTP/1.1")
        self.assertEqual(self.flushLoggedErrors(), [])
