"""
Delta compression end to end, over a real deployment (origin server, origin
role and edge on loopback, real mutual TLS): the bytes that cross the link
for a page that changes between requests, and every fallback, including a
real memcached as the origin role's store that dies and comes back, and two
origin roles sharing one memcached.

The pages are generated here (seeded, so every run sees the same bytes);
nothing is read from the shared corpus.
"""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from railgun.config import StoreConfig
from railgun.delta.digest import versionDigest
from railgun.stats import Counters
from railgun.stores.memcached import MemcachedVersionStore
from railgun.stores.memory import MemoryVersionStore
from tests.harness import Deployment
from tests.memcachedserver import MemcachedServer

_T = TypeVar("_T")

#: seconds any single wait in these tests may take before it fails.
WAIT = 10.0

#: how a body crosses the link.
MODES = frozenset(["same", "delta", "full", "raw"])


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def generatedVersions(seed: int, count: int, kind: str) -> list[bytes]:
    """
    Successive versions of a news-list page, as a site like a link
    aggregator serves it: each version changes a few scores, a comment
    count, the timestamp, and sometimes replaces one item with a new one.

    @param seed: makes the versions reproducible.
    @param count: how many versions.
    @param kind: C{"html"} or C{"json"}.
    @return: the bodies, oldest first, each different from the one before.
    """
    rng = random.Random(seed)
    vocabulary = [
        "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 10)))
        for _ in range(3000)
    ]

    def newItem(n: int) -> dict[str, Any]:
        return {
            "id": 40_000_000 + n,
            "title": " ".join(rng.choices(vocabulary, k=rng.randint(5, 12))),
            "site": rng.choice(vocabulary) + ".example",
            "score": rng.randint(1, 900),
            "comments": rng.randint(0, 400),
            "by": rng.choice(vocabulary),
        }

    items = [newItem(n) for n in range(250)]
    serial = len(items)
    versions = []
    for version in range(count):
        if version:
            for item in rng.sample(items, 4):
                item["score"] += rng.randint(1, 30)
            rng.choice(items)["comments"] += 1
            if rng.random() < 0.5:
                items.pop(rng.randrange(len(items)))
                items.insert(rng.randrange(10), newItem(serial))
                serial += 1
        stamp = f"2024-03-01T10:{version // 60:02d}:{version % 60:02d}Z"
        if kind == "json":
            body = json.dumps({"generated": stamp, "items": items}, indent=1)
        else:
            rows = "\n".join(
                f'<tr id="{i["id"]}"><td class="title"><a href="https://{i["site"]}/">'
                f'{i["title"]}</a> ({i["site"]})</td><td class="sub">{i["score"]} points '
                f"by {i['by']} | {i['comments']} comments</td></tr>"
                for i in items
            )
            body = (
                f"<!doctype html>\n<html><head><title>news</title></head><body>\n"
                f"<p>updated {stamp}</p>\n<table>\n{rows}\n</table>\n</body></html>\n"
            )
        versions.append(body.encode("utf-8"))
    return versions


class VersionedPage(Resource):
    """
    Serves version k of a page on its k-th request, and a 410 once they
    are used up (so a test that fetches more than it planned fails).

    @ivar hits: requests answered so far.
    """

    isLeaf = True

    def __init__(self, versions: list[bytes], contentType: bytes) -> None:
        super().__init__()
        self._versions = versions
        self._contentType = contentType
        self.hits = 0

    def render_GET(self, request: Any) -> bytes:
        self.hits += 1
        if self.hits > len(self._versions):
            request.setResponseCode(410)
            return b"no more versions\n"
        request.setHeader(b"content-type", self._contentType)
        return self._versions[self.hits - 1]

    def served(self) -> bytes:
        """
        @return: the version answered last.
        """
        return self._versions[self.hits - 1]


def _within(d: Awaitable[_T], what: str) -> Deferred[_T]:
    """
    @return: C{d} as a Deferred that fails after L{WAIT} seconds, so no
        test hangs on it.
    """
    deferred: Deferred[_T] = Deferred.fromCoroutine(_await(d))
    deferred.addTimeout(WAIT, _reactor())
    return deferred


async def _await(d: Awaitable[_T]) -> _T:
    return await d


def _snapshot(counters: Counters) -> dict[str, Any]:
    return {
        "onLink": counters.bodyBytesOnLink,
        "served": counters.bodyBytesServed,
        "bodies": dict(counters.bodies),
        "fallbacks": dict(counters.fallbacks),
        "errors": counters.errors,
    }


class _DeltaCase(TestCase):
    """
    A deployment whose origin server serves generated versions at
    C{/page.html} and C{/data.json}.
    """

    timeout = 60
    count = 12

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        return Deferred.fromCoroutine(self._setUp())

    async def _setUp(self) -> None:
        self.html = generatedVersions(1, self.count, "html")
        self.json = generatedVersions(2, self.count, "json")
        self.pages = {
            "/page.html": VersionedPage(self.html, b"text/html; charset=utf-8"),
            "/data.json": VersionedPage(self.json, b"application/json"),
        }
        root = Resource()
        for path, page in self.pages.items():
            root.putChild(path[1:].encode(), page)
        site = Site(root)
        site.displayTracebacks = False
        port = await TCP4ServerEndpoint(_reactor(), 0, interface="127.0.0.1").listen(
            site
        )
        self.addCleanup(port.stopListening)
        self.originURL = f"http://127.0.0.1:{port.getHost().port}"
        self.d = await self.deploy()

    async def deploy(self, **originOptions: Any) -> Deployment:
        """
        Start an origin role and an edge against this test's origin server.
        """
        d = Deployment()
        self.addCleanup(d.stop)
        await _within(
            d.start(originURL=self.originURL, originOptions=originOptions), "start"
        )
        await _within(d.edge.whenLinked(), "links")
        return d

    async def fetch(self, path: str, d: Deployment | None = None) -> dict[str, Any]:
        """
        Fetch C{path} through the edge and check the body is exactly the
        version the origin server answered.

        @return: what this response changed in both roles' counters.
        """
        d = d or self.d
        edgeBefore = _snapshot(d.edge.stats.total)
        originBefore = _snapshot(d.origin.stats.total)
        response, body = await _within(d.fetch(path), path)
        self.assertEqual(response.code, 200, body[:200])
        self.assertEqual(body, self.pages[path].served())
        edge, origin = _snapshot(d.edge.stats.total), _snapshot(d.origin.stats.total)

        def changed(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
            return {
                k: v - before.get(k, 0)
                for k, v in after.items()
                if v != before.get(k, 0)
            }

        return {
            "body": body,
            "edgeOnLink": edge["onLink"] - edgeBefore["onLink"],
            "originOnLink": origin["onLink"] - originBefore["onLink"],
            "edgeBodies": {
                k: v
                for k, v in changed(edge["bodies"], edgeBefore["bodies"]).items()
                if k in MODES
            },
            "edgeFallbacks": changed(edge["fallbacks"], edgeBefore["fallbacks"]),
            "originFallbacks": changed(origin["fallbacks"], originBefore["fallbacks"]),
            "errors": edge["errors"]
            - edgeBefore["errors"]
            + origin["errors"]
            - originBefore["errors"],
        }

    def assertDelta(self, result: dict[str, Any]) -> None:
        """
        The response crossed the link as a delta of under 1/20 of its body,
        and both roles counted the same payload bytes.
        """
        self.assertEqual(result["edgeBodies"], {"delta": 1})
        self.assertEqual(result["edgeOnLink"], result["originOnLink"])
        self.assertLess(result["edgeOnLink"] * 20, len(result["body"]), result)
        self.assertEqual(result["errors"], 0)

    def assertFull(self, result: dict[str, Any]) -> None:
        """
        The response crossed the link whole (compressed or not), without a
        delta.
        """
        self.assertNotIn("delta", result["edgeBodies"])
        self.assertEqual(sum(result["edgeBodies"].values()), 1, result["edgeBodies"])
        # A whole body: at least what the full codec makes of it, far more
        # than any delta of these pages.
        self.assertGreater(result["edgeOnLink"] * 20, len(result["body"]), result)
        self.assertEqual(result["errors"], 0)

    def edgeCache(self, d: Deployment | None = None) -> MemoryVersionStore:
        """
        @return: the edge's version cache.
        """
        cache = (d or self.d).edge.proxy.cache
        assert isinstance(cache, MemoryVersionStore)
        return cache

    def edgeCacheKeys(self, d: Deployment | None = None) -> list[bytes]:
        """
        @return: the keys of the edge's cached versions (the store has no
            listing API; its dict is read directly).
        """
        return list(self.edgeCache(d)._items)


class DeltaTests(_DeltaCase):
    """
    Deltas and the fallbacks of the in-memory stores.
    """

    async def test_deltasAfterFirstFetch(self) -> None:
        """
        After the first fetch of a page, every new version crosses the link
        as a delta of under 1/20 of the body (both roles count the same
        bytes), and every body served is the origin's exactly.
        """
        for path in ("/page.html", "/data.json"):
            first = await self.fetch(path)
            if path == "/page.html":
                self.assertFull(first)
            # else: the edge may name /page.html's version as a sibling base.
            self.assertEqual(first["edgeOnLink"], first["originOnLink"])
            sizes = []
            for _ in range(self.count - 1):
                result = await self.fetch(path)
                self.assertDelta(result)
                sizes.append(result["edgeOnLink"] / len(result["body"]))
            # These pages change by a few dozen bytes: far under 5%.
            self.assertLess(max(sizes), 0.02, sizes)

    async def test_edgeCacheEmptied(self) -> None:
        """
        When the edge lost its version, the next response comes whole and
        right (not a fallback: no base was named), and deltas resume after.
        """
        self.assertFull(await self.fetch("/page.html"))
        self.assertDelta(await self.fetch("/page.html"))
        # (The edge also keeps the version before as an older one, under
        # its own key: see test_flipsCostNothing.)
        keys = [k for k in self.edgeCacheKeys() if b" #" not in k]
        self.assertEqual(len(keys), 1)
        await self.edgeCache().delete(keys[0])
        result = await self.fetch("/page.html")
        self.assertFull(result)
        self.assertEqual(result["edgeFallbacks"], {})
        self.assertEqual(result["originFallbacks"], {})
        self.assertDelta(await self.fetch("/page.html"))

    async def test_flipsCostNothing(self) -> None:
        """
        A page flipping between variants (A B A B, then back to the one
        seen two versions ago) crosses as 'same' against the older version
        the edge kept, once it has seen each: no payload on the link, the
        right body served.
        """
        a, b, c = self.html[0], self.html[1], self.html[2]
        self.pages["/page.html"]._versions = [a, b, a, b, c, a, b]
        modes = []
        for _ in range(7):
            result = await self.fetch("/page.html")
            self.assertEqual(result["errors"], 0)
            self.assertEqual(result["edgeFallbacks"], {})
            self.assertEqual(result["edgeOnLink"], result["originOnLink"])
            modes.append((list(result["edgeBodies"]), result["edgeOnLink"]))
        self.assertEqual(
            [m for m, _ in modes],
            [["full"], ["delta"], ["same"], ["same"], ["delta"], ["same"], ["same"]],
        )
        self.assertEqual([n for m, n in modes if m == ["same"]], [0, 0, 0, 0])

    async def test_originStoreEmptied(self) -> None:
        """
        When the origin role lost the edge's base (and the older version the
        edge also names), the response comes whole and right, the fallback
        is counted, and deltas resume after.
        """
        await self.fetch("/data.json")
        self.assertDelta(await self.fetch("/data.json"))
        for version in self.json[:2]:
            await self.d.origin.store.delete(versionDigest(version).encode("ascii"))
        result = await self.fetch("/data.json")
        self.assertFull(result)
        self.assertEqual(result["originFallbacks"], {"base-missing-at-origin": 1})
        self.assertDelta(await self.fetch("/data.json"))

    async def test_originStoreLostLatestOnly(self) -> None:
        """
        When the origin role lost the edge's latest version but holds an
        older one the edge named, the response is a delta against that one
        (the miss of the latest still counted).
        """
        await self.fetch("/data.json")
        self.assertDelta(await self.fetch("/data.json"))
        await self.d.origin.store.delete(versionDigest(self.json[1]).encode("ascii"))
        result = await self.fetch("/data.json")
        self.assertDelta(result)
        self.assertEqual(result["originFallbacks"], {"base-missing-at-origin": 1})

    async def test_corruptedEdgeBase(self) -> None:
        """
        A corrupted base at the edge makes the rebuilt body miss its digest:
        the edge counts it, asks again without a base, and the client gets
        exactly the version the origin answered last, never a wrong body.
        """
        await self.fetch("/page.html")
        [key] = self.edgeCacheKeys()
        cache = self.edgeCache()
        stored = await cache.get(key)
        assert stored is not None
        # The digest prefix is kept: the edge names the right base, but its
        # bytes are wrong in a region the delta copies from.
        middle = 32 + (len(stored) - 32) // 2
        await cache.set(
            key, stored[:middle] + bytes([stored[middle] ^ 1]) + stored[middle + 1 :]
        )
        hitsBefore = self.pages["/page.html"].hits
        result = await self.fetch("/page.html")
        self.assertEqual(result["edgeFallbacks"], {"digest-mismatch": 1})
        # The refetch is a second request to the origin server.
        self.assertEqual(self.pages["/page.html"].hits, hitsBefore + 2)
        self.assertEqual(result["body"], self.html[hitsBefore + 1])
        self.assertEqual(result["errors"], 0)
        # The cache now holds the good version: deltas resume.
        self.assertDelta(await self.fetch("/page.html"))


class MemcachedDeltaTests(_DeltaCase):
    """
    A real memcached as the origin role's store: deltas through it, its
    outage and its return, and two origin roles sharing it.
    """

    count = 14

    async def _setUp(self) -> None:
        self.memcached = MemcachedServer()
        self.memcached.start()  # raises SkipTest without a memcached binary
        self.addCleanup(self.memcached.stop)
        await super()._setUp()

    async def deploy(self, **originOptions: Any) -> Deployment:
        originOptions.setdefault(
            "store", StoreConfig(memcached=(self.memcached.address,), timeout=0.5)
        )
        d = await super().deploy(**originOptions)
        await _within(_memcached(d).whenConnected(), "memcached connection")
        return d

    async def test_outageAndReturn(self) -> None:
        """
        Deltas work through memcached; with memcached killed mid-run every
        response is still complete and right (sent whole), the fallbacks are
        counted and no client sees an error; once it is back, deltas resume.
        """
        self.memcached.requireLocal()
        path = "/page.html"
        self.assertFull(await self.fetch(path))
        for _ in range(3):
            self.assertDelta(await self.fetch(path))
        self.assertGreaterEqual(self.d.origin.stats.total.storeHits, 3)

        self.memcached.stop()
        for _ in range(3):
            result = await self.fetch(path)
            self.assertFull(result)
            self.assertEqual(result["originFallbacks"], {"base-missing-at-origin": 1})
            self.assertEqual(result["edgeFallbacks"], {})

        self.memcached.start()
        await _within(_memcached(self.d).whenConnected(), "memcached reconnection")
        # The restarted memcached is empty: one more whole body stores the
        # version the edge will name next.
        result = await self.fetch(path)
        self.assertFull(result)
        self.assertEqual(result["originFallbacks"], {"base-missing-at-origin": 1})
        for _ in range(2):
            self.assertDelta(await self.fetch(path))
        self.assertEqual(self.d.edge.stats.total.errors, 0)
        self.assertEqual(self.d.origin.stats.total.errors, 0)

    async def test_hungMemcached(self) -> None:
        """
        A memcached that accepts connections but answers nothing costs at
        most the store timeout: the response comes whole and right, and the
        fallback is counted.
        """
        self.memcached.requireLocal()
        path = "/data.json"
        await self.fetch(path)
        self.assertDelta(await self.fetch(path))
        self.memcached.pause()
        self.addCleanup(self.memcached.resume)
        reactor = _reactor()
        started = reactor.seconds()
        result = await self.fetch(path)
        elapsed = reactor.seconds() - started
        self.assertFull(result)
        self.assertEqual(result["originFallbacks"], {"base-missing-at-origin": 1})
        self.assertLess(elapsed, 5.0)

    async def test_twoOriginRolesShareMemcached(self) -> None:
        """
        A second origin role that never saw the page answers a delta against
        the version the first one stored in the shared memcached.
        """
        path = "/page.html"
        first = await self.fetch(path)
        self.assertFull(first)
        # The version reaches memcached after the response: wait until the
        # store has it, through the first origin role's own store.
        key = versionDigest(self.html[0]).encode("ascii")
        for _ in range(100):
            if await self.d.origin.store.get(key) is not None:
                break
            await _within(_sleep(0.05), "sleep")
        other = await self.deploy()
        # The second edge holds the first edge's version of the URL, as an
        # edge whose link moved to another origin role (behind a layer-4
        # balancer) still does.
        [cacheKey] = self.edgeCacheKeys()
        cached = await self.edgeCache().get(cacheKey)
        assert cached is not None
        await self.edgeCache(other).set(cacheKey, cached)
        self.assertEqual(other.origin.stats.total.requests, 0)
        result = await self.fetch(path, other)
        self.assertDelta(result)
        self.assertEqual(other.origin.stats.total.storeHits, 1)
        self.assertEqual(other.origin.stats.total.bodies["delta"], 1)
        self.assertEqual(result["originFallbacks"], {})


def _memcached(d: Deployment) -> MemcachedVersionStore:
    store = d.origin.store
    assert isinstance(store, MemcachedVersionStore)
    return store


def _sleep(seconds: float) -> Deferred[None]:
    from twisted.internet.task import deferLater

    return deferLater(_reactor(), seconds, lambda: None)


class BenchDeltasTests(TestCase):
    """
    C{bench.deltas} measures what it says, on generated sequences.
    """

    timeout = 60

    async def test_measureAndSummarise(self) -> None:
        """
        Through a real deployment, every body is right, every pair is a
        delta counted alike by both roles, and the summed link bytes are
        exactly Railgun's codec run offline, far under gzip.
        """
        import shutil

        from bench.deltas import PageSequence, measure, offline, summarise

        sequences = [
            PageSequence(
                f"gen-{kind}",
                kind,
                "local",
                tuple(generatedVersions(seed, 6, kind)),
                ("generated",) * 6,
            )
            for seed, kind in ((3, "html"), (4, "json"))
        ]
        fetches = await measure(_reactor(), sequences)
        for records in fetches.values():
            self.assertEqual(len(records), 6)
            self.assertTrue(all(r["body_ok"] for r in records), records)
            self.assertEqual(records[0]["mode"], "full")
            self.assertEqual([r["mode"] for r in records[1:]], ["delta"] * 5)
            for r in records:
                self.assertEqual(r["edge_link_bytes"], r["origin_link_bytes"])
                self.assertGreater(r["link_frame_bytes"], r["edge_link_bytes"])
        refs = offline(sequences, shutil.which("zstd"))
        summary = summarise(sequences, fetches, refs)
        total = summary["totals"]["all"]
        self.assertEqual(total["pairs"], 10)
        self.assertEqual(total["link_bytes"], total["codec_offline_bytes"])
        self.assertTrue(total["meets_gzip"])
        if total["offline_zstd_bytes"] is not None:
            self.assertGreater(total["offline_zstd_bytes"], 0)
            self.assertAlmostEqual(
                total["ratio_offline"],
                total["link_bytes"] / total["offline_zstd_bytes"],
            )

    def test_dedupe(self) -> None:
        """
        A local sequence drops a version identical to the one before it
        (naming both), and is nothing without two different versions.
        """
        from bench.deltas import _dedupe

        seq = _dedupe("s", "html", [("a", b"1"), ("b", b"1"), ("c", b"2"), ("d", b"1")])
        assert seq is not None
        self.assertEqual(seq.versions, (b"1", b"2", b"1"))
        self.assertEqual(seq.labels, ("a = b", "c", "d"))
        self.assertEqual(seq.contentType, b"text/html; charset=utf-8")
        self.assertIsNone(_dedupe("s", "html", [("a", b"1"), ("b", b"1")]))
