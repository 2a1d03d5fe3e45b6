"""
Over real sockets on loopback: request heads whose body length is ambiguous
or malformed (the raw material of request smuggling, RFC 9112 6.3 and
11.2) are refused at the edge with 400 and the connection closed, and the
origin server answers none of them, nor a request hidden behind them.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource

from tests.harness import HOST, Deployment, rawRequest

_H = HOST.encode()

#: a second request, hidden in what would be the first one's body under
#: another reading of its length.
_HIDDEN = b"GET /echo?smuggled HTTP/1.1\r\nHost: " + _H + b"\r\n\r\n"

#: name -> a request that must be refused.
AMBIGUOUS = {
    "Content-Length and Transfer-Encoding": (
        b"POST /echo HTTP/1.1\r\nHost: " + _H + b"\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + _HIDDEN
    ),
    "two different Content-Lengths": (
        b"POST /echo HTTP/1.1\r\nHost: " + _H + b"\r\nContent-Length: 4\r\n"
        b"Content-Length: 40\r\n\r\nabcd" + _HIDDEN
    ),
    "a coding after chunked": (
        b"POST /echo HTTP/1.1\r\nHost: " + _H + b"\r\n"
        b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n" + _HIDDEN
    ),
    "a Content-Length with a sign": (
        b"POST /echo HTTP/1.1\r\nHost: " + _H + b"\r\nContent-Length: +4\r\n\r\n"
        b"abcd" + _HIDDEN
    ),
    "white space before the colon": (
        b"POST /echo HTTP/1.1\r\nHost: " + _H + b"\r\nContent-Length : 4\r\n\r\n"
        b"abcd" + _HIDDEN
    ),
    "a chunk size that is not hex": (
        b"POST /echo HTTP/1.1\r\nHost: " + _H + b"\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n" + _HIDDEN
    ),
    "a chunk size with a 0x prefix": (
        b"POST /echo HTTP/1.1\r\nHost: " + _H + b"\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n" + _HIDDEN
    ),
    "a 100 KB chunk extension": (
        b"POST /echo HTTP/1.1\r\nHost: " + _H + b"\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3;" + b"x" * 100_000 + b"\r\nabc\r\n"
        b"0\r\n\r\n" + _HIDDEN
    ),
    "a NUL in a header value": (
        b"GET /echo HTTP/1.1\r\nHost: " + _H + b"\r\nX-A: a\x00b\r\n\r\n" + _HIDDEN
    ),
}


class SmugglingTests(TestCase):
    """
    Each ambiguous request against a real edge, origin role and origin.
    """

    timeout = 60

    @inlineCallbacks
    def setUp(self) -> Any:
        self.d = Deployment()
        yield self.d.start()
        self.addCleanup(self.d.stop)
        yield self.d.edge.whenLinked()
        # Count what the origin server answers.
        self.served: list[bytes] = []
        root = self.d.ports[0].factory.resource
        echo = root.children[b"echo"]
        served = self.served

        class Counting(Resource):
            isLeaf = True

            def render(self, request: Any) -> bytes:
                served.append(request.uri)
                return echo.render(request)

        root.putChild(b"echo", Counting())

    @inlineCallbacks
    def test_ambiguousLengthRefused(self) -> Any:
        """
        Every request whose body length is ambiguous or malformed gets one
        400 and a closed connection; no request, neither it nor the one
        hidden behind it, reaches the origin server. (A body found malformed
        after its head was forwarded has its stream reset: the origin
        server never gets a complete request.)
        """
        for name, data in AMBIGUOUS.items():
            answer = yield rawRequest(self.d.edgePort, data, timeout=10)
            self.assertTrue(answer.startswith(b"HTTP/1.1 400 "), (name, answer[:200]))
            # One response only (rawRequest returns once the edge closed).
            self.assertEqual(answer.count(b"HTTP/1.1 "), 1, (name, answer))
            self.assertNotIn(b"x-method", answer.lower(), name)
        self.assertEqual(self.served, [])
        # The same edge still serves a plain request.
        response, body = yield self.d.fetch("/echo")
        self.assertEqual((response.code, self.served), (200, [b"/echo"]))
