"""
End to end over real TLS on loopback: a client talks HTTP to the edge, the
edge sends each request as a stream over a mutual-TLS link to the origin
role, which fetches it from a real twisted.web origin server.
"""

from __future__ import annotations

import hashlib
import io
import resource

from twisted.internet import reactor
from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import (
    FileBodyProducer,
    PartialDownloadError,
    ResponseFailed,
    readBody,
)
from twisted.web.http_headers import Headers

from railgun.delta.content import CLIENT_ENCODE_IN_THREAD_ABOVE
from railgun.http.diagnostic import Flag, RailgunDiagnostic
from tests.harness import (
    HOST,
    LARGE_TEXT,
    Deployment,
    StallingOrigin,
    changingPage,
    pattern,
    rawRequest,
)


class _Base(TestCase):
    timeout = 60
    startOptions: dict = {}

    @inlineCallbacks
    def setUp(self):
        self.d = Deployment()
        yield self.d.start(**self.startOptions)
        self.addCleanup(self.d.stop)
        yield self.d.edge.whenLinked()

    def diagnostic(self, response) -> RailgunDiagnostic:
        [value] = response.headers.getRawHeaders(b"railgun")
        return RailgunDiagnostic.parse(value)


class RequestsTests(_Base):
    """
    Requests and responses cross unchanged, apart from what a proxy must
    change.
    """

    @inlineCallbacks
    def test_get(self):
        """
        A GET comes back with the origin's status, body and headers, plus a
        Railgun header naming a request id.
        """
        response, body = yield self.d.fetch("/echo?x=1&y=%20z")
        self.assertEqual(response.code, 200)
        self.assertEqual(body, b"echo")
        self.assertEqual(
            response.headers.getRawHeaders(b"x-uri"), [b"/echo?x=1&y=%20z"]
        )
        self.assertEqual(response.headers.getRawHeaders(b"x-host"), [HOST.encode()])
        self.assertEqual(response.headers.getRawHeaders(b"x-method"), [b"GET"])
        diagnostic = self.diagnostic(response)
        self.assertTrue(diagnostic.requestId)

    @inlineCallbacks
    def test_post_put_bodies(self):
        """
        POST and PUT bodies reach the origin intact.
        """
        for method in (b"POST", b"PUT"):
            payload = b"payload-" * 5000 + method
            response, body = yield self.d.fetch(
                "/echo", method=method, body=FileBodyProducer(io.BytesIO(payload))
            )
            self.assertEqual(response.code, 200)
            self.assertEqual(body, payload)
            self.assertEqual(
                response.headers.getRawHeaders(b"x-body-sha256"),
                [hashlib.sha256(payload).hexdigest().encode()],
            )

    @inlineCallbacks
    def test_head(self):
        """
        HEAD gets the headers and no body.
        """
        response, body = yield self.d.fetch("/echo", method=b"HEAD")
        self.assertEqual(response.code, 200)
        self.assertEqual(body, b"")
        self.assertEqual(response.headers.getRawHeaders(b"x-method"), [b"HEAD"])

    @inlineCallbacks
    def test_hopByHopAndForwarding(self):
        """
        Hop-by-hop headers (and those Connection names) do not reach the
        origin; X-Forwarded-For, Forwarded and Via do; railgun-* headers
        from the client are dropped.
        """
        response, body = yield self.d.fetch(
            "/echo",
            headers={
                b"connection": [b"keep-alive, x-custom"],
                b"x-custom": [b"secret"],
                b"te": [b"trailers"],
                b"railgun-base": [b"0" * 32],
            },
        )
        seen = {
            name: response.headers.getRawHeaders(b"x-seen-" + name)
            for name in (
                b"x-custom",
                b"te",
                b"railgun-base",
                b"x-forwarded-for",
                b"via",
                b"forwarded",
            )
        }
        self.assertIsNone(seen[b"x-custom"])
        self.assertIsNone(seen[b"te"])
        self.assertIsNone(seen[b"railgun-base"])
        self.assertEqual(seen[b"x-forwarded-for"], [b"127.0.0.1"])
        self.assertIn(b"railgun", seen[b"via"][0])
        self.assertIn(b"for=127.0.0.1", seen[b"forwarded"][0])

    @inlineCallbacks
    def test_unknownHostAtEdge(self):
        """
        A Host the edge serves no link for is refused with 421 (and its
        reason phrase, which twisted.web does not know).
        """
        response, body = yield self.d.fetch("/echo", host="nowhere.test")
        self.assertEqual(
            (response.code, response.phrase), (421, b"Misdirected Request")
        )
        self.assertIn(b"not served", body)

    @inlineCallbacks
    def test_unmappedHostAtOrigin(self):
        """
        A Host the origin role has no origin for is refused there with 421
        (it is not an open proxy).
        """
        response, body = yield self.d.fetch("/echo", host="unmapped.test")
        self.assertEqual(
            (response.code, response.phrase), (421, b"Misdirected Request")
        )
        self.assertIn(b"not served by this origin role", body)

    @inlineCallbacks
    def test_wildcardHost(self):
        """
        A wildcard mapping serves sub-domains, with the client's Host kept.
        """
        response, body = yield self.d.fetch("/echo", host="a.b.wild.test")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"x-host"), [b"a.b.wild.test"])

    @inlineCallbacks
    def test_concurrent(self):
        """
        500 concurrent requests over the links all get their own answer.
        """
        ds = [self.d.fetch(f"/echo?n={i}") for i in range(500)]
        results = yield DeferredList(ds, consumeErrors=True)
        for i, (ok, result) in enumerate(results):
            self.assertTrue(ok, result)
            response, body = result
            self.assertEqual(response.code, 200)
            self.assertEqual(
                response.headers.getRawHeaders(b"x-uri"), [f"/echo?n={i}".encode()]
            )

    @inlineCallbacks
    def test_headerTooLarge(self):
        """
        A request head over the limit gets 431.
        """
        data = (
            b"GET /echo HTTP/1.1\r\nHost: "
            + HOST.encode()
            + b"\r\nX-Big: "
            + b"a" * 20000
            + b"\r\n\r\n"
        )
        answer = yield rawRequest(self.d.edgePort, data)
        self.assertTrue(answer.startswith(b"HTTP/1.1 431 "), answer[:100])

    @inlineCallbacks
    def test_bodyTooLarge(self):
        """
        A request body over the limit gets 413 before it is read.
        """
        data = (
            b"POST /echo HTTP/1.1\r\nHost: "
            + HOST.encode()
            + b"\r\nContent-Length: 99999999999\r\n\r\nxx"
        )
        answer = yield rawRequest(self.d.edgePort, data)
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer[:100])

    @inlineCallbacks
    def test_chunkedUpload(self):
        """
        A chunked request body reaches the origin whole.
        """
        data = (
            b"POST /upload HTTP/1.1\r\nHost: "
            + HOST.encode()
            + b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            + b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        answer = yield rawRequest(self.d.edgePort, data)
        self.assertIn(b"200 OK", answer.split(b"\r\n")[0])
        self.assertIn(
            b"11 " + hashlib.sha256(b"hello world").hexdigest().encode(), answer
        )


class DeltaTests(_Base):
    """
    Versions and deltas, end to end.
    """

    @inlineCallbacks
    def test_changingPage(self):
        """
        After the first fetch, a page that changed a little crosses the link
        as a small delta, and every body served is exactly the origin's.
        """
        ratios = []
        for version in range(1, 6):
            response, body = yield self.d.fetch("/changing")
            self.assertEqual(body, changingPage(version))
            diagnostic = self.diagnostic(response)
            ratios.append(diagnostic.ratio)
            if version > 1:
                self.assertTrue(diagnostic.flags & Flag.BASE_SENT)
                self.assertTrue(diagnostic.flags & Flag.BASE_FOUND)
                self.assertTrue(diagnostic.flags & Flag.DELTA)
        self.assertTrue(all(r < 5.0 for r in ratios[1:]), ratios)
        stats = self.d.origin.stats.total
        self.assertEqual(stats.bodies["delta"], 4)

    @inlineCallbacks
    def test_originStoreEmptied(self):
        """
        When the origin role lost the edge's base, the page comes whole and
        right, and the fallback is counted.
        """
        yield self.d.fetch("/changing")
        self.d.origin.store._items.clear()
        response, body = yield self.d.fetch("/changing")
        self.assertEqual(body, changingPage(2))
        self.assertEqual(
            self.d.origin.stats.total.fallbacks["base-missing-at-origin"], 1
        )

    @inlineCallbacks
    def test_corruptedEdgeBase(self):
        """
        A corrupted base at the edge (digest mismatch after decoding) makes
        the edge fetch again in full: the client still gets the right body.
        """
        yield self.d.fetch("/changing")
        cache = self.d.edge.proxy.cache
        [key] = list(cache._items)
        stored = yield cache.get(key)
        # Flip a byte in the middle: the delta copies that region, so the
        # rebuilt body cannot match the announced digest.
        middle = len(stored) // 2
        corrupted = stored[:middle] + bytes([stored[middle] ^ 1]) + stored[middle + 1 :]
        yield cache.set(key, corrupted)
        response, body = yield self.d.fetch("/changing")
        self.assertEqual(body, changingPage(3))
        self.assertEqual(self.d.edge.stats.total.fallbacks["digest-mismatch"], 1)

    @inlineCallbacks
    def test_compressedForClient(self):
        """
        A client that accepts gzip gets the rebuilt body gzipped, with Vary.
        """
        import gzip

        response, body = yield self.d.fetch(
            "/changing", headers={b"accept-encoding": [b"gzip"]}
        )
        self.assertEqual(response.headers.getRawHeaders(b"content-encoding"), [b"gzip"])
        self.assertEqual(gzip.decompress(body), changingPage(1))
        self.assertIn(
            b"Accept-Encoding", b",".join(response.headers.getRawHeaders(b"vary"))
        )

    @inlineCallbacks
    def test_largeCompressedForClient(self):
        """
        A rebuilt body large enough to be compressed in the edge's thread
        pool reaches the client intact in each coding, first in full, then
        as 'same'.
        """
        import gzip

        import brotli

        decoders = {b"gzip": gzip.decompress, b"br": brotli.decompress}
        self.assertGreater(len(LARGE_TEXT), CLIENT_ENCODE_IN_THREAD_ABOVE)
        for coding in (b"gzip", b"br", b"gzip"):
            response, body = yield self.d.fetch(
                "/largetext", headers={b"accept-encoding": [coding]}
            )
            self.assertEqual(
                response.headers.getRawHeaders(b"content-encoding"), [coding]
            )
            self.assertEqual(decoders[coding](body), LARGE_TEXT)
        self.assertEqual(self.d.edge.stats.total.bodies["same"], 2)


class FailureTests(_Base):
    """
    Origins that are down or slow, links that die.
    """

    startOptions = {"originOptions": {"responseTimeout": 1.0}}

    @inlineCallbacks
    def test_originHangs(self):
        """
        An origin that never answers gives 504.
        """
        response, body = yield self.d.fetch("/hang")
        self.assertEqual(response.code, 504)
        self.assertIn(b"did not answer", body)

    @inlineCallbacks
    def test_originStallsMidBody(self):
        """
        An origin that stops in the middle of a body the origin role holds
        to send as a version gives 504.
        """
        response, body = yield self.d.fetch("/stall")
        self.assertEqual(response.code, 504)
        self.assertIn(b"stopped sending", body)

    @inlineCallbacks
    def test_originDown(self):
        """
        An origin that refuses connections gives 502.
        """
        yield self.d.ports[0].stopListening()
        self.d.ports.remove(self.d.ports[0])
        response, body = yield self.d.fetch("/echo")
        self.assertEqual(response.code, 502)
        self.assertIn(b"could not be reached", body)

    @inlineCallbacks
    def test_linkKilledMidFlight(self):
        """
        When the links carrying requests die before they were answered, an
        idempotent request is retried once a link is back (and gets the
        origin role's answer); a POST gets a clean 502.
        """
        pool = list(self.d.edge.pools.values())[0]
        while pool.readyCount() < 2:
            yield deferLater(reactor, 0.05, lambda: None)
        get = self.d.fetch("/hang")
        post = self.d.fetch(
            "/hang", method=b"POST", body=FileBodyProducer(io.BytesIO(b"x"))
        )
        while sum(link.openStreamCount for link in pool._ready) < 2:
            yield deferLater(reactor, 0.02, lambda: None)
        for link in list(pool._ready):
            link.transport.abortConnection()
        response, body = yield post
        self.assertEqual(response.code, 502)
        self.assertIn(b"link to the origin role failed", body)
        response, body = yield get
        # Retried on a new link; the origin then never answers: the origin
        # role's own 504, and the Railgun header says it was retried.
        self.assertEqual(response.code, 504)
        self.assertTrue(self.diagnostic(response).flags & Flag.RETRIED)


class CacheFailureTests(_Base):
    """
    The edge's own version store failing.
    """

    @inlineCallbacks
    def test_lookupFailureStillServed(self):
        """
        A version store whose lookup fails: the request is served without a
        base (it used to wait forever), and the failure is logged.
        """
        from twisted.internet.defer import fail, succeed

        class FailingStore:
            def get(self, key):
                return fail(RuntimeError("store down"))

            def set(self, key, value):
                return succeed(None)

            def delete(self, key):
                return succeed(None)

        self.patch(self.d.edge.proxy, "cache", FailingStore())
        response, body = yield self.d.fetch("/changing")
        self.assertEqual(response.code, 200)
        self.assertIn(b"Edition", body)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class StalledBodyTests(TestCase):
    """
    An origin that stops sending in the middle of a body: a client never
    gets a truncated body as if it were complete.
    """

    timeout = 30

    @inlineCallbacks
    def startWithOrigin(self, contentType: bytes, length: int | None = None):
        """
        Start a deployment in front of a L{StallingOrigin}.
        """
        factory = Factory()
        factory.protocol = lambda: StallingOrigin(contentType, b"partial body ", length)
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            factory
        )
        self.addCleanup(port.stopListening)
        self.d = Deployment()
        yield self.d.start(
            originURL=f"http://127.0.0.1:{port.getHost().port}",
            originOptions={"responseTimeout": 1.0},
        )
        self.addCleanup(self.d.stop)
        yield self.d.edge.whenLinked()

    @inlineCallbacks
    def test_stalledVersionAnswers504(self):
        """
        A text body held to be sent as a version that stalls gives 504: its
        head was not sent yet, so the client can still get a clean error.
        """
        yield self.startWithOrigin(b"text/html")
        response, body = yield self.d.fetch("/")
        self.assertEqual(response.code, 504)
        self.assertIn(b"stopped sending", body)

    @inlineCallbacks
    def test_brokenVersionAnswers502(self):
        """
        A text body held to be sent as a version that the origin breaks off
        (it closes before the announced length) gives 502.
        """
        yield self.startWithOrigin(b"text/html", length=1000)
        response, body = yield self.d.fetch("/")
        self.assertEqual(response.code, 502)
        self.assertIn(b"broke off the body", body)

    @inlineCallbacks
    def test_stalledStreamedBodyAborted(self):
        """
        A body streamed as it comes (not a version) that stalls after its
        head was sent is cut off: the client sees the response fail, not
        end (the origin role stopped reading it, so its end by the origin's
        close does not mean complete).
        """
        yield self.startWithOrigin(b"application/octet-stream")
        h = Headers({b"host": [HOST.encode()]})
        response = yield self.d.agent.request(b"GET", self.d.url("/"), h)
        self.assertEqual(response.code, 200)
        yield self.assertFailure(
            readBody(response), ResponseFailed, PartialDownloadError
        )


class BulkTests(_Base):
    """
    Large bodies stream through with bounded memory.
    """

    startOptions = {"bigSize": 100 * 1024 * 1024}
    timeout = 120

    @inlineCallbacks
    def test_download100MiB(self):
        """
        A 100 MiB response arrives intact; the process's peak memory grows by
        far less than the body.
        """
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        response = yield self.d.agent.request(
            b"GET", self.d.url("/big"), Headers({b"host": [HOST.encode()]})
        )
        self.assertEqual(response.code, 200)
        checker = _PatternChecker()
        response.deliverBody(checker)
        total = yield checker.done
        self.assertEqual(total, 100 * 1024 * 1024)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.assertLess((after - before) * 1024, 60 * 1024 * 1024)

    @inlineCallbacks
    def test_upload100MiB(self):
        """
        A 100 MiB upload reaches the origin intact.
        """
        size = 100 * 1024 * 1024
        response, body = yield self.d.fetch(
            "/upload", method=b"PUT", body=_PatternBody(size)
        )
        self.assertEqual(response.code, 200)
        expected = hashlib.sha256()
        for offset in range(0, size, 1 << 20):
            expected.update(pattern(offset, 1 << 20))
        self.assertEqual(body, b"%d %s" % (size, expected.hexdigest().encode()))


class _PatternChecker(Protocol):
    def __init__(self):
        from twisted.internet.defer import Deferred

        self.done = Deferred()
        self.offset = 0
        self.ok = True

    def dataReceived(self, data):
        if data != pattern(self.offset, len(data)):
            self.ok = False
        self.offset += len(data)

    def connectionLost(self, reason):
        if self.ok:
            self.done.callback(self.offset)
        else:
            self.done.errback(AssertionError(f"body differs near offset {self.offset}"))


class _PatternBody:
    """
    An IBodyProducer of the pattern, produced in 1 MiB pieces as the
    consumer allows.
    """

    def __init__(self, size):
        self.length = size
        self.offset = 0
        self.paused = False

    def startProducing(self, consumer):
        from twisted.internet.defer import Deferred

        self.consumer = consumer
        self.finished = Deferred()
        self.resumeProducing()
        return self.finished

    def resumeProducing(self):
        self.paused = False
        while not self.paused and self.offset < self.length:
            n = min(1 << 20, self.length - self.offset)
            chunk = pattern(self.offset, n)
            self.offset += n
            self.consumer.write(chunk)
        if self.offset >= self.length and not self.finished.called:
            self.finished.callback(None)

    def pauseProducing(self):
        self.paused = True

    def stopProducing(self):
        self.offset = self.length


class SiblingTests(_Base):
    """
    A URL the edge has never served uses a sibling URL's version as base.
    """

    @inlineCallbacks
    def test_siblingBase(self):
        """
        After /changing?a was served, the first fetch of /changing?b names
        that version as its base, the origin role finds it and sends a
        delta: the body is right and few bytes crossed.
        """
        yield self.d.fetch("/changing?a")
        response, body = yield self.d.fetch("/changing?b")
        self.assertEqual(body, changingPage(2))
        diagnostic = self.diagnostic(response)
        self.assertTrue(diagnostic.flags & Flag.BASE_SENT)
        self.assertTrue(diagnostic.flags & Flag.DELTA)
        self.assertLess(diagnostic.ratio, 5.0)
        self.assertEqual(self.d.edge.stats.total.siblingBases, 1)

    @inlineCallbacks
    def test_siblingSameThenOwnVersion(self):
        """
        When the sibling's version is exactly the new page ('same'), the
        edge stores it under the new URL too: the next fetch of that URL
        names its own version.
        """
        yield self.d.fetch("/static?a")
        response, body = yield self.d.fetch("/static?b")
        self.assertTrue(self.diagnostic(response).flags & Flag.SAME)
        self.assertEqual(self.d.edge.stats.total.siblingBases, 1)
        response, again = yield self.d.fetch("/static?b")
        self.assertEqual(again, body)
        self.assertTrue(self.diagnostic(response).flags & Flag.SAME)
        # Its own version this time, not a sibling's.
        self.assertEqual(self.d.edge.stats.total.siblingBases, 1)


class SlowClientTests(_Base):
    """
    A client that stops reading slows its own stream only.
    """

    startOptions = {"bigSize": 32 * 1024 * 1024}
    timeout = 90

    @inlineCallbacks
    def test_slowClientDoesNotDelayFastOne(self):
        """
        While one client has stopped reading a 32 MiB response (its stream
        stalls on flow control, sharing the link with everything else),
        another client downloads the same 32 MiB and makes small requests
        over the same links, all complete.
        """
        from twisted.internet.endpoints import TCP4ClientEndpoint
        from twisted.internet.protocol import Factory, Protocol
        from twisted.web.http_headers import Headers

        received = []

        class Stalled(Protocol):
            def connectionMade(self):
                self.transport.write(
                    b"GET /big HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n\r\n"
                )

            def dataReceived(self, data):
                received.append(len(data))
                # Read the first bytes, then stop reading altogether.
                self.transport.pauseProducing()

        slow = yield TCP4ClientEndpoint(reactor, "127.0.0.1", self.d.edgePort).connect(
            Factory.forProtocol(Stalled)
        )
        self.addCleanup(slow.transport.abortConnection)
        yield deferLater(reactor, 0.5, lambda: None)
        response = yield self.d.agent.request(
            b"GET", self.d.url("/big"), Headers({b"host": [HOST.encode()]})
        )
        checker = _PatternChecker()
        response.deliverBody(checker)
        total = yield checker.done
        self.assertEqual(total, 32 * 1024 * 1024)
        for i in range(10):
            small, body = yield self.d.fetch(f"/echo?i={i}")
            self.assertEqual(small.code, 200)
        # The stalled client got a little and is still far from done.
        self.assertLess(sum(received), 32 * 1024 * 1024)
