"""
Compression Dictionary Transport at the edge (L{railgun.edge.dictionaries}):
the pure parts, and the edge offering versions and serving dcz, in memory.
"""

from __future__ import annotations

import base64
import gzip
import os
from email.utils import formatdate
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from railgun.delta.content import encodeBody
from railgun.delta.digest import versionDigest
from railgun.edge.dictionaries import (
    DCZ_MAGIC,
    Dictionaries,
    acceptsCoding,
    decodeDcz,
    dictionaryLifetime,
    encodeDcz,
    isShareable,
    matchPattern,
    parseAvailableDictionary,
    sha256,
    storeKey,
    useAsDictionary,
)
from railgun.edge.encodings import ClientEncodings
from railgun.edge.http import EdgeHTTPFactory
from railgun.edge.proxy import EdgeProxy
from railgun.http.routing import HostMap
from railgun.stores.memory import MemoryVersionStore
from tests.test_edge_perf import _connect, _Link, _Pool


def page(version: int) -> bytes:
    """
    A version of a page: mostly the same from one to the next.
    """
    return b"".join(
        b"<p>story %d at %d%s</p>\n" % (i, i * 7, b" (new)" if i == version else b"")
        for i in range(400)
    )


V1, V2 = page(1), page(2)
FRESH = b"max-age=0, stale-while-revalidate=60"


def available(body: bytes) -> bytes:
    """
    The Available-Dictionary value naming C{body}.
    """
    return b":" + base64.b64encode(sha256(body)) + b":"


class ParseTests(SynchronousTestCase):
    """
    The request headers of RFC 9842.
    """

    def test_availableDictionary(self) -> None:
        """
        An sf-binary of 32 bytes is a hash; anything else is none.
        """
        digest = sha256(b"x")
        value = b":" + base64.b64encode(digest) + b":"
        self.assertEqual(parseAvailableDictionary([value]), digest)
        self.assertEqual(parseAvailableDictionary([b" " + value + b" "]), digest)
        for bad in (
            [],
            None,
            [value, value],
            [base64.b64encode(digest)],
            [b":" + base64.b64encode(digest[:31]) + b":"],
            [b":not base64!:"],
            [b"::"],
        ):
            self.assertIsNone(parseAvailableDictionary(bad), bad)

    def test_acceptsCoding(self) -> None:
        """
        dcz is accepted when named with a q above 0; C{*} does not name it.
        """
        self.assertTrue(acceptsCoding(b"gzip, br, zstd, dcb, dcz", b"dcz"))
        self.assertTrue(acceptsCoding(b"gzip, DCZ;q=0.5", b"dcz"))
        self.assertFalse(acceptsCoding(b"gzip, dcz;q=0", b"dcz"))
        self.assertFalse(acceptsCoding(b"gzip, *", b"dcz"))
        self.assertFalse(acceptsCoding(None, b"dcz"))


class OfferTests(SynchronousTestCase):
    """
    What is offered, with which pattern, and for how long Chromium keeps it.
    """

    def test_matchPattern(self) -> None:
        """
        The pattern is the path without its query, URLPattern's syntax
        characters escaped; a configured one wins; a path that is not
        printable ASCII gets none.
        """
        self.assertEqual(matchPattern(b"/news/index.html?x=1#top"), "/news/index.html")
        self.assertEqual(matchPattern(b"/a:b/(c)*+{d}"), r"/a\:b/\(c\)\*\+\{d\}")
        self.assertEqual(matchPattern(b"/x", "/news/*"), "/news/*")
        self.assertIsNone(matchPattern(b"/caf\xc3\xa9"))
        self.assertIsNone(matchPattern(b"*"))

    def test_useAsDictionary(self) -> None:
        """
        The header is a structured-field dictionary with a quoted match.
        """
        self.assertEqual(useAsDictionary("/a"), b'match="/a"')
        self.assertEqual(useAsDictionary('/a"\\b'), b'match="/a\\"\\\\b"')

    def test_lifetime(self) -> None:
        """
        Freshness plus stale-while-revalidate less Age, as Chromium counts
        it; no-cache, no-store and max-age=0 alone give none, and
        must-revalidate cancels stale-while-revalidate.
        """
        now = 1_700_000_000.0
        date = formatdate(now, usegmt=True).encode()

        def lifetime(*headers: tuple[bytes, bytes]) -> float:
            return dictionaryLifetime(200, [(b"date", date), *headers], now)

        cc = b"cache-control"
        self.assertEqual(lifetime((cc, b"max-age=60")), 60)
        self.assertEqual(lifetime((cc, FRESH)), 60)
        self.assertEqual(lifetime((cc, b"max-age=0")), 0)
        self.assertEqual(lifetime(), 0)
        self.assertEqual(lifetime((cc, b"no-cache, max-age=60")), 0)
        self.assertEqual(lifetime((cc, b"no-store")), 0)
        self.assertEqual(lifetime((cc, FRESH + b", must-revalidate")), 0)
        self.assertEqual(lifetime((cc, b"max-age=60"), (b"age", b"20")), 40)
        self.assertEqual(lifetime((cc, b"max-age=10"), (b"age", b"20")), 0)
        expires = formatdate(now + 30, usegmt=True).encode()
        self.assertEqual(lifetime((b"expires", expires)), 30)
        modified = formatdate(now - 1000, usegmt=True).encode()
        self.assertEqual(lifetime((b"last-modified", modified)), 100)
        self.assertEqual(
            dictionaryLifetime(404, [(b"last-modified", modified)], now), 0
        )

    def test_shareable(self) -> None:
        """
        A response to a request with credentials, one setting a cookie,
        private or no-store is never offered.
        """
        self.assertTrue(isShareable([b"host"], [(b"cache-control", FRESH)]))
        self.assertFalse(isShareable([b"cookie"], []))
        self.assertFalse(isShareable([b"authorization"], []))
        self.assertFalse(isShareable([], [(b"set-cookie", b"a=b")]))
        self.assertFalse(isShareable([], [(b"cache-control", b"private, max-age=9")]))
        self.assertFalse(isShareable([], [(b"Cache-Control", b"no-store")]))


class CodecTests(SynchronousTestCase):
    """
    The dcz content coding.
    """

    def test_roundTrip(self) -> None:
        """
        A dcz body is the magic, the dictionary's SHA-256 and a zstd frame
        that rebuilds the body from the dictionary; it is far smaller than
        the body compressed alone.
        """
        encoded = encodeDcz(V2, V1)
        self.assertEqual(encoded[:8], bytes.fromhex("5e2a4d1820000000"))
        self.assertEqual(encoded[:8], DCZ_MAGIC)
        self.assertEqual(encoded[8:40], sha256(V1))
        self.assertEqual(decodeDcz(encoded, V1), V2)
        self.assertLess(len(encoded) * 5, len(gzip.compress(V2)))

    def test_wrongDictionary(self) -> None:
        """
        Decoding with another dictionary, or a body that is not dcz, fails.
        """
        encoded = encodeDcz(V2, V1)
        self.assertRaises(ValueError, decodeDcz, encoded, V2)
        self.assertRaises(ValueError, decodeDcz, b"x" + encoded[1:], V1)
        self.assertRaises(ValueError, decodeDcz, encoded[:50], V1)


def _full(body: bytes, cacheControl: bytes | None = FRESH, *extra: Any) -> list:
    headers = [(b":status", b"200"), (b"content-type", b"text/html")]
    if cacheControl is not None:
        headers.append((b"cache-control", cacheControl))
    headers += [
        (b"etag", b'"strong"'),
        *extra,
        (b"railgun-body", b"full"),
        (b"railgun-codec", b"identity"),
        (b"railgun-digest", versionDigest(body).encode("ascii")),
    ]
    return headers


class EdgeDictionaryTests(SynchronousTestCase):
    """
    The edge offers versions as dictionaries and serves dcz against them.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.link = _Link()
        self.store = MemoryVersionStore(
            maxBytes=1 << 22, maxItemBytes=1 << 20, ttl=600.0, clock=self.clock
        )
        self.encodes: list[Any] = []
        self.proxy = EdgeProxy(
            pools=HostMap({"www.test": _Pool(self.link), "app.test": _Pool(self.link)}),
            clock=self.clock,
            responseTimeout=30,
            cache=self.store,
            clientEncodings=ClientEncodings(),
            dictionaries=Dictionaries(
                store=self.store,
                clock=self.clock,
                patterns=HostMap.parse(["app.test=/app/*"], str),
                encodings=ClientEncodings(),
            ),
        )
        self.factory = EdgeHTTPFactory(
            self.proxy, reactor=self.clock, maxHeaderBytes=16384, maxBodyBytes=1 << 20
        )

    def fetch(
        self,
        headers: list[Any],
        body: bytes,
        request: bytes = b"",
        path: bytes = b"/page?q=1",
        host: bytes = b"www.test",
    ) -> tuple[bytes, bytes]:
        """
        One request answered with a version; the response head and body.
        """
        channel, transport = _connect(self.factory)
        channel.dataReceived(
            b"GET " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\n" + request + b"\r\n"
        )
        handler, _, _ = self.link.opened[-1]
        handler.headersReceived(headers, False)
        handler.dataReceived(body)
        handler.readConnectionLost()
        head, _, served = transport.value().partition(b"\r\n\r\n")
        return head, served

    def held(self, body: bytes) -> bytes | None:
        return self.successResultOf(self.store.get(storeKey("www.test", sha256(body))))

    def test_offered(self) -> None:
        """
        A public version Chromium would keep is offered with its path as the
        pattern, varies on Available-Dictionary, and is kept by SHA-256.
        """
        head, served = self.fetch(_full(V1), V1, b"Accept-Encoding: gzip\r\n")
        self.assertIn(b'Use-As-Dictionary: match="/page"', head)
        self.assertIn(b"Available-Dictionary", head)
        self.assertEqual(gzip.decompress(served), V1)
        self.assertEqual(self.held(V1), V1)

    def test_configuredPattern(self) -> None:
        """
        A host with a configured pattern offers its versions with it.
        """
        head, _ = self.fetch(
            _full(V1), V1, b"Accept-Encoding: gzip\r\n", b"/app/one", b"app.test"
        )
        self.assertIn(b'Use-As-Dictionary: match="/app/*"', head)

    def test_notKeptByChromium(self) -> None:
        """
        A version Chromium would not keep (no-cache, or no freshness) is
        not offered, nor kept.
        """
        for cacheControl in (b"no-cache", None, b"max-age=0"):
            head, _ = self.fetch(
                _full(V1, cacheControl), V1, b"Accept-Encoding: br\r\n"
            )
            self.assertNotIn(b"Use-As-Dictionary", head)
        self.assertIsNone(self.held(V1))

    def test_private(self) -> None:
        """
        A private response, one setting a cookie, or one answering a
        request with a cookie is neither offered nor answered with dcz.
        """
        self.fetch(_full(V1), V1, b"Accept-Encoding: br\r\n")
        ask = b"Accept-Encoding: br, dcz\r\nAvailable-Dictionary: " + available(V1)
        for headers, request in (
            (_full(V2, b"private, max-age=60"), ask + b"\r\n"),
            (_full(V2, FRESH, (b"set-cookie", b"s=1")), ask + b"\r\n"),
            (_full(V2), ask + b"\r\nCookie: s=1\r\n"),
        ):
            head, _ = self.fetch(headers, V2, request)
            self.assertNotIn(b"Use-As-Dictionary", head)
            self.assertIn(b"Content-Encoding: br", head)

    def test_dcz(self) -> None:
        """
        A request naming a version the edge offered gets the new one as
        dcz against it: Content-Length of the dcz bytes, Vary on both
        headers, a weak ETag, and offered in turn.
        """
        self.fetch(_full(V1), V1, b"Accept-Encoding: gzip\r\n")
        head, served = self.fetch(
            _full(V2),
            V2,
            b"Accept-Encoding: gzip, br, zstd, dcb, dcz\r\n"
            b"Available-Dictionary: " + available(V1) + b"\r\n",
        )
        self.assertIn(b"Content-Encoding: dcz", head)
        self.assertEqual(decodeDcz(served, V1), V2)
        self.assertIn(b"Content-Length: %d" % len(served), head)
        self.assertIn(b"Vary: Accept-Encoding", head)
        self.assertIn(b"Vary: Available-Dictionary", head)
        self.assertIn(b'ETag: W/"strong"', head)
        self.assertIn(b'Use-As-Dictionary: match="/page"', head)
        self.assertLess(len(served) * 5, len(encodeBody(V2, b"br")))
        self.assertEqual(self.held(V2), V2)

    def test_dczCompressedOnce(self) -> None:
        """
        Clients holding the same version get the same dcz bytes, encoded
        once.
        """
        calls: list[int] = []
        dictionaries = self.proxy.dictionaries
        assert dictionaries is not None

        def encode(body: bytes, dictionary: bytes, hashed: bytes) -> Deferred[bytes]:
            calls.append(1)
            d: Deferred[bytes] = Deferred()
            d.callback(encodeDcz(body, dictionary, hashed=hashed))
            return d

        dictionaries.encode = encode
        self.fetch(_full(V1), V1, b"Accept-Encoding: gzip\r\n")
        ask = b"Accept-Encoding: dcz, gzip\r\nAvailable-Dictionary: " + available(V1)
        first = self.fetch(_full(V2), V2, ask + b"\r\n")
        second = self.fetch(_full(V2), V2, ask + b"\r\n")
        self.assertEqual(first[1], second[1])
        self.assertEqual(calls, [1])

    def test_encodeFailed(self) -> None:
        """
        A dcz encoding that fails is logged and the plain coding is served.
        """
        dictionaries = self.proxy.dictionaries
        assert dictionaries is not None

        def encode(body: bytes, dictionary: bytes, hashed: bytes) -> Deferred[bytes]:
            return fail(MemoryError("no room for dcz"))

        dictionaries.encode = encode
        self.fetch(_full(V1), V1, b"Accept-Encoding: gzip\r\n")
        head, served = self.fetch(
            _full(V2),
            V2,
            b"Accept-Encoding: gzip, dcz\r\nAvailable-Dictionary: "
            + available(V1)
            + b"\r\n",
        )
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        self.assertIn(b"Content-Encoding: gzip", head)
        self.assertEqual(gzip.decompress(served), V2)
        self.assertEqual(len(self.flushLoggedErrors(MemoryError)), 1)

    def test_unknownHash(self) -> None:
        """
        A hash the edge does not hold (never offered, or expired from the
        store) gets the normal response.
        """
        self.fetch(_full(V1), V1, b"Accept-Encoding: gzip\r\n")
        self.clock.advance(601)
        ask = b"Accept-Encoding: gzip, dcz\r\nAvailable-Dictionary: "
        for named in (available(V1), available(b"never served")):
            head, served = self.fetch(_full(V2), V2, ask + named + b"\r\n")
            self.assertIn(b"Content-Encoding: gzip", head)
            self.assertEqual(gzip.decompress(served), V2)

    def test_otherHost(self) -> None:
        """
        A version offered by one host is never the dictionary of another's
        response.
        """
        self.fetch(
            _full(V1), V1, b"Accept-Encoding: gzip\r\n", b"/app/one", b"app.test"
        )
        head, _ = self.fetch(
            _full(V2),
            V2,
            b"Accept-Encoding: gzip, dcz\r\nAvailable-Dictionary: "
            + available(V1)
            + b"\r\n",
        )
        self.assertIn(b"Content-Encoding: gzip", head)

    def test_noDczWhen(self) -> None:
        """
        No dcz for a range request, a client that does not accept dcz, or
        a no-transform response (which is not offered either).
        """
        self.fetch(_full(V1), V1, b"Accept-Encoding: gzip\r\n")
        named = b"Available-Dictionary: " + available(V1) + b"\r\n"
        head, _ = self.fetch(
            _full(V2), V2, b"Accept-Encoding: gzip, dcz\r\nRange: bytes=0-9\r\n" + named
        )
        self.assertIn(b"Content-Encoding: gzip", head)
        head, _ = self.fetch(_full(V2), V2, b"Accept-Encoding: gzip, br\r\n" + named)
        self.assertIn(b"Content-Encoding: br", head)
        head, served = self.fetch(
            _full(V2, FRESH + b", no-transform"),
            V2,
            b"Accept-Encoding: gzip, dcz\r\n" + named,
        )
        self.assertNotIn(b"Content-Encoding", head)
        self.assertNotIn(b"Use-As-Dictionary", head)
        self.assertEqual(served, V2)

    def test_plainWhenSmaller(self) -> None:
        """
        dcz is sent only when smaller than the best plain coding: against
        a dictionary unlike the body, br wins.
        """
        unrelated = os.urandom(2000)
        body = b"a" * 5000
        self.store.set(storeKey("www.test", sha256(unrelated)), unrelated)
        head, served = self.fetch(
            _full(body),
            body,
            b"Accept-Encoding: br, dcz\r\nAvailable-Dictionary: "
            + available(unrelated)
            + b"\r\n",
        )
        self.assertIn(b"Content-Encoding: br", head)
        self.assertEqual(served, encodeBody(body, b"br"))


class BenchTests(SynchronousTestCase):
    """
    The C{dcz} benchmark scenario (L{bench.dcz}), on pages made here.
    """

    def test_measure(self) -> None:
        """
        Each pair is counted in every coding; the edge sends the smaller of
        dcz and br; the table names the sequence and the totals.
        """
        from bench.corpus import Sequence
        from bench.dcz import measure, tables

        data = measure([Sequence("made", (V1, V2, page(3)))])
        [row] = data["rows"]
        self.assertEqual((row["pairs"], data["pairs"]), (2, 2))
        self.assertEqual(row["identity"], len(V2) + len(page(3)))
        self.assertLess(row["dcz"] * 5, row["br"])
        self.assertEqual(row["sent"], row["dcz"])
        self.assertEqual(data["totals"], {k: row[k] for k in data["totals"]})
        text = tables({"data": data})
        self.assertIn("| made | 2 |", text)
        self.assertIn("| **all** | 2 |", text)


class OptionTests(SynchronousTestCase):
    """
    C{--dictionaries} and C{--dictionary-match} reach the edge's proxy.
    """

    def setUp(self) -> None:
        from railgun.certs import generateDeployment, writeDeployment

        self.certs = self.mktemp()
        writeDeployment(generateDeployment("localhost"), self.certs)

    def edgeConfig(self, *argv: str) -> Any:
        from railgun.tap import Options

        options = Options()
        options.parseOptions(
            ["--role", "edge", "--certs", self.certs, "--token", "t"]
            + ["--link", "www.test=127.0.0.1:2408", *argv]
        )
        return options.built.edgeConfig()

    def test_flags(self) -> None:
        """
        Off by default; the flag turns it on; patterns are per Host.
        """
        self.assertFalse(self.edgeConfig().dictionaries)
        config = self.edgeConfig(
            "--dictionaries",
            "--dictionary-match",
            "www.test=/news/*",
            "--dictionary-match",
            "*.test=/",
        )
        self.assertTrue(config.dictionaries)
        self.assertEqual(config.dictionaryMatch.lookup("www.test"), "/news/*")
        self.assertEqual(config.dictionaryMatch.lookup("a.test"), "/")

    def test_badPattern(self) -> None:
        """
        A pattern that is not a path is a usage error naming the flag.
        """
        from twisted.python.usage import UsageError

        e = self.assertRaises(
            UsageError, self.edgeConfig, "--dictionary-match", "www.test=news"
        )
        self.assertIn("dictionary", str(e))

    def test_service(self) -> None:
        """
        The edge service gives its proxy dictionaries on its version store
        with the flag, and none without it or without delta compression.
        """
        from railgun.edge.service import EdgeService
        from railgun.tls import credentialsFromDeployment

        def proxy(*argv: str) -> Any:
            from railgun.certs import generateDeployment

            return EdgeService(
                self.edgeConfig(*argv),
                Clock(),
                credentials=credentialsFromDeployment(
                    generateDeployment("localhost"), "edge"
                ),
            ).proxy

        on = proxy("--dictionaries", "--dictionary-match", "www.test=/n/*")
        assert on.dictionaries is not None
        self.assertIs(on.dictionaries.store, on.cache)
        self.assertEqual(on.dictionaries.patterns.lookup("www.test"), "/n/*")
        self.assertIsNone(proxy().dictionaries)
        self.assertIsNone(proxy("--dictionaries", "--no-delta").dictionaries)
