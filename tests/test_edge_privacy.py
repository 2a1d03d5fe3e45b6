"""
The edge's side of the sharing policy (L{railgun.http.privacy}), in memory:
which requests name a base, which responses become the URL's version or a
sibling's base.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from railgun.delta.codec import defaultRegistry
from railgun.delta.digest import versionDigest
from railgun.delta.siblings import SiblingIndex
from railgun.stores.memory import MemoryVersionStore
from tests.test_edge_perf import _connect
from tests.test_edge_robustness import _edge

OLD = b"<p>the page as it was</p>\n" * 40
NEW = b"<p>the page as it is</p>\n" * 40


class EdgePrivacyTests(SynchronousTestCase):
    """
    An edge holding a version of C{/page}.
    """

    def setUp(self) -> None:
        clock = Clock()
        self.cache = MemoryVersionStore(clock=clock)
        self.cache.set(b"bench.local /page", versionDigest(OLD).encode() + OLD)
        self.siblings = SiblingIndex()
        self.factory, self.link, _ = _edge(
            clock, cache=self.cache, codecs=defaultRegistry(), siblings=self.siblings
        )

    def request(self, path: bytes, *headers: bytes) -> tuple[Any, list, Any]:
        channel, transport = _connect(self.factory)
        channel.dataReceived(
            b"GET "
            + path
            + b" HTTP/1.1\r\nHost: bench.local\r\n"
            + b"".join(h + b"\r\n" for h in headers)
            + b"\r\n"
        )
        handler, linkHeaders, _ = self.link.opened[-1]
        return handler, linkHeaders, transport

    def answer(self, handler: Any, *headers: tuple[bytes, bytes]) -> None:
        """
        Answer with NEW as a full version carrying C{headers}.
        """
        handler.headersReceived(
            [
                (b":status", b"200"),
                (b"content-type", b"text/html"),
                *headers,
                (b"railgun-body", b"full"),
                (b"railgun-codec", b"identity"),
                (b"railgun-digest", versionDigest(NEW).encode()),
            ],
            False,
        )
        handler.dataReceived(NEW)
        handler.readConnectionLost()

    def kept(self, key: bytes) -> bytes | None:
        value = self.successResultOf(self.cache.get(b"bench.local " + key))
        return None if value is None else value[32:]

    def test_noBaseForAuthorization(self) -> None:
        """
        A request with Authorization names no base (and no sibling's); the
        same request without it names the URL's version.
        """
        _, headers, _ = self.request(b"/page", b"Authorization: Bearer x")
        self.assertNotIn(b"railgun-base", dict(headers))
        _, headers, _ = self.request(b"/other", b"Authorization: Bearer x")
        self.assertNotIn(b"railgun-base", dict(headers))
        _, headers, _ = self.request(b"/page", b"Cookie: a=b")
        self.assertEqual(dict(headers)[b"railgun-base"], versionDigest(OLD).encode())

    def test_privateNotKept(self) -> None:
        """
        A response that is one user's (private, setting a cookie, varying
        on the request's Cookie, answering Authorization) is served but not
        kept as the URL's version nor remembered as a sibling.
        """
        cases = [
            (b"/a", (), ((b"cache-control", b"private, max-age=0"),)),
            (b"/b", (), ((b"cache-control", b"no-store"),)),
            (b"/c", (), ((b"set-cookie", b"s=1"),)),
            (b"/d", (b"Cookie: u=1",), ((b"vary", b"Cookie"),)),
            (b"/e", (b"Authorization: Basic eA==",), ()),
        ]
        for path, request, response in cases:
            handler, _, transport = self.request(path, *request)
            self.answer(handler, *response)
            self.assertTrue(transport.value().endswith(NEW), path)
            self.assertTrue(self.kept(path) is None, path)
            self.assertIsNone(self.siblings.pick(b"bench.local", path + b"x"), path)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_publicKept(self) -> None:
        """
        An ordinary response to a request with a Cookie is kept as the
        URL's version and remembered as a sibling.
        """
        handler, _, _ = self.request(b"/page", b"Cookie: u=1")
        self.answer(handler, (b"vary", b"Accept-Encoding"))
        self.assertEqual(self.kept(b"/page"), NEW)
        self.assertEqual(self.siblings.pick(b"bench.local", b"/pagex"), b"/page")
