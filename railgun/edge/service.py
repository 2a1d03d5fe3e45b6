"""
The edge role as an L{IService}: the HTTP server clients talk to, and the
pools of links to the origin roles.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

from railgun._listening import ListeningPort
from railgun.config import EdgeConfig
from railgun.delta.codec import defaultRegistry
from railgun.delta.content import deferEncodeBody
from railgun.delta.siblings import SiblingIndex
from railgun.edge.direct import DirectFetcher
from railgun.edge.encodings import ClientEncodings
from railgun.edge.http import EdgeHTTPFactory
from railgun.edge.links import LinkPool
from railgun.edge.proxy import EdgeProxy
from railgun.stats import Stats
from railgun.stores.memory import MemoryVersionStore
from railgun.tls import Credentials, loadCredentials
from railgun.upstream.client import makeOriginClient

log = Logger()


class EdgeService(MultiService):
    """
    Serve HTTP clients through links to origin roles.

    @ivar stats: the counters of this role.
    @ivar proxy: the L{EdgeProxy} serving requests.
    """

    def __init__(
        self,
        config: EdgeConfig,
        reactor: Any,
        credentials: Credentials | None = None,
    ) -> None:
        super().__init__()
        if credentials is None:
            if config.certsDir is None:
                raise ValueError("the edge role needs certificates: set certsDir")
            credentials = loadCredentials(config.certsDir, "edge")
        self._config = config
        self._reactor = reactor
        self.stats = Stats()
        pools: dict[Any, LinkPool] = {}

        def poolFor(address: Any) -> LinkPool:
            if address not in pools:
                pool = pools[address] = LinkPool(
                    reactor,
                    address,
                    credentials=credentials,
                    token=config.token,
                    size=config.linksPerOrigin,
                    tlsName=config.tlsName,
                    connectTimeout=config.connectTimeout,
                    linkOptions=config.link.linkOptions(),
                )
                pool.setServiceParent(self)
            return pools[address]

        self.pools = pools
        fallback = None
        self._fallbackPool: Any = None
        if config.fallback is not None:
            client, self._fallbackPool = makeOriginClient(
                reactor,
                connectTimeout=config.connectTimeout,
                maxConnectionsPerOrigin=16,
            )
            fallback = config.fallback.mapValues(
                lambda target: DirectFetcher(
                    client, reactor, target, config.responseTimeout
                )
            )
        self.proxy = EdgeProxy(
            pools=config.links.mapValues(poolFor),
            clock=reactor,
            responseTimeout=config.responseTimeout,
            linkWait=config.connectTimeout,
            stats=self.stats,
            fallback=fallback,
            # The edge keeps the latest version of each URL it served.
            cache=MemoryVersionStore(
                maxBytes=config.store.memoryBytes,
                # digest (32) + the largest version body
                maxItemBytes=config.delta.maxSize + 64,
                ttl=config.store.ttl,
                clock=reactor,
            )
            if config.delta.enabled
            else None,
            codecs=defaultRegistry(),
            deltaMaxSize=config.delta.maxSize,
            siblings=SiblingIndex() if config.delta.enabled else None,
            clientEncodings=ClientEncodings(),
            encodeForClient=lambda body, coding: deferEncodeBody(
                reactor, reactor.getThreadPool(), body, coding
            ),
        )
        self._listening = ListeningPort("edge serving HTTP")

    def startService(self) -> None:
        super().startService()
        factory = EdgeHTTPFactory(
            self.proxy,
            reactor=self._reactor,
            maxHeaderBytes=self._config.maxHeaderBytes,
            maxBodyBytes=self._config.maxBodyBytes,
        )
        self._listening.listen(
            serverFromString(self._reactor, self._config.httpListen).listen(factory)
        )

    def whenListening(self) -> Deferred[IListeningPort]:
        """
        @return: a Deferred firing with the HTTP listening port once bound.
        """
        return self._listening.whenListening()

    def whenLinked(self) -> Deferred[Any]:
        """
        @return: a Deferred firing once every pool has at least one ready
            link (useful in tests and for a readiness probe).
        """
        from twisted.internet.defer import gatherResults

        return gatherResults([pool.whenReady() for pool in self.pools.values()])

    def stopService(self) -> Deferred[Any]:
        """
        Stop accepting clients, then drain the links.
        """
        d = self._listening.stop()
        d.addCallback(lambda _: MultiService.stopService(self))
        if self._fallbackPool is not None:
            pool = self._fallbackPool
            d.addCallback(lambda _: pool.closeCachedConnections())
        return d
