"""
Compressing rebuilt bodies for clients off the reactor thread
(L{railgun.delta.content.deferEncodeBody} and the edge's use of it).
"""

from __future__ import annotations

import gzip
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from railgun.delta.content import deferEncodeBody, encodeBody
from railgun.delta.digest import versionDigest
from railgun.edge.encodings import ClientEncodings
from railgun.edge.http import EdgeHTTPFactory
from railgun.edge.proxy import EdgeProxy
from railgun.http.routing import HostMap
from railgun.stores.memory import MemoryVersionStore
from tests.test_edge_perf import _connect, _Link, _Pool

PAGE = b"<html>" + b"<p>some text</p>" * 500 + b"</html>"
DIGEST = versionDigest(PAGE).encode("ascii")


class _InlinePool:
    """
    A thread pool stand-in that runs each call at once and records it.
    """

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def callInThreadWithCallback(
        self, onResult: Any, f: Any, *args: Any, **kwargs: Any
    ) -> None:
        self.calls.append(f)
        onResult(True, f(*args, **kwargs))


class _Reactor:
    """
    C{callFromThread} running at once, as the reactor thread would later.
    """

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        f(*args, **kwargs)


class DeferEncodeBodyTests(SynchronousTestCase):
    """
    Tests for L{deferEncodeBody}.
    """

    def test_smallInline(self) -> None:
        """
        A body up to the threshold is encoded inline, the result already
        there.
        """
        pool = _InlinePool()
        d = deferEncodeBody(_Reactor(), pool, PAGE, b"gzip", threshold=len(PAGE))
        self.assertEqual(gzip.decompress(self.successResultOf(d)), PAGE)
        self.assertEqual(pool.calls, [])

    def test_largeInThreadPool(self) -> None:
        """
        A body over the threshold goes to the thread pool, and the result
        is the same bytes as inline.
        """
        pool = _InlinePool()
        d = deferEncodeBody(_Reactor(), pool, PAGE, b"br", threshold=len(PAGE) - 1)
        self.assertEqual(self.successResultOf(d), encodeBody(PAGE, b"br"))
        self.assertEqual(pool.calls, [encodeBody])


def _edge(
    encode: Any, kept: ClientEncodings | None = None
) -> tuple[Any, _Link, EdgeProxy]:
    clock = Clock()
    link = _Link()
    cache = MemoryVersionStore(
        maxBytes=1 << 20, maxItemBytes=1 << 16, ttl=None, clock=clock
    )
    cache.set(b"bench.local /page", DIGEST + PAGE)
    proxy = EdgeProxy(
        pools=HostMap({"bench.local": _Pool(link)}),
        clock=clock,
        responseTimeout=30,
        cache=cache,
        encodeForClient=encode,
        clientEncodings=kept,
    )
    return (
        EdgeHTTPFactory(
            proxy, reactor=clock, maxHeaderBytes=16384, maxBodyBytes=1 << 20
        ),
        link,
        proxy,
    )


_SAME = [
    (b":status", b"200"),
    (b"content-type", b"text/html"),
    (b"etag", b'"v1"'),
    (b"set-cookie", b"session=one-user"),
    (b"railgun-body", b"same"),
    (b"railgun-digest", DIGEST),
]


class EdgeEncodeTests(SynchronousTestCase):
    """
    The edge waits for a deferred client encoding, and drops it when the
    client is gone.
    """

    def setUp(self) -> None:
        self.pending: list[tuple[bytes, bytes, Deferred[bytes]]] = []

        def encode(body: bytes, coding: bytes) -> Deferred[bytes]:
            d: Deferred[bytes] = Deferred()
            self.pending.append((body, coding, d))
            return d

        factory, self.link, self.proxy = _edge(encode)
        self.channel, self.transport = _connect(factory)
        self.channel.dataReceived(
            b"GET /page HTTP/1.1\r\nHost: bench.local\r\nAccept-Encoding: gzip\r\n\r\n"
        )
        handler, _, self.stream = self.link.opened[0]
        handler.headersReceived(_SAME, True)
        handler.readConnectionLost()
        self.handler = handler

    def test_writtenWhenEncoded(self) -> None:
        """
        Nothing is written while the body is being compressed; once it is,
        the client gets the compressed body with its headers, and the
        stream closing meanwhile is no error.
        """
        self.handler.connectionLost(Failure(ConnectionLost("stream closed")))
        self.assertEqual(self.transport.value(), b"")
        [(body, coding, d)] = self.pending
        self.assertEqual((body, coding), (PAGE, b"gzip"))
        d.callback(encodeBody(PAGE, b"gzip"))
        head, _, served = self.transport.value().partition(b"\r\n\r\n")
        self.assertIn(b"Content-Encoding: gzip", head)
        self.assertEqual(gzip.decompress(served), PAGE)
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(self.proxy.stats.total.bodies["same"], 1)

    def test_encodeFailed(self) -> None:
        """
        A compression that fails gets the client a plain 500 that carries
        none of the origin's response headers (they describe a body the
        client does not get), and is logged.
        """
        [(_, _, d)] = self.pending
        d.errback(Failure(MemoryError("no room to compress")))
        head, _, body = self.transport.value().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 500 "), head)
        self.assertEqual(body, b"railgun: could not compress the response\n")
        self.assertNotIn(b"text/html", head)
        self.assertNotIn(b"session=one-user", head)
        self.assertNotIn(b'"v1"', head)
        self.assertIn(b"Content-Type: text/plain; charset=utf-8", head)
        self.assertEqual(len(self.flushLoggedErrors(MemoryError)), 1)

    def test_clientGoneMeanwhile(self) -> None:
        """
        A client that leaves while its body is compressed gets nothing
        written, and the late result is dropped quietly.
        """
        self.channel.connectionLost(Failure(ConnectionLost("client left")))
        self.handler.connectionLost(Failure(ConnectionLost("stream closed")))
        [(_, _, d)] = self.pending
        d.callback(b"late")
        self.assertNotIn(b"late", self.transport.value())
        self.assertEqual(self.proxy.stats.total.bodies["same"], 0)
        self.assertEqual(self.flushLoggedErrors(), [])


class ClientEncodingsTests(SynchronousTestCase):
    """
    Tests for L{ClientEncodings}.
    """

    def test_getPut(self) -> None:
        """
        An encoding is found by digest and coding, and only by both.
        """
        kept = ClientEncodings()
        kept.put(b"d1", b"gzip", b"zipped")
        self.assertEqual(kept.get(b"d1", b"gzip"), b"zipped")
        self.assertIsNone(kept.get(b"d1", b"br"))
        self.assertIsNone(kept.get(b"d2", b"gzip"))

    def test_bounded(self) -> None:
        """
        Past its count or byte bounds the least recently used encodings go;
        one larger than the byte bound is not kept.
        """
        kept = ClientEncodings(maxItems=2, maxBytes=10)
        kept.put(b"a", b"gzip", b"1234")
        kept.put(b"b", b"gzip", b"1234")
        kept.get(b"a", b"gzip")
        kept.put(b"c", b"gzip", b"1234")
        self.assertIsNone(kept.get(b"b", b"gzip"))
        self.assertEqual(kept.get(b"a", b"gzip"), b"1234")
        kept.put(b"d", b"gzip", b"123456")
        self.assertEqual(kept.size, 10)
        self.assertIsNone(kept.get(b"c", b"gzip"))
        self.assertEqual(kept.get(b"a", b"gzip"), b"1234")
        kept.put(b"e", b"gzip", b"x" * 11)
        self.assertIsNone(kept.get(b"e", b"gzip"))
        self.assertLessEqual(kept.size, 10)


class EdgeReusesEncodingTests(SynchronousTestCase):
    """
    A version served again to clients asking for the same coding is
    compressed once.
    """

    def test_compressedOnce(self) -> None:
        """
        Two clients asking for the same version in gzip get the same bytes;
        the encoder ran once.
        """
        calls: list[bytes] = []

        def encode(body: bytes, coding: bytes) -> Deferred[bytes]:
            calls.append(coding)
            return succeed(encodeBody(body, coding))

        factory, link, _ = _edge(encode, ClientEncodings())
        bodies = []
        for i in range(2):
            channel, transport = _connect(factory)
            channel.dataReceived(
                b"GET /page HTTP/1.1\r\nHost: bench.local\r\nAccept-Encoding: gzip\r\n\r\n"
            )
            handler, _, _ = link.opened[i]
            # (A public page: one that sets a cookie is one user's, and is
            # not kept compressed for the next client: test_privacy_e2e.)
            handler.headersReceived([h for h in _SAME if h[0] != b"set-cookie"], True)
            handler.readConnectionLost()
            bodies.append(transport.value().partition(b"\r\n\r\n")[2])
        self.assertEqual(calls, [b"gzip"])
        self.assertEqual(bodies[0], bodies[1])
        self.assertEqual(gzip.decompress(bodies[1]), PAGE)
