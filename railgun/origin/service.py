"""
The origin role as an L{IService}: a TLS listener for links from edges,
each stream served by an L{OriginStreamHandler}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import evolve
from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from railgun._compat.zstd import keptContextBytes
from railgun._listening import ListeningPort, withBacklog
from railgun._memory import returnLargeFrees
from railgun._threads import inDaemonThread
from railgun.config import OriginConfig, StoreConfig
from railgun.delta.codec import defaultRegistry
from railgun.delta.preparer import BackgroundPreparer
from railgun.delta.reuse import DeltaReuse
from railgun.link.factory import LinkServerFactory
from railgun.logs import AccessRecord
from railgun.origin.handler import OriginContext, OriginStreamHandler
from railgun.stats import Stats
from railgun.stores.interfaces import IVersionStore
from railgun.stores.memory import MemoryVersionStore
from railgun.tls import (
    Credentials,
    LinkTLSFactory,
    loadCredentials,
    peerIdentity,
    serverOptions,
)
from railgun.upstream.client import makeOriginClient
from railgun.versions import EncodedVersion, deferEncodeVersion

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
        accessLog: Callable[[AccessRecord], None] | None = None,
    ) -> None:
        """
        @param accessLog: called with an L{AccessRecord} per stream
            (L{railgun.logs.AccessLog.write}, say); L{None}: none.
        """
        if credentials is None:
            if config.certsDir is None:
                raise ValueError("the origin role needs certificates: set certsDir")
            credentials = loadCredentials(config.certsDir, "origin")
        self._config = config
        self._reactor = reactor
        self._credentials = credentials
        self._accessLog = accessLog
        self.stats = Stats()
        self._listening = ListeningPort("origin role accepting links")
        self._linkFactory: LinkServerFactory | None = None
        # Factories of links accepted before a reload changed the token or
        # the certificates: kept until those links have drained.
        self._oldLinkFactories: list[LinkServerFactory] = []
        self._acceptor = _Acceptor()
        self._context: OriginContext | None = None
        self._pool: Any = None
        #: prepares new versions as bases at the best level, in the
        #: background (L{railgun.delta.preparer}).
        self.preparer = BackgroundPreparer(reactor, inDaemonThread)
        self.store: IVersionStore = makeStore(
            config.store, config.delta.maxSize, reactor
        )

    def _encode(self, body: bytes, **kwargs: Any) -> Deferred[EncodedVersion]:
        # zstandard releases the GIL: a large (or level-19) encode runs in
        # the reactor's thread pool so it does not stall every other stream.
        started = self._reactor.seconds()
        d = deferEncodeVersion(
            self._reactor,
            self._reactor.getThreadPool(),
            body,
            preparer=self.preparer,
            **kwargs,
        )
        return d.addCallback(self._encoded, started)

    def _encoded(self, encoded: EncodedVersion, started: float) -> EncodedVersion:
        self.stats.encodeSeconds.observe(self._reactor.seconds() - started)
        if encoded.level:
            self.stats.deltaLevels[encoded.level] += 1
        return encoded

    def _deltaCodecs(self) -> list[Any]:
        codecs = None if self._context is None else self._context.codecs
        if codecs is None:
            return []
        return [codecs.deltaCodec(name) for name in codecs.deltaNames()]

    def abandonedDeltas(self) -> int:
        """
        @return: best-level deltas abandoned past four times the encode budget
            and made at the fixed level instead, since the service started.
        """
        return sum(getattr(c, "abandoned", 0) for c in self._deltaCodecs())

    def preparedBytes(self) -> int:
        """
        @return: bytes taken now by versions hashed ahead at the best level
            (L{railgun.delta.codec.ZstdPatchCodec.prepare}) and by the
            compression context kept between their frames.
        """
        return keptContextBytes() + sum(
            getattr(c, "preparedBytes", 0) for c in self._deltaCodecs()
        )

    def links(self) -> list[Any]:
        """
        @return: the links from edges open now (for statistics).
        """
        factory = self._linkFactory
        return [] if factory is None else list(factory.links)

    def isListening(self) -> bool:
        """
        @return: whether the link port is bound (for a readiness probe).
        """
        return self._listening.port is not None

    def startService(self) -> None:
        super().startService()
        self.preparer.start()
        config = self._config
        if config.delta.enabled and config.delta.budgetMs > 0:
            # Level-19 dictionaries of ~17 MB come and go: give their memory
            # back when freed (glibc would keep it; see railgun._memory).
            returnLargeFrees()
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
            codecs=defaultRegistry(
                config.delta.level,
                config.delta.largeLevel,
                config.delta.budgetMs / 1000 or None,
                config.delta.preparedMemory,
                config.delta.bestFrom,
            ),
            deltaMaxSize=config.delta.maxSize,
            encode=self._encode,
            accessLog=self._accessLog,
            deltas=DeltaReuse(
                self._reactor,
                self._reactor.getThreadPool(),
                self.store,
                shared=bool(config.store.memcached),
            ),
        )
        self._context = context
        self._acceptLinks(config, self._credentials)
        endpoint = serverFromString(
            self._reactor, withBacklog(config.linkListen, config.backlog)
        )
        self._listening.listen(endpoint.listen(self._acceptor))

    def _acceptLinks(self, config: OriginConfig, credentials: Credentials) -> None:
        """
        Accept new links with C{config}'s token, link tuning and these
        certificates.
        """
        context = self._context
        assert context is not None
        self._linkFactory = _AcceptedLinks(
            token=config.token,
            clock=self._reactor,
            streamFactory=lambda stream: OriginStreamHandler(context),
            **config.link.linkOptions(),
        )
        self._acceptor.current = LinkTLSFactory(
            serverOptions(credentials), False, self._linkFactory
        )

    def reload(
        self, config: OriginConfig, credentials: Credentials | None = None
    ) -> Deferred[Any]:
        """
        Apply a new configuration without dropping open streams: hosts added
        to the origin map are served, removed ones refused, changed ones
        fetched from their new origin by the next request. A new token,
        new certificates or new link tuning apply to links accepted from
        now on, and the links accepted before drain (GOAWAY: their open
        streams finish, and the edges dial again), so that after a reload
        every link was authenticated with what is configured now.

        What cannot change while running (the link listener, the version
        store, delta settings and the origin connection pool's settings) is
        kept as it was and named in the log.

        @param credentials: the origin role's certificates as read again;
            L{None} reads them from C{config.certsDir}.
        @return: a Deferred firing once the links to drain have closed.
        """
        if credentials is None:
            if config.certsDir is None:
                raise ValueError("the origin role needs certificates: set certsDir")
            credentials = loadCredentials(config.certsDir, "origin")
        fixed = (
            "linkListen",
            "backlog",
            "connectTimeout",
            "maxConnectionsPerOrigin",
            "verifyOriginTLS",
            "delta",
            "store",
        )
        kept = [n for n in fixed if getattr(config, n) != getattr(self._config, n)]
        if kept:
            log.warn(
                "reload: {names} cannot change while running: restart to apply",
                names=", ".join(kept),
            )
        previous, self._config = (
            self._config,
            evolve(config, **{name: getattr(self._config, name) for name in fixed}),
        )
        oldCredentials, self._credentials = self._credentials, credentials
        drained: Deferred[Any] = Deferred()
        drained.callback(None)
        context = self._context
        if context is not None:
            context.origins = config.origins
            context.responseTimeout = config.responseTimeout
            relink = (
                config.token != previous.token
                or config.link != previous.link
                or credentials.fingerprint() != oldCredentials.fingerprint()
            )
            if relink and self._linkFactory is not None:
                old = self._linkFactory
                self._oldLinkFactories.append(old)
                self._acceptLinks(config, credentials)
                drained = old.goAwayAll(reason="reloaded: dial again")

                def forget(result: Any) -> Any:
                    if old in self._oldLinkFactories:
                        self._oldLinkFactories.remove(old)
                    return result

                drained.addBoth(forget)
        log.info(
            "reload: serving {hosts} host entries",
            hosts=config.origins.hostCount(),
        )
        return drained

    @property
    def config(self) -> OriginConfig:
        """
        The configuration in force (after the last L{reload}).
        """
        return self._config

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
        for factory in [*self._oldLinkFactories, self._linkFactory]:
            if factory is not None:
                steps.append(factory.goAwayAll())
        d = DeferredList(steps, consumeErrors=True)
        d.addCallback(lambda _: self.preparer.stop())
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


class _AcceptedLinks(LinkServerFactory):
    """
    The links accepted from edges: each one's certificate identity is
    logged once its HELLO is accepted (docs/security.md), and kept for the
    access log's C{client} field.
    """

    noisy = False

    def buildProtocol(self, addr: Any) -> Any:
        link = super().buildProtocol(addr)
        link.whenReady().addCallbacks(_linkAccepted, lambda failure: None)
        return link


def _linkAccepted(link: Any) -> None:
    identity = peerIdentity(link.transport) or "(no certificate)"
    link.edgeIdentity = identity
    log.info(
        "link accepted from {address}: edge certificate {identity}",
        address=_address(link.transport),
        identity=identity,
    )


def _address(transport: Any) -> str:
    try:
        peer = transport.getPeer()
        return f"{peer.host}:{peer.port}"
    except Exception:
        return "?"


class _Acceptor(Factory):
    """
    The link listener's factory: hands each connection to the current TLS
    factory, which a reload replaces (new token, certificates) without
    closing the listening socket.
    """

    noisy = False
    current: IProtocolFactory

    def buildProtocol(self, addr: Any) -> Any:
        return self.current.buildProtocol(addr)
