"""
C{--role both}: an origin role and an edge in one process, linked over
loopback TLS with certificates made on the fly, for one box and for trying
Railgun. With no C{--map}, the origin role fronts the built-in sample origin
(L{railgun.sample}), so one command shows the whole path working.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from attrs import evolve
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure

from railgun.certs import generateDeployment
from railgun.config import RailgunConfig, parseLinkMap, parseOriginMap
from railgun.http.routing import HostMap
from railgun.logs import AccessRecord
from railgun.tls import credentialsFromDeployment

log = Logger()


class BothService(MultiService):
    """
    Start (the sample origin,) the origin role, then the edge linked to it.

    @ivar edge: the L{railgun.edge.service.EdgeService}, once started.
    @ivar origin: the L{railgun.origin.service.OriginService}, once started.
    """

    def __init__(
        self,
        config: RailgunConfig,
        reactor: Any,
        accessLog: Callable[[AccessRecord], None] | None = None,
    ) -> None:
        """
        @param config: the configuration of C{--role both}: both roles'
            (L{RailgunConfig.origin} with an empty map serves the sample
            origin; an empty token is replaced by a random one).
        @param accessLog: called with an L{AccessRecord} per request (edge)
            and per stream (origin role).
        """
        super().__init__()
        self._config = config
        self._reactor = reactor
        self._accessLog = accessLog
        # What _start made, which a reload keeps: the token, certificates,
        # the sample origin's map and the edge's links to the origin role.
        self._made: dict[str, Any] = {}
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
        self._made = dict(
            token=token, deployment=deployment, origins=origins, links=None
        )
        self.origin = OriginService(
            evolve(originConfig, origins=origins, token=token, certsDir=None),
            self._reactor,
            credentials=credentialsFromDeployment(deployment, "origin"),
            accessLog=self._accessLog,
        )
        self.origin.setServiceParent(self)
        linkPort = (await self.origin.whenListening()).getHost().port  # type: ignore[attr-defined]
        self._made["links"] = parseLinkMap([f"*=127.0.0.1:{linkPort}"])
        self.edge = EdgeService(
            self._edgeConfig(edgeConfig),
            self._reactor,
            credentials=credentialsFromDeployment(deployment, "edge"),
            accessLog=self._accessLog,
        )
        self.edge.setServiceParent(self)
        httpPort = await self.edge.whenListening()
        log.info(
            "railgun (both roles) ready: try curl http://{h}:{p}/",
            h=httpPort.getHost().host,
            p=httpPort.getHost().port,
        )

    def _edgeConfig(self, edgeConfig: Any) -> Any:
        links = edgeConfig.links
        if links == HostMap():
            links = self._made["links"]
        return evolve(
            edgeConfig,
            links=links,
            token=self._made["token"],
            certsDir=None,
            # the name in the certificate made at start
            tlsName=edgeConfig.tlsName or "localhost",
        )

    def reload(self, config: RailgunConfig) -> Deferred[Any]:
        """
        Apply a new configuration to both roles (see their C{reload}): the
        token and certificates made at start are kept, and so is the sample
        origin while no C{--map} is given.

        @return: a Deferred firing once both have drained what they drain.
        """
        if self.origin is None or self.edge is None:
            log.warn("reload: --role both has not started yet; nothing applied")
            return succeed(None)
        made = self._made
        originConfig = config.originConfig()
        origins = originConfig.origins
        if origins == HostMap():
            origins = made["origins"]
        self._config = config
        deployment = made["deployment"]
        return gatherResults(
            [
                self.origin.reload(
                    evolve(
                        originConfig,
                        origins=origins,
                        token=made["token"],
                        certsDir=None,
                    ),
                    credentialsFromDeployment(deployment, "origin"),
                ),
                self.edge.reload(
                    self._edgeConfig(config.edgeConfig()),
                    credentialsFromDeployment(deployment, "edge"),
                ),
            ]
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
