"""
C{--role both}: an origin role and an edge in one process, linked over
loopback TLS with certificates made on the fly, for one box and for trying
Railgun. With no C{--map}, the origin role fronts the built-in sample origin
(L{railgun.sample}), so one command shows the whole path working.
"""

from __future__ import annotations

import secrets
from typing import Any

from attrs import evolve
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure

from railgun.certs import generateDeployment
from railgun.config import RailgunConfig, parseLinkMap, parseOriginMap
from railgun.http.routing import HostMap
from railgun.tls import credentialsFromDeployment

log = Logger()


class BothService(MultiService):
    """
    Start (the sample origin,) the origin role, then the edge linked to it.

    @ivar edge: the L{railgun.edge.service.EdgeService}, once started.
    @ivar origin: the L{railgun.origin.service.OriginService}, once started.
    """

    def __init__(self, config: RailgunConfig, reactor: Any) -> None:
        """
        @param config: the configuration of C{--role both}: both roles'
            (L{RailgunConfig.origin} with an empty map serves the sample
            origin; an empty token is replaced by a random one).
        """
        super().__init__()
        self._config = config
        self._reactor = reactor
        self.edge: Any = None
        self.origin: Any = None
        self._samplePort: IListeningPort | None = None
        self._ready: Deferred[Any] | None = None
        self._failure: Failure | None = None

    def startService(self) -> None:
        super().startService()
        self._failure = None
        self._ready = Deferred.fromCoroutine(self._start())
        self._ready.addErrback(self._startFailed)

    def _startFailed(self, failure: Failure) -> None:
        self._failure = failure
        # A port in use was logged in one line where it happened.
        if not failure.check(CannotListenError):
            log.failure("railgun --role both failed to start", failure)

    async def _start(self) -> None:
        from railgun.edge.service import EdgeService
        from railgun.origin.service import OriginService

        config = self._config
        originConfig, edgeConfig = config.originConfig(), config.edgeConfig()
        token = originConfig.token or secrets.token_hex(32).encode("ascii")
        deployment = generateDeployment("localhost")
        origins = originConfig.origins
        if origins == HostMap():
            from railgun.sample import sampleSite

            self._samplePort = await serverFromString(
                self._reactor, "tcp:0:interface=127.0.0.1"
            ).listen(sampleSite(self._reactor, config.samplePeriod))
            port = self._samplePort.getHost().port  # type: ignore[union-attr]
            origins = parseOriginMap([f"*=http://127.0.0.1:{port}"])
            log.info("sample origin serving on 127.0.0.1:{port}", port=port)
        self.origin = OriginService(
            evolve(originConfig, origins=origins, token=token, certsDir=None),
            self._reactor,
            credentials=credentialsFromDeployment(deployment, "origin"),
        )
        self.origin.setServiceParent(self)
        linkPort = (await self.origin.whenListening()).getHost().port  # type: ignore[attr-defined]
        links = edgeConfig.links
        if links == HostMap():
            links = parseLinkMap([f"*=127.0.0.1:{linkPort}"])
        self.edge = EdgeService(
            evolve(
                edgeConfig,
                links=links,
                token=token,
                certsDir=None,
                # the name in the certificate made above
                tlsName=edgeConfig.tlsName or "localhost",
            ),
            self._reactor,
            credentials=credentialsFromDeployment(deployment, "edge"),
        )
        self.edge.setServiceParent(self)
        httpPort = await self.edge.whenListening()
        log.info(
            "railgun (both roles) ready: try curl http://{h}:{p}/",
            h=httpPort.getHost().host,
            p=httpPort.getHost().port,
        )

    def whenStarted(self) -> Deferred[Any]:
        """
        @return: a Deferred firing once both roles are listening, or failing
            with the reason they could not start (a port in use).
        """
        if self._ready is None:
            return succeed(None)
        started: Deferred[Any] = Deferred()

        def fire(result: Any) -> Any:
            if self._failure is not None:
                started.errback(self._failure)
            else:
                started.callback(None)
            return result

        self._ready.addBoth(fire)
        return started

    def stopService(self) -> Deferred[Any]:
        d = MultiService.stopService(self)
        port, self._samplePort = self._samplePort, None
        if port is not None:
            d.addCallback(lambda _: port.stopListening())
        return d
