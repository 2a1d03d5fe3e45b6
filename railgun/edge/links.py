"""
The edge's links to one origin role: a few long-lived connections, each
kept up by a L{ClientService} with exponential back-off, and the choice of
which one carries the next stream.
"""

from __future__ import annotations

from typing import Any

from service_identity import VerificationError
from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from railgun.http.routing import LinkAddress
from railgun.link.errors import ErrorCode, ProtocolError
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
        backoff = backoffPolicy(initialDelay=0.2, maxDelay=30.0)
        self._tlsName = tlsName or address.host
        options = clientOptions(credentials, self._tlsName)
        for _ in range(size):
            endpoint = wrapLinkClientTLS(
                options,
                HostnameEndpoint(
                    reactor, address.host, address.port, timeout=connectTimeout
                ),
            )
            factory = _WatchingFactory(
                LinkClientFactory(token=token, clock=reactor, **(linkOptions or {})),
                self._dialed,
            )
            service = ClientService(
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
        log.warn(
            "link to {address} failed before it was ready: {why}{hint}",
            address=self.address,
            why=failure.getErrorMessage(),
            hint=_operatorHint(failure, self._tlsName),
        )

    def _joined(self, link: LinkProtocol) -> LinkProtocol:
        log.info("link to {address} ready", address=self.address)
        self._failedHellos = 0
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
        self._used.discard(id(link))

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


def _operatorHint(failure: Failure, tlsName: str) -> str:
    """
    What an operator can do about a link that failed before it was ready,
    for the two mistakes a deployment most often makes; empty otherwise.
    """
    cause: BaseException | None = failure.value
    if isinstance(cause, ProtocolError) and cause.code == ErrorCode.AUTH_FAILED:
        return " (both roles must be given the same link token)"
    for _ in range(4):
        if cause is None:
            break
        if isinstance(cause, VerificationError):
            return (
                f" (the origin role's certificate does not carry the name {tlsName!r}"
                " the edge checks: give --tls-name the --origin-name the certificates"
                f" were made with, or make them again with --origin-name {tlsName})"
            )
        cause = cause.__cause__
    return ""


class _WatchingFactory(Factory):
    """
    Wraps the link factory to tell the pool about every link it builds.
    """

    def __init__(self, factory: LinkClientFactory, onLink: Any) -> None:
        self._factory = factory
        self._onLink = onLink

    def buildProtocol(self, addr: Any) -> LinkProtocol | None:
        link = self._factory.buildProtocol(addr)
        if link is not None and not self._onLink(link):
            return None  # the pool is stopping: no new links
        return link
