"""
Compression Dictionary Transport with a real browser: a headless Chromium
loads successive versions of a page through an edge linked to an origin role
over TLS on loopback, and decodes the dcz deltas the edge sends it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.threads import deferToThread
from twisted.logger import LogEvent, Logger, formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from railgun.certs import generateDeployment
from railgun.config import (
    EdgeConfig,
    LinkTuning,
    OriginConfig,
    parseLinkMap,
    parseOriginMap,
)
from railgun.edge.service import EdgeService
from railgun.origin.service import OriginService
from railgun.tls import credentialsFromDeployment
from tests import chromium

log = Logger()

TOKEN = b"dictionary-test-token-0123456789"

#: what a site must allow for Chromium to keep a dynamic page as a
#: dictionary without serving it from its cache (docs/http.md).
CACHE_CONTROL = b"max-age=0, stale-while-revalidate=60"


def pageText(version: int) -> str:
    """
    The visible text of a version: mostly the same from one to the next.
    """
    lines = [f"Edition {version} of the front page"]
    for i in range(300):
        changed = " (updated)" if i % 97 == version % 97 else ""
        lines.append(f"Story {i}: something happened at place {i * 7}{changed}")
    return "\n".join(lines)


class Page(Resource):
    """
    A new version at every GET of C{/page}.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.version = 0

    def render_GET(self, request: Any) -> bytes:
        if request.path != b"/page":
            request.setResponseCode(404)
            return b""
        self.version += 1
        body = "".join(
            f"<div>{line}</div>\n" for line in pageText(self.version).split("\n")
        )
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", CACHE_CONTROL)
        return (
            "<!doctype html><html><head><title>front</title></head><body>\n"
            f"{body}</body></html>\n"
        ).encode()


class ChromiumDictionaryTests(TestCase):
    """
    A real Chromium and a real edge.
    """

    timeout = 180

    def setUp(self) -> Any:
        if not chromium.available():
            raise self.skipTest(
                f"no Chromium at {chromium.CHROMIUM} (.ci/run installs it)"
            )
        self.logged: list[str] = []
        observer = self._observe
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        return self._start()

    def _observe(self, event: LogEvent) -> None:
        if event.get("log_namespace", "").startswith("railgun.edge"):
            self.logged.append(formatEvent(event))

    @inlineCallbacks
    def _start(self) -> Any:
        self.page = Page()
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Site(self.page)
        )
        self.addCleanup(port.stopListening)
        originURL = f"http://127.0.0.1:{port.getHost().port}"
        deployment = generateDeployment("localhost")
        tuning = LinkTuning(pingInterval=0)
        origin = OriginService(
            OriginConfig(
                origins=parseOriginMap([f"localhost={originURL}"]),
                token=TOKEN,
                linkListen="tcp:0:interface=127.0.0.1",
                link=tuning,
            ),
            reactor,
            credentials=credentialsFromDeployment(deployment, "origin"),
        )
        origin.startService()
        self.addCleanup(origin.stopService)
        linkPort = (yield origin.whenListening()).getHost().port
        edge = EdgeService(
            EdgeConfig(
                links=parseLinkMap([f"localhost=127.0.0.1:{linkPort}"]),
                token=TOKEN,
                httpListen="tcp:0:interface=127.0.0.1",
                tlsName="localhost",
                link=tuning,
                dictionaries=True,
            ),
            reactor,
            credentials=credentialsFromDeployment(deployment, "edge"),
        )
        edge.startService()
        # (cleanups run last in, first out: the edge stops first)
        self.addCleanup(edge.stopService)
        self.edgePort = (yield edge.whenListening()).getHost().port

    def _browse(self, url: str, loads: int) -> list[dict[str, Any]]:
        """
        In a thread: load C{url} C{loads} times in one Chromium.
        """
        browser = chromium.Browser(
            flags=(
                # http://localhost is a secure context, so Chromium uses
                # dictionaries over plain HTTP; it must reach the edge on IPv4.
                "--host-resolver-rules=MAP localhost 127.0.0.1",
                # Dictionaries kept in memory: registered as soon as the
                # response is read, where a profile on disk registers them
                # after a database write that a busy machine may delay past
                # the next load. (Both behave the same otherwise: the disk
                # profile was verified too.)
                "--incognito",
            )
        )
        try:
            return [browser.load(url) for _ in range(loads)]
        finally:
            browser.close()

    @inlineCallbacks
    def test_chromiumDecodesDcz(self) -> Any:
        """
        Chromium keeps version 1 as a dictionary, names it in
        Available-Dictionary when it loads the page again, gets version 2 as
        dcz from the edge and renders it; version 3 comes as dcz against
        version 2.
        """
        url = f"http://localhost:{self.edgePort}/page"
        loads = yield deferToThread(self._browse, url, 3)
        first, second, third = loads
        self.assertEqual(first["text"].strip(), pageText(1))
        self.assertIn("use-as-dictionary", first["headers"])
        self.assertNotEqual(first["headers"].get("content-encoding"), "dcz")
        self.assertEqual(second["headers"].get("content-encoding"), "dcz")
        self.assertEqual(second["text"].strip(), pageText(2))
        self.assertEqual(third["headers"].get("content-encoding"), "dcz")
        self.assertEqual(third["text"].strip(), pageText(3))
        self.assertIn("available-dictionary", second["headers"]["vary"].lower())
        received = [line for line in self.logged if "Available-Dictionary" in line]
        sent = [line for line in self.logged if "dcz sent" in line]
        self.assertEqual((len(received), len(sent)), (2, 2), self.logged)
        log.info(
            "bytes to Chromium (headers included): version 1 {first} "
            "({coding}), version 2 {second} (dcz), version 3 {third} (dcz)",
            first=first["encodedBytes"],
            coding=first["headers"].get("content-encoding", "identity"),
            second=second["encodedBytes"],
            third=third["encodedBytes"],
        )
        self.assertLess(second["encodedBytes"], first["encodedBytes"])
