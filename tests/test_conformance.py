"""
Conformance of the HTTP path against origin applications this project did
not write: Debian's nginx and Python's C{http.server}, each run as a child
process on 127.0.0.1.

Every request is sent twice with the same plain client: straight to the
origin server, and through the edge (over the mutual-TLS link and the origin
role), with the Host the deployment maps. The two answers must agree on the
status, the body bytes (decoded, when the client accepted a content coding:
the edge may compress where the origin did not, and the reverse) and every
end-to-end header, less those a proxy changes by design (see L{compare}).
"""

from __future__ import annotations

import gzip
import http.client
import io
import os
import zlib
from typing import TYPE_CHECKING, Any

import brotli
import zstandard
from attrs import field, frozen
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer
from zope.interface.verify import verifyObject

from railgun.http.diagnostic import Flag, RailgunDiagnostic
from tests.conformance_origins import (
    LARGE_SIZE,
    LARGE_TEXT_SIZE,
    MTIME,
    ODD_PATH,
    ODD_PATH_LOWER,
    NginxOrigin,
    PythonHTTPServerOrigin,
    htmlPage,
    setMTime,
)
from tests.harness import HOST, Deployment

#: connection-specific headers (RFC 9110 7.6.1, RFC 9112), which each hop
#: writes for itself. Kept here rather than imported from railgun, so the
#: oracle does not share the code under test.
HOP_BY_HOP = frozenset(
    [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    ]
)

#: headers that differ between two answers by nature (Date) or that the
#: edge adds by design (Railgun, Via).
ALWAYS_IGNORED = frozenset([b"date", b"railgun", b"via"])

#: headers that depend on the content coding chosen, ignored when the client
#: sent Accept-Encoding (the bodies are then compared decoded). Accept-Ranges
#: is one: nginx drops it from a body it gzips (it cannot serve ranges of its
#: gzip output), while the edge, which asks the origin for identity, keeps
#: the origin's (ranges then come from the identity body, see
#: test_rangeWithGzip).
CODING_DEPENDENT = frozenset(
    [b"content-length", b"content-encoding", b"vary", b"accept-ranges"]
)

GZIP = ((b"accept-encoding", b"gzip"),)


@frozen
class Req:
    """
    One request of the conformance set.

    @ivar raw: send it as these exact bytes on a socket (for targets a
        well-behaved client library would refuse or re-quote), else through
        L{Agent}. C{%(host)s} in it is replaced by the Host.
    """

    method: bytes = b"GET"
    path: str = "/"
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes | None = None
    raw: bytes | None = None

    @property
    def acceptsEncoding(self) -> bool:
        return any(name.lower() == b"accept-encoding" for name, _ in self.headers)

    def describe(self) -> str:
        if self.raw is not None:
            line = self.raw.split(b"\r\n", 1)[0]
            return f"raw {line!r}"
        extra = ", ".join(
            f"{n.decode()}: {v[:40].decode('latin-1')}" + ("..." if len(v) > 40 else "")
            for n, v in self.headers
        )
        body = f" + {len(self.body)} body bytes" if self.body is not None else ""
        return (
            f"{self.method.decode()} {self.path}"
            + (f" [{extra}]" if extra else "")
            + body
        )


@frozen
class Reply:
    """
    A response as a client saw it.

    @ivar headers: C{(lowercase name, value)} pairs; values of one name in
        the order received.
    """

    status: int
    headers: list[tuple[bytes, bytes]] = field(repr=False)
    body: bytes = field(repr=False)
    trailing: bytes = field(default=b"", repr=False)
    """
    Bytes received after the end of the response (on a connection the
    client asked to close, there must be none: a body sent with a HEAD or
    304 answer would show here).
    """

    def values(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.headers if n == name]

    def first(self, name: bytes) -> bytes | None:
        found = self.values(name)
        return found[0] if found else None


@implementer(IBodyProducer)
class BytesProducer:
    """
    A request body written in one go, in the same reactor turn as the
    request head (so a server that answers without reading the body, and
    closes, finds nothing unread and does not reset the connection).
    """

    def __init__(self, data: bytes) -> None:
        self.length = len(data)
        self._data = data

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(self._data)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _Collect(Protocol):
    """
    Write a request, collect the answer until the server closes (at most
    C{limit} bytes).
    """

    def __init__(self, data: bytes, done: Deferred[bytes], limit: int) -> None:
        self._data = data
        self._done = done
        self._chunks: list[bytes] = []
        self._left = limit

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self._data)

    def dataReceived(self, chunk: bytes) -> None:
        self._left -= len(chunk)
        if self._left < 0:
            self.transport.abortConnection()  # type: ignore[union-attr]
            return
        self._chunks.append(chunk)

    def connectionLost(self, reason: Any = None) -> None:
        self._done.callback(b"".join(self._chunks))


class _KeptOpen(io.BytesIO):
    def close(self) -> None:
        # http.client closes its file once the body is read; what is left
        # after it must stay readable.
        pass


class _Replay:
    """
    What L{http.client.HTTPResponse} needs of a socket, over bytes already
    received.
    """

    def __init__(self, data: bytes) -> None:
        self.file = _KeptOpen(data)

    def makefile(self, *args: Any, **kwargs: Any) -> io.BytesIO:
        return self.file


def parseResponse(data: bytes, method: bytes) -> Reply:
    """
    Parse one whole HTTP/1.x response (framed by Content-Length, chunked,
    or the end of the connection).

    @raise http.client.HTTPException: if it is malformed or truncated.
    """
    replay = _Replay(data)
    response = http.client.HTTPResponse(replay, method=method.decode("ascii"))  # type: ignore[arg-type]
    response.begin()
    body = response.read()
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in response.getheaders()
    ]
    return Reply(response.status, headers, body, replay.file.read())


class Client:
    """
    A plain HTTP/1.1 client. L{fetch} writes each request as bytes on its
    own connection (C{Connection: close}) and parses the answer with the
    standard library, so every header is seen as sent (twisted.web's client
    hides Content-Length) and request targets are sent exactly as given;
    L{fetchPersistent} goes through L{Agent} with a persistent pool.
    """

    #: the most a test reads of one answer.
    MAX_ANSWER = 32 * 1024 * 1024

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = 8
        self.agent = Agent(reactor, pool=self.pool, connectTimeout=5)

    def close(self) -> Deferred[None]:
        return self.pool.closeCachedConnections()

    @staticmethod
    def requestBytes(req: Req, host: str = HOST) -> bytes:
        """
        The bytes of C{req} on the wire.
        """
        if req.raw is not None:
            return req.raw.replace(b"%(host)s", host.encode())
        lines = [
            req.method + b" " + req.path.encode("ascii") + b" HTTP/1.1",
            b"Host: " + host.encode(),
        ]
        lines += [name + b": " + value for name, value in req.headers]
        if req.body is not None:
            lines.append(b"Content-Length: %d" % len(req.body))
        lines.append(b"Connection: close")
        return b"\r\n".join(lines) + b"\r\n\r\n" + (req.body or b"")

    @inlineCallbacks
    def fetch(
        self, port: int, req: Req, host: str = HOST, timeout: float = 10.0
    ) -> Any:
        """
        Send C{req} to 127.0.0.1:C{port} on a new connection, the head and
        body in one write (a server that answers without reading the body,
        then closes, finds nothing unread and does not reset the connection).

        @return: a L{Deferred} firing with a L{Reply}.
        """
        data = self.requestBytes(req, host)
        done: Deferred[bytes] = Deferred()
        endpoint = TCP4ClientEndpoint(self._reactor, "127.0.0.1", port, timeout=5)
        proto = yield endpoint.connect(
            Factory.forProtocol(lambda: _Collect(data, done, self.MAX_ANSWER))
        )
        timer = self._reactor.callLater(timeout, proto.transport.abortConnection)
        received = yield done
        if not timer.active():
            raise AssertionError(
                f"no complete answer to {req.describe()} in {timeout} s"
            )
        timer.cancel()
        return parseResponse(received, req.method)

    @inlineCallbacks
    def fetchPersistent(self, port: int, req: Req, host: str = HOST) -> Any:
        """
        Send C{req} through L{Agent}, on a persistent connection if one is
        free. Its reply has no Content-Length (L{Agent} keeps it apart), but
        L{readBody} checks the body against it.

        @return: a L{Deferred} firing with a L{Reply}.
        """
        headers = Headers({b"host": [host.encode()]})
        for name, value in req.headers:
            headers.addRawHeader(name, value)
        body = BytesProducer(req.body) if req.body is not None else None
        url = f"http://127.0.0.1:{port}{req.path}".encode("ascii")
        response = yield self.agent.request(req.method, url, headers, body)
        content = yield readBody(response)
        raw = [
            (name.lower(), value)
            for name, values in response.headers.getAllRawHeaders()
            for value in values
        ]
        return Reply(response.code, raw, content)


def decodeBody(body: bytes, codings: list[bytes]) -> bytes:
    """
    Undo the content codings of a response, last applied first.

    @raise ValueError: for a coding this client did not ask for.
    """
    names = [
        c.strip().lower() for value in codings for c in value.split(b",") if c.strip()
    ]
    for name in reversed(names):
        if name == b"identity":
            continue
        if name in (b"gzip", b"x-gzip"):
            body = gzip.decompress(body)
        elif name == b"deflate":
            try:
                body = zlib.decompress(body)
            except zlib.error:
                body = zlib.decompress(body, -zlib.MAX_WBITS)
        elif name == b"br":
            body = brotli.decompress(body)
        elif name == b"zstd":
            body = zstandard.ZstdDecompressor().decompressobj().decompress(body)
        else:
            raise ValueError(f"unexpected content coding {name!r}")
    return body


def _boundary(reply: Reply) -> bytes | None:
    contentType = reply.first(b"content-type") or b""
    if not contentType.lower().startswith(b"multipart/byteranges"):
        return None
    for param in contentType.split(b";")[1:]:
        key, _, value = param.strip().partition(b"=")
        if key.lower() == b"boundary":
            return value.strip(b'"')
    return None


def normalized(
    reply: Reply, acceptsEncoding: bool
) -> tuple[dict[bytes, list[bytes]], bytes]:
    """
    The end-to-end headers (name -> values in order) and body of a reply, in
    the form two conforming answers to the same request share.

    A multipart/byteranges boundary is replaced by a fixed string: nginx
    numbers boundaries from a per-process counter, so two requests never
    get the same one.
    """
    drop = HOP_BY_HOP | ALWAYS_IGNORED
    for name, value in reply.headers:
        if name == b"connection":
            # Headers a Connection header names are hop-by-hop too.
            drop = drop | {t.strip().lower() for t in value.split(b",")}
    if acceptsEncoding:
        drop = drop | CODING_DEPENDENT
    headers: dict[bytes, list[bytes]] = {}
    for name, value in reply.headers:
        if name in drop:
            continue
        if name == b"etag" and acceptsEncoding and value.startswith(b"W/"):
            # A server that compresses weakens a strong validator
            # (RFC 9110 8.8.3); the opaque tag must still be the same.
            value = value[2:]
        headers.setdefault(name, []).append(value)
    body = reply.body
    if acceptsEncoding:
        body = decodeBody(body, reply.values(b"content-encoding"))
    boundary = _boundary(reply)
    if boundary:
        body = body.replace(boundary, b"BOUNDARY")
        headers[b"content-type"] = [
            v.replace(boundary, b"BOUNDARY") for v in headers[b"content-type"]
        ]
    return headers, body


def compare(req: Req, direct: Reply, edge: Reply) -> list[str]:
    """
    How the edge's answer differs from the origin's own.

    @return: one line per difference; empty when they conform.
    """
    problems = []
    if direct.status != edge.status:
        problems.append(f"status: origin {direct.status}, edge {edge.status}")
    directHeaders, directBody = normalized(direct, req.acceptsEncoding)
    edgeHeaders, edgeBody = normalized(edge, req.acceptsEncoding)
    # A hop may reframe a message: one that removes the chunked coding may
    # announce the length instead (RFC 9112 7.1.3). Present on both sides,
    # Content-Length must agree; on one side only, it must be the body's. A
    # HEAD answer has no body to frame: its Content-Length must be kept.
    directLength = directHeaders.pop(b"content-length", None)
    edgeLength = edgeHeaders.pop(b"content-length", None)
    if (directLength is not None and edgeLength is not None) or req.method == b"HEAD":
        if directLength != edgeLength:
            problems.append(
                f"header content-length: origin {directLength!r}, edge {edgeLength!r}"
            )
    elif edgeLength is not None and edgeLength != [b"%d" % len(edge.body)]:
        problems.append(
            f"header content-length: edge {edgeLength!r} for a {len(edge.body)}-byte body"
        )
    for name in sorted(set(directHeaders) | set(edgeHeaders)):
        if directHeaders.get(name) != edgeHeaders.get(name):
            problems.append(
                f"header {name.decode()}: origin {directHeaders.get(name)!r}, "
                f"edge {edgeHeaders.get(name)!r}"
            )
    if directBody != edgeBody:
        at = next(
            (
                i
                for i, (a, b) in enumerate(zip(directBody, edgeBody, strict=False))
                if a != b
            ),
            min(len(directBody), len(edgeBody)),
        )
        problems.append(
            f"body: origin {len(directBody)} bytes, edge {len(edgeBody)} bytes, "
            f"first difference at {at}: origin {directBody[at : at + 40]!r}, "
            f"edge {edgeBody[at : at + 40]!r}"
        )
    for side, reply in (("origin", direct), ("edge", edge)):
        if reply.trailing:
            problems.append(
                f"{side} sent {len(reply.trailing)} bytes after its response: {reply.trailing[:40]!r}"
            )
    railgun = edge.values(b"railgun")
    if len(railgun) != 1 or railgun[0].startswith(b"direct"):
        problems.append(f"the edge's answer did not cross a link: railgun {railgun!r}")
    return problems


def rawGet(target: bytes) -> Req:
    """
    A GET sent as raw bytes, with this exact request target.
    """
    return Req(
        raw=b"GET "
        + target
        + b" HTTP/1.1\r\nHost: %(host)s\r\nConnection: close\r\n\r\n"
    )


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def diagnostic(reply: Reply) -> RailgunDiagnostic:
    [value] = reply.values(b"railgun")
    return RailgunDiagnostic.parse(value)


class ClientTests(TestCase):
    """
    The test's own client and oracle, on canned answers.
    """

    def test_bytesProducer(self) -> None:
        """
        L{BytesProducer} provides IBodyProducer and writes its bytes at once.
        """
        producer = BytesProducer(b"hello")
        verifyObject(IBodyProducer, producer)
        written: list[bytes] = []

        class Consumer:
            write = written.append

        self.successResultOf(producer.startProducing(Consumer()))
        self.assertEqual((producer.length, written), (5, [b"hello"]))

    def test_parseChunked(self) -> None:
        """
        A chunked raw answer is parsed to its status, headers and body.
        """
        reply = parseResponse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nSet-Cookie: a\r\n"
            b"Set-Cookie: b\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            b"GET",
        )
        self.assertEqual(
            (reply.status, reply.body, reply.values(b"set-cookie")),
            (200, b"abc", [b"a", b"b"]),
        )

    def test_parseTrailing(self) -> None:
        """
        Bytes after a HEAD answer's head are kept apart, and compare reports
        them.
        """
        reply = parseResponse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", b"HEAD"
        )
        self.assertEqual((reply.body, reply.trailing), (b"", b"abc"))
        problems = compare(
            Req(b"HEAD"), Reply(200, [(b"content-length", b"3")], b""), reply
        )
        self.assertIn("edge sent 3 bytes after its response: b'abc'", problems)

    def test_parseTruncated(self) -> None:
        """
        An answer shorter than its Content-Length is an error, not a body.
        """
        self.assertRaises(
            http.client.IncompleteRead,
            parseResponse,
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
            b"GET",
        )

    def test_compareFindsDifferences(self) -> None:
        """
        L{compare} reports a different status, header value and body, and an
        answer without a Railgun header.
        """
        direct = Reply(200, [(b"etag", b'"x"'), (b"date", b"a")], b"body")
        edge = Reply(404, [(b"etag", b'"y"'), (b"date", b"b")], b"bodz")
        problems = compare(Req(), direct, edge)
        self.assertEqual(len(problems), 4, problems)

    def test_compareIgnores(self) -> None:
        """
        Hop-by-hop headers, those Connection names, Date, Via and the coding
        headers (with a client that accepted gzip) do not count, and bodies
        are compared decoded.
        """
        direct = Reply(
            200,
            [
                (b"content-encoding", b"gzip"),
                (b"vary", b"Accept-Encoding"),
                (b"etag", b'W/"e"'),
                (b"connection", b"x-hop"),
                (b"x-hop", b"1"),
            ],
            gzip.compress(b"hello"),
        )
        edge = Reply(
            200,
            [
                (b"content-length", b"5"),
                (b"etag", b'"e"'),
                (b"via", b"1.1 railgun"),
                (b"railgun", b"abc 100.00 0.000001 0000 0100"),
                (b"transfer-encoding", b"chunked"),
            ],
            b"hello",
        )
        self.assertEqual(compare(Req(headers=GZIP), direct, edge), [])

    def test_compareReframing(self) -> None:
        """
        A Content-Length on one side only is accepted when it is the body's
        length, and not otherwise, nor on a HEAD answer.
        """
        railgun = (b"railgun", b"r 1.00 0.000001 0000 0100")
        chunked = Reply(200, [(b"transfer-encoding", b"chunked")], b"abc")
        self.assertEqual(
            compare(
                Req(), chunked, Reply(200, [(b"content-length", b"3"), railgun], b"abc")
            ),
            [],
        )
        self.assertEqual(
            len(
                compare(
                    Req(),
                    chunked,
                    Reply(200, [(b"content-length", b"4"), railgun], b"abc"),
                )
            ),
            1,
        )
        head = Req(b"HEAD")
        self.assertEqual(
            len(
                compare(
                    head,
                    Reply(200, [(b"content-length", b"3")], b""),
                    Reply(200, [railgun], b""),
                )
            ),
            1,
        )

    def test_boundaryNormalized(self) -> None:
        """
        Two multipart/byteranges answers differing only in their boundary
        conform.
        """

        def multipart(boundary: bytes) -> Reply:
            body = b"--%s\r\nContent-Range: bytes 0-0/9\r\n\r\na\r\n--%s--\r\n" % (
                boundary,
                boundary,
            )
            return Reply(
                206,
                [
                    (b"content-type", b"multipart/byteranges; boundary=" + boundary),
                    (b"railgun", b"r 1.00 0.000001 0000 0100"),
                ],
                body,
            )

        self.assertEqual(compare(Req(), multipart(b"0001"), multipart(b"0002")), [])


if TYPE_CHECKING:
    _MixinBase = TestCase
else:
    _MixinBase = object


class _ConformanceMixin(_MixinBase):
    """
    The request set, run against the origin server a subclass starts.
    """

    timeout = 60
    originClass: Any = None

    #: whether the origin gzips text for a client that accepts it.
    compresses = False

    #: the origin's statuses for the requests of test_ranges (an origin
    #: without range support answers them all 200).
    rangeStatuses = [200] * 9

    @inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]
        from twisted.internet import reactor

        self.workdir = FilePath(self.mktemp())
        self.workdir.makedirs()
        self.origin = self.originClass(reactor, self.workdir)
        yield self.origin.start()
        self.addCleanup(self.origin.stop)
        self.deployment = Deployment()
        self.addCleanup(self.deployment.stop)
        yield self.deployment.start(originURL=self.origin.url)
        yield self.deployment.edge.whenLinked()
        self.client = Client(reactor)
        self.addCleanup(self.client.close)

    def fetchBoth(self, req: Req) -> Deferred[tuple[Reply, Reply]]:
        """
        Send C{req} to the origin, then through the edge.
        """

        @inlineCallbacks
        def both() -> Any:
            direct = yield self.client.fetch(self.origin.port, req)
            edge = yield self.client.fetch(self.deployment.edgePort, req)
            return direct, edge

        return both()

    @inlineCallbacks
    def check(self, *reqs: Req) -> Any:
        """
        Send each request both ways, in turn, and fail listing every
        difference.

        @return: the (direct, edge) replies, in order.
        """
        problems: list[str] = []
        replies = []
        for req in reqs:
            direct, edge = yield self.fetchBoth(req)
            replies.append((direct, edge))
            problems.extend(
                f"{req.describe()}: {p}" for p in compare(req, direct, edge)
            )
        if problems:
            self.fail(
                f"{self.origin.name}: the edge differs from the origin:\n  "
                + "\n  ".join(problems)
            )
        return replies

    @inlineCallbacks
    def streamsClosed(self, timeout: float = 5.0) -> Any:
        """
        Wait until no stream is open on the edge's links.
        """
        from twisted.internet import reactor

        deadline = reactor.seconds() + timeout
        while any(
            link.openStreamCount
            for pool in self.deployment.edge.pools.values()
            for link in pool._ready
        ):
            if reactor.seconds() > deadline:
                self.fail(f"streams still open after {timeout} s")
            yield deferLater(reactor, 0.01, lambda: None)

    # The request set

    FILES = (
        "/index.html",
        "/data.json",
        "/style.css",
        "/app.js",
        "/plain.txt",
        "/empty.txt",
        "/image.bin",
        ODD_PATH,
        "/subdir/inner.txt",
        "/subdir/nested/deep.json",
    )

    @inlineCallbacks
    def test_getEveryFileType(self) -> Any:
        """
        GET of HTML, JSON, CSS, JS, text, empty, binary and oddly named files
        matches the origin byte for byte.
        """
        replies = yield self.check(*[Req(path=path) for path in self.FILES])
        for (direct, _), path in zip(replies, self.FILES, strict=True):
            self.assertEqual(direct.status, 200, path)
        self.assertEqual(replies[0][1].body, self.origin.files["/index.html"])

    @inlineCallbacks
    def test_getCompressed(self) -> Any:
        """
        With Accept-Encoding: gzip, every file decodes to the origin's body,
        with the same end-to-end headers.
        """
        replies = yield self.check(
            *[Req(path=path, headers=GZIP) for path in self.FILES]
        )
        # HTML, JSON, CSS, JS: the origin's own compression is exercised too.
        codings = [d.first(b"content-encoding") for d, _ in replies[:4]]
        self.assertEqual(codings, [b"gzip" if self.compresses else None] * 4)
        self.assertEqual(
            decodeBody(replies[1][1].body, replies[1][1].values(b"content-encoding")),
            self.origin.files["/data.json"],
        )

    @inlineCallbacks
    def test_missing(self) -> Any:
        """
        Missing files give the origin's own 404, with and without gzip.
        """
        replies = yield self.check(
            Req(path="/nothing-here.html"),
            Req(path="/subdir/missing.txt"),
            Req(path="/no/such/dir/"),
            Req(path="/nothing-here.html", headers=GZIP),
        )
        self.assertEqual([d.status for d, _ in replies], [404] * 4)

    @inlineCallbacks
    def test_head(self) -> Any:
        """
        HEAD of files, a missing file and a directory gives the origin's
        status and headers, and no body.
        """
        replies = yield self.check(
            Req(b"HEAD", "/index.html"),
            Req(b"HEAD", "/image.bin"),
            Req(b"HEAD", "/large.bin"),
            Req(b"HEAD", "/empty.txt"),
            Req(b"HEAD", "/nothing-here.html"),
            Req(b"HEAD", "/subdir/"),
            Req(b"HEAD", "/subdir"),
            Req(b"HEAD", "/style.css", headers=GZIP),
        )
        # No body, and (compare checks it) nothing after the head either.
        self.assertEqual([e.body for _, e in replies], [b""] * len(replies))
        self.assertEqual(replies[2][1].first(b"content-length"), b"%d" % LARGE_SIZE)

    @inlineCallbacks
    def test_directories(self) -> Any:
        """
        A directory without its trailing slash is redirected (301 with the
        origin's Location, query kept); with it, it is listed.
        """
        replies = yield self.check(
            Req(path="/subdir"),
            Req(path="/subdir?x=1&y=%2F"),
            Req(path="/subdir/nested"),
            Req(path="/subdir/"),
            Req(path="/subdir/nested/"),
            Req(path="/"),
            Req(path="/subdir/", headers=GZIP),
        )
        self.assertEqual(
            [d.status for d, _ in replies], [301, 301, 301, 200, 200, 200, 200]
        )
        self.assertTrue(replies[0][1].first(b"location"))

    @inlineCallbacks
    def test_queryStrings(self) -> Any:
        """
        Query strings, empty, repeated and percent-encoded, reach the origin
        as sent.
        """
        yield self.check(
            Req(path="/plain.txt?a=1&b=two"),
            Req(path="/plain.txt?"),
            Req(path="/index.html?q=%2F%20+x&q=2&&flag"),
            Req(path="/data.json?callback=x%3Dy%26z"),
            Req(path="/subdir?q=%C3%A9t%C3%A9"),
            Req(path="/plain.txt?long=" + "x" * 4000),
        )

    @inlineCallbacks
    def test_percentEncodedPaths(self) -> Any:
        """
        Percent-encoded paths (UTF-8, lowercase hex, encoded plain letters,
        spaces, an encoded slash) are served as the origin serves them.
        """
        yield self.check(
            Req(path=ODD_PATH),
            Req(path=ODD_PATH_LOWER),
            Req(path="/%69ndex.html"),
            Req(path="/subdir/second%20file.html"),
            Req(path="/subdir%2Finner.txt"),
            Req(path="/sub%64ir"),
            Req(path="/nothing%20here%25.txt"),
        )

    @inlineCallbacks
    def test_absoluteForm(self) -> Any:
        """
        An absolute-form request target (C{GET http://host/path}) through the
        edge gets what the origin answers to the same request in origin-form
        (RFC 9112 3.2.2: a server must accept both).
        """
        problems: list[str] = []
        for path in ("/plain.txt", "/subdir?x=1", ODD_PATH, "/nothing-here"):
            direct = yield self.client.fetch(self.origin.port, Req(path=path))
            req = rawGet(b"http://" + HOST.encode() + path.encode())
            edge = yield self.client.fetch(self.deployment.edgePort, req)
            problems.extend(
                f"{req.describe()}: {p}" for p in compare(req, direct, edge)
            )
        self.assertEqual(problems, [])

    def unusualTargets(self) -> list[Req]:
        """
        Request targets with printable characters RFC 3986 wants
        percent-encoded, which clients such as browsers send raw anyway and
        twisted.web accepts; the origin must see them unchanged.
        """
        return [
            rawGet(b"/subdir?q={a}|[b]^`c`"),
            rawGet(b'/subdir?q="quoted"&p=<x>'),
            rawGet(b"/subdir/?q=\\back"),
        ]

    @inlineCallbacks
    def test_targetsKeptExactly(self) -> Any:
        """
        Request targets with characters a URL library would re-quote reach
        the origin byte for byte (the origin echoes them in Location or its
        body).
        """
        yield self.check(*self.unusualTargets())

    @inlineCallbacks
    def test_nonASCIITargetRefused(self) -> Any:
        """
        A raw non-ASCII byte in the request target (invalid, RFC 9112 3.2)
        gets a clean 400 from the edge, which stays usable; nginx would
        accept it, twisted.web's parser refuses it (a divergence by design).
        """
        bad = yield self.client.fetch(
            self.deployment.edgePort, rawGet(b"/caf\xc3\xa9.txt")
        )
        self.assertEqual(bad.status, 400)
        yield self.check(Req(path="/plain.txt"))

    @inlineCallbacks
    def test_conditional(self) -> Any:
        """
        If-Modified-Since and If-None-Match give the origin's 304 (or 200,
        or 412), the edge's version cache notwithstanding.
        """
        [(direct, _)] = yield self.check(Req(path="/index.html"))
        lastModified = direct.first(b"last-modified")
        self.assertIsNotNone(lastModified)
        reqs = [
            Req(path="/index.html", headers=((b"if-modified-since", lastModified),)),
            Req(path="/image.bin", headers=((b"if-modified-since", lastModified),)),
            Req(
                path="/index.html",
                headers=((b"if-modified-since", b"Sat, 01 Jan 2000 00:00:00 GMT"),),
            ),
            Req(
                path="/index.html",
                headers=((b"if-modified-since", lastModified),) + GZIP,
            ),
            Req(
                b"HEAD", "/index.html", headers=((b"if-modified-since", lastModified),)
            ),
        ]
        etag = direct.first(b"etag")
        if etag is not None:
            reqs += [
                Req(path="/index.html", headers=((b"if-none-match", etag),)),
                Req(
                    path="/index.html",
                    headers=((b"if-none-match", b'"other", ' + etag),),
                ),
                Req(path="/index.html", headers=((b"if-none-match", b'"no-match"'),)),
                Req(path="/index.html", headers=((b"if-match", b'"no-match"'),)),
                Req(
                    path="/index.html",
                    headers=(
                        (b"if-unmodified-since", b"Sat, 01 Jan 2000 00:00:00 GMT"),
                    ),
                ),
                Req(
                    path="/index.html",
                    headers=((b"if-none-match", b"W/" + etag),) + GZIP,
                ),
            ]
        replies = yield self.check(*reqs)
        self.assertEqual(replies[0][0].status, 304)

    @inlineCallbacks
    def test_methods(self) -> Any:
        """
        POST, PUT, DELETE, PATCH, OPTIONS and TRACE on a static file get the
        origin's refusal (405 or 501) and its body.
        """
        replies = yield self.check(
            Req(
                b"POST",
                "/plain.txt",
                body=b"a=1&b=2",
                headers=((b"content-type", b"application/x-www-form-urlencoded"),),
            ),
            Req(b"POST", "/plain.txt"),
            Req(b"PUT", "/plain.txt", body=b"new content"),
            Req(b"DELETE", "/plain.txt"),
            Req(
                b"PATCH",
                "/plain.txt",
                body=b"{}",
                headers=((b"content-type", b"application/json"),),
            ),
            Req(b"OPTIONS", "/plain.txt"),
            Req(b"TRACE", "/plain.txt"),
            Req(
                b"POST",
                "/plain.txt",
                headers=((b"expect", b"100-continue"),),
                body=b"e" * 100,
            ),
        )
        for direct, _ in replies:
            self.assertIn(direct.status, (405, 501))
        # The file was not touched.
        self.assertEqual(
            self.origin.docroot.child("plain.txt").getContent(), b"a small text file\n"
        )

    @inlineCallbacks
    def test_ranges(self) -> Any:
        """
        Range requests (single, suffix, open, multi-range, unsatisfiable,
        with If-Range) give the origin's answer (206 and 416 where it
        supports them, else the whole file).
        """
        [(direct, _)] = yield self.check(Req(path="/image.bin"))
        validator = direct.first(b"etag") or direct.first(b"last-modified")
        replies = yield self.check(
            Req(path="/image.bin", headers=((b"range", b"bytes=0-99"),)),
            Req(path="/image.bin", headers=((b"range", b"bytes=-100"),)),
            Req(path="/image.bin", headers=((b"range", b"bytes=69000-"),)),
            Req(path="/image.bin", headers=((b"range", b"bytes=0-9,100-109,-5"),)),
            Req(path="/image.bin", headers=((b"range", b"bytes=999999-"),)),
            Req(
                path="/image.bin",
                headers=((b"range", b"bytes=0-99"), (b"if-range", validator)),
            ),
            Req(
                path="/image.bin",
                headers=((b"range", b"bytes=0-99"), (b"if-range", b'"stale"')),
            ),
            Req(path="/large.bin", headers=((b"range", b"bytes=1000000-1999999"),)),
            Req(path="/index.html", headers=((b"range", b"bytes=10-20"),)),
        )
        self.assertEqual([d.status for d, _ in replies], self.rangeStatuses)

    @inlineCallbacks
    def test_rangeWithGzip(self) -> Any:
        """
        A Range request from a client accepting gzip gets either the
        origin's answer or, where the origin would have compressed and
        ignored the range, a 206 with exactly those bytes of the identity
        body (the edge asks the origin for identity, by design).
        """
        problems: list[str] = []
        for path, spec, first, last in (
            ("/index.html", b"bytes=10-20", 10, 20),
            ("/data.json", b"bytes=-30", -30, None),
            ("/image.bin", b"bytes=100-199", 100, 199),
        ):
            req = Req(path=path, headers=((b"range", spec),) + GZIP)
            direct, edge = yield self.fetchBoth(req)
            if edge.status == direct.status:
                problems.extend(
                    f"{req.describe()}: {p}" for p in compare(req, direct, edge)
                )
                continue
            whole = self.origin.files[path]
            expected = whole[first:] if last is None else whole[first : last + 1]
            start = len(whole) + first if first < 0 else first
            end = len(whole) - 1 if last is None else last
            contentRange = b"bytes %d-%d/%d" % (start, end, len(whole))
            if (edge.status, edge.first(b"content-range"), edge.body) != (
                206,
                contentRange,
                expected,
            ):
                problems.append(
                    f"{req.describe()}: edge {edge.status} {edge.first(b'content-range')!r}"
                )
            if edge.first(b"content-encoding") is not None:
                problems.append(
                    f"{req.describe()}: a partial body with a content coding"
                )
            if decodeBody(direct.body, direct.values(b"content-encoding")) != whole:
                problems.append(
                    f"{req.describe()}: the origin's answer is not the whole file"
                )
        self.assertEqual(problems, [])

    @inlineCallbacks
    def test_largeFiles(self) -> Any:
        """
        A 3 MB binary file and a text file larger than a version may be come
        through whole, with and without gzip.
        """
        replies = yield self.check(
            Req(path="/large.bin"),
            Req(path="/large.txt"),
            Req(path="/large.txt", headers=GZIP),
        )
        self.assertEqual(len(replies[0][1].body), LARGE_SIZE)
        self.assertEqual(len(replies[1][1].body), LARGE_TEXT_SIZE)

    @inlineCallbacks
    def test_concurrent(self) -> Any:
        """
        Twenty-four requests in flight at once through the edge each get the
        answer the origin gives to the same request.
        """
        reqs = (
            [Req(path=path) for path in self.FILES]
            + [Req(path=path, headers=GZIP) for path in self.FILES]
            + [
                Req(path="/large.bin"),
                Req(path="/nothing-here"),
                Req(path="/subdir"),
                Req(b"HEAD", "/app.js"),
            ]
        )
        directs = []
        for req in reqs:
            directs.append((yield self.client.fetch(self.origin.port, req)))
        results = yield DeferredList(
            [self.client.fetch(self.deployment.edgePort, req) for req in reqs],
            consumeErrors=True,
        )
        problems: list[str] = []
        for req, direct, (ok, edge) in zip(reqs, directs, results, strict=True):
            if not ok:
                problems.append(f"{req.describe()}: {edge.getErrorMessage()}")
                continue
            problems.extend(
                f"{req.describe()}: {p}" for p in compare(req, direct, edge)
            )
        self.assertEqual(problems, [])

    @inlineCallbacks
    def test_persistentConnections(self) -> Any:
        """
        Requests one after another on kept-alive connections (twisted.web's
        Agent and its pool) get the origin's answers.
        """
        reqs = [Req(path=path) for path in self.FILES] * 2 + [
            Req(b"HEAD", "/index.html"),
            Req(path="/nothing-here"),
            Req(path="/subdir"),
            Req(path="/style.css", headers=GZIP),
            Req(b"POST", "/plain.txt", body=b"x=1"),
            Req(path="/plain.txt"),
        ]
        problems: list[str] = []
        for req in reqs:
            direct = yield self.client.fetchPersistent(self.origin.port, req)
            edge = yield self.client.fetchPersistent(self.deployment.edgePort, req)
            problems.extend(
                f"{req.describe()}: {p}" for p in compare(req, direct, edge)
            )
        self.assertEqual(problems, [])
        edgePort = self.deployment.edgePort
        self.assertTrue(
            any(edgePort in key for key in self.client.pool._connections),
            "no connection to the edge was kept alive",
        )

    @inlineCallbacks
    def test_repeatedThroughVersionCache(self) -> Any:
        """
        Repeated GETs of a page are served from the edge's version (the body
        crosses as "same", then as a delta once the file changed) and every
        answer still matches the origin's.
        """
        req = Req(path="/page.html")
        replies = yield self.check(req, req, req, Req(path="/page.html", headers=GZIP))
        flags = [diagnostic(edge).flags for _, edge in replies]
        self.assertFalse(flags[0] & Flag.BASE_SENT)
        for later in flags[1:]:
            self.assertTrue(later & Flag.BASE_SENT and later & Flag.SAME, f"{later!r}")
        page = self.origin.docroot.child("page.html")
        page.setContent(htmlPage(2))
        setMTime(page, MTIME + 60)
        [(direct, edge)] = yield self.check(req)
        self.assertEqual(edge.body, htmlPage(2))
        self.assertTrue(
            diagnostic(edge).flags & Flag.DELTA, f"{diagnostic(edge).flags!r}"
        )
        yield self.check(req, Req(path="/page.html", headers=GZIP))


class NginxConformanceTests(_ConformanceMixin, TestCase):
    """
    The request set against Debian's nginx.
    """

    originClass = NginxOrigin
    compresses = True
    rangeStatuses = [206, 206, 206, 206, 416, 206, 200, 206, 206]

    def setUp(self) -> Any:
        if not NginxOrigin.available():
            raise SkipTest(
                "nginx is not installed (/usr/sbin/nginx; Debian: apt-get install nginx-light)"
            )
        return super().setUp()

    def unusualTargets(self) -> list[Req]:
        return super().unusualTargets() + [
            rawGet(b"/echo-uri?q={a}|[b]^`c`"),
            rawGet(b'/echo-uri?q="quoted"&p=<x>'),
            rawGet(b"/echo-uri?a=%2f%2F&b=%7e~&c=+%20"),
        ]

    @inlineCallbacks
    def test_emptyQueryKept(self) -> Any:
        """
        A target ending in an empty query (C{/echo-uri?}) reaches the origin
        with its C{?}.
        """
        yield self.check(rawGet(b"/echo-uri?"))

    @inlineCallbacks
    def test_statusCodes(self) -> Any:
        """
        nginx's 204, 302, 307, 403, 410, 418, 500 and 503 answers, and one
        with three Set-Cookie and two X-Multi headers, come through as they
        are, in order.
        """
        replies = yield self.check(
            *[
                Req(path=f"/status/{code}")
                for code in (204, 302, 307, 403, 410, 418, 500, 503)
            ],
            Req(path="/cookies"),
            Req(path="/cookies", headers=GZIP),
            Req(b"HEAD", "/status/500"),
        )
        self.assertEqual(
            [d.status for d, _ in replies],
            [204, 302, 307, 403, 410, 418, 500, 503, 200, 200, 500],
        )
        self.assertEqual(len(replies[8][1].values(b"set-cookie")), 3)

    @inlineCallbacks
    def test_requestHeaders(self) -> Any:
        """
        End-to-end request headers reach nginx as sent (it echoes them):
        two Cookie headers, a 6 KB header, Expect: 100-continue with a body.
        """
        replies = yield self.check(
            Req(
                path="/echo-headers",
                headers=(
                    (b"cookie", b"a=1; b=2"),
                    (b"cookie", b"c=3"),
                    (b"user-agent", b"conformance/1.0 (+test)"),
                    (b"accept", b"text/html;q=0.9, */*;q=0.1"),
                    # Leading OWS is not part of the value; inner spaces are.
                    (b"x-custom", b"  spaced  value"),
                    (b"x-long", b"Q" * 6000),
                ),
            ),
            Req(
                b"POST",
                "/echo-headers",
                headers=((b"expect", b"100-continue"),),
                body=b"e" * 100,
            ),
        )
        self.assertIn(b"ua=[conformance/1.0 (+test)]", replies[0][1].body)

    @inlineCallbacks
    def test_responseHeaders(self) -> Any:
        """
        Sixty response headers, one of 4 KB (near nginx's limit), and one with UTF-8 bytes in its
        value come through unchanged.
        """
        replies = yield self.check(
            Req(path="/many-headers"),
            Req(b"HEAD", "/many-headers"),
            Req(path="/cookies"),
        )
        self.assertEqual(len(replies[0][1].first(b"x-long") or b""), 4000)
        self.assertEqual(replies[2][1].first(b"x-utf8"), "café ünïcode".encode())

    @inlineCallbacks
    def test_echoedTarget(self) -> Any:
        """
        nginx echoes the request target it received ($request_uri): through
        the edge it is the same for plain, percent-encoded and odd queries,
        and for request bodies of several sizes.
        """
        replies = yield self.check(
            Req(path="/echo-uri"),
            Req(path="/echo-uri?a=1&a=2&b=%20%2F"),
            Req(path="/echo-uri?q=%e2%82%ac+x"),
            Req(b"POST", "/echo-uri", body=b"x" * 10),
            Req(
                b"POST",
                "/echo-uri",
                body=bytes(range(256)) * 1024,
                headers=((b"content-type", b"application/octet-stream"),),
            ),
        )
        self.assertEqual(
            replies[1][1].body,
            b"GET /echo-uri?a=1&a=2&b=%20%2F args=a=1&a=2&b=%20%2F\n",
        )

    @inlineCallbacks
    def test_earlyAnswerToLargeUpload(self) -> Any:
        """
        When nginx answers before it has read a request body larger than a
        stream's window (a C{return}, a 405), the client gets nginx's answer
        and nothing fails at the edge afterwards.
        """
        big = bytes(range(256)) * (8 * 1024)
        yield self.check(
            Req(b"PUT", "/echo-uri?big", body=big),
            Req(b"POST", "/plain.txt", body=big),
        )
        # The edge may still be sending the bodies nginx did not want: wait
        # until their streams are over, then look for errors it logged.
        yield self.streamsClosed()
        errors = self.flushLoggedErrors()
        self.assertEqual([e.getErrorMessage() for e in errors], [])
        yield self.check(Req(path="/plain.txt"))

    @inlineCallbacks
    def test_requestBodyStored(self) -> Any:
        """
        A PUT through the edge stores its body byte for byte (nginx WebDAV),
        with the same 201/204 answers as a PUT and DELETE sent directly.
        """
        payload = bytes(range(256)) * 4096 + b"tail"
        put = Req(
            b"PUT",
            "/dav/up.bin",
            body=payload,
            headers=((b"content-type", b"application/octet-stream"),),
        )
        delete = Req(b"DELETE", "/dav/up.bin")
        stored = self.origin.docroot.child("dav").child("up.bin").path
        direct = yield self.client.fetch(self.origin.port, put)
        self.assertEqual(_read(stored), payload)
        directDelete = yield self.client.fetch(self.origin.port, delete)
        self.assertFalse(os.path.exists(stored))
        edge = yield self.client.fetch(self.deployment.edgePort, put)
        self.assertEqual(_read(stored), payload)
        edgeDelete = yield self.client.fetch(self.deployment.edgePort, delete)
        self.assertFalse(os.path.exists(stored))
        self.assertEqual((direct.status, directDelete.status), (201, 204))
        self.assertEqual(
            compare(put, direct, edge) + compare(delete, directDelete, edgeDelete), []
        )

    @inlineCallbacks
    def test_compressedValidatorIsWeak(self) -> Any:
        """
        When the edge gzips a body the origin sent in identity coding, the
        origin's strong ETag does not come with it unchanged (RFC 9110 8.8.3:
        a strong validator names one representation, and the gzipped one is
        another; nginx weakens it when it compresses).
        """
        problems: list[str] = []
        for path in ("/index.html", "/data.json", "/style.css", "/app.js"):
            identity = yield self.client.fetch(self.origin.port, Req(path=path))
            edge = yield self.client.fetch(
                self.deployment.edgePort, Req(path=path, headers=GZIP)
            )
            strong = identity.first(b"etag")
            self.assertTrue(strong and not strong.startswith(b"W/"), strong)
            if (
                edge.first(b"content-encoding") not in (None, b"identity")
                and edge.first(b"etag") == strong
            ):
                problems.append(
                    f"{path}: {edge.first(b'content-encoding')!r} body with strong ETag {strong!r}"
                )
        self.assertEqual(problems, [])


class PythonHTTPServerConformanceTests(_ConformanceMixin, TestCase):
    """
    The request set against C{python -m http.server}.
    """

    originClass = PythonHTTPServerOrigin
