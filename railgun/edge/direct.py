"""
The edge's fallback when no link to the origin role is up: fetch from the
origin server directly, where the configuration names one for the Host (the
original Railgun fell back the same way), marked C{Railgun: direct (...)}.
"""

from __future__ import annotations

from typing import Any

from treq.client import HTTPClient
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import PotentialDataLoss, ResponseDone
from twisted.web.iweb import IResponse

from railgun._compat.web import requestDisconnected
from railgun._producers import WatchedProducer
from railgun.edge.body import BodyProducer
from railgun.http.diagnostic import formatDirect
from railgun.http.messages import RequestHead, responseHasBody
from railgun.http.routing import OriginTarget
from railgun.upstream.client import (
    DiscardBody,
    classifyFetchFailure,
    fetchFromOrigin,
    originRequestHeaders,
    responseHeaderList,
)

log = Logger()


class DirectFetcher:
    """
    Serve a client request straight from an origin server.
    """

    def __init__(
        self,
        client: HTTPClient,
        clock: IReactorTime,
        target: OriginTarget,
        timeout: float,
    ) -> None:
        self._client = client
        self._clock = clock
        self._target = target
        self._timeout = timeout

    def serve(
        self, request: Any, head: RequestHead, reason: str, rid: str = "-"
    ) -> None:
        """
        Fetch C{head} (the body streaming from C{request.body}) and relay
        the answer.

        @param rid: the request id, for the log lines about it.
        """
        from railgun.edge.proxy import respondPlain

        body = BodyProducer(request.body) if request.body is not None else None
        headers = originRequestHeaders(head.headers)
        headers.setRawHeaders(b"host", [head.authority])
        d = fetchFromOrigin(
            self._client,
            self._clock,
            self._target,
            head.method,
            head.path,
            headers,
            body,
            self._timeout,
        )
        marker = formatDirect(reason)

        def gotResponse(response: IResponse) -> None:
            if requestDisconnected(request):
                response.deliverBody(DiscardBody())
                return
            request.setResponseCode(response.code)
            hasBody = responseHasBody(head.method, response.code)
            for name, value in responseHeaderList(response):
                if hasBody and name == b"content-length":
                    continue
                request.responseHeaders.addRawHeader(name, value)
            if hasBody and isinstance(response.length, int):
                request.responseHeaders.setRawHeaders(
                    b"content-length", [b"%d" % response.length]
                )
            request.responseHeaders.setRawHeaders(b"railgun", [marker])
            if not hasBody:
                request.finish()
                response.deliverBody(DiscardBody())
                return
            response.deliverBody(_Relay(request, self._clock, self._timeout, rid))

        def failed(failure: Failure) -> None:
            error = classifyFetchFailure(failure, False)
            respondPlain(request, error.status, f"railgun: {error.message}", marker)

        d.addCallbacks(gotResponse, failed)
        d.addErrback(
            lambda f: log.failure("request {rid}: direct fetch failed", f, rid=rid)
        )


class _Relay(Protocol):
    """
    Relay an origin body to the client, as long as it keeps coming: a body
    that stalls for C{timeout} seconds is cut off (its head is sent, so the
    client can only see the response fail).
    """

    def __init__(
        self, request: Any, clock: IReactorTime, timeout: float, rid: str = "-"
    ) -> None:
        self._request = request
        self._rid = rid
        self._clock = clock
        self._timeout = timeout
        self._timer: Any = None
        self._stalled = False
        self._done = False

    def pausedByClient(self) -> None:
        self._cancelTimer()

    def resumedByClient(self) -> None:
        if not self._done and self._timer is None:
            self._startTimer()

    def connectionMade(self) -> None:
        # The client's socket pauses the origin connection when it is full:
        # while it does, the origin is not the one stalling.
        self._request.registerProducer(
            WatchedProducer(self.transport, self.pausedByClient, self.resumedByClient),
            True,
        )
        self._startTimer()
        self._request.notifyFinish().addErrback(self._clientGone)

    def _clientGone(self, reason: Failure) -> None:
        # (twisted.web does not stop a request's producer when its client
        # leaves: a paused origin connection would be held forever.)
        self._cancelTimer()
        if not self._done:
            self.transport.stopProducing()  # type: ignore[union-attr]

    def _startTimer(self) -> None:
        self._timer = self._clock.callLater(self._timeout, self._bodyStalled)

    def _cancelTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def dataReceived(self, data: bytes) -> None:
        if requestDisconnected(self._request):
            return  # the client left (_clientGone stopped the origin)
        if self._timer is not None:
            self._timer.reset(self._timeout)
        self._request.write(data)

    def _bodyStalled(self) -> None:
        self._timer = None
        self._stalled = True
        log.info(
            "request {rid}: direct origin body stalled; cutting the response off",
            rid=self._rid,
        )
        self.transport.stopProducing()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self._cancelTimer()
        self._done = True
        request = self._request
        if requestDisconnected(request) or request.finished:
            return
        request.unregisterProducer()
        # A body with no length ends when the origin closes
        # (PotentialDataLoss): complete, unless the stall timer stopped it.
        if reason.check(ResponseDone, PotentialDataLoss) and not self._stalled:
            request.finish()
        else:
            request.channel.transport.abortConnection()
