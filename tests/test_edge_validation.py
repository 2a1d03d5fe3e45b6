"""
Request validation at the edge (issue 11, items 4, 5 and 8): what a client
gets for a request whose framing or routing is ambiguous (400, 501), for a
chunked body over the limit in one read (one 413), for a lower-case method,
and that C{OPTIONS *} is forwarded. In memory: the edge's channel on a
string transport, a fake link that records the streams opened.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from railgun.http.headers import methodProblem, requestFieldProblem
from tests.test_edge_perf import _connect
from tests.test_edge_robustness import _edge

_GET = b"GET /x HTTP/1.1\r\nHost: bench.local\r\n"
_POST = b"POST /x HTTP/1.1\r\nHost: bench.local\r\n"


class _EdgeCase(SynchronousTestCase):
    def send(self, data: bytes, **kw):
        """
        Send C{data} in one read to a new edge connection.

        @return: what the client received, whether the connection is
            closing, and the link headers of the streams opened.
        """
        factory, link, _ = _edge(Clock(), **kw)
        channel, transport = _connect(factory)
        channel.dataReceived(data)
        return (
            transport.value(),
            transport.disconnecting,
            [dict(headers) for _, headers, _ in link.opened],
        )

    def assertRefused(self, data: bytes, status: bytes, why: bytes) -> None:
        """
        C{data} gets one C{status} response saying C{why}, its connection
        closes, and nothing goes to the origin role.
        """
        received, closing, opened = self.send(data)
        self.assertTrue(received.startswith(b"HTTP/1.1 " + status + b" "), received)
        self.assertEqual(received.count(b"HTTP/1.1 "), 1)
        self.assertIn(b"Connection: close\r\n", received)
        self.assertIn(why, received.split(b"\r\n\r\n", 1)[1])
        self.assertTrue(closing)
        self.assertEqual(opened, [])


class _LenientTransport(StringTransport):
    """
    A string transport that, like a real one, lets a producer be
    unregistered twice (StringTransport raises, which would hide what the
    edge writes on the second refusal).
    """

    def unregisterProducer(self):
        self.producer = None


class ChunkedOverLimitOneReadTests(_EdgeCase):
    def test_oneAnswerForManyChunks(self):
        """
        A chunked body over max_body_bytes whose chunks all arrive in one
        read gets exactly one 413, and its connection closes.
        """
        factory, link, _ = _edge(Clock(), maxBodyBytes=10)
        channel = factory.buildProtocol(None)
        transport = _LenientTransport()
        channel.makeConnection(transport)
        chunks = b"".join(b"4\r\nabcd\r\n" for _ in range(15)) + b"0\r\n\r\n"
        channel.dataReceived(_POST + b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
        received = transport.value()
        self.assertEqual(received.count(b"HTTP/1.1 "), 1, received)
        self.assertTrue(received.startswith(b"HTTP/1.1 413 "))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.flushLoggedErrors(), [])


class FramingTests(_EdgeCase):
    """
    RFC 9112's refusals, each a clean response (status, reason, a body
    saying why, Connection: close) rather than twisted.web's bare
    C{400 Bad Request} or, for some, acceptance.
    """

    def test_twoHosts(self):
        """
        Two different Host headers get 400 (RFC 9112 3.2).
        """
        self.assertRefused(
            _GET + b"Host: other.example\r\n\r\n", b"400", b"more than one Host"
        )

    def test_twoEqualHosts(self):
        """
        Two Host headers get 400 even when they agree (RFC 9112 3.2).
        """
        self.assertRefused(
            _GET + b"host: bench.local\r\n\r\n", b"400", b"more than one Host"
        )

    def test_twoTransferEncodings(self):
        """
        Two Transfer-Encoding headers (chunked, then identity) get 400: the
        edge and the server behind it might not agree on the framing.
        """
        self.assertRefused(
            _POST + b"Transfer-Encoding: chunked\r\n"
            b"Transfer-Encoding: identity\r\n\r\n0\r\n\r\n",
            b"400",
            b"more than one Transfer-Encoding",
        )

    def test_transferEncodingInHTTP10(self):
        """
        An HTTP/1.0 request with Transfer-Encoding gets 400 (RFC 9112 6.1:
        its framing is faulty).
        """
        self.assertRefused(
            _POST.replace(b"HTTP/1.1", b"HTTP/1.0")
            + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"400",
            b"Transfer-Encoding in an HTTP/1.0 request",
        )

    def test_identityTransferEncoding(self):
        """
        Transfer-Encoding: identity (whose body twisted.web would read as
        the next request) gets 400: its final coding is not chunked.
        """
        self.assertRefused(
            _POST
            + b"Transfer-Encoding: identity\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
            b"400",
            b"must end with chunked",
        )

    def test_chunkedTwice(self):
        """
        chunked applied twice gets 400 (RFC 9112 7).
        """
        self.assertRefused(
            _POST + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
            b"400",
            b"must end with chunked",
        )

    def test_otherCodingBeforeChunked(self):
        """
        A transfer coding other than chunked gets 501 (not implemented).
        """
        self.assertRefused(
            _POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            b"501",
            b"no transfer coding but chunked",
        )

    def test_lengthAndTransferEncoding(self):
        """
        Content-Length with Transfer-Encoding gets 400, in either order.
        """
        for first, second in [
            (b"Content-Length: 5", b"Transfer-Encoding: chunked"),
            (b"Transfer-Encoding: chunked", b"Content-Length: 5"),
        ]:
            self.assertRefused(
                _POST + first + b"\r\n" + second + b"\r\n\r\n0\r\n\r\n",
                b"400",
                b"both Content-Length and Transfer-Encoding",
            )

    def test_twoLengths(self):
        """
        Two Content-Length headers get 400, equal or not.
        """
        for second in (b"4", b"3"):
            self.assertRefused(
                _POST + b"Content-Length: 3\r\nContent-Length: " + second + b"\r\n\r\n",
                b"400",
                b"more than one Content-Length",
            )

    def test_lengthList(self):
        """
        A Content-Length that is a list (C{3, 3}) or not digits gets 400.
        """
        for value in (b"3, 3", b"+3", b"0x3"):
            self.assertRefused(
                _POST + b"Content-Length: " + value + b"\r\n\r\nabc",
                b"400",
                b"invalid Content-Length",
            )

    def test_obsFold(self):
        """
        A header continued on the next line (obs-fold) gets 400, which
        twisted.web would have joined into one header.
        """
        self.assertRefused(
            _GET + b"X-A: 1\r\n folded\r\n\r\n", b"400", b"obsolete line folding"
        )
        self.assertRefused(
            _GET + b"X-A: 1\r\n\tfolded\r\n\r\n", b"400", b"obsolete line folding"
        )

    def test_whitespaceBeforeColon(self):
        """
        Whitespace between a field name and its colon gets 400 (RFC 9112
        5.1), with a body saying so.
        """
        self.assertRefused(
            b"GET /x HTTP/1.1\r\nHost : bench.local\r\n\r\n",
            b"400",
            b"invalid header field name",
        )

    def test_goodRequestsPass(self):
        """
        One Host, one chunked Transfer-Encoding (any case), one
        Content-Length: forwarded.
        """
        for data in [
            _GET + b"\r\n",
            _POST + b"Transfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            _POST + b"Content-Length: 3\r\n\r\nabc",
        ]:
            received, closing, opened = self.send(data)
            self.assertEqual(received, b"")
            self.assertFalse(closing)
            self.assertEqual(len(opened), 1)


class MethodTests(_EdgeCase):
    def test_lowerCaseMethodRefused(self):
        """
        A lower-case method gets 400 and does not go upstream (it used to
        be forwarded upper-cased: C{get} became C{GET}).
        """
        for method in (b"get", b"Head", b"purge"):
            self.assertRefused(
                method + b" /x HTTP/1.1\r\nHost: bench.local\r\n\r\n",
                b"400",
                b"methods are case-sensitive",
            )

    def test_extensionMethodForwardedAsIs(self):
        """
        An upper-case method the edge does not know is forwarded as is.
        """
        received, closing, opened = self.send(
            b"M-SEARCH /x HTTP/1.1\r\nHost: bench.local\r\n\r\n"
        )
        self.assertEqual(received, b"")
        self.assertEqual(opened[0][b":method"], b"M-SEARCH")

    def test_optionsAsterisk(self):
        """
        C{OPTIONS *} goes to the origin role with C{:path *}.
        """
        received, closing, opened = self.send(
            b"OPTIONS * HTTP/1.1\r\nHost: bench.local\r\n\r\n"
        )
        self.assertEqual(received, b"")
        self.assertEqual(
            (opened[0][b":method"], opened[0][b":path"]), (b"OPTIONS", b"*")
        )


class RequestFieldProblemTests(SynchronousTestCase):
    def test_rules(self):
        """
        L{requestFieldProblem} accepts ordinary and first framing fields,
        and gives the status and reason for each refused one.
        """
        none: frozenset[bytes] = frozenset()
        self.assertIsNone(requestFieldProblem(b"X-A", b"1", none))
        self.assertIsNone(requestFieldProblem(b"Host", b"a", none))
        self.assertIsNone(requestFieldProblem(b"Content-Length", b"12", none))
        self.assertIsNone(requestFieldProblem(b"transfer-encoding", b"chunked", none))
        cases = [
            (b"X A", b"1", none, 400),
            (b"Host", b"a", frozenset([b"host"]), 400),
            (b"Content-Length", b"1", frozenset([b"content-length"]), 400),
            (b"Content-Length", b"1", frozenset([b"transfer-encoding"]), 400),
            (b"Transfer-Encoding", b"chunked", frozenset([b"content-length"]), 400),
            (b"Transfer-Encoding", b"chunked", frozenset([b"transfer-encoding"]), 400),
            (b"Transfer-Encoding", b"chunked, gzip", none, 400),
            (b"Transfer-Encoding", b"gzip, chunked", none, 501),
            (b"Content-Length", b"", none, 400),
        ]
        for name, value, seen, status in cases:
            problem = requestFieldProblem(name, value, seen)
            assert problem is not None, (name, value, seen)
            self.assertEqual(problem[0], status, (name, value, seen))

    def test_methods(self):
        """
        L{methodProblem} refuses a method with a lower-case letter or one
        that is not a token, and accepts any other token.
        """
        for method in (b"GET", b"OPTIONS", b"M-SEARCH", b"PROPFIND", b"X_1"):
            self.assertIsNone(methodProblem(method))
        for method in (b"get", b"gET", b"a", b"GE T", b""):
            self.assertIsNotNone(methodProblem(method))
