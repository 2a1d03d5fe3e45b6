"""
Several origin roles for one host (issue 15, item 1): the edge spreads the
host's streams over all of them, moves off one that drains or dies without
failing an idempotent request, and uses it again once it is back; real TLS
links on loopback.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from railgun.certs import generateDeployment
from railgun.config import (
    ConfigError,
    EdgeConfig,
    LinkTuning,
    OriginConfig,
    StoreConfig,
    parseLinkMap,
    parseOriginMap,
)
from railgun.delta.digest import versionDigest
from railgun.edge.service import EdgeService
from railgun.http.routing import LinkAddress
from railgun.origin.service import OriginService
from railgun.tls import credentialsFromDeployment
from tests.harness import HOST, TOKEN, changingPage, originSite
from tests.memcachedserver import MemcachedServer


class LinkMapTests(SynchronousTestCase):
    """
    A host given several addresses, in repeated entries or with commas.
    """

    def test_repeatedEntries(self):
        """
        Repeated C{HOST=ADDRESS} entries make one group, in order.
        """
        links = parseLinkMap(["www=a:1", "other=c:3", "www=b:2"])
        self.assertEqual(
            links.lookup("www").addresses, (LinkAddress("a", 1), LinkAddress("b", 2))
        )
        self.assertEqual(links.lookup("other").addresses, (LinkAddress("c", 3),))

    def test_commas(self):
        """
        C{HOST=A,B} is the same as two entries.
        """
        self.assertEqual(
            parseLinkMap(["www=a:1,b:2"]).lookup("www"),
            parseLinkMap(["www=a:1", "www=b:2"]).lookup("www"),
        )

    def test_tomlList(self):
        """
        In the configuration file, a host's links may be a list.
        """
        from railgun.certs import generateDeployment, writeDeployment
        from railgun.tap import Options

        certs = self.mktemp()
        writeDeployment(generateDeployment("localhost"), certs)
        config = self.mktemp()
        with open(config, "w") as f:
            f.write('[edge.links]\n"www" = ["a:1", "b:2"]\n"other" = "c:3"\n')
        options = Options()
        options.parseOptions(
            ["--role", "edge", "--certs", certs, "--token", "t", "--config", config]
        )
        links = options.built.edgeConfig().links
        self.assertEqual(
            links.lookup("www").addresses, (LinkAddress("a", 1), LinkAddress("b", 2))
        )
        self.assertEqual(links.lookup("other").addresses, (LinkAddress("c", 3),))

    def test_sameAddressTwice(self):
        """
        One address given twice for a host is refused.
        """
        self.assertRaises(ConfigError, parseLinkMap, ["www=a:1", "www=a:1"])


class _Pair:
    """
    One origin role listening on loopback.
    """

    def __init__(self, originURL: str, deployment: Any, **options: Any) -> None:
        self.originURL = originURL
        self.deployment = deployment
        self.options = options
        self.service: OriginService | None = None
        self.port = 0

    @inlineCallbacks
    def start(self) -> Any:
        self.service = OriginService(
            OriginConfig(
                origins=parseOriginMap([f"{HOST}={self.originURL}"]),
                token=TOKEN,
                linkListen=f"tcp:{self.port}:interface=127.0.0.1",
                link=LinkTuning(pingInterval=0),
                **self.options,
            ),
            reactor,
            credentials=credentialsFromDeployment(self.deployment, "origin"),
        )
        self.service.startService()
        self.port = (yield self.service.whenListening()).getHost().port

    def served(self) -> int:
        assert self.service is not None
        return self.service.stats.total.requests

    def kill(self) -> Any:
        """
        Die as a killed process would: every link cut without GOAWAY, the
        port closed.
        """
        service = self.service
        assert service is not None
        for link in list(service._linkFactory.links):
            link.transport.abortConnection()
        return service.stopService()


class _TwoOriginRoles(TestCase):
    """
    Two origin roles serving C{HOST}, an edge linked to both.
    """

    timeout = 60

    def originOptions(self) -> dict[str, Any]:
        return {}

    @inlineCallbacks
    def setUp(self):
        site, self.pages = originSite()
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
        self.addCleanup(port.stopListening)
        originURL = f"http://127.0.0.1:{port.getHost().port}"
        deployment = generateDeployment("localhost")
        self.roles = [
            _Pair(originURL, deployment, **self.originOptions()),
            _Pair(originURL, deployment, **self.originOptions()),
        ]
        for role in self.roles:
            yield role.start()
            self.addCleanup(lambda role=role: role.service.stopService())
        self.edge = EdgeService(
            EdgeConfig(
                links=parseLinkMap(
                    [f"{HOST}=127.0.0.1:{role.port}" for role in self.roles]
                ),
                token=TOKEN,
                httpListen="tcp:0:interface=127.0.0.1",
                tlsName="localhost",
                link=LinkTuning(pingInterval=0),
            ),
            reactor,
            credentials=credentialsFromDeployment(deployment, "edge"),
        )
        self.edge.startService()
        self.addCleanup(self.edge.stopService)
        self.edgePort = (yield self.edge.whenListening()).getHost().port
        yield self.edge.whenLinked()
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.agent = Agent(reactor, pool=pool)

    @inlineCallbacks
    def fetch(self, path: str = "/echo") -> Any:
        response = yield self.agent.request(
            b"GET",
            f"http://127.0.0.1:{self.edgePort}{path}".encode(),
            Headers({b"host": [HOST.encode()]}),
        )
        body = yield readBody(response)
        return response.code, body

    @inlineCallbacks
    def burst(self, count: int) -> Any:
        results = yield DeferredList(
            [self.fetch() for _ in range(count)], consumeErrors=True
        )
        return [r[1][0] if r[0] else repr(r[1]) for r in results]


class SpreadTests(_TwoOriginRoles):
    """
    Streams spread over both origin roles; one killed and back.
    """

    @inlineCallbacks
    def test_spread(self):
        """
        Concurrent requests for one host reach both origin roles.
        """
        codes = yield self.burst(40)
        self.assertEqual(codes, [200] * 40)
        self.assertGreater(self.roles[0].served(), 0)
        self.assertGreater(self.roles[1].served(), 0)

    @inlineCallbacks
    def test_killedAndBack(self):
        """
        One origin role killed under load: no request fails (those in
        flight on its links are retried on the other's); while it is down
        the other serves everything; restarted on the same port, it is
        used again.
        """
        first = self.burst(30)
        links = self.roles[0].service._linkFactory.links
        for _ in range(500):
            if sum(link.openStreamCount for link in links):
                break
            yield deferLater(reactor, 0, lambda: None)
        inFlight = sum(link.openStreamCount for link in links)
        self.assertGreater(inFlight, 0)
        yield self.roles[0].kill()
        codes = yield first
        self.assertEqual(codes, [200] * 30)
        before = self.roles[1].served()
        codes = yield self.burst(20)
        self.assertEqual(codes, [200] * 20)
        self.assertEqual(self.roles[1].served() - before, 20)
        yield self.roles[0].start()
        pools = [self.edge.pools[a] for a in self.edge.pools]
        for _ in range(300):
            if all(pool.readyCount() for pool in pools):
                break
            yield deferLater(reactor, 0.05, lambda: None)
        back = self.roles[0].served()
        codes = yield self.burst(40)
        self.assertEqual(codes, [200] * 40)
        self.assertGreater(self.roles[0].served(), back)


class SharedVersionsFailoverTests(_TwoOriginRoles):
    """
    Two origin roles behind one host sharing a real memcached (issue 15's
    acceptance): one is killed mid-run; every body is the origin's, no
    request fails, and deltas continue from the survivor against versions
    the dead one stored.
    """

    def setUp(self):
        self.memcached = MemcachedServer()
        self.memcached.start()  # raises SkipTest without a memcached binary
        self.addCleanup(self.memcached.stop)
        return super().setUp()

    def originOptions(self) -> dict[str, Any]:
        return {"store": StoreConfig(memcached=(self.memcached.address,), timeout=0.5)}

    @inlineCallbacks
    def stored(self, role: _Pair, body: bytes) -> Any:
        """
        Wait until C{body}'s version is in C{role}'s store (it is stored
        after the response).
        """
        key = versionDigest(body).encode("ascii")
        for _ in range(200):
            if (yield role.service.store.get(key)) is not None:
                return
            yield deferLater(reactor, 0.02, lambda: None)
        self.fail("the version never reached the store")

    @inlineCallbacks
    def test_deltasContinueFromSurvivor(self):
        """
        Sequential requests for a changing page: each body is exactly the
        origin's edition; the origin role that served the last request
        before the kill is the one killed, and every answer of the survivor
        after it is a delta, the first against the version the dead one
        stored.
        """
        page = self.pages["changing"]
        served = [role.served() for role in self.roles]
        last = 0
        for _ in range(10):
            code, body = yield self.fetch("/changing")
            self.assertEqual((code, body), (200, changingPage(page.hits)))
            now = [role.served() for role in self.roles]
            last = 0 if now[0] > served[0] else 1
            served = now
        dead, survivor = self.roles[last], self.roles[1 - last]
        yield self.stored(dead, body)
        yield dead.kill()
        deltasBefore = survivor.service.stats.total.bodies.get("delta", 0)
        for _ in range(10):
            code, body = yield self.fetch("/changing")
            self.assertEqual((code, body), (200, changingPage(page.hits)))
        deltas = survivor.service.stats.total.bodies.get("delta", 0) - deltasBefore
        self.assertEqual(deltas, 10)
