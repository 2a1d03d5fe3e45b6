"""
The origin fetch agent's per-origin parsing and tuned connections
(L{ExactTargetAgent}), and the origin role's reuse of whole-body encodings.
"""

from __future__ import annotations

import gzip

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import URI, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface.verify import verifyObject

from railgun._sockets import TUNED_BUFFER
from railgun.delta.codec import defaultRegistry
from railgun.http.routing import parseOriginURL
from railgun.origin.handler import FullEncodings, OriginContext
from railgun.upstream.client import (
    fetchFromOrigin,
    makeOriginClient,
)
from railgun.versions import DELTA, FULL, EncodedVersion


class _Echo(Resource):
    """
    Answers with what it received; gzips its answer when asked by C{?gz}.
    """

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.seen = []

    def render(self, request):
        self.seen.append(
            (
                request.method,
                request.uri,
                request.getHeader(b"host"),
                request.getHeader(b"accept-encoding"),
                request.getHeader(b"cookie"),
                request.content.read(),
            )
        )
        body = b"echo " + request.uri
        if b"gz" in request.args:
            request.setHeader(b"content-encoding", request.args[b"gz"][0])
            return gzip.compress(body)
        return body


def _headers():
    return Headers({b"host": [b"www.example.test"], b"x-test": [b"1"]})


class ExactTargetAgentTests(TestCase):
    """
    The origin Agent over real sockets: exact targets, one parse and one
    endpoint per origin, tuned connections.
    """

    timeout = 20

    def setUp(self):
        self.echo = _Echo()
        self.port = reactor.listenTCP(0, Site(self.echo), interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.client, self.pool = makeOriginClient(
            reactor, connectTimeout=5, maxConnectionsPerOrigin=2
        )
        self.addCleanup(self.pool.closeCachedConnections)
        self.base = b"http://127.0.0.1:%d" % self.port.getHost().port
        self.target = parseOriginURL(self.base.decode())

    @inlineCallbacks
    def test_exactTargetsAndAbsoluteURI(self):
        """
        Targets go out exactly (an empty query kept), the response's
        request knows the URI as C{URI.fromBytes} parses it, and the origin
        is parsed and its endpoint built once.
        """
        seenURIs = []
        for target in (b"/a?", b"/b;p?q=1", b"/"):
            url = self.base + target
            response = yield fetchFromOrigin(
                self.client, reactor, self.target, b"GET", target, _headers(), None, 10
            )
            yield readBody(response)
            self.assertEqual(response.request.absoluteURI, URI.fromBytes(url).toBytes())
            seenURIs.append(self.echo.seen[-1][1])
        self.assertEqual(seenURIs, [b"/a?", b"/b;p?q=1", b"/"])
        agent = self.client._agent._agent
        self.assertEqual(list(agent._origins), [self.base])

    @inlineCallbacks
    def test_connectionTunedOnce(self):
        """
        An origin connection gets the large buffers when it is made.
        """
        response = yield fetchFromOrigin(
            self.client, reactor, self.target, b"GET", b"/t", _headers(), None, 10
        )
        transports = []
        done = Deferred()

        from twisted.internet.protocol import Protocol

        class Grab(Protocol):
            def connectionMade(self):
                transports.append(self.transport._producer)

            def connectionLost(self, reason):
                done.callback(None)

        response.deliverBody(Grab())
        yield done
        self.assertEqual(transports[0].bufferSize, TUNED_BUFFER)

    def test_unsupportedScheme(self):
        """
        A URL without a scheme the Agent knows fails cleanly.
        """
        from twisted.web.error import SchemeNotSupported

        agent = self.client._agent._agent
        self.failureResultOf(agent.request(b"GET", b"ftp://x/"), SchemeNotSupported)
        self.failureResultOf(agent.request(b"GET", b"/no-scheme"), SchemeNotSupported)
        verifyObject(IAgent, agent)


def _full(digest, payload=b"p" * 10):
    return EncodedVersion(FULL, "zstd", payload, digest, 100, False)


class FullEncodingsTests(SynchronousTestCase):
    """
    The memo of whole-body encodings is keyed by digest and codec, and
    bounded.
    """

    def test_getPut(self):
        """
        A kept encoding is found by its digest and codec only.
        """
        memo = FullEncodings()
        memo.put(_full("a" * 32), "zstd")
        self.assertEqual(memo.get("a" * 32, "zstd"), _full("a" * 32))
        self.assertIsNone(memo.get("a" * 32, "gzip"))
        self.assertIsNone(memo.get("b" * 32, "zstd"))

    def test_onlyFullWithoutBase(self):
        """
        Deltas and encodings made with a base are not kept.
        """
        memo = FullEncodings()
        memo.put(EncodedVersion(DELTA, "zstd-patch", b"d", "a" * 32, 1, True), "zstd")
        memo.put(EncodedVersion(FULL, "zstd", b"d", "b" * 32, 1, True), "zstd")
        self.assertIsNone(memo.get("a" * 32, "zstd"))
        self.assertIsNone(memo.get("b" * 32, "zstd"))

    def test_bounded(self):
        """
        Past C{maxItems} or C{maxBytes}, the least recently used go first;
        a payload over C{maxBytes} is not kept.
        """
        memo = FullEncodings(maxItems=2, maxBytes=25)
        memo.put(_full("a"), "zstd")
        memo.put(_full("b"), "zstd")
        memo.get("a", "zstd")
        memo.put(_full("c"), "zstd")
        self.assertIsNone(memo.get("b", "zstd"))
        self.assertIsNotNone(memo.get("a", "zstd"))
        memo.put(_full("d", b"x" * 20), "zstd")
        self.assertIsNone(memo.get("c", "zstd"))
        self.assertIsNone(memo.get("a", "zstd"))
        memo.put(_full("e", b"x" * 26), "zstd")
        self.assertIsNone(memo.get("e", "zstd"))
        self.assertIsNotNone(memo.get("d", "zstd"))

    def test_codecsForCached(self):
        """
        The codecs chosen for a peer's announcement are chosen once and are
        the registry's choice.
        """
        registry = defaultRegistry()
        context = OriginContext(
            origins=None,
            client=None,
            clock=Clock(),
            responseTimeout=1.0,
            codecs=registry,
        )
        peer = ("zstd-patch", "zstd")
        chosen = context.codecsFor(peer)
        self.assertEqual(
            chosen, (registry.chooseDelta(peer), registry.chooseFull(peer))
        )
        self.assertIs(context.codecsFor(peer), chosen)
        self.assertEqual(context.codecsFor(()), (None, None))
