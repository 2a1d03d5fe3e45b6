"""
A diagnostic, not an alternative: an origin role whose origin fetch is
replaced by an answer from memory, so that the loopback scenario can show
what fetching through treq (treq, twisted.web's Agent, its connection pool
and its HTTP/1.1 client, the origin socket) costs the origin role per
request, by difference with the real chain in the same run.

Everything else is the real origin role, started as a user starts it:

    python -m bench.memoryrole -n --pidfile= railgun --role origin ...

Every stream gets the benchmark's loopback page (L{bench.origin.loopbackPage})
with the headers the benchmark origin sends with it, whatever its request
says; its body is delivered in one piece, as the origin's 10 KB page
arrives in one read.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers

from bench.origin import loopbackPage


class _StillTransport:
    """
    The producer a response body's protocol is given: nothing to pause.
    """

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class MemoryResponse:
    """
    The parts of L{twisted.web.iweb.IResponse} the origin role reads.
    """

    code = 200
    phrase = b"OK"
    version = (b"HTTP", 1, 1)

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)
        self.headers = Headers(
            {
                b"server": [b"TwistedWeb"],
                b"date": [b"Sun, 29 Nov 2026 00:00:00 GMT"],
                b"content-type": [b"text/html; charset=utf-8"],
                b"content-length": [b"%d" % len(body)],
            }
        )

    def deliverBody(self, protocol: Any) -> None:
        protocol.makeConnection(_StillTransport())
        protocol.dataReceived(self._body)
        protocol.connectionLost(Failure(ResponseDone()))


def answerFromMemory(body: bytes) -> None:
    """
    Make the origin role answer every stream with C{body} instead of
    fetching it.
    """
    import railgun.origin.handler

    def fetchFromMemory(*args: Any, **kwargs: Any) -> Deferred[MemoryResponse]:
        return succeed(MemoryResponse(body))

    railgun.origin.handler.fetchFromOrigin = fetchFromMemory  # type: ignore[assignment]


def main() -> None:
    answerFromMemory(loopbackPage())
    from twisted.scripts.twistd import run

    sys.argv[0] = "twistd"
    run()


if __name__ == "__main__":
    main()
