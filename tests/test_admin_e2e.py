"""
The admin endpoint over a real deployment (origin server, origin role and
edge on loopback, real mutual TLS): after a known mix of requests, every
counter that C{/metrics} and C{/stats} show at both roles is what was sent.
"""

from __future__ import annotations

import json
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase
from twisted.web.client import readBody

from railgun.admin import AdminService
from railgun.config import DeltaConfig
from railgun.stats import OUTCOMES, UNKNOWN_HOST
from tests.harness import HOST, Deployment

#: seconds any single wait in these tests may take before it fails.
WAIT = 20.0


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


async def _within(d: Any, what: str) -> Any:
    reactor = _reactor()
    timer = reactor.callLater(WAIT, d.cancel)
    try:
        return await d
    except Exception as e:
        raise AssertionError(f"{what}: {e!r}") from e
    finally:
        if timer.active():
            timer.cancel()


async def startAdmin(testCase: TestCase, service: Any) -> tuple[AdminService, int]:
    """
    Serve the admin endpoint of C{service} on an ephemeral loopback port.
    """
    admin = AdminService(service, _reactor(), "tcp:0:interface=127.0.0.1")
    admin.startService()
    testCase.addCleanup(admin.stopService)
    port = await _within(admin.whenListening(), "admin listening")
    return admin, port.getHost().port


async def get(d: Deployment, port: int, path: str) -> tuple[int, bytes, Any]:
    """
    GET C{path} from an admin endpoint.

    @return: status, body and headers.
    """
    response = await _within(
        d.agent.request(b"GET", f"http://127.0.0.1:{port}{path}".encode()), path
    )
    body = await _within(readBody(response), path)
    return response.code, body, response.headers


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """
    The samples of a Prometheus text exposition, by name and labels.
    """
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def requests(metrics: dict[Any, float], role: str) -> dict[tuple[str, str], int]:
    """
    The non-zero railgun_requests_total samples of C{role}, by (host,
    outcome).
    """
    out = {}
    for (name, labels), value in metrics.items():
        label = dict(labels)
        if name == "railgun_requests_total" and label["role"] == role and value:
            out[(label["host"], label["outcome"])] = int(value)
    return out


def value(metrics: dict[Any, float], name: str, **labels: str) -> float:
    return metrics[(name, tuple(sorted(labels.items())))]


class KnownMixTests(TestCase):
    """
    A known mix of requests (same, delta, full, raw, refused, error) and
    what both roles' admin endpoints count.
    """

    async def setUp(self) -> None:
        d = Deployment()
        self.addCleanup(d.stop)
        # A short origin timeout makes /hang a quick 504 (an error at both
        # roles). The pages are small: level 19 is made to apply to them,
        # so that the mix has level-19 deltas and bases hashed ahead.
        await _within(
            d.start(
                originOptions={
                    "responseTimeout": 1.0,
                    "delta": DeltaConfig(bestFrom=0),
                }
            ),
            "start",
        )
        await _within(d.edge.whenLinked(), "links")
        self.d = d
        self.edgeAdmin, self.edgePort = await startAdmin(self, d.edge)
        self.originAdmin, self.originPort = await startAdmin(self, d.origin)

    async def sendMix(self) -> dict[str, Any]:
        """
        Send the mix; check each response.

        @return: the status of each and the body bytes the edge relayed.
        """
        d = self.d
        sent = [
            ("/static", HOST, 200),  # full: the edge holds no version yet
            ("/static", HOST, 200),  # same
            # delta against the sibling /static's version, which level 19
            # (the default budget) makes smaller than the compressed body
            ("/changing", HOST, 200),
            ("/changing", HOST, 200),  # delta
            ("/big", HOST, 200),  # raw: not text
            ("/hang", HOST, 504),  # error at both roles (origin timeout)
            ("/", "unmapped.test", 421),  # refused by the origin role
            ("/", "nothere.test", 421),  # refused by the edge
        ]
        relayed = 0
        for path, host, status in sent:
            response, body = await _within(d.fetch(path, host=host), path)
            self.assertEqual(response.code, status, (path, host, body[:200]))
            if host != "nothere.test":  # the edge's own answer crossed no link
                relayed += len(body)
        return {"relayed": relayed}

    async def waitForOrigin(self, streams: int) -> None:
        """
        Wait (bounded) until the origin role has counted C{streams} ended
        streams: a stream closes there when the last frames are written,
        not necessarily before the edge's client has its response.
        """
        reactor = _reactor()
        for _ in range(200):
            if sum(self.d.origin.stats.total.outcomes.values()) >= streams:
                return
            d: Deferred[None] = Deferred()
            reactor.callLater(0.05, d.callback, None)
            await d
        self.fail("the origin role did not count its streams")

    async def test_metricsCountTheMix(self) -> None:
        """
        /metrics at the edge and at the origin role count each request of
        the mix under its host and outcome, each status class, the bytes
        served, and one latency observation per request.
        """
        mix = await self.sendMix()
        await self.waitForOrigin(7)
        await _within(self.d.origin.preparer.whenIdle(), "preparing bases")
        status, body, headers = await get(self.d, self.edgePort, "/metrics")
        self.assertEqual(status, 200)
        self.assertIn(b"text/plain", headers.getRawHeaders(b"content-type")[0])
        edge = samples(body.decode())
        self.assertEqual(
            requests(edge, "edge"),
            {
                (HOST, "full"): 1,
                (HOST, "same"): 1,
                (HOST, "delta"): 2,
                (HOST, "raw"): 1,
                (HOST, "error"): 1,
                ("unmapped.test", "refused"): 1,
                (UNKNOWN_HOST, "refused"): 1,
            },
        )
        for cls, n in [("2xx", 5), ("4xx", 2), ("5xx", 1)]:
            self.assertEqual(
                value(edge, "railgun_responses_total", role="edge", **{"class": cls}), n
            )
        self.assertEqual(
            value(edge, "railgun_body_bytes_total", role="edge", kind="served"),
            mix["relayed"],
        )
        onLink = value(edge, "railgun_body_bytes_total", role="edge", kind="link")
        self.assertLess(0, onLink)
        self.assertLess(onLink, mix["relayed"])
        self.assertEqual(
            value(edge, "railgun_request_duration_seconds_count", role="edge"), 8
        )
        address = f"127.0.0.1:{self.d.linkPort}"
        self.assertEqual(
            value(edge, "railgun_links", role="edge", address=address, state="up"), 2
        )
        self.assertEqual(value(edge, "railgun_ready", role="edge"), 1)
        self.assertEqual(value(edge, "railgun_streams_open", role="edge"), 0)

        status, body, _ = await get(self.d, self.originPort, "/metrics")
        origin = samples(body.decode())
        self.assertEqual(
            requests(origin, "origin"),
            {
                (HOST, "full"): 1,
                (HOST, "same"): 1,
                (HOST, "delta"): 2,
                (HOST, "raw"): 1,
                (HOST, "error"): 1,
                (UNKNOWN_HOST, "refused"): 1,
            },
        )
        for cls, n in [("2xx", 5), ("4xx", 1), ("5xx", 1)]:
            self.assertEqual(
                value(
                    origin, "railgun_responses_total", role="origin", **{"class": cls}
                ),
                n,
            )
        self.assertEqual(
            value(origin, "railgun_request_duration_seconds_count", role="origin"), 7
        )
        # Five origin responses came back (the 504 and the refusal did not).
        self.assertEqual(
            value(origin, "railgun_origin_fetch_duration_seconds_count", role="origin"),
            5,
        )
        # Every version is encoded, 'same' included (/big is raw).
        self.assertEqual(
            value(origin, "railgun_delta_encode_duration_seconds_count", role="origin"),
            4,
        )
        # The second /changing's base, and the first's: the edge named its
        # sibling /static's version.
        self.assertEqual(
            value(origin, "railgun_store_hits_total", role="origin", store="memory"),
            2,
        )
        self.assertEqual(
            value(origin, "railgun_links", role="origin", address="edges", state="up"),
            2,
        )
        # Both deltas fit the default budget at level 19; the three new
        # versions (/static, two /changing) were hashed ahead.
        self.assertEqual(
            value(origin, "railgun_delta_level_total", role="origin", level="19"), 2
        )
        self.assertEqual(
            value(origin, "railgun_delta_prepared_bases_total", role="origin"), 3
        )
        self.assertEqual(
            value(origin, "railgun_delta_abandoned_total", role="origin"), 0
        )
        self.assertLess(0, value(origin, "railgun_delta_prepared_bytes", role="origin"))

    async def test_statsCountTheMix(self) -> None:
        """
        /stats answers the same counts as a JSON document, per role, with
        its links and readiness.
        """
        mix = await self.sendMix()
        await self.waitForOrigin(7)
        await _within(self.d.origin.preparer.whenIdle(), "preparing bases")
        status, body, headers = await get(self.d, self.edgePort, "/stats")
        self.assertEqual(status, 200)
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"application/json"])
        edge = json.loads(body)["roles"]["edge"]
        expected = dict.fromkeys(OUTCOMES, 0)
        expected.update(full=1, same=1, delta=2, raw=1, error=1)
        self.assertEqual(edge["hosts"][HOST]["outcomes"], expected)
        self.assertEqual(edge["hosts"]["unmapped.test"]["outcomes"]["refused"], 1)
        self.assertEqual(edge["hosts"][UNKNOWN_HOST]["outcomes"]["refused"], 1)
        self.assertEqual(edge["total"]["statuses"], {"2xx": 5, "4xx": 2, "5xx": 1})
        self.assertEqual(edge["total"]["body_bytes_served"], mix["relayed"])
        self.assertEqual(edge["request_seconds"]["count"], 8)
        self.assertTrue(edge["ready"])
        self.assertEqual([pool["up"] for pool in edge["links"]], [2])

        status, body, _ = await get(self.d, self.originPort, "/stats")
        origin = json.loads(body)["roles"]["origin"]
        expected = dict.fromkeys(OUTCOMES, 0)
        expected.update(full=1, same=1, delta=2, raw=1, error=1)
        self.assertEqual(origin["hosts"][HOST]["outcomes"], expected)
        self.assertEqual(origin["hosts"][UNKNOWN_HOST]["outcomes"]["refused"], 1)
        self.assertEqual(origin["total"]["statuses"], {"2xx": 5, "4xx": 1, "5xx": 1})
        self.assertEqual(origin["stores"]["memory"]["hits"], 2)
        self.assertEqual(origin["delta_levels"], {"19": 2})
        prepared = origin["prepared"]
        self.assertEqual(
            (prepared["bases"], prepared["dropped"], prepared["abandoned"]), (3, 0, 0)
        )
        self.assertLess(0, prepared["bytes"])
        self.assertNotIn("prepared", edge)
        self.assertTrue(origin["ready"])

    async def test_probes(self) -> None:
        """
        /healthz answers 200; /readyz 200 while the edge has a link up to
        its origin role, and 503 saying why once it has none.
        """
        status, body, _ = await get(self.d, self.edgePort, "/healthz")
        self.assertEqual((status, body), (200, b"ok: process up\n"))
        status, body, _ = await get(self.d, self.edgePort, "/readyz")
        self.assertEqual(status, 200, body)
        status, body, _ = await get(self.d, self.originPort, "/readyz")
        self.assertEqual(status, 200, body)
        await _within(self.d.origin.stopService(), "origin stopped")
        for _ in range(200):
            if not self.d.edge.pools or all(
                not pool.readyCount() for pool in self.d.edge.pools.values()
            ):
                break
            wait: Deferred[None] = Deferred()
            _reactor().callLater(0.05, wait.callback, None)
            await wait
        status, body, _ = await get(self.d, self.edgePort, "/readyz")
        self.assertEqual(status, 503)
        self.assertIn(b"no link up to 127.0.0.1:", body)
        status, body, _ = await get(self.d, self.originPort, "/readyz")
        self.assertEqual(status, 503)
        self.assertIn(b"not listening", body)


async def waitUntil(condition: Any, what: str) -> None:
    """
    Wait (bounded, polling every 50 ms) until C{condition()} is true.
    """
    for _ in range(int(WAIT / 0.05)):
        if condition():
            return
        d: Deferred[None] = Deferred()
        _reactor().callLater(0.05, d.callback, None)
        await d
    raise AssertionError(f"timed out waiting for {what}")


class LinkFailureTests(TestCase):
    """
    Link failures by cause and reconnects, as /metrics shows them.
    """

    async def test_tokenRefused(self) -> None:
        """
        Links whose token the origin role refuses count as failures of
        cause 'token'; none is up and the edge is not ready.
        """
        d = Deployment()
        self.addCleanup(d.stop)
        await _within(d.start(edgeToken=b"not-the-token"), "start")
        pool = next(iter(d.edge.pools.values()))
        await waitUntil(lambda: pool.failures["token"] >= 2, "token failures")
        _, port = await startAdmin(self, d.edge)
        _, body, _ = await get(d, port, "/metrics")
        metrics = samples(body.decode())
        address = f"127.0.0.1:{d.linkPort}"
        self.assertGreaterEqual(
            value(
                metrics,
                "railgun_link_failures_total",
                role="edge",
                address=address,
                cause="token",
            ),
            2,
        )
        self.assertEqual(
            value(metrics, "railgun_links", role="edge", address=address, state="up"),
            0,
        )
        self.assertEqual(value(metrics, "railgun_ready", role="edge"), 0)

    async def test_closedAndReconnected(self) -> None:
        """
        A link that closes counts as a failure of cause 'lost', and the
        link dialed in its place as a reconnect; once the origin role is
        gone, dialing it counts 'refused'.
        """
        d = Deployment()
        self.addCleanup(d.stop)
        await _within(d.start(), "start")
        await _within(d.edge.whenLinked(), "links")
        pool = next(iter(d.edge.pools.values()))
        await waitUntil(lambda: pool.readyCount() == 2, "two links")
        self.assertEqual((pool.reconnects, dict(pool.failures)), (0, {}))
        link = next(iter(d.origin.links()))
        link.transport.abortConnection()
        await waitUntil(lambda: pool.reconnects == 1, "a reconnect")
        self.assertEqual(pool.failures["lost"], 1)
        await _within(d.origin.stopService(), "origin stopped")
        await waitUntil(lambda: pool.failures["refused"] >= 1, "refused")
        _, port = await startAdmin(self, d.edge)
        _, body, _ = await get(d, port, "/metrics")
        metrics = samples(body.decode())
        address = f"127.0.0.1:{d.linkPort}"
        self.assertEqual(
            value(
                metrics, "railgun_link_reconnects_total", role="edge", address=address
            ),
            1,
        )
        self.assertEqual(
            value(
                metrics,
                "railgun_link_failures_total",
                role="edge",
                address=address,
                cause="lost",
            ),
            3,
        )


class TwistdTests(TestCase):
    """
    The admin endpoint of a real C{twistd railgun --role both} process.
    """

    async def test_both(self) -> None:
        """
        C{--admin-listen} serves /readyz (200 once the links are up) and
        /metrics, which counts a request sent through the edge.
        """
        import os
        import subprocess
        import sys
        from pathlib import Path

        from twisted.web.client import Agent, HTTPConnectionPool

        from bench.harness import freePort

        root = Path(__file__).resolve().parent.parent
        httpPort, adminPort = freePort(), freePort()
        log = Path(self.mktemp())
        workdir = Path(self.mktemp())
        workdir.mkdir()
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from twisted.scripts.twistd import run; run()",
                "-n",
                "--pidfile=",
                "railgun",
                "--role",
                "both",
                "--http-listen",
                f"tcp:{httpPort}:interface=127.0.0.1",
                "--admin-listen",
                f"tcp:{adminPort}:interface=127.0.0.1",
            ],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=str(workdir),
            env={**os.environ, "PYTHONPATH": str(root)},
        )

        def stop() -> None:
            if process.poll() is None:
                process.terminate()
                process.wait(10)

        self.addCleanup(stop)
        pool = HTTPConnectionPool(_reactor(), persistent=False)
        agent = Agent(_reactor(), pool=pool)

        async def fetch(url: str) -> tuple[int, bytes]:
            response = await _within(agent.request(b"GET", url.encode()), url)
            return response.code, await _within(readBody(response), url)

        admin = f"http://127.0.0.1:{adminPort}"
        ready: list[int] = []

        async def probe() -> None:
            try:
                ready.append((await fetch(admin + "/readyz"))[0])
            except AssertionError:
                ready.append(0)  # not listening yet

        for _ in range(int(WAIT / 0.1)):
            await probe()
            if ready[-1] == 200 or process.poll() is not None:
                break
            wait: Deferred[None] = Deferred()
            _reactor().callLater(0.1, wait.callback, None)
            await wait
        self.assertEqual(ready[-1], 200, log.read_text(errors="replace"))
        status, _ = await fetch(f"http://127.0.0.1:{httpPort}/")
        self.assertEqual(status, 200)
        status, body = await fetch(admin + "/metrics")
        metrics = samples(body.decode())
        counted = sum(
            v
            for (name, labels), v in metrics.items()
            if name == "railgun_requests_total" and ("role", "edge") in labels
        )
        self.assertEqual(counted, 1)
        self.assertIn(("railgun_ready", (("role", "origin"),)), metrics)


class FallbackAndStoreTests(TestCase):
    """
    The direct outcome, and memcached's errors, as /metrics shows them.
    """

    async def test_direct(self) -> None:
        """
        With its origin role gone, an edge with a fallback serves the
        request itself: counted once, as direct, with its status class.
        """
        d = Deployment()
        self.addCleanup(d.stop)
        await _within(d.start(fallbackToOrigin=True), "start")
        await _within(d.edge.whenLinked(), "links")
        pool = next(iter(d.edge.pools.values()))
        await _within(d.origin.stopService(), "origin stopped")
        await waitUntil(
            lambda: not pool.readyCount() and pool.failures["refused"],
            "links down",
        )
        response, _ = await _within(d.fetch("/static"), "/static")
        self.assertEqual(response.code, 200)
        _, port = await startAdmin(self, d.edge)
        _, body, _ = await get(d, port, "/metrics")
        metrics = samples(body.decode())
        self.assertEqual(requests(metrics, "edge"), {(HOST, "direct"): 1})
        self.assertEqual(
            value(metrics, "railgun_responses_total", role="edge", **{"class": "2xx"}),
            1,
        )
        self.assertEqual(
            value(metrics, "railgun_fallbacks_total", role="edge", cause="direct"), 1
        )

    async def test_memcachedErrors(self) -> None:
        """
        The origin role's memcached store shows its hits, and its errors
        once memcached is gone (the requests are still served).
        """
        from railgun.config import StoreConfig
        from tests.memcachedserver import MemcachedServer

        memcached = MemcachedServer()
        memcached.start()  # raises SkipTest without a memcached binary
        self.addCleanup(memcached.stop)
        d = Deployment()
        self.addCleanup(d.stop)
        await _within(
            d.start(
                originOptions={
                    "store": StoreConfig(memcached=(memcached.address,), timeout=0.5)
                }
            ),
            "start",
        )
        await _within(d.edge.whenLinked(), "links")
        store = d.origin.store
        await _within(store.whenConnected(), "memcached connection")  # type: ignore[attr-defined]
        for _ in range(2):
            response, _ = await _within(d.fetch("/changing"), "/changing")
            self.assertEqual(response.code, 200)
        memcached.stop()
        for _ in range(2):
            response, _ = await _within(d.fetch("/changing"), "/changing")
            self.assertEqual(response.code, 200)
        _, port = await startAdmin(self, d.origin)
        _, body, _ = await get(d, port, "/metrics")
        metrics = samples(body.decode())
        hits = value(
            metrics, "railgun_store_hits_total", role="origin", store="memcached"
        )
        errors = value(
            metrics, "railgun_store_errors_total", role="origin", store="memcached"
        )
        self.assertGreaterEqual(hits, 1)
        self.assertGreater(errors, 0)
        self.assertEqual((hits, errors), (store.stats.hits, store.stats.errors))


class PostTests(TestCase):
    """
    The stats document POSTed to a real HTTP server through treq.
    """

    async def test_posts(self) -> None:
        """
        Every stats.interval the document arrives as JSON (failures are
        tested in test_admin.PostTests).
        """
        from twisted.internet.endpoints import TCP4ServerEndpoint
        from twisted.web.resource import Resource
        from twisted.web.server import Site

        received: list[tuple[bytes, Any]] = []

        class Collect(Resource):
            isLeaf = True

            def render_POST(self, request: Any) -> bytes:
                received.append(
                    (
                        request.content.read(),
                        request.requestHeaders.getRawHeaders(b"content-type"),
                    )
                )
                return b"ok"

        site = Site(Collect())
        port = await _within(
            TCP4ServerEndpoint(_reactor(), 0, interface="127.0.0.1").listen(site),
            "collector",
        )
        self.addCleanup(port.stopListening)
        d = Deployment()
        self.addCleanup(d.stop)
        await _within(d.start(), "start")
        admin = AdminService(
            d.edge,
            _reactor(),
            None,
            statsURL=f"http://127.0.0.1:{port.getHost().port}/collect",
            statsInterval=0.1,
        )
        admin.startService()
        self.addCleanup(admin.stopService)
        await waitUntil(lambda: admin.posted >= 2, "two POSTs answered")
        body, contentType = received[0]
        self.assertEqual(contentType, [b"application/json"])
        self.assertIn("edge", json.loads(body)["roles"])
        self.assertGreaterEqual(len(received), 2)
