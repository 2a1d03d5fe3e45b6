"""
The benchmark origin server: one small twisted.web process behind every
alternative, so that all of them fetch from the same thing.

    python -m bench.origin --http PORT [--https PORT --certs DIR]
                           [--corpus PATH | --generated]

Resources:

  - C{/page}: a fixed ~10 KB HTML page (loopback throughput);
  - C{/seq/<anything>/<sequence>}: version k of a corpus sequence on the k-th
    fetch of that exact path (wrapping around), gzipped for clients that
    accept it, as a dynamic page seen by one edge;
  - C{/bulk/<bytes>}: that many pseudo-random bytes, streamed;
  - C{/upload}: counts and discards a request body of any size (never
    buffered or spooled to disk), answers with the count;
  - C{/slow/<ms>}: a small page after a delay (concurrent connections).

This is a command-line entry point; it writes its listening ports to stdout.
"""

from __future__ import annotations

import argparse
import random
import sys
import zlib
from collections.abc import Sequence as SequenceType
from pathlib import Path
from typing import Any

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

from bench.corpus import DEFAULT_CORPUS, Sequence, loadCorpus

_log = Logger()

#: Largest bulk response the origin agrees to produce.
MAX_BULK = 64 * 1024**3
BULK_CHUNK = 256 * 1024


def loopbackPage(size: int = 10 * 1024) -> bytes:
    """
    @return: a deterministic HTML page of exactly C{size} bytes.
    """
    rng = random.Random(10)
    words = [
        "railgun",
        "twisted",
        "origin",
        "edge",
        "delta",
        "stream",
        "link",
        "reactor",
        "deferred",
        "protocol",
        "transport",
        "factory",
    ]
    parts = ["<!doctype html><html><head><title>bench</title></head><body>\n"]
    total = len(parts[0])
    while total < size:
        line = "<p>" + " ".join(rng.choice(words) for _ in range(12)) + "</p>\n"
        parts.append(line)
        total += len(line)
    return "".join(parts).encode()[: size - 15] + b"</body></html>\n"


def generatedSequences(count: int = 4, versions: int = 6) -> list[Sequence]:
    """
    Synthetic successive versions of HTML pages (used when the real corpus
    is missing, in quick mode): each version changes a few lines of the one
    before, as a news page does.

    @return: C{count} sequences of C{versions} versions each, deterministic.
    """
    out = []
    for s in range(count):
        rng = random.Random(1000 + s)
        lines = [
            f"<div class='item' id='i{i}'>item {i}: "
            + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(80))
            + "</div>"
            for i in range(200 * (s + 1))
        ]
        bodies = []
        for v in range(versions):
            for _ in range(3):
                i = rng.randrange(len(lines))
                lines[i] = (
                    f"<div class='item' id='i{i}'>changed in v{v}: {rng.random()}</div>"
                )
            bodies.append(
                (
                    f"<html><body><h1>generated {s} v{v}</h1>\n"
                    + "\n".join(lines)
                    + "\n</body></html>\n"
                ).encode()
            )
        out.append(Sequence(f"generated-{s}", tuple(bodies)))
    return out


def gzipBody(body: bytes) -> bytes:
    """
    @return: C{body} gzipped at level 6, as a typical origin would.
    """
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    return c.compress(body) + c.flush()


class _Sink:
    """
    Stands in for a request's content file: counts the body and keeps
    nothing, so a 1 GiB upload costs the origin no memory and no disk.
    """

    def __init__(self) -> None:
        self.count = 0

    def write(self, data: bytes) -> None:
        self.count += len(data)

    def seek(self, *args: Any) -> None:
        pass

    def tell(self) -> int:
        return 0

    def read(self, *args: Any) -> bytes:
        return b""

    def close(self) -> None:
        pass


class BenchRequest(Request):
    """
    A request whose body is counted, not stored.
    """

    def gotLength(self, length: int | None) -> None:
        self.content = _Sink()  # type: ignore[assignment]


class PageResource(Resource):
    isLeaf = True

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self._body = body

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return self._body


class SequenceResource(Resource):
    """
    C{/seq/<anything>/<name>}: version k of sequence C{name} on the k-th
    fetch of the path.
    """

    isLeaf = True

    def __init__(self, sequences: SequenceType[Sequence]) -> None:
        super().__init__()
        self._sequences = {s.name: s for s in sequences}
        self._hits: dict[bytes, int] = {}
        self._gzipped: dict[tuple[str, int], bytes] = {}

    def render_GET(self, request: Request) -> bytes:
        name = request.path.rsplit(b"/", 1)[-1].decode("ascii", "replace")
        sequence = self._sequences.get(name)
        if sequence is None:
            request.setResponseCode(404)
            return b"no such sequence\n"
        if len(self._hits) > 100000 and request.path not in self._hits:
            self._hits.clear()  # bound the table a client can grow
        k = self._hits.get(request.path, 0)
        self._hits[request.path] = k + 1
        index = k % len(sequence.versions)
        body = sequence.versions[index]
        kind = (
            b"application/json"
            if body.lstrip()[:1] in (b"{", b"[")
            else b"text/html; charset=utf-8"
        )
        request.setHeader(b"content-type", kind)
        # A public dynamic page: revalidated on every fetch, but not one
        # user's ("no-store" or "private" would be, and Railgun rightly
        # keeps no version of those: no delta would be measured).
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"vary", b"Accept-Encoding")
        request.setHeader(b"x-version", b"%d" % (index + 1))
        accept = request.getHeader(b"accept-encoding") or b""
        if b"gzip" in accept.lower():
            key = (name, index)
            if key not in self._gzipped:
                self._gzipped[key] = gzipBody(body)
            request.setHeader(b"content-encoding", b"gzip")
            return self._gzipped[key]
        return body


@implementer(IPushProducer)
class _BulkProducer:
    """
    Writes C{size} bytes of a repeating pseudo-random block, honouring the
    transport's back-pressure.
    """

    def __init__(self, request: Request, size: int, block: bytes) -> None:
        self._request = request
        self._left = size
        self._block = block
        self._offset = 0
        self._paused = False
        self._stopped = False

    def start(self) -> None:
        self._request.registerProducer(self, True)
        self._request.notifyFinish().addErrback(lambda _: self.stopProducing())
        self._run()

    def _run(self) -> None:
        while not self._paused and not self._stopped and self._left > 0:
            n = min(BULK_CHUNK, self._left)
            chunk = self._block[self._offset : self._offset + n]
            self._offset = (self._offset + n) % (len(self._block) - BULK_CHUNK)
            self._left -= n
            self._request.write(chunk)
        if self._left == 0 and not self._stopped:
            self._stopped = True
            self._request.unregisterProducer()
            self._request.finish()

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        if self._paused:
            self._paused = False
            self._run()

    def stopProducing(self) -> None:
        self._stopped = True


class BulkResource(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self._block = random.Random(7).randbytes(4 * 1024 * 1024)

    def render_GET(self, request: Request) -> Any:
        try:
            size = int(request.path.rsplit(b"/", 1)[-1])
        except ValueError:
            size = -1
        if not 0 <= size <= MAX_BULK:
            request.setResponseCode(400)
            return b"bad size\n"
        request.setHeader(b"content-type", b"application/octet-stream")
        request.setHeader(b"content-length", b"%d" % size)
        _BulkProducer(request, size, self._block).start()
        return NOT_DONE_YET


class UploadResource(Resource):
    isLeaf = True

    def render_POST(self, request: Request) -> bytes:
        count = getattr(request.content, "count", 0)
        request.setHeader(b"content-type", b"text/plain")
        return b"received %d\n" % count

    render_PUT = render_POST


class SlowResource(Resource):
    isLeaf = True

    def __init__(self, reactor: Any) -> None:
        super().__init__()
        self._reactor = reactor

    def render_GET(self, request: Request) -> Any:
        try:
            ms = min(int(request.path.rsplit(b"/", 1)[-1]), 60000)
        except ValueError:
            ms = 0
        request.setHeader(b"content-type", b"text/plain")
        call = self._reactor.callLater(ms / 1000, self._finish, request)
        request.notifyFinish().addErrback(lambda _: call.active() and call.cancel())
        return NOT_DONE_YET

    def _finish(self, request: Request) -> None:
        request.write(b"slow page\n" * 10)
        request.finish()


def originSite(reactor: Any, sequences: SequenceType[Sequence]) -> Site:
    """
    @return: the benchmark origin's site (see the module docstring).
    """
    root = Resource()
    root.putChild(b"page", PageResource(loopbackPage()))
    root.putChild(b"seq", SequenceResource(sequences))
    root.putChild(b"bulk", BulkResource())
    root.putChild(b"upload", UploadResource())
    root.putChild(b"slow", SlowResource(reactor))
    site = Site(root)
    site.requestFactory = BenchRequest
    site.displayTracebacks = False
    return site


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.origin")
    parser.add_argument("--http", type=int, help="plain HTTP port on 127.0.0.1")
    parser.add_argument("--https", type=int, help="HTTPS port on 127.0.0.1")
    parser.add_argument("--certs", type=Path, help="railgun certs DIR (origin.pem)")
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument(
        "--generated",
        action="store_true",
        help="serve generated sequences, not the corpus",
    )
    args = parser.parse_args(argv)
    if args.https and not args.certs:
        parser.error("--https needs --certs")

    from twisted.internet import reactor
    from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint

    sequences: list[Sequence] = []
    if args.generated:
        sequences = generatedSequences()
    elif args.corpus is not None:
        sequences = loadCorpus(args.corpus or DEFAULT_CORPUS)
    site = originSite(reactor, sequences)
    if args.http:
        TCP4ServerEndpoint(
            reactor, args.http, backlog=4096, interface="127.0.0.1"
        ).listen(site)
    if args.https:
        from railgun.tls import loadCredentials

        identity = loadCredentials(args.certs, "origin").identity
        SSL4ServerEndpoint(
            reactor, args.https, identity.options(), backlog=4096, interface="127.0.0.1"
        ).listen(site)
    sys.stdout.write(
        f"origin http={args.http} https={args.https} sequences={len(sequences)}\n"
    )
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
