"""
The origin role's stream handler in memory: two links joined by
L{twisted.test.iosim}, the origin fetched through treq over treq's own
L{RequestTraversalAgent} (a real Agent against an in-memory Site), a Clock;
and the mapping of fetch failures to responses.
"""

from __future__ import annotations

from treq.testing import RequestTraversalAgent
from twisted.internet import error as ierror
from twisted.internet.defer import CancelledError, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseNeverReceived
from twisted.web.resource import Resource
from twisted.web.static import Data

from railgun.config import parseOriginMap
from railgun.delta.codec import ZstdPatchCodec, defaultRegistry
from railgun.delta.digest import versionDigest
from railgun.http.messages import RequestHead, ResponseHead, splitControl
from railgun.link.factory import LinkClientFactory, LinkServerFactory
from railgun.link.protocol import StreamProtocol
from railgun.origin.handler import OriginContext, OriginStreamHandler
from railgun.stores.memory import MemoryVersionStore
from railgun.upstream.client import classifyFetchFailure, originClient

TOKEN = b"unit-token"


class _Collector(StreamProtocol):
    def __init__(self):
        self.heads = []
        self.body = []
        self.ended = False

    def headersReceived(self, headers, endStream):
        self.heads.append(headers)
        self.ended = self.ended or endStream

    def dataReceived(self, data):
        self.body.append(data)

    def readConnectionLost(self):
        self.ended = True


class _Seen(Resource):
    isLeaf = True

    def __init__(self):
        super().__init__()
        self.requests = []

    def render(self, request):
        self.requests.append(
            (
                request.method,
                request.uri,
                request.getHeader(b"host"),
                request.getHeader(b"accept-encoding"),
                request.content.read(),
            )
        )
        request.setHeader(b"content-type", b"text/plain")
        request.setHeader(b"keep-alive", b"timeout=5")
        request.setHeader(b"railgun-digest", b"forged")
        return b"answer for " + request.uri


class _HandlerBase(SynchronousTestCase):
    """
    An origin role's link in memory, its origin an in-memory Site.
    """

    def setUp(self):
        self.clock = Clock()
        root = Resource()
        self.seen = _Seen()
        root.putChild(b"seen", self.seen)
        root.putChild(b"page", Data(b"<p>hello</p>\n" * 200, "text/html"))
        self.agent = self.makeAgent(root)
        self.context = OriginContext(
            origins=parseOriginMap(["www.example.test=http://origin.internal:8000"]),
            client=originClient(self.agent),
            clock=self.clock,
            responseTimeout=10.0,
            store=MemoryVersionStore(clock=self.clock),
            codecs=defaultRegistry(),
        )
        server = LinkServerFactory(
            token=TOKEN,
            clock=self.clock,
            pingInterval=0,
            streamFactory=lambda stream: OriginStreamHandler(self.context),
        )
        client = LinkClientFactory(token=TOKEN, clock=self.clock, pingInterval=0)
        # iosim returns the client (dialing) side first.
        self.dialer, self.acceptor, self.pump = connectedServerAndClient(
            lambda: server.buildProtocol(None),
            lambda: client.buildProtocol(None),
            clock=self.clock,
        )
        self.pump.flush()
        self.assertTrue(self.dialer.isReady())

    def makeAgent(self, root):
        """
        @return: the agent the origin role's treq client fetches through:
            a real Agent against an in-memory Site serving C{root}.
        """
        return RequestTraversalAgent(root)

    def exchange(self, head, body=None):
        collector = _Collector()
        stream = self.dialer.openStream(
            collector, head.toLinkHeaders(), endStream=body is None
        )
        if body is not None:
            stream.write(body)
            stream.loseConnection()
        for _ in range(10):
            self.pump.flush()
            self.agent.flush()
        return collector


class OriginHandlerTests(_HandlerBase):
    """
    Requests on a stream become treq fetches; responses come back on it.
    """

    def test_unmappedHost(self):
        """
        A Host with no origin is answered 421 by the origin role and no
        request is made at all.
        """
        collector = self.exchange(
            RequestHead(b"GET", b"http", b"elsewhere.test", b"/seen", [])
        )
        head = ResponseHead.fromLinkHeaders(collector.heads[0])
        _, control = splitControl(head.headers)
        self.assertEqual(head.status, 421)
        self.assertEqual(control[b"railgun-error"], b"unmapped-host")
        self.assertEqual(self.seen.requests, [])
        self.assertTrue(collector.ended)

    def test_requestTranslated(self):
        """
        The origin gets the method, the exact target, the client's Host,
        identity encoding and the body; the response comes back without
        hop-by-hop or forged railgun-* headers, as a raw body.
        """
        collector = self.exchange(
            RequestHead(
                b"POST",
                b"http",
                b"www.example.test",
                b"/seen?q=a|b",
                [(b"content-length", b"4"), (b"accept-encoding", b"gzip")],
            ),
            body=b"data",
        )
        self.assertEqual(
            self.seen.requests,
            [(b"POST", b"/seen?q=a|b", b"www.example.test", b"identity", b"data")],
        )
        head = ResponseHead.fromLinkHeaders(collector.heads[0])
        endToEnd, control = splitControl(head.headers)
        names = {name for name, _ in endToEnd}
        self.assertNotIn(b"keep-alive", names)
        self.assertNotIn(b"connection", names)
        self.assertEqual(control[b"railgun-body"], b"raw")
        self.assertNotIn(b"railgun-digest", control)
        self.assertEqual(b"".join(collector.body), b"answer for /seen?q=a|b")

    def test_versionedResponse(self):
        """
        A text page to a GET crosses as a version: compressed whole the
        first time, 'same' when the edge names it as its base.
        """
        request = RequestHead(b"GET", b"http", b"www.example.test", b"/page", [])
        first = self.exchange(request)
        _, control = splitControl(ResponseHead.fromLinkHeaders(first.heads[0]).headers)
        self.assertEqual(control[b"railgun-body"], b"full")
        digest = control[b"railgun-digest"]
        again = self.exchange(
            RequestHead(
                b"GET",
                b"http",
                b"www.example.test",
                b"/page",
                [(b"railgun-base", digest)],
            )
        )
        _, control = splitControl(ResponseHead.fromLinkHeaders(again.heads[0]).headers)
        self.assertEqual(control[b"railgun-body"], b"same")
        self.assertEqual(again.body, [])

    def test_fullEncodingReused(self):
        """
        A page sent whole again, unchanged, reuses its first compression:
        the same payload and headers, the codec run once.
        """
        from railgun.delta.codec import ZstdFullCodec

        calls = []
        compress = ZstdFullCodec.compress

        def counting(codec, body):
            calls.append(len(body))
            return compress(codec, body)

        self.patch(ZstdFullCodec, "compress", counting)
        self.acceptor.peerCodecs = ("zstd-patch", "zstd")  # as if announced
        request = RequestHead(b"GET", b"http", b"www.example.test", b"/page", [])
        first, second = self.exchange(request), self.exchange(request)

        def withoutDate(heads):
            # (The origin server's Date may tick between the two exchanges.)
            return [[(n, v) for n, v in head if n != b"date"] for head in heads]

        self.assertEqual(withoutDate(first.heads), withoutDate(second.heads))
        self.assertEqual(first.body, second.body)
        _, control = splitControl(ResponseHead.fromLinkHeaders(first.heads[0]).headers)
        self.assertEqual(
            (control[b"railgun-body"], control[b"railgun-codec"]), (b"full", b"zstd")
        )
        self.assertEqual(calls, [len(b"<p>hello</p>\n" * 200)])

    def test_unchangedVersionStoredOncePerRefresh(self):
        """
        A page served unchanged is written to the store once, not at every
        request, and again once the refresh interval has passed.
        """
        writes = []
        store = self.context.store

        class Counting:
            def get(self, key):
                return store.get(key)

            def set(self, key, value):
                writes.append(key)
                return store.set(key, value)

        self.context.store = Counting()
        request = RequestHead(b"GET", b"http", b"www.example.test", b"/page", [])
        first = self.exchange(request)
        _, control = splitControl(ResponseHead.fromLinkHeaders(first.heads[0]).headers)
        digest = control[b"railgun-digest"]
        same = RequestHead(
            b"GET", b"http", b"www.example.test", b"/page", [(b"railgun-base", digest)]
        )
        for _ in range(3):
            self.exchange(same)
        self.assertEqual(writes, [digest])
        self.clock.advance(self.context.recentlyStored.refresh)
        self.exchange(same)
        self.assertEqual(writes, [digest, digest])

    def test_failedWriteRetried(self):
        """
        A version the store refused is written again at the next request,
        not a minute later.
        """
        writes = []

        class Refusing:
            def get(self, key):
                return succeed(None)

            def set(self, key, value):
                writes.append(key)
                return succeed(False)

        self.context.store = Refusing()
        request = RequestHead(b"GET", b"http", b"www.example.test", b"/page", [])
        self.exchange(request)
        self.exchange(request)
        self.assertEqual(len(writes), 2)

    def test_recentlyStoredBounded(self):
        """
        The memo of writes forgets the oldest versions past its bound, and
        a forgotten version is due again.
        """
        from railgun.origin.handler import RecentlyStored

        recent = RecentlyStored(refresh=60.0, maxItems=2)
        for digest in ("a", "b", "c"):
            recent.wrote(digest, 0.0)
        self.assertTrue(recent.due("a", 1.0))
        self.assertFalse(recent.due("b", 1.0))
        self.assertFalse(recent.due("c", 59.9))
        self.assertTrue(recent.due("c", 60.0))


class FetchFailureTests(SynchronousTestCase):
    """
    L{classifyFetchFailure}: dead origins are 502s, slow ones 504s.
    """

    def test_mapping(self):
        """
        Each kind of failure maps to its status and code.
        """
        cases = [
            (ierror.ConnectionRefusedError(), False, 502, "origin-unreachable"),
            (ierror.DNSLookupError(), False, 502, "origin-dns"),
            (ierror.TimeoutError(), False, 504, "origin-connect-timeout"),
            (ResponseNeverReceived([]), False, 502, "origin-failed"),
            (CancelledError(), False, 504, "origin-timeout"),
            (ValueError("odd"), True, 504, "origin-timeout"),
            (ValueError("odd"), False, 502, "origin-error"),
        ]
        for exception, timedOut, status, code in cases:
            result = classifyFetchFailure(Failure(exception), timedOut)
            self.assertEqual((result.status, result.code), (status, code), exception)


class HeldBudgetTests(_HandlerBase):
    """
    The bytes held while collecting versions are bounded over all streams.
    """

    def test_overBudgetStreamsRaw(self):
        """
        With less budget than the page, the page streams raw (whole and
        correct) instead of being held, and nothing stays counted as held.
        """
        self.context.heldBudget = 100
        collector = self.exchange(
            RequestHead(b"GET", b"http", b"www.example.test", b"/page", [])
        )
        _, control = splitControl(
            ResponseHead.fromLinkHeaders(collector.heads[0]).headers
        )
        self.assertEqual(control[b"railgun-body"], b"raw")
        self.assertEqual(b"".join(collector.body), b"<p>hello</p>\n" * 200)
        self.assertEqual(self.context.held, 0)

    def test_releasedAfterVersion(self):
        """
        After a version was sent, its bytes no longer count as held.
        """
        self.exchange(RequestHead(b"GET", b"http", b"www.example.test", b"/page", []))
        self.assertEqual(self.context.held, 0)


class SeveralBasesTests(_HandlerBase):
    """
    The origin role against the older versions an edge names in
    C{railgun-bases} (L{railgun.delta.history}).
    """

    page = b"<p>hello</p>\n" * 200

    def named(self, base, bases, heldLatest=True):
        """
        Fetch C{/page} naming C{base} and C{bases} (all held by the origin
        role, C{base} only if C{heldLatest}); return the response's control
        headers and body.
        """
        self.acceptor.peerCodecs = ("zstd-patch", "zstd")  # as if announced
        for body in [base, *bases] if heldLatest else bases:
            self.context.store.set(versionDigest(body).encode("ascii"), body)
        headers = [(b"railgun-base", versionDigest(base).encode("ascii"))]
        headers.append(
            (b"railgun-bases", b", ".join(versionDigest(b).encode() for b in bases))
        )
        collector = self.exchange(
            RequestHead(b"GET", b"http", b"www.example.test", b"/page", headers)
        )
        _, control = splitControl(
            ResponseHead.fromLinkHeaders(collector.heads[0]).headers
        )
        return control, b"".join(collector.body)

    def test_sameAsAnOlderVersion(self):
        """
        A fresh body equal to an older version the edge named is answered
        'same', naming that version in railgun-base-used.
        """
        other = b"<p>something else entirely</p>\n" * 50
        control, body = self.named(other, [b"<p>x</p>", self.page])
        self.assertEqual(control[b"railgun-body"], b"same")
        self.assertEqual(
            control[b"railgun-base-used"], versionDigest(self.page).encode()
        )
        self.assertEqual(body, b"")

    def test_deltaAgainstTheClosest(self):
        """
        When the origin role no longer holds the latest, the delta is made
        against the older version closest to the fresh body
        (railgun-base-used), and decodes against it.
        """
        other = b"<p>something else entirely</p>\n" * 50
        close = self.page[:1000] + b"<p>edited</p>" + self.page[1000:]
        control, body = self.named(other, [b"<p>x</p>", close], heldLatest=False)
        self.assertEqual(control[b"railgun-body"], b"delta")
        self.assertEqual(control[b"railgun-base-used"], versionDigest(close).encode())
        self.assertEqual(
            ZstdPatchCodec().decode(close, body, len(self.page)), self.page
        )

    def test_latestWhenHeld(self):
        """
        When the origin role holds the latest version, the delta is against
        it (even when an older one shares more: measured to pay, see
        railgun.delta.history.chooseBase) and no railgun-base-used is sent.
        """
        close = self.page[:1000] + b"<p>edited</p>" + self.page[1000:]
        closer = self.page[:1000] + b"<p>e</p>" + self.page[1000:]
        control, body = self.named(close, [closer])
        self.assertEqual(control[b"railgun-body"], b"delta")
        self.assertNotIn(b"railgun-base-used", control)
        self.assertEqual(
            ZstdPatchCodec().decode(close, body, len(self.page)), self.page
        )


class DeltaReuseHandlerTests(_HandlerBase):
    """
    The origin role with L{railgun.delta.reuse.DeltaReuse}: a (base,
    target) pair asked again gets the kept delta, not a new encode.
    """

    def test_pairAskedAgain(self):
        """
        Requests naming the same base for the same page after the first get
        the delta kept from it without encoding (from the third on, the one
        made again at the best level when that is smaller).
        """
        from railgun.delta.reuse import DeltaReuse
        from tests.test_delta_reuse import _Pool, _Reactor

        self.context.deltas = DeltaReuse(_Reactor(), _Pool())
        self.acceptor.peerCodecs = ("zstd-patch", "zstd")  # as if announced
        page = b"<p>hello</p>\n" * 200
        base = page[:1000] + b"<p>edited</p>" + page[1000:]
        self.context.store.set(versionDigest(base).encode("ascii"), base)
        calls = []
        encode = ZstdPatchCodec.encode

        def counting(codec, b, t):
            calls.append(len(t))
            return encode(codec, b, t)

        self.patch(ZstdPatchCodec, "encode", counting)
        request = RequestHead(
            b"GET",
            b"http",
            b"www.example.test",
            b"/page",
            [(b"railgun-base", versionDigest(base).encode("ascii"))],
        )
        payloads = []
        for _ in range(3):
            collector = self.exchange(request)
            _, control = splitControl(
                ResponseHead.fromLinkHeaders(collector.heads[0]).headers
            )
            self.assertEqual(control[b"railgun-body"], b"delta")
            payloads.append(b"".join(collector.body))
        self.assertEqual(calls, [len(page)])
        self.assertEqual(payloads[1], payloads[0])
        best = ZstdPatchCodec(19).encodeAt(base, page, 19)
        self.assertEqual(payloads[2], min(payloads[0], best, key=len))
        self.assertEqual(ZstdPatchCodec().decode(base, payloads[2], len(page)), page)
