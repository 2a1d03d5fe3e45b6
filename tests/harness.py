"""
Real processes' worth of Railgun in one reactor, for integration tests: a
twisted.web origin server with test pages, an origin role and an edge linked
over real TLS on loopback, and a small HTTP client.
"""

from __future__ import annotations

import hashlib
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Protocol
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from twisted.web.static import Data

from railgun.certs import generateDeployment
from railgun.config import (
    EdgeConfig,
    LinkTuning,
    OriginConfig,
    parseLinkMap,
    parseOriginMap,
)
from railgun.edge.service import EdgeService
from railgun.origin.service import OriginService
from railgun.tls import credentialsFromDeployment

TOKEN = b"integration-test-token-0123456789"
HOST = "www.example.test"


class Echo(Resource):
    """
    Answers with a JSON-ish description of the request it got, and its body.
    """

    isLeaf = True

    def render(self, request: Any) -> bytes:
        body = request.content.read()
        request.setHeader(b"content-type", b"application/octet-stream")
        request.setHeader(b"x-method", request.method)
        request.setHeader(b"x-uri", request.uri)
        request.setHeader(b"x-body-sha256", hashlib.sha256(body).hexdigest().encode())
        request.setHeader(b"x-body-length", b"%d" % len(body))
        request.setHeader(b"x-host", request.getHeader(b"host") or b"")
        for name in (
            b"x-forwarded-for",
            b"forwarded",
            b"via",
            b"connection",
            b"x-custom",
            b"railgun-base",
            b"te",
        ):
            value = request.getHeader(name)
            if value is not None:
                request.setHeader(b"x-seen-" + name, value)
        if request.method == b"HEAD":
            return b""
        return body or b"echo"


class Changing(Resource):
    """
    A text page that changes a little on every request.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.hits = 0

    def render_GET(self, request: Any) -> bytes:
        self.hits += 1
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return changingPage(self.hits)


def changingPage(version: int) -> bytes:
    """
    A ~60 KB page where a few lines differ between versions.
    """
    lines = [
        f"<p>paragraph {i}: {'lorem ipsum dolor sit amet ' * 3}</p>" for i in range(600)
    ]
    lines[version % 600] = f"<p>changed at version {version}</p>"
    lines.insert(0, f"<h1>Edition {version}</h1>")
    return "\n".join(lines).encode()


class Big(Resource):
    """
    Streams C{size} bytes of a repeating pattern, with back-pressure.
    """

    isLeaf = True

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def render_GET(self, request: Any) -> Any:
        request.setHeader(b"content-type", b"application/octet-stream")
        request.setHeader(b"content-length", b"%d" % self.size)
        _PatternProducer(request, self.size).start()
        return NOT_DONE_YET


def pattern(offset: int, length: int) -> bytes:
    """
    The bytes of L{Big}'s body from C{offset}: a 251-byte cycle (prime, so
    a lost or repeated chunk shows).
    """
    cycle = bytes(range(251))
    start = offset % 251
    reps = (start + length) // 251 + 1
    return (cycle * reps)[start : start + length]


class _PatternProducer:
    def __init__(self, request: Any, size: int) -> None:
        self.request = request
        self.left = size
        self.offset = 0
        self.paused = False

    def start(self) -> None:
        self.request.registerProducer(self, True)
        self.resumeProducing()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and self.left > 0:
            n = min(65536, self.left)
            chunk = pattern(self.offset, n)
            self.offset += n
            self.left -= n
            self.request.write(chunk)
        if self.left == 0 and not self.paused:
            self.left = -1
            self.request.unregisterProducer()
            self.request.finish()

    def stopProducing(self) -> None:
        self.left = -1


class Upload(Resource):
    """
    Consumes a body of any size, answering its length and SHA-256.
    """

    isLeaf = True

    def render(self, request: Any) -> bytes:
        digest = hashlib.sha256()
        total = 0
        while True:
            chunk = request.content.read(1 << 20)
            if not chunk:
                break
            digest.update(chunk)
            total += len(chunk)
        return b"%d %s" % (total, digest.hexdigest().encode())


class Hang(Resource):
    """
    Never answers.
    """

    isLeaf = True

    def render(self, request: Any) -> Any:
        return NOT_DONE_YET


class StallMidBody(Resource):
    """
    Announces a 100,000-byte text page, sends the first 1,000 bytes and
    then nothing more.
    """

    isLeaf = True

    def render(self, request: Any) -> Any:
        request.setHeader(b"content-type", b"text/html")
        request.setHeader(b"content-length", b"100000")
        request.write(b"<p>" + b"x" * 993 + b"</p>")
        return NOT_DONE_YET


class StallingOrigin(Protocol):
    """
    A raw HTTP/1.1 origin that sends a response head and part of its body.
    Without C{length}, the response has no length (its body ends when the
    connection closes, RFC 9112 6.3) and the origin then stalls, holding
    the connection open; with C{length}, it announces that many bytes and
    closes the connection after the part.
    """

    def __init__(
        self, contentType: bytes, partial: bytes, length: int | None = None
    ) -> None:
        framing = (
            b"connection: close" if length is None else b"content-length: %d" % length
        )
        self._head = (
            b"HTTP/1.1 200 OK\r\ncontent-type: "
            + contentType
            + b"\r\n"
            + framing
            + b"\r\n\r\n"
        )
        self._partial = partial
        self._closeAfter = length is not None
        self._received = b""

    def dataReceived(self, data: bytes) -> None:
        self._received += data
        if b"\r\n\r\n" in self._received and self._head:
            self.transport.write(self._head + self._partial)
            self._head = b""
            if self._closeAfter:
                # Fewer bytes than announced, then the connection closes.
                self.transport.loseConnection()


#: A text page large enough (over 128 KiB) for the edge to compress it for
#: clients in its thread pool.
LARGE_TEXT = b"".join(changingPage(v) for v in range(5))


def originSite(bigSize: int = 1 << 20) -> tuple[Site, dict[str, Any]]:
    root = Resource()
    pages = {"changing": Changing(), "big": Big(bigSize)}
    root.putChild(b"echo", Echo())
    root.putChild(b"changing", pages["changing"])
    root.putChild(b"big", pages["big"])
    root.putChild(b"upload", Upload())
    root.putChild(b"hang", Hang())
    root.putChild(b"stall", StallMidBody())
    root.putChild(
        b"static", Data(b"<p>the same page whatever the query</p>\n" * 50, "text/html")
    )
    root.putChild(b"largetext", Data(LARGE_TEXT, "text/html"))
    site = Site(root)
    site.displayTracebacks = False
    return site, pages


class Deployment:
    """
    An origin server, an origin role and an edge, all on loopback.
    """

    def __init__(self) -> None:
        self.ports: list[Any] = []
        self.services: list[Any] = []

    @inlineCallbacks
    def start(
        self,
        *,
        originURL: str | None = None,
        bigSize: int = 1 << 20,
        edgeOptions: dict[str, Any] | None = None,
        originOptions: dict[str, Any] | None = None,
        token: bytes = TOKEN,
        edgeToken: bytes | None = None,
        linkTuning: LinkTuning | None = None,
        edgeCredentials: Any = None,
        tlsDeployment: Any = None,
        fallbackToOrigin: bool = False,
        accessLog: Any = None,
    ) -> Any:
        deployment = tlsDeployment or generateDeployment("localhost")
        self.tlsDeployment = deployment
        if originURL is None:
            site, self.pages = originSite(bigSize)
            # A backlog as the roles' own (Twisted's default, 50, drops SYNs
            # when hundreds of requests reach the origin at once on a busy
            # machine: a connect then waits seconds for its retransmission).
            port = yield TCP4ServerEndpoint(
                reactor, 0, backlog=1024, interface="127.0.0.1"
            ).listen(site)
            self.ports.append(port)
            originURL = f"http://127.0.0.1:{port.getHost().port}"
        self.originURL = originURL
        tuning = linkTuning or LinkTuning(pingInterval=0)
        self.origin = OriginService(
            OriginConfig(
                origins=parseOriginMap(
                    [f"{HOST}={originURL}", f"*.wild.test={originURL}"]
                ),
                token=token,
                linkListen="tcp:0:interface=127.0.0.1",
                link=tuning,
                **(originOptions or {}),
            ),
            reactor,
            credentials=credentialsFromDeployment(deployment, "origin"),
            accessLog=accessLog,
        )
        self.origin.startService()
        self.services.append(self.origin)
        linkPort = (yield self.origin.whenListening()).getHost().port
        edgeOptions = dict(edgeOptions or {})
        if fallbackToOrigin:
            edgeOptions["fallback"] = parseOriginMap([f"{HOST}={originURL}"])
        self.edge = EdgeService(
            EdgeConfig(
                links=parseLinkMap(
                    [
                        f"{HOST}=127.0.0.1:{linkPort}",
                        f"*.wild.test=127.0.0.1:{linkPort}",
                        f"unmapped.test=127.0.0.1:{linkPort}",
                    ]
                ),
                token=edgeToken if edgeToken is not None else token,
                httpListen="tcp:0:interface=127.0.0.1",
                tlsName="localhost",
                link=tuning,
                **edgeOptions,
            ),
            reactor,
            credentials=edgeCredentials
            or credentialsFromDeployment(deployment, "edge"),
            accessLog=accessLog,
        )
        self.edge.startService()
        self.services.append(self.edge)
        self.edgePort = (yield self.edge.whenListening()).getHost().port
        self.linkPort = linkPort
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = 1000
        self.agent = Agent(reactor, pool=self.pool)
        return self

    @inlineCallbacks
    def stop(self) -> Any:
        yield self.pool.closeCachedConnections()
        for service in reversed(self.services):
            yield service.stopService()
        for port in self.ports:
            yield port.stopListening()

    def url(self, path: str) -> bytes:
        return f"http://127.0.0.1:{self.edgePort}{path}".encode()

    @inlineCallbacks
    def fetch(
        self,
        path: str,
        method: bytes = b"GET",
        host: str = HOST,
        headers: dict[bytes, list[bytes]] | None = None,
        body: Any = None,
    ) -> Any:
        """
        @return: (response, body bytes)
        """
        h = Headers({b"host": [host.encode()]})
        for name, values in (headers or {}).items():
            h.setRawHeaders(name, values)
        response = yield self.agent.request(method, self.url(path), h, body)
        content = yield readBody(response)
        return response, content


@inlineCallbacks
def rawRequest(port: int, data: bytes, timeout: float = 5.0) -> Any:
    """
    Send raw bytes to a loopback port and collect everything until close.
    """
    done: Deferred[bytes] = Deferred()

    class Collect(Protocol):
        def __init__(self) -> None:
            self.chunks: list[bytes] = []

        def connectionMade(self) -> None:
            self.transport.write(data)

        def dataReceived(self, chunk: bytes) -> None:
            self.chunks.append(chunk)

        def connectionLost(self, reason: Any) -> None:
            done.callback(b"".join(self.chunks))

    from twisted.internet.protocol import Factory

    proto = yield TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(
        Factory.forProtocol(Collect)
    )
    timer = reactor.callLater(timeout, proto.transport.loseConnection)
    result = yield done
    if timer.active():
        timer.cancel()
    return result
