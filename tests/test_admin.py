"""
L{railgun.admin}: the resource tree on role services that are built but not
started, the stats POST on a clock, the options, and that docs/metrics.md
lists every metric the registry exposes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyRequest

from railgun.admin import AdminService
from railgun.admin.metrics import METRICS, MetricSpec
from railgun.admin.pages import AdminResource
from railgun.admin.views import RoleView, viewsOf
from railgun.certs import generateDeployment
from railgun.config import (
    BOTH_ADMIN_LISTEN,
    EdgeConfig,
    OriginConfig,
    parseLinkMap,
    parseOriginMap,
)
from railgun.edge.service import EdgeService
from railgun.origin.service import OriginService
from railgun.stats import UNKNOWN_HOST
from railgun.tap import Options, makeService
from railgun.tls import credentialsFromDeployment

DOCS = Path(__file__).parent.parent / "docs"

_deployment: Any = None


def deployment() -> Any:
    global _deployment
    if _deployment is None:
        _deployment = generateDeployment("localhost")
    return _deployment


def roles(clock: Clock) -> tuple[EdgeService, OriginService]:
    """
    An edge and an origin role, built (not started).
    """
    edge = EdgeService(
        EdgeConfig(links=parseLinkMap(["a.test=127.0.0.1:1"]), token=b"t"),
        clock,
        credentials=credentialsFromDeployment(deployment(), "edge"),
    )
    origin = OriginService(
        OriginConfig(origins=parseOriginMap(["a.test=http://127.0.0.1:1"]), token=b"t"),
        clock,
        credentials=credentialsFromDeployment(deployment(), "origin"),
    )
    return edge, origin


def render(resource: Resource, path: bytes) -> tuple[int, bytes, DummyRequest]:
    """
    GET C{path} from C{resource} (answered synchronously).
    """
    request = DummyRequest(path.strip(b"/").split(b"/") if path != b"/" else [b""])
    child: Any = resource
    while request.postpath and not getattr(child, "isLeaf", False):
        child = child.getChildWithDefault(request.postpath.pop(0), request)
    body = child.render(request)
    return request.responseCode or 200, body, request


class ResourceTests(SynchronousTestCase):
    """
    The admin resource on an edge and an origin role that have served
    nothing yet.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.edge, self.origin = roles(self.clock)
        self.resource = AdminResource(
            lambda: viewsOf(self.edge) + viewsOf(self.origin), self.clock, 10.0
        )

    def test_metrics(self) -> None:
        """
        /metrics answers Prometheus text with the links of the edge (none
        up, both connecting) and readiness 0 at the edge, 1 nowhere else.
        """
        status, body, request = render(self.resource, b"/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(
            request.responseHeaders.getRawHeaders(b"content-type")[0].startswith(
                b"text/plain"
            )
        )
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
        }
        self.assertEqual(
            samples[
                (
                    "railgun_links",
                    (
                        ("address", "127.0.0.1:1"),
                        ("role", "edge"),
                        ("state", "connecting"),
                    ),
                )
            ],
            2,
        )
        self.assertEqual(samples[("railgun_ready", (("role", "edge"),))], 0)
        self.assertEqual(samples[("railgun_ready", (("role", "origin"),))], 0)

    def test_openMetrics(self) -> None:
        """
        A scraper asking for OpenMetrics gets it.
        """
        request = DummyRequest([b"metrics"])
        request.requestHeaders.setRawHeaders(
            b"accept", [b"application/openmetrics-text; version=1.0.0"]
        )
        body = self.resource.children[b"metrics"].render(request)
        self.assertTrue(body.endswith(b"# EOF\n"))

    def test_stats(self) -> None:
        """
        /stats is the JSON document: version, time, uptime and each role's
        counters, links, stores and readiness.
        """
        self.edge.stats.record("a.test", requests=1)
        status, body, _ = render(self.resource, b"/stats")
        document = json.loads(body)
        self.assertEqual(document["time"], 1000.0)
        self.assertEqual(document["uptime_seconds"], 990.0)
        self.assertEqual(sorted(document["roles"]), ["edge", "origin"])
        edge = document["roles"]["edge"]
        self.assertEqual(edge["hosts"]["a.test"]["requests"], 1)
        self.assertEqual(edge["links"][0]["connecting"], 2)
        self.assertFalse(edge["ready"])
        self.assertIn("memory", document["roles"]["origin"]["stores"])

    def test_probes(self) -> None:
        """
        /healthz says the process is up; /readyz answers 503 with the
        reasons while the edge has no link and the origin role is not
        listening.
        """
        self.assertEqual(
            render(self.resource, b"/healthz")[:2], (200, b"ok: process up\n")
        )
        status, body, _ = render(self.resource, b"/readyz")
        self.assertEqual(status, 503)
        self.assertEqual(
            body,
            b"not ready\nedge: no link up to 127.0.0.1:1\n"
            b"origin role: not listening for links\n",
        )

    def test_readyzStarting(self) -> None:
        """
        /readyz answers 503 while no role has started (C{--role both}
        before its roles exist).
        """
        resource = AdminResource(lambda: [], self.clock, 0.0)
        self.assertEqual(
            render(resource, b"/readyz")[:2], (503, b"not ready: starting\n")
        )

    def test_dashboardAssets(self) -> None:
        """
        / is the dashboard page; its script and style are served from the
        package, and no asset is fetched from anywhere else.
        """
        status, page, request = render(self.resource, b"/")
        self.assertEqual(status, 200)
        self.assertIn(b"<svg", page)
        for asset in re.findall(rb'(?:src|href)="([^"]+)"', page):
            self.assertNotIn(b"//", asset)
        self.assertIn(
            b"function poll", render(self.resource, b"/static/dashboard.js")[1]
        )
        self.assertEqual(render(self.resource, b"/static/nothing.js")[0], 404)

    def test_registryPerService(self) -> None:
        """
        Two admin resources in one process have registries of their own,
        each exposing its own role's figures.
        """
        other = AdminResource(lambda: viewsOf(self.origin), self.clock, 0.0)
        self.edge.stats.finished("a.test", "delta", 200, 0.01)
        mine = generate_latest(self.resource.registry).decode()
        theirs = generate_latest(other.registry).decode()
        self.assertIn(
            'railgun_requests_total{host="a.test",outcome="delta",role="edge"} 1.0',
            mine,
        )
        self.assertNotIn('role="edge"', theirs)


class HostLabelTests(SynchronousTestCase):
    """
    The host label of railgun_requests_total is the host map entry.
    """

    def test_wildcardOneLabel(self) -> None:
        """
        Names served by a wildcard (or the catch-all) count under that
        entry, however many names clients send; the per-host counters of
        /stats keep the names.
        """
        clock = Clock()
        edge = EdgeService(
            EdgeConfig(
                links=parseLinkMap(["a.test=127.0.0.1:1", "*.w.test=127.0.0.1:1"]),
                token=b"t",
            ),
            clock,
            credentials=credentialsFromDeployment(deployment(), "edge"),
        )
        for host in ["x.w.test", "y.z.w.test", "a.test", "x.w.test"]:
            edge.stats.finished(host, "delta", 200, 0.01)
        edge.stats.finished(None, "refused", 421, 0.01)
        resource = AdminResource(lambda: viewsOf(edge), clock, 0.0)
        text = generate_latest(resource.registry).decode()
        delta = {
            s.labels["host"]: s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "railgun_requests_total" and s.labels["outcome"] == "delta"
        }
        self.assertEqual(delta, {"*.w.test": 3, "a.test": 1, UNKNOWN_HOST: 0})
        self.assertEqual(
            sorted(edge.stats.hosts()),
            [UNKNOWN_HOST, "a.test", "x.w.test", "y.z.w.test"],
        )


class MetricsDocumentedTests(SynchronousTestCase):
    """
    docs/metrics.md and the code agree.
    """

    def test_everyMetricDocumented(self) -> None:
        """
        Every metric family the registry exposes is defined in
        L{railgun.admin.metrics.METRICS} (or is a process_ metric of
        prometheus-client), and docs/metrics.md lists each with its labels.
        """
        clock = Clock()
        edge, origin = roles(clock)
        edge.stats.count("a.test", "fallbacks", "direct")
        resource = AdminResource(lambda: viewsOf(edge) + viewsOf(origin), clock, 0.0)
        exposed = {
            family.name
            for family in text_string_to_metric_families(
                generate_latest(resource.registry).decode()
            )
        }
        defined = {spec.name for spec in METRICS}
        self.assertEqual(
            {name for name in exposed if not name.startswith("process_")}
            - {"python_gc", "python_info"},
            defined,
        )
        text = (DOCS / "metrics.md").read_text()
        for spec in METRICS:
            suffix = "_total" if spec.kind == "counter" else ""
            row = re.search(
                rf"^\| `{spec.name}{suffix}` \| (\w+) \| ([^|]*) \|", text, re.M
            )
            self.assertIsNotNone(row, f"{spec.name}{suffix} is not in docs/metrics.md")
            assert row is not None
            self.assertEqual(row.group(1), spec.kind, spec.name)
            labels = tuple(re.findall(r"`(\w+)`", row.group(2)))
            self.assertEqual(labels, spec.labels, spec.name)

    def test_examplesUseRealMetrics(self) -> None:
        """
        The Grafana dashboard and the Prometheus rules in docs/examples/
        query only metrics (and labels) the code defines.
        """
        names: dict[str, MetricSpec] = {}
        for spec in METRICS:
            suffixes = {
                "counter": ["_total"],
                "gauge": [""],
                "histogram": ["_bucket", "_sum", "_count"],
            }[spec.kind]
            for suffix in suffixes:
                names[spec.name + suffix] = spec
        dashboard = json.loads(
            (DOCS / "examples" / "grafana-dashboard.json").read_text()
        )
        queries = [
            target["expr"]
            for panel in dashboard["panels"]
            for target in panel["targets"]
        ]
        queries.append((DOCS / "examples" / "prometheus-alerts.yml").read_text())
        used = set()
        for query in queries:
            for name, selector in re.findall(r"(railgun_\w+)(\{[^}]*\})?", query):
                self.assertIn(name, names, query)
                used.add(names[name].name)
                for label in re.findall(r"(\w+)\s*[=!]~?", selector):
                    allowed = set(names[name].labels) | {"instance", "le"}
                    self.assertIn(label, allowed, (name, query))
        self.assertEqual(used, {spec.name for spec in METRICS})


class PostTests(SynchronousTestCase):
    """
    The stats document POSTed to C{stats.url} every C{stats.interval}.
    """

    def setUp(self) -> None:
        self.received: list[bytes] = []
        self.status = 200
        test = self

        class Collector(Resource):
            isLeaf = True

            def render_POST(self, request: Any) -> bytes:
                test.received.append(request.content.read())
                request.setResponseCode(test.status)
                return b"thanks"

        self.clock = Clock()
        self.service = AdminService(
            None,
            self.clock,
            None,
            statsURL="http://stats.test/railgun",
            statsInterval=60.0,
            httpClient=StubTreq(Collector()),
            views=lambda: [],
        )

    def test_postsEveryInterval(self) -> None:
        """
        Nothing is sent at start; a POST of the JSON document every
        interval after.
        """
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.assertEqual(self.received, [])
        self.clock.advance(60)
        self.clock.advance(60)
        self.assertEqual(len(self.received), 2)
        self.assertEqual(json.loads(self.received[1])["uptime_seconds"], 120.0)
        self.assertEqual(self.service.posted, 2)

    def test_failuresLoggedRateLimited(self) -> None:
        """
        A collector answering 500 is logged once per five minutes, and
        the POSTs go on.
        """
        self.status = 500
        self.service.startService()
        self.addCleanup(self.service.stopService)
        with capturedLogs() as events:
            for _ in range(6):
                self.clock.advance(60)
        warnings = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(self.received), 6)
        self.assertEqual(len(warnings), 2)
        self.assertEqual(warnings[1]["suppressed"], 4)
        self.assertEqual(self.service.posted, 0)

    def test_unreachableNeverCrashes(self) -> None:
        """
        A POST that fails outright (no such server) is logged and the
        next one is still sent.
        """

        class Broken:
            calls = 0

            def post(self, *args: Any, **kwargs: Any) -> Any:
                from twisted.internet.defer import fail
                from twisted.internet.error import ConnectionRefusedError

                self.calls += 1
                return fail(ConnectionRefusedError())

        broken = Broken()
        service = AdminService(
            None,
            self.clock,
            None,
            statsURL="http://127.0.0.1:1/",
            httpClient=broken,
            views=lambda: [],
        )
        service.startService()
        self.addCleanup(service.stopService)
        with capturedLogs() as events:
            self.clock.advance(60)
            self.clock.advance(60)
        self.assertEqual(broken.calls, 2)
        self.assertIn("Connection was refused", events[0]["why"])


class OptionTests(SynchronousTestCase):
    """
    C{--admin-listen}, C{--stats-url}, C{--stats-interval} and their keys.
    """

    def parse(self, *argv: str) -> Options:
        options = Options()
        options.parseOptions(["--role", "both", *argv])
        return options

    def test_defaults(self) -> None:
        """
        C{both} serves the admin endpoint on loopback port 9090 unless
        told C{none}; no POSTs unless a URL is given.
        """
        self.assertEqual(self.parse().built.adminListen, BOTH_ADMIN_LISTEN)
        self.assertIsNone(self.parse("--admin-listen", "none").built.adminListen)
        self.assertIsNone(self.parse().built.statsURL)
        built = self.parse(
            "--stats-url", "http://127.0.0.1:1/x", "--stats-interval", "5"
        ).built
        self.assertEqual(
            (built.statsURL, built.statsInterval), ("http://127.0.0.1:1/x", 5.0)
        )

    def test_file(self) -> None:
        """
        The TOML keys admin.listen, stats.url and stats.interval set the
        same.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(
                '[admin]\nlisten = "tcp:0:interface=127.0.0.1"\n'
                '[stats]\nurl = "https://stats.test/"\ninterval = 30\n'
            )
        built = self.parse("--config", path).built
        self.assertEqual(
            (built.adminListen, built.statsURL, built.statsInterval),
            ("tcp:0:interface=127.0.0.1", "https://stats.test/", 30.0),
        )

    def test_bad(self) -> None:
        """
        A bad endpoint, URL or interval is a usage error naming the flag
        and key.
        """
        for argv, message in [
            (("--admin-listen", "tcp:abc"), "--admin-listen / admin.listen"),
            (("--stats-url", "ftp://x"), "--stats-url / stats.url"),
            (("--stats-interval", "0"), "--stats-interval / stats.interval"),
        ]:
            e = self.assertRaises(UsageError, self.parse, *argv)
            self.assertIn(message, str(e))

    def test_makeService(self) -> None:
        """
        makeService runs an AdminService beside the role when an admin
        endpoint or a stats URL is set, and none otherwise.
        """
        service = makeService(self.parse())
        self.assertEqual(
            [type(s).__name__ for s in service], ["BothService", "AdminService"]
        )
        service = makeService(self.parse("--admin-listen", "none"))
        self.assertEqual([type(s).__name__ for s in service], ["BothService"])


class WorkerTests(SynchronousTestCase):
    """
    With C{--workers N}, each worker serves its own admin endpoint.
    """

    def test_workerAdminListen(self) -> None:
        """
        Worker i listens on the configured TCP port + i (a UNIX socket gets
        .i appended); an endpoint of another kind is off in workers.
        """
        from railgun.tap import workerAdminListen

        self.assertEqual(
            workerAdminListen("tcp:9090:interface=127.0.0.1", 2),
            "tcp:9092:interface=127.0.0.1",
        )
        self.assertEqual(workerAdminListen("tcp6:port=9090", 1), "tcp6:port=9091")
        self.assertEqual(
            workerAdminListen("unix:/run/railgun.sock", 1), "unix:/run/railgun.sock.1"
        )
        self.assertEqual(workerAdminListen("ssl:9090:privateKey=k", 1), "none")

    def test_supervisorAndWorkers(self) -> None:
        """
        The supervisor runs no admin endpoint; each worker's command line
        names its own.
        """
        from railgun.tap import workerArguments

        options = Options()
        options.parseOptions(
            [
                "--role",
                "edge",
                "--link",
                "a=127.0.0.1:1",
                "--token",
                "t",
                "--certs",
                self.certs(),
                "--workers",
                "2",
                "--admin-listen",
                "tcp:9190:interface=127.0.0.1",
            ]
        )
        self.assertEqual(
            [type(s).__name__ for s in makeService(options)], ["WorkersService"]
        )
        arguments = workerArguments(options, 1, "--http-listen=systemd:x")
        self.assertEqual(
            arguments[-3:],
            [
                "--workers=1",
                "--admin-listen=tcp:9191:interface=127.0.0.1",
                "--http-listen=systemd:x",
            ],
        )

    def certs(self) -> str:
        from railgun.certs import writeDeployment

        path = self.mktemp()
        writeDeployment(deployment(), path)
        return path


class ViewTests(SynchronousTestCase):
    """
    L{viewsOf} finds the roles of each kind of service.
    """

    def test_both(self) -> None:
        """
        C{--role both} has views only for the roles it has started.
        """

        class Both:
            edge: Any = None
            origin: Any = None

        both = Both()
        self.assertEqual(viewsOf(both), [])
        edge, origin = roles(Clock())
        both.edge, both.origin = edge, origin
        self.assertEqual([v.role for v in viewsOf(both)], ["edge", "origin"])
        self.assertIsInstance(viewsOf(edge)[0], RoleView)
