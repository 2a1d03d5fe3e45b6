"""
The origin role as an L{IService}: a TLS listener for links from edges,
each stream served by an L{OriginStreamHandler}.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

from railgun._listening import ListeningPort
from railgun.config import OriginConfig, StoreConfig
from railgun.delta.codec import ENCODE_IN_THREAD_ABOVE, defaultRegistry, offReactorAbove
from railgun.link.factory import LinkServerFactory
from railgun.origin.handler import OriginContext, OriginStreamHandler
from railgun.stats import Stats
from railgun.stores.interfaces import IVersionStore
from railgun.stores.memory import MemoryVersionStore
from railgun.tls import Credentials, LinkTLSFactory, loadCredentials, serverOptions
from railgun.upstream.client import makeOriginClient
from railgun.versions import EncodedVersion, encodeVersion

log = Logger()


class OriginService(Service):
    """
    Accept links from edges and serve their streams from the configured
    origin servers.

    Start it in your own reactor like any L{IService}; C{whenListening()}
    tells the port it bound (useful with port 0).

    @ivar stats: the counters of this role.
    """

    def __init__(
        self,
        config: OriginConfig,
        reactor: Any,
        credentials: Credentials | None = None,
    ) -> None:
        if credentials is None:
            if config.certsDir is None:
                raise ValueError("the origin role needs certificates: set certsDir")
            credentials = loadCredentials(config.certsDir, "origin")
        self._config = config
        self._reactor = reactor
        self._credentials = credentials
        self.stats = Stats()
        self._listening = ListeningPort("origin role accepting links")
        self._linkFactory: LinkServerFactory | None = None
        self._pool: Any = None
        self.store: IVersionStore = makeStore(
            config.store, config.delta.maxSize, reactor
        )

    def _encode(self, body: bytes, **kwargs: Any) -> Deferred[EncodedVersion]:
        # zstandard releases the GIL: a large encode runs in the reactor's
        # thread pool so it does not stall every other stream.
        return offReactorAbove(
            self._reactor,
            self._reactor.getThreadPool(),
            len(body),
            ENCODE_IN_THREAD_ABOVE,
            lambda: encodeVersion(body, **kwargs),
        )

    def startService(self) -> None:
        super().startService()
        if IService.providedBy(self.store):
            self.store.startService()
        config = self._config
        client, self._pool = makeOriginClient(
            self._reactor,
            connectTimeout=config.connectTimeout,
            maxConnectionsPerOrigin=config.maxConnectionsPerOrigin,
            verifyTLS=config.verifyOriginTLS,
        )
        context = OriginContext(
            origins=config.origins,
            client=client,
            clock=self._reactor,
            responseTimeout=config.responseTimeout,
            stats=self.stats,
            # With deltas off, bodies still cross the link compressed
            # ("full") but no version is kept or looked up.
            store=self.store if config.delta.enabled else None,
            codecs=defaultRegistry(config.delta.level, config.delta.largeLevel),
            deltaMaxSize=config.delta.maxSize,
            encode=self._encode,
        )
        self._linkFactory = LinkServerFactory(
            token=config.token,
            clock=self._reactor,
            streamFactory=lambda stream: OriginStreamHandler(context),
            **config.link.linkOptions(),
        )
        tlsFactory = LinkTLSFactory(
            serverOptions(self._credentials), False, self._linkFactory
        )
        endpoint = serverFromString(self._reactor, config.linkListen)
        self._listening.listen(endpoint.listen(tlsFactory))

    def whenListening(self) -> Deferred[IListeningPort]:
        """
        @return: a Deferred firing with the listening port once bound.
        """
        return self._listening.whenListening()

    def stopService(self) -> Deferred[Any]:
        """
        Stop accepting links, drain the open ones (GOAWAY, let streams
        finish), then close the origin connection pool.
        """
        super().stopService()
        steps: list[Deferred[Any]] = [self._listening.stop()]
        if self._linkFactory is not None:
            steps.append(self._linkFactory.goAwayAll())
        d = DeferredList(steps, consumeErrors=True)
        if IService.providedBy(self.store):
            store = self.store
            d.addCallback(lambda _: store.stopService())
        if self._pool is not None:
            pool = self._pool
            d.addCallback(lambda _: pool.closeCachedConnections())
        return d


def makeStore(config: StoreConfig, maxVersion: int, reactor: Any) -> IVersionStore:
    """
    The origin role's version store: memcached when servers are
    configured (shared by several origin roles), else process memory.

    @param maxVersion: the largest version body (C{delta.max_size}); the
        store takes items that large, plus room for a key prefix.
    """
    if config.memcached:
        from railgun.stores.memcached import MemcachedVersionStore

        return MemcachedVersionStore(
            reactor,
            list(config.memcached),
            timeout=config.timeout,
            ttl=int(config.ttl),
            maxItemBytes=maxVersion + 64,
        )
    return MemoryVersionStore(
        maxBytes=config.memoryBytes,
        maxItemBytes=maxVersion + 64,
        ttl=config.ttl,
        clock=reactor,
    )
