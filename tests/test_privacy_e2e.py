"""
The cross-user compression oracle, end to end (origin server, origin role
and edge on loopback, real mutual TLS): one user's private page never
becomes the base of another user's response, and the C{Railgun} header
tells the other user nothing about it.
"""

from __future__ import annotations

import gzip
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from railgun.delta.digest import versionDigest
from railgun.http.diagnostic import Flag
from railgun.stores.memory import MemoryVersionStore
from tests.harness import Deployment
from tests.test_delta_e2e import _reactor, _within, generatedVersions

#: the diagnostic flags that say something about a base.
_BASE_FLAGS = Flag.BASE_SENT | Flag.BASE_FOUND | Flag.DELTA | Flag.SAME


class AccountPage(Resource):
    """
    A personal page: a shared template, the user's secret token (from
    their Cookie), and text reflected from the query (the attacker's
    chosen guess), marked as the origin marks it.

    @ivar served: the body answered last.
    """

    isLeaf = True

    def __init__(self, template: bytes, marks: dict[bytes, bytes]) -> None:
        super().__init__()
        self._template = template
        self._marks = marks
        self.served = b""

    def render_GET(self, request: Any) -> bytes:
        user = request.getHeader(b"cookie") or b"user=anonymous"
        guess = request.args.get(b"q", [b""])[0]
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        for name, value in self._marks.items():
            request.setHeader(name, value)
        self.served = (
            self._template
            + b"<p>token for "
            + user
            + b": "
            + versionDigest(user).encode()
            + b"</p><p>you searched: "
            + guess
            + b"</p>\n"
        )
        return self.served


class OracleTests(TestCase):
    """
    User A fetches a personal page, then user B (the attacker) fetches the
    same URL or a sibling URL reflecting a guess.
    """

    timeout = 60
    edgeOptions: dict[str, Any] = {}

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        return Deferred.fromCoroutine(self._setUp())

    async def _setUp(self) -> None:
        template = generatedVersions(7, 1, "html")[0]
        root = Resource()
        self.pages = {
            b"private": AccountPage(template, {b"cache-control": b"private"}),
            b"cookie": AccountPage(template, {b"set-cookie": b"seen=1"}),
            b"vary": AccountPage(template, {b"vary": b"Cookie"}),
            b"public": AccountPage(template, {}),
        }
        for name, page in self.pages.items():
            root.putChild(name, page)
        site = Site(root)
        site.displayTracebacks = False
        port = await TCP4ServerEndpoint(_reactor(), 0, interface="127.0.0.1").listen(
            site
        )
        self.addCleanup(port.stopListening)
        self.d = Deployment()
        self.addCleanup(self.d.stop)
        await _within(
            self.d.start(
                originURL=f"http://127.0.0.1:{port.getHost().port}",
                edgeOptions=self.edgeOptions,
            ),
            "start",
        )
        await _within(self.d.edge.whenLinked(), "links")

    async def fetch(
        self, path: str, headers: dict[bytes, list[bytes]]
    ) -> tuple[Any, bytes, dict[str, int]]:
        """
        @return: the response, its body (checked against the origin's), and
            the body modes the edge counted for it.
        """
        before = dict(self.d.edge.stats.total.bodies)
        response, body = await _within(self.d.fetch(path, headers=headers), path)
        self.assertEqual(response.code, 200, body[:200])
        page = self.pages[path[1:].split("?")[0].encode()]
        self.assertEqual(body, page.served)
        after = dict(self.d.edge.stats.total.bodies)
        modes = {
            k: v - before.get(k, 0)
            for k, v in after.items()
            if v != before.get(k, 0) and k in ("same", "delta", "full", "raw")
        }
        return response, body, modes

    def diagnostic(self, response: Any) -> list[bytes]:
        """
        @return: the fields of the response's Railgun header.
        """
        (value,) = response.headers.getRawHeaders(b"railgun")
        fields: list[bytes] = value.split(b" ")
        return fields

    def assertNothingRevealed(self, response: Any) -> None:
        """
        The Railgun header gives no ratio and no flag about a base.
        """
        fields = self.diagnostic(response)
        self.assertEqual(fields[1], b"-", fields)
        self.assertEqual(int(fields[3], 16) & _BASE_FLAGS, 0, fields)

    async def attack(
        self,
        name: str,
        victim: dict,
        attacker: dict,
        paths: tuple[str, ...] = ("", "?q=token+for+user%3Dalice%3A+a"),
    ) -> None:
        """
        A fetches /name, then B fetches it and a sibling URL of it
        (C{paths}): none of B's responses is a delta or 'same', and B's
        header reveals nothing.
        """
        await self.fetch(f"/{name}", victim)
        victimBody = self.pages[name.encode()].served
        for query in paths:
            response, _, modes = await self.fetch(f"/{name}{query}", attacker)
            self.assertNotIn("delta", modes)
            self.assertNotIn("same", modes)
            self.assertNothingRevealed(response)
        cache = self.d.edge.proxy.cache
        assert isinstance(cache, MemoryVersionStore)
        for key in list(cache._items):
            kept = await cache.get(key)
            self.assertFalse(
                kept is not None and kept[32:] == victimBody,
                "the edge kept the private page as a version",
            )
        store = self.d.origin.store
        kept = await store.get(versionDigest(victimBody).encode())
        self.assertTrue(kept is None, "the origin role kept the private page")

    async def test_cacheControlPrivate(self) -> None:
        """
        A Cache-Control: private page of user A is no base for user B.
        """
        await self.attack(
            "private",
            {b"cookie": [b"user=alice"]},
            {b"cookie": [b"user=mallory"]},
        )

    async def test_setCookie(self) -> None:
        """
        A page that sets a cookie is no base for another user, even one
        sending no credentials at all.
        """
        await self.attack("cookie", {b"cookie": [b"user=alice"]}, {})

    async def test_varyCookie(self) -> None:
        """
        A page that varies on Cookie, fetched with one, is no base for
        another user.
        """
        await self.attack(
            "vary", {b"cookie": [b"user=alice"]}, {b"cookie": [b"user=mallory"]}
        )

    async def test_authorization(self) -> None:
        """
        A page answering a request with Authorization is no base for
        another user (the page itself is not marked at all).
        """
        await self.attack(
            "public",
            {b"authorization": [b"Bearer alice"]},
            {b"cookie": [b"u=m"]},
            # (B's own page is public: once kept, it is a fair base for
            # B's next one.)
            paths=("",),
        )

    async def test_privateNotKeptCompressed(self) -> None:
        """
        A private page compressed for its client is not kept compressed
        for the next client (the edge keeps shareable ones only).
        """
        response, body = await _within(
            self.d.fetch(
                "/private",
                headers={b"cookie": [b"user=alice"], b"accept-encoding": [b"gzip"]},
            ),
            "fetch",
        )
        self.assertEqual(response.headers.getRawHeaders(b"content-encoding"), [b"gzip"])
        served = self.pages[b"private"].served
        self.assertEqual(gzip.decompress(body), served)
        kept = self.d.edge.proxy.clientEncodings
        assert kept is not None
        self.assertTrue(
            kept.get(versionDigest(served).encode(), b"gzip") is None,
            "the private page was kept compressed",
        )

    async def test_publicPageKeepsDeltas(self) -> None:
        """
        An ordinary page fetched with a Cookie stays a shared version: the
        next user's response is a delta against it; with a Cookie, that
        user's header hides the ratio all the same (default 'public'), and
        without credentials it shows it.
        """
        await self.fetch("/public?q=1", {b"cookie": [b"user=alice"]})
        response, _, modes = await self.fetch("/public?q=1", {b"cookie": [b"user=bob"]})
        self.assertEqual(modes, {"delta": 1})
        self.assertNothingRevealed(response)
        response, _, modes = await self.fetch("/public?q=1", {})
        self.assertEqual(modes, {"delta": 1})
        fields = self.diagnostic(response)
        self.assertNotEqual(fields[1], b"-")
        self.assertTrue(int(fields[3], 16) & Flag.DELTA, fields)


class DiagnosticOffTests(OracleTests):
    """
    With C{--diagnostic-header off}, relayed responses carry no C{Railgun}
    header at all (and the oracle stays closed).
    """

    edgeOptions = {"diagnosticHeader": "off"}

    def assertNothingRevealed(self, response: Any) -> None:
        """
        No Railgun header.
        """
        self.assertIsNone(response.headers.getRawHeaders(b"railgun"))

    async def test_publicPageKeepsDeltas(self) -> None:
        """
        Deltas are kept; no response has the header.
        """
        await self.fetch("/public", {b"cookie": [b"user=alice"]})
        response, _, modes = await self.fetch("/public", {})
        self.assertEqual(modes, {"delta": 1})
        self.assertNothingRevealed(response)


class DiagnosticFullTests(OracleTests):
    """
    With C{--diagnostic-header full}, every relayed response shows its
    ratio: versions are still never shared, only the header is verbose.
    """

    edgeOptions = {"diagnosticHeader": "full"}

    def assertNothingRevealed(self, response: Any) -> None:
        """
        The ratio is shown, and no base was found for B's response.
        """
        fields = self.diagnostic(response)
        self.assertNotEqual(fields[1], b"-", fields)
        self.assertEqual(int(fields[3], 16) & (Flag.BASE_FOUND | Flag.DELTA), 0)

    async def test_publicPageKeepsDeltas(self) -> None:
        """
        A delta's ratio is shown even to a request with a Cookie.
        """
        await self.fetch("/public", {b"cookie": [b"user=alice"]})
        response, _, modes = await self.fetch("/public", {b"cookie": [b"user=bob"]})
        self.assertEqual(modes, {"delta": 1})
        self.assertTrue(int(self.diagnostic(response)[3], 16) & Flag.DELTA)
