"""
The edge's links to one origin role: a few long-lived connections, each
kept up by a L{ClientService} with exponential back-off, and the choice of
which one carries the next stream.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from twisted.application.internet import backoffPolicy
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import (
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from railgun._compat.clientservice import QuietClientService
from railgun.edge.linkfailures import FailureLog, classifyLinkFailure
from railgun.http.routing import LinkAddress
from railgun.link.factory import LinkClientFactory
from railgun.link.protocol import LinkProtocol
from railgun.tls import Credentials, clientOptions, wrapLinkClientTLS

log = Logger()


class LinkPool(MultiService):
    """
    C{size} links to the origin role at C{address}.

    A link joins the pool when its HELLO exchange succeeds (so a link that
    fails TLS or the token never carries a stream) and leaves it when it
    closes; its L{ClientService} then dials again with back-off.

    The HELLO exchange is not made a C{prepareConnection} step of the
    L{ClientService}: a connection lost while that step is pending (a
    refused token) drives ClientService's state machine into an impossible
    transition. Instead each new link is watched here, and the back-off
    counts links that closed before they became ready.

    Every failed dial or HELLO is classified (L{classifyLinkFailure}) and
    logged once per change of cause, naming the address; ClientService's
    own per-attempt line is silenced (L{QuietClientService}).
    """

    def __init__(
        self,
        reactor: Any,
        address: LinkAddress,
        *,
        credentials: Credentials,
        token: bytes,
        size: int = 2,
        tlsName: str | None = None,
        connectTimeout: float = 5.0,
        linkOptions: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.address = address
        self._ready: list[LinkProtocol] = []
        self._used: set[int] = set()
        self._waiters: list[Deferred[LinkProtocol]] = []
        self._failedHellos = 0
        self._links: set[LinkProtocol] = set()
        self._stopping = False
        # Dials and HELLOs that failed since a link was last ready: while
        # none has, the pool is still connecting and a request may wait.
        self._failedAttempts = 0
        self._failureLog = FailureLog(log.warn)
        self._connectTimeout = connectTimeout
        self.size = size
        #: dials and HELLOs that failed, by cause (L{LinkFailure.cause}), and
        #: C{lost}: links that were ready and closed.
        self.failures: Counter[str] = Counter()
        #: links that became ready after the first C{size} (each one in
        #: place of a link that closed or failed).
        self.reconnects = 0
        self._joins = 0
        backoff = backoffPolicy(initialDelay=0.2, maxDelay=30.0)
        self._tlsName = tlsName or address.host
        options = clientOptions(credentials, self._tlsName)
        for _ in range(size):
            endpoint = _ObservedEndpoint(
                wrapLinkClientTLS(
                    options,
                    HostnameEndpoint(
                        reactor, address.host, address.port, timeout=connectTimeout
                    ),
                ),
                self._failed,
            )
            factory = _WatchingFactory(
                LinkClientFactory(token=token, clock=reactor, **(linkOptions or {})),
                self._dialed,
            )
            service = QuietClientService(
                endpoint,
                factory,
                retryPolicy=lambda attempt: backoff(max(attempt, self._failedHellos)),
                clock=reactor,
            )
            service.setServiceParent(self)

    def _dialed(self, link: LinkProtocol) -> bool:
        if self._stopping:
            return False
        self._links.add(link)
        link.whenClosed().addBoth(lambda _: self._links.discard(link))
        link.whenReady().addCallbacks(self._joined, self._helloFailed)
        return True

    def _helloFailed(self, failure: Failure) -> None:
        self._failedHellos += 1
        self._failed(failure)

    def _failed(self, failure: Failure) -> None:
        if self._stopping:
            return
        self._failedAttempts += 1
        classified = classifyLinkFailure(
            failure, tlsName=self._tlsName, connectTimeout=self._connectTimeout
        )
        self.failures[classified.cause] += 1
        self._failureLog.failed(classified, str(self.address))

    def _joined(self, link: LinkProtocol) -> LinkProtocol:
        log.info("link to {address} ready", address=self.address)
        self._failureLog.succeeded(str(self.address))
        self._failedHellos = 0
        self._failedAttempts = 0
        self._joins += 1
        if self._joins > self.size:
            self.reconnects += 1
        self._ready.append(link)
        link.whenClosed().addBoth(lambda _: self._left(link))
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(link)
        return link

    def _left(self, link: LinkProtocol) -> None:
        if link in self._ready:
            self._ready.remove(link)
            log.info("link to {address} closed", address=self.address)
            if not self._stopping:
                self.failures["lost"] += 1
        self._used.discard(id(link))

    def isConnecting(self) -> bool:
        """
        @return: whether no link is ready yet but none has failed either
            since the pool started or last had a ready link: a request may
            wait for one rather than be refused at once.
        """
        return (
            not self._stopping and self.readyCount() == 0 and not (self._failedAttempts)
        )

    def readyLinks(self) -> list[LinkProtocol]:
        """
        @return: the links that finished their HELLO exchange and are open
            (for statistics: their RTT and open streams).
        """
        return list(self._ready)

    def readyCount(self) -> int:
        """
        @return: how many links can carry a new stream now.
        """
        return sum(
            1 for link in self._ready if link.isReady() and not link.isDraining()
        )

    def pick(
        self, exclude: LinkProtocol | None = None
    ) -> tuple[LinkProtocol, bool] | None:
        """
        Choose the link for a new stream: the ready one with the fewest open
        streams (so a slow or stuck link does not collect them all).

        @param exclude: a link not to use (the one a retried stream failed on).
        @return: the link and whether it had carried a stream before, or
            L{None} when no link is usable.
        """
        best: LinkProtocol | None = None
        for link in self._ready:
            if link is exclude or not link.isReady() or link.isDraining():
                continue
            if best is None or link.openStreamCount < best.openStreamCount:
                best = link
        if best is None:
            return None
        reused = id(best) in self._used
        self._used.add(id(best))
        return best, reused

    def owns(self, link: LinkProtocol) -> bool:
        """
        @return: whether C{link} is one of this pool's.
        """
        return link in self._links

    def lightestLoad(
        self, exclude: LinkProtocol | None = None
    ) -> tuple[int, float] | None:
        """
        @return: (open streams, RTT) of the ready link L{pick} would choose,
            for comparing origin roles; L{None} when none is usable.
        """
        best: tuple[int, float] | None = None
        for link in self._ready:
            if link is exclude or not link.isReady() or link.isDraining():
                continue
            load = (link.openStreamCount, link.rtt if link.rtt is not None else 0.0)
            if best is None or load < best:
                best = load
        return best

    def whenReady(self) -> Deferred[LinkProtocol]:
        """
        @return: a Deferred firing with a link as soon as one is ready;
            cancelling it stops the wait.
        """
        for link in self._ready:
            if link.isReady() and not link.isDraining():
                return succeed(link)
        d: Deferred[LinkProtocol] = Deferred(lambda d: self._waiters.remove(d))
        self._waiters.append(d)
        return d

    def stopService(self) -> Deferred[Any]:
        """
        Drain every link, ready or still shaking hands (GOAWAY: open streams
        finish), dialing no new ones meanwhile, then stop the dialers.

        The links are closed through their own protocol: a TLS transport
        with the link registered as its producer would wait forever on a
        bare C{loseConnection}.
        """
        self._stopping = True
        drains = [link.goAway() for link in list(self._links)]
        d = DeferredList(drains, consumeErrors=True)
        d.addCallback(lambda _: MultiService.stopService(self))
        return d

    def startService(self) -> None:
        self._stopping = False
        super().startService()


class _WatchingFactory(Factory):
    """
    Wraps the link factory to tell the pool about every link it builds.
    """

    noisy = False  # no "Starting factory" line at every dial

    def __init__(self, factory: LinkClientFactory, onLink: Any) -> None:
        self._factory = factory
        self._onLink = onLink

    def buildProtocol(self, addr: Any) -> LinkProtocol | None:
        link = self._factory.buildProtocol(addr)
        if link is not None and not self._onLink(link):
            return None  # the pool is stopping: no new links
        return link


@implementer(IStreamClientEndpoint)
class _ObservedEndpoint:
    """
    Wraps a link dialer's endpoint to tell the pool why a dial failed
    (ClientService only schedules the next attempt).
    """

    def __init__(self, endpoint: Any, onFailure: Any) -> None:
        self._endpoint = endpoint
        self._onFailure = onFailure

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        def failed(failure: Failure) -> Failure:
            self._onFailure(failure)
            return failure

        connecting: Deferred[IProtocol] = self._endpoint.connect(factory)
        return connecting.addErrback(failed)


class OriginRoles:
    """
    The link pools of the origin roles that serve one host, seen by the
    proxy as one: a new stream goes to the ready link with the fewest open
    streams, then the lowest RTT, over all of them; a retry avoids the
    origin role whose link failed while another has a ready link. An origin
    role that drains (GOAWAY) or dies has no ready link and so gets no new
    stream until its pool dials it again.

    @ivar pools: one L{LinkPool} per origin role address.
    """

    def __init__(self, pools: list[LinkPool]) -> None:
        self.pools = pools

    def readyCount(self) -> int:
        """
        @return: how many links can carry a new stream now, over all pools.
        """
        return sum(pool.readyCount() for pool in self.pools)

    def isConnecting(self) -> bool:
        """
        @return: whether no link is ready but some pool is still dialing its
            first links (see L{LinkPool.isConnecting}).
        """
        return self.readyCount() == 0 and any(
            pool.isConnecting() for pool in self.pools
        )

    def pick(
        self, exclude: LinkProtocol | None = None
    ) -> tuple[LinkProtocol, bool] | None:
        """
        Choose the link for a new stream.

        @param exclude: the link a retried stream failed on: neither it nor,
            where another origin role has a ready link, its pool is used.
        @return: the link and whether it had carried a stream before, or
            L{None} when no link is usable.
        """
        if len(self.pools) == 1:
            return self.pools[0].pick(exclude=exclude)
        candidates = [pool for pool in self.pools if pool.readyCount()]
        if exclude is not None:
            others = [pool for pool in candidates if not pool.owns(exclude)]
            if others:
                candidates = others
        best: tuple[int, float, LinkPool] | None = None
        for pool in candidates:
            load = pool.lightestLoad(exclude)
            if load is not None and (best is None or load < best[:2]):
                best = (*load, pool)
        if best is None:
            return None
        return best[2].pick(exclude=exclude)

    def whenReady(self) -> Deferred[LinkProtocol]:
        """
        @return: a Deferred firing with the first link ready in any pool;
            cancelling it stops the wait.
        """
        waits = [pool.whenReady() for pool in self.pools]
        for wait in waits:
            if wait.called:
                for other in waits:
                    if other is not wait:
                        other.cancel()
                return wait

        def cancelAll(d: Deferred[LinkProtocol]) -> None:
            for wait in waits:
                wait.cancel()

        first: Deferred[LinkProtocol] = Deferred(cancelAll)

        def ready(link: LinkProtocol) -> None:
            if not first.called:
                for wait in waits:
                    if not wait.called:
                        wait.cancel()
                first.callback(link)

        for wait in waits:
            wait.addCallbacks(ready, lambda failure: None)
        return first
