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

from railgun.edge.body import BodyProducer
from railgun.http.diagnostic import formatDirect
from railgun.http.messages import RequestHead, responseHasBody
from railgun.http.routing import OriginTarget
from railgun.origin.fetch import (
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

    def __init__(self, client: HTTPClient, clock: IReactorTime, target: OriginTarget, timeout: float) -> None:
        self._client = client
        self._clock = clock
        self._target = target
        self._timeout = timeout

    def serve(self, request: Any, head: RequestHead, reason: str) -> None:
        """
        Fetch C{head} (the body streaming from C{request.body}) and relay
        the answer.
        """
        from railgun.edge.proxy import respondPlain

        body = BodyProducer(request.body) if request.body is not None else None
        headers = originRequestHeaders(head.headers)
        headers.setRawHeaders(b"host", [head.authority])
        d = fetchFromOrigin(
            self._client, self._clock, self._target, head.method, head.path,
            headers, body, self._timeout,
        )
        marker = formatDirect(reason)

        def gotResponse(response: IResponse) -> None:
            if request._disconnected:
                response.deliverBody(DiscardBody())
                return
            request.setResponseCode(response.code)
            hasBody = responseHasBody(head.method, response.code)
            for name, value in responseHeaderList(response):
                if hasBody and name == b"content-length":
                    continue
                request.responseHeaders.addRawHeader(name, value)
            if hasBody and isinstance(response.length, int):
                request.responseHeaders.setRawHeaders(b"content-length", [b"%d" % response.length])
            request.responseHeaders.setRawHeaders(b"railgun", [marker])
            if not hasBody:
                request.finish()
                response.deliverBody(DiscardBody())
                return
            response.deliverBody(_Relay(request))

        def failed(failure: Failure) -> None:
            error = classifyFetchFailure(failure, False)
            respondPlain(request, error.status, f"railgun: {error.message}", marker)

        d.addCallbacks(gotResponse, failed)
        d.addErrback(lambda f: log.failure("direct fetch failed", f))


class _Relay(Protocol):
    def __init__(self, request: Any) -> None:
        self._request = request

    def connectionMade(self) -> None:
        self._request.registerProducer(self.transport, True)

    def dataReceived(self, data: bytes) -> None:
        self._request.write(data)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        request = self._request
        if request._disconnected or request.finished:
            return
        request.unregisterProducer()
        if reason.check(ResponseDone, PotentialDataLoss):
            request.finish()
        else:
            request.channel.transport.abortConnection()
