"""
Factories for both ends of a link.

The origin role listens with L{LinkServerFactory}; the edge dials with
L{LinkClientFactory} (through a C{ClientService} over an endpoint, which
handles reconnection).  Both tune the sockets of their links (bigger
reads, no Nagle delay, eager writes: L{railgun._sockets}); a bare
L{LinkProtocol} leaves its transport alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IAddress, IReactorTime, ITransport
from twisted.internet.protocol import Factory

from railgun._sockets import noDelay, tuneForVolume, writeEagerly

from .errors import ErrorCode
from .frames import Settings
from .protocol import LinkProtocol, LinkStream


def tuneLinkTransport(transport: ITransport) -> None:
    """
    Tune the socket under a link's transport: reads of L{tuneForVolume}'s
    size, Nagle off (the link batches its frames per reactor turn), eager
    writes.  Transports that are not sockets are left alone.
    """
    tuneForVolume(transport)
    noDelay(transport)
    writeEagerly(transport)


class _LinkFactory(Factory):
    """
    Build links of one side and keep track of the live ones.

    @ivar links: the links whose transport is not gone yet.
    """

    isDialer: bool

    def __init__(
        self,
        *,
        token: bytes,
        clock: IReactorTime,
        streamFactory: Callable[[LinkStream], Any] | None,
        settings: Settings,
        linkOptions: dict[str, Any],
    ) -> None:
        self._token = token
        self._clock = clock
        self._streamFactory = streamFactory
        self._settings = settings
        self._linkOptions = linkOptions
        self.links: set[LinkProtocol] = set()

    def buildProtocol(self, addr: IAddress | None) -> LinkProtocol:
        link = LinkProtocol(
            isDialer=self.isDialer,
            token=self._token,
            clock=self._clock,
            settings=self._settings,
            streamFactory=self._streamFactory,
            tuneTransport=tuneLinkTransport,
            **self._linkOptions,
        )
        link.factory = self
        self.links.add(link)
        link.whenClosed().addCallback(lambda _: self.links.discard(link))
        return link

    def goAwayAll(
        self, code: ErrorCode = ErrorCode.NO_ERROR, reason: str = "shutting down"
    ) -> Deferred[None]:
        """
        Drain every live link.

        @return: a Deferred firing once all of them are closed.
        """
        waiting = [link.goAway(code, reason) for link in list(self.links)]
        d = DeferredList(waiting, consumeErrors=True)
        return d.addCallback(lambda _: None)


class LinkServerFactory(_LinkFactory):
    """
    Build the accepting side of links.
    """

    isDialer = False

    def __init__(
        self,
        *,
        token: bytes,
        clock: IReactorTime,
        streamFactory: Callable[[LinkStream], Any],
        settings: Settings = Settings(),  # noqa: B008 (frozen: immutable)
        **linkOptions: Any,
    ) -> None:
        """
        @param token: the shared secret every dialer must present.
        @param clock: the reactor's time source.
        @param streamFactory: builds the protocol of each stream a peer opens.
        @param settings: our link settings.
        @param linkOptions: further keyword arguments of L{LinkProtocol}.
        """
        super().__init__(
            token=token,
            clock=clock,
            streamFactory=streamFactory,
            settings=settings,
            linkOptions=linkOptions,
        )


class LinkClientFactory(_LinkFactory):
    """
    Build the dialing side of links.
    """

    isDialer = True

    def __init__(
        self,
        *,
        token: bytes,
        clock: IReactorTime,
        settings: Settings = Settings(),  # noqa: B008 (frozen: immutable)
        streamFactory: Callable[[LinkStream], Any] | None = None,
        **linkOptions: Any,
    ) -> None:
        """
        @param token: the shared secret to present.
        @param clock: the reactor's time source.
        @param settings: our link settings.
        @param streamFactory: builds the protocol of streams the accepting
            side opens toward us; C{None} refuses them.
        @param linkOptions: further keyword arguments of L{LinkProtocol}.
        """
        super().__init__(
            token=token,
            clock=clock,
            streamFactory=streamFactory,
            settings=settings,
            linkOptions=linkOptions,
        )
