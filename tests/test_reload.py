"""
Reloading a running role's configuration (what SIGHUP does under twistd):
hosts added and removed, the token and certificates rotated, with a stream
open across the reload finishing intact; real TLS links on loopback.
"""

from __future__ import annotations

from typing import Any

from attrs import evolve
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import deferLater
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from twisted.web.static import Data

from railgun.config import parseLinkMap, parseOriginMap
from railgun.tls import credentialsFromDeployment
from tests.harness import HOST, Deployment


class Held(Resource):
    """
    Holds every request until the test answers it.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Any] = []

    def render_GET(self, request: Any) -> Any:
        self.requests.append(request)
        return NOT_DONE_YET


class ReloadTests(TestCase):
    """
    L{EdgeService.reload} and L{OriginService.reload} on a running pair.
    """

    timeout = 30

    @inlineCallbacks
    def setUp(self):
        root = Resource()
        self.held = Held()
        root.putChild(b"held", self.held)
        root.putChild(b"page", Data(b"<p>a page</p>\n" * 20, "text/html"))
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Site(root)
        )
        self.addCleanup(port.stopListening)
        self.originURL = f"http://127.0.0.1:{port.getHost().port}"
        self.d = Deployment()
        yield self.d.start(originURL=self.originURL)
        self.addCleanup(self.d.stop)
        yield self.d.edge.whenLinked()

    def credentials(self, role: str) -> Any:
        return credentialsFromDeployment(self.d.tlsDeployment, role)

    @inlineCallbacks
    def waitUntil(self, condition: Any) -> Any:
        for _ in range(200):
            if condition():
                return
            yield deferLater(reactor, 0.02, lambda: None)
        self.fail("condition never met")

    @inlineCallbacks
    def test_tokenRotatedUnderOpenStream(self):
        """
        Both roles reloaded with a new token while a response is held at the
        origin: that stream still completes with its whole body, the old
        links drain, and the next request crosses a new link made with the
        new token.
        """
        d = self.d
        held = d.fetch("/held")
        yield self.waitUntil(lambda: self.held.requests)
        oldPool = list(d.edge.pools.values())[0]
        token = b"a-new-token-after-rotation-0123456789"
        originDrained = d.origin.reload(
            evolve(d.origin.config, token=token), self.credentials("origin")
        )
        edgeDrained = d.edge.reload(
            evolve(d.edge.config, token=token), self.credentials("edge")
        )
        newPool = list(d.edge.pools.values())[0]
        self.assertIsNot(newPool, oldPool)
        request = self.held.requests[0]
        request.write(b"the held body\n" * 100)
        request.finish()
        response, body = yield held
        self.assertEqual((response.code, body), (200, b"the held body\n" * 100))
        yield originDrained
        yield edgeDrained
        self.assertEqual(oldPool.readyCount(), 0)
        response, body = yield d.fetch("/page")
        self.assertEqual(response.code, 200)
        self.assertEqual(newPool.readyCount() > 0, True)

    @inlineCallbacks
    def test_hostsAddedAndRemoved(self):
        """
        A host added to both maps is served after the reload; one removed
        from the edge's map is refused there (421), and one removed from
        the origin role's map is refused by the origin role (421).
        """
        d = self.d
        linkPort = d.linkPort
        d.origin.reload(
            evolve(
                d.origin.config,
                origins=parseOriginMap(
                    [f"new.test={self.originURL}", f"{HOST}={self.originURL}"]
                ),
            ),
            self.credentials("origin"),
        )
        d.edge.reload(
            evolve(
                d.edge.config,
                links=parseLinkMap(
                    [
                        f"new.test=127.0.0.1:{linkPort}",
                        f"gone-at-origin.test=127.0.0.1:{linkPort}",
                    ]
                ),
            ),
            self.credentials("edge"),
        )
        response, body = yield d.fetch("/page", host="new.test")
        self.assertEqual(response.code, 200, body)
        response, body = yield d.fetch("/page", host=HOST)
        self.assertEqual(response.code, 421)
        self.assertIn(b"not served by this edge", body)
        response, body = yield d.fetch("/page", host="gone-at-origin.test")
        self.assertEqual(response.code, 421)
        self.assertIn(b"not served by this origin role", body)

    @inlineCallbacks
    def test_sameSettingsKeepLinks(self):
        """
        A reload with nothing changed (certificates read again from the same
        files) keeps the edge's pools and links.
        """
        d = self.d
        before = dict(d.edge.pools)
        yield d.origin.reload(d.origin.config, self.credentials("origin"))
        yield d.edge.reload(d.edge.config, self.credentials("edge"))
        self.assertEqual(d.edge.pools, before)
        self.assertGreater(list(before.values())[0].readyCount(), 0)

    @inlineCallbacks
    def test_diagnosticHeaderFollows(self):
        """
        --diagnostic-header applies at a reload: 'off' removes the Railgun
        header from the next response.
        """
        d = self.d
        response, _ = yield d.fetch("/page")
        self.assertIsNotNone(response.headers.getRawHeaders(b"railgun"))
        yield d.edge.reload(
            evolve(d.edge.config, diagnosticHeader="off"), self.credentials("edge")
        )
        response, _ = yield d.fetch("/page")
        self.assertIsNone(response.headers.getRawHeaders(b"railgun"))

    def test_fixedSettingsKept(self):
        """
        Settings that cannot change while running are kept, and the log
        names them.
        """
        events: list = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        d = self.d
        listen = d.edge.config.httpListen
        d.edge.reload(
            evolve(d.edge.config, httpListen="tcp:1:interface=127.0.0.1"),
            self.credentials("edge"),
        )
        self.assertEqual(d.edge.config.httpListen, listen)
        lines = [formatEvent(e) for e in events]
        self.assertTrue(
            any("httpListen cannot change while running" in line for line in lines),
            lines,
        )
