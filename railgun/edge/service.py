"""
The edge role as an L{IService}: the HTTP server clients talk to, and the
pools of links to the origin roles.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import evolve
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

from railgun._listening import ListeningPort, withBacklog
from railgun.config import EdgeConfig
from railgun.delta.codec import defaultRegistry, offReactorAbove
from railgun.delta.content import CLIENT_ENCODE_IN_THREAD_ABOVE, deferEncodeBody
from railgun.delta.history import VersionHistory
from railgun.delta.siblings import SiblingIndex
from railgun.edge.dictionaries import DCZ_LEVEL, Dictionaries, encodeDcz
from railgun.edge.direct import DirectFetcher
from railgun.edge.encodings import ClientEncodings
from railgun.edge.http import EdgeHTTPFactory
from railgun.edge.links import LinkPool, OriginRoles
from railgun.edge.proxy import EdgeProxy
from railgun.http.routing import HostMap
from railgun.logs import AccessRecord
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
        accessLog: Callable[[AccessRecord], None] | None = None,
    ) -> None:
        """
        @param accessLog: called with an L{AccessRecord} per request
            (L{railgun.logs.AccessLog.write}, say); L{None}: none.
        """
        super().__init__()
        if credentials is None:
            if config.certsDir is None:
                raise ValueError("the edge role needs certificates: set certsDir")
            credentials = loadCredentials(config.certsDir, "edge")
        self._config = config
        self._reactor = reactor
        self.stats = Stats()
        # Pools by everything that shapes their links: a reload keeps a pool
        # whose key is unchanged and drains the others.
        self._poolsByKey: dict[tuple[Any, ...], LinkPool] = {}
        self.pools = self._linkPools(config, credentials)
        self._fallbackPool: Any = None
        fallback = self._fallbacks(config)
        self.proxy = EdgeProxy(
            pools=self._hostPools(config),
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
            diagnosticHeader=config.diagnosticHeader,
            history=VersionHistory(config.delta.versions)
            if config.delta.enabled and config.delta.versions > 1
            else None,
            clientEncodings=ClientEncodings(),
            encodeForClient=lambda body, coding: deferEncodeBody(
                reactor, reactor.getThreadPool(), body, coding
            ),
            accessLog=accessLog,
        )
        if config.dictionaries and self.proxy.cache is not None:
            self.proxy.dictionaries = Dictionaries(
                store=self.proxy.cache,
                clock=reactor,
                patterns=config.dictionaryMatch,
                encodings=self.proxy.clientEncodings,
                encode=lambda body, dictionary, hashed: offReactorAbove(
                    reactor,
                    reactor.getThreadPool(),
                    len(body),
                    CLIENT_ENCODE_IN_THREAD_ABOVE,
                    encodeDcz,
                    body,
                    dictionary,
                    DCZ_LEVEL,
                    hashed,
                ),
            )
        self._listening = ListeningPort("edge serving HTTP")

    def _linkPools(
        self, config: EdgeConfig, credentials: Credentials
    ) -> dict[Any, LinkPool]:
        """
        The pool for every origin role address of C{config}'s link map,
        reusing those already running with the same settings.

        @return: address -> pool.
        """
        pools: dict[Any, LinkPool] = {}
        addresses = [a for group in config.links.values() for a in group.addresses]
        for address in dict.fromkeys(addresses):
            key = (
                address,
                config.token,
                credentials.fingerprint(),
                config.linksPerOrigin,
                config.tlsName,
                config.connectTimeout,
                config.link,
            )
            pool = self._poolsByKey.get(key)
            if pool is None:
                pool = self._poolsByKey[key] = LinkPool(
                    self._reactor,
                    address,
                    credentials=credentials,
                    token=config.token,
                    size=config.linksPerOrigin,
                    tlsName=config.tlsName,
                    connectTimeout=config.connectTimeout,
                    linkOptions=config.link.linkOptions(),
                )
                pool.setServiceParent(self)
            pools[address] = pool
        return pools

    def _hostPools(self, config: EdgeConfig) -> HostMap:
        """
        @return: host -> the L{OriginRoles} (pools of links) serving it.
        """
        return config.links.mapValues(
            lambda group: OriginRoles([self.pools[a] for a in group.addresses])
        )

    def _fallbacks(self, config: EdgeConfig) -> Any:
        if config.fallback is None:
            return None
        if self._fallbackPool is None:
            client, self._fallbackPool = makeOriginClient(
                self._reactor,
                connectTimeout=config.connectTimeout,
                maxConnectionsPerOrigin=16,
            )
            self._fallbackClient = client
        client = self._fallbackClient
        reactor = self._reactor
        return config.fallback.mapValues(
            lambda target: DirectFetcher(
                client, reactor, target, config.responseTimeout
            )
        )

    def reload(
        self, config: EdgeConfig, credentials: Credentials | None = None
    ) -> Deferred[Any]:
        """
        Apply a new configuration without dropping open streams: hosts added
        to the link map are served, removed ones refused (421); links to new
        origin role addresses (or with a new token, certificates, TLS name or
        link tuning) are dialed, links no longer used drain (GOAWAY: their
        open streams finish). The direct fallback map, the response
        timeout and the diagnostic header mode follow the new configuration
        too.

        What cannot change while running (the HTTP listener, header and body
        limits, the version store and delta settings) is kept as it was and
        named in the log.

        @param credentials: the edge's certificates as read again; L{None}
            reads them from C{config.certsDir}.
        @return: a Deferred firing once the pools no longer used have
            drained.
        """
        if credentials is None:
            if config.certsDir is None:
                raise ValueError("the edge role needs certificates: set certsDir")
            credentials = loadCredentials(config.certsDir, "edge")
        kept = []
        for name in (
            "httpListen",
            "backlog",
            "maxHeaderBytes",
            "maxBodyBytes",
            "delta",
            "store",
        ):
            if getattr(config, name) != getattr(self._config, name):
                kept.append(name)
        if kept:
            log.warn(
                "reload: {names} cannot change while running: restart to apply",
                names=", ".join(kept),
            )
        pools = self._linkPools(config, credentials)
        proxy = self.proxy
        self.pools = pools
        proxy.pools = self._hostPools(config)
        proxy.fallback = self._fallbacks(config)
        proxy.responseTimeout = config.responseTimeout
        proxy.linkWait = config.connectTimeout
        proxy.diagnosticHeader = config.diagnosticHeader
        current = set(pools.values())
        unused = [
            (key, pool) for key, pool in self._poolsByKey.items() if pool not in current
        ]
        drains = []
        for key, pool in unused:
            del self._poolsByKey[key]
            drains.append(pool.disownServiceParent())
        self._config = evolve(
            config,
            httpListen=self._config.httpListen,
            maxHeaderBytes=self._config.maxHeaderBytes,
            maxBodyBytes=self._config.maxBodyBytes,
            delta=self._config.delta,
            store=self._config.store,
        )
        log.info(
            "reload: serving {hosts} host entries through {pools} origin role"
            " addresses; {drained} link pools draining",
            hosts=config.links.hostCount(),
            pools=len(pools),
            drained=len(unused),
        )
        return DeferredList(
            [d for d in drains if isinstance(d, Deferred)], consumeErrors=True
        )

    def startService(self) -> None:
        super().startService()
        factory = EdgeHTTPFactory(
            self.proxy,
            reactor=self._reactor,
            maxHeaderBytes=self._config.maxHeaderBytes,
            maxBodyBytes=self._config.maxBodyBytes,
        )
        self._listening.listen(
            serverFromString(
                self._reactor,
                withBacklog(self._config.httpListen, self._config.backlog),
            ).listen(factory)
        )

    @property
    def config(self) -> EdgeConfig:
        """
        The configuration in force (after the last L{reload}).
        """
        return self._config

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
        self.proxy.stopping = True
        d = self._listening.stop()
        d.addCallback(lambda _: MultiService.stopService(self))
        if self._fallbackPool is not None:
            pool = self._fallbackPool
            d.addCallback(lambda _: pool.closeCachedConnections())
        return d
