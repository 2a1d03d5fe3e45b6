"""
The admin endpoint as an L{IService}: serves L{AdminResource} on its own
endpoint (keep it on loopback or behind a firewall: it needs no
credentials), and POSTs the statistics document to C{stats.url} every
C{stats.interval} seconds when one is set.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Site

from railgun._listening import ListeningPort
from railgun.admin.pages import AdminResource
from railgun.admin.views import RoleView, viewsOf
from railgun.stores._ratelimit import RateLimitedLog

log = Logger()

#: seconds within which a failing stats POST is logged once.
POST_WARNING_INTERVAL = 300.0


class AdminService(Service):
    """
    Serve the admin endpoint of C{roleService} (an edge, an origin role, or
    C{--role both}).

    @ivar resource: the L{AdminResource} served.
    """

    def __init__(
        self,
        roleService: Any,
        reactor: Any,
        listen: str | None,
        *,
        statsURL: str | None = None,
        statsInterval: float = 60.0,
        httpClient: Any = None,
        views: Callable[[], list[RoleView]] | None = None,
    ) -> None:
        self._reactor = reactor
        self._listen = listen
        self._views = views or (lambda: viewsOf(roleService))
        self.resource = AdminResource(self._views, reactor, reactor.seconds())
        self._listening = ListeningPort("admin endpoint serving")
        self._statsURL = statsURL
        self._statsInterval = statsInterval
        self._client = httpClient
        self._poster: LoopingCall | None = None
        self._pool: Any = None
        self._warnings = RateLimitedLog(log, reactor, POST_WARNING_INTERVAL)
        self.posted = 0

    def startService(self) -> None:
        super().startService()
        if self._listen is not None:
            site = Site(self.resource)
            site.noisy = False
            site.displayTracebacks = False
            self._listening.listen(
                serverFromString(self._reactor, self._listen).listen(site)
            )
        if self._statsURL is not None:
            if self._client is None:
                from treq.client import HTTPClient
                from twisted.web.client import Agent, HTTPConnectionPool

                self._pool = HTTPConnectionPool(self._reactor)
                self._client = HTTPClient(Agent(self._reactor, pool=self._pool))
            self._poster = LoopingCall(self.postStats)
            self._poster.clock = self._reactor
            self._poster.start(self._statsInterval, now=False)

    def whenListening(self) -> Deferred[IListeningPort]:
        """
        @return: a Deferred firing with the admin port once bound.
        """
        return self._listening.whenListening()

    def postStats(self) -> Deferred[None]:
        """
        POST the statistics document to C{stats.url}; a failure is logged
        (once per L{POST_WARNING_INTERVAL} for each kind) and never stops
        the next POST.
        """
        assert self._statsURL is not None
        body = json.dumps(self.resource.document(), sort_keys=True).encode("utf-8")
        d: Deferred[Any] = self._client.post(
            self._statsURL,
            data=body,
            headers={b"content-type": [b"application/json"]},
            timeout=max(1.0, min(30.0, self._statsInterval)),
            reactor=self._reactor,
        )
        d.addCallback(self._posted)
        d.addErrback(self._postFailed)
        return d

    def _posted(self, response: Any) -> Deferred[None]:
        code = response.code
        done: Deferred[None] = (
            response.content()
        )  # read it, so the connection is reused
        if 200 <= code < 300:
            self.posted += 1
        else:
            self._warnings.warn(
                f"status {code}",
                "POSTing stats to {url} answered {code} ({suppressed} more since)",
                url=self._statsURL,
                code=code,
            )
        return done.addCallback(lambda _: None)

    def _postFailed(self, failure: Failure) -> None:
        why = failure.getErrorMessage() or type(failure.value).__name__
        self._warnings.warn(
            type(failure.value).__name__,
            "POSTing stats to {url} failed: {why} ({suppressed} more since)",
            url=self._statsURL,
            why=why,
        )

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        if self._poster is not None and self._poster.running:
            self._poster.stop()
        d = self._listening.stop()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            self._client = None
            d.addCallback(lambda _: pool.closeCachedConnections())
        return d
