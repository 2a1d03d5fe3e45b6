"""
Micro-benchmark of the link protocol alone: CPU per request/response
exchange on each side, and header-block codecs compared.

    python -m bench.linkperf [--exchanges N] [--concurrency K] [--body BYTES]
                             [--chunk BYTES] [--repeat R] [--profile SIDE]
                             [--json OUT] [--headers-only]

Two L{LinkProtocol}s (the dialing "edge" and the accepting "origin" role)
are connected in memory, each with its own L{Clock}, through a minimal
transport that only collects what is written.  Per round the edge opens K
streams with realistic request headers (14 plus C{:request-id}; path,
client address and base digest vary); the origin's stream handler answers
each with a realistic response header block (16 headers; C{date},
C{railgun-origin-time} and the digest vary as in production), one body
write and C{loseConnection}, as C{railgun.origin.handler} does.  Bytes are
handed over in chunks of C{--chunk} bytes (a TLS record by default), as a
socket would deliver them.

CPU is C{time.thread_time} around each side's own work only (its
C{dataReceived}, its flushes, its handlers, which do almost nothing), so
the figures are the link's cost per exchange per side, without TLS, the
kernel or the roles' HTTP work.  The median of C{--repeat} runs is shown.

C{--headers-only} compares header-block codecs on the same header
sequences: bytes per block and microseconds to encode and decode, for
C{hpack} with and without Huffman coding and for the link's own
L{HeaderBlockEncoder}/L{HeaderBlockDecoder}.

This is a command-line entry point: it prints to stdout by design.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import platform
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock

from railgun.link import LinkProtocol, StreamProtocol
from railgun.link.headerblock import HeaderBlockDecoder, HeaderBlockEncoder

TOKEN = b"linkperf-token"
_ns = time.thread_time_ns

Header = tuple[bytes, bytes]


def requestHeaders(i: int) -> list[Header]:
    """
    A browser request as the edge puts it on the link (C{:request-id} is
    added by the link): 4 pseudo-headers and 10 regular ones.

    @param i: the exchange number; the path, the client and the base
        digest vary with it.
    """
    page = i % 8
    return [
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", b"www.example.com"),
        (b":path", b"/catalog/item-%d?ref=home&sort=price" % page),
        (
            b"user-agent",
            b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like "
            b"Gecko) Chrome/124.0.0.0 Safari/537.36",
        ),
        (
            b"accept",
            b"text/html,application/xhtml+xml,application/xml;q=0.9,"
            b"image/avif,image/webp,*/*;q=0.8",
        ),
        (b"accept-language", b"en-US,en;q=0.9"),
        (b"accept-encoding", b"gzip, deflate, br"),
        (b"cookie", b"session=7f3a9c2e41b8d05e; theme=dark; consent=1"),
        (b"upgrade-insecure-requests", b"1"),
        (b"x-forwarded-for", b"203.0.113.%d" % (i % 32)),
        (b"x-forwarded-proto", b"https"),
        (b"via", b"1.1 railgun-edge"),
        (b"railgun-base", b"%032x" % (0x5EED + page)),
    ]


def responseHeaders(i: int, bodyLength: int) -> list[Header]:
    """
    A response as the origin role sends it back: C{:status}, 10 regular
    headers and the 5 railgun control headers.

    @param i: the exchange number; C{date} changes every 100 exchanges,
        C{railgun-origin-time} every time, the digest with the page.
    @param bodyLength: the body size.
    """
    page = i % 8
    return [
        (b":status", b"200"),
        (
            b"date",
            b"Sun, 29 Nov 2026 00:%02d:%02d GMT" % ((i // 6000) % 60, (i // 100) % 60),
        ),
        (b"server", b"TwistedWeb/24.3.0"),
        (b"content-type", b"text/html; charset=utf-8"),
        (b"cache-control", b"private, max-age=0, must-revalidate"),
        (b"vary", b"Accept-Encoding, Cookie"),
        (b"x-frame-options", b"SAMEORIGIN"),
        (b"x-content-type-options", b"nosniff"),
        (b"last-modified", b"Sat, 28 Nov 2026 23:59:0%d GMT" % page),
        (b"etag", b'W/"%08x"' % (0xABC000 + page)),
        (b"content-length", b"%d" % bodyLength),
        (b"railgun-body", b"delta"),
        (b"railgun-origin-time", b"0.%06d" % (700 + (i * 37) % 500)),
        (b"railgun-codec", b"zstd-patch"),
        (b"railgun-digest", b"%032x" % (0xD1CE57 + page)),
        (b"railgun-length", b"%d" % (bodyLength * 4)),
        (b"railgun-flags", b"3"),
    ]


class MemoryTransport:
    """
    The least a link needs of a transport: what is written is collected, as
    a socket's buffer would hold it.
    """

    disconnecting = False

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.producer: Any = None

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def writeSequence(self, seq: Any) -> None:
        self.chunks.extend(seq)

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks = []
        return data

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def loseConnection(self) -> None:
        self.disconnecting = True

    def abortConnection(self) -> None:
        self.disconnecting = True

    def getPeer(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 40000)

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 8443)


class OriginHandler(StreamProtocol):
    """
    The origin role's side of an exchange: on the request's end, send the
    response head, the body and END_STREAM, as C{railgun.origin.handler}.
    """

    def __init__(self, body: bytes, counter: list[int]) -> None:
        self._body = body
        self._counter = counter

    def headersReceived(self, headers: list[Header], endStream: bool) -> None:
        i = self._counter[0]
        self._counter[0] = i + 1
        stream = self.transport
        stream.sendHeaders(responseHeaders(i, len(self._body)))
        stream.write(self._body)
        stream.loseConnection()


class EdgeHandler(StreamProtocol):
    """
    The edge's side: count the body and the end of the exchange.
    """

    def __init__(self, results: list[int]) -> None:
        self._results = results
        self._received = 0

    def dataReceived(self, data: bytes) -> None:
        self._received += len(data)

    def connectionLost(self, reason: Any = None) -> None:
        self._results.append(self._received)


class Side:
    """
    One link end with its clock and transport, and the CPU it spent.
    """

    def __init__(self, link: LinkProtocol, clock: Clock) -> None:
        self.link = link
        self.clock = clock
        self.transport = MemoryTransport()
        self.ns = 0

    def run(self, f: Callable[..., Any], *args: Any) -> None:
        start = _ns()
        f(*args)
        self.clock.advance(0)
        self.ns += _ns() - start

    def deliver(self, data: bytes, chunk: int) -> None:
        """
        Feed C{data} to this side as a socket would, C{chunk} bytes at a time.
        """
        if not data:
            return
        start = _ns()
        receive = self.link.dataReceived
        for offset in range(0, len(data), chunk):
            receive(data[offset : offset + chunk])
        self.clock.advance(0)
        self.ns += _ns() - start


def makePair(body: bytes) -> tuple[Side, Side, list[int]]:
    """
    Two connected, ready link ends: the edge (dialer) and the origin role.
    """
    counter = [0]
    edgeClock, originClock = Clock(), Clock()
    options: dict[str, Any] = dict(
        token=TOKEN, pingInterval=0, helloTimeout=0, drainTimeout=0
    )
    edge = Side(LinkProtocol(isDialer=True, clock=edgeClock, **options), edgeClock)
    origin = Side(
        LinkProtocol(
            isDialer=False,
            clock=originClock,
            streamFactory=lambda stream: OriginHandler(body, counter),
            **options,
        ),
        originClock,
    )
    edge.link.makeConnection(edge.transport)  # type: ignore[arg-type]
    origin.link.makeConnection(origin.transport)  # type: ignore[arg-type]
    for _ in range(3):
        origin.deliver(edge.transport.take(), 1 << 20)
        edge.deliver(origin.transport.take(), 1 << 20)
    assert edge.link.isReady() and origin.link.isReady()
    edge.ns = origin.ns = 0
    return edge, origin, counter


def runExchanges(
    exchanges: int, concurrency: int, bodySize: int, chunk: int
) -> dict[str, float]:
    """
    Run C{exchanges} request/response exchanges, C{concurrency} in flight
    per round.

    @return: CPU microseconds per exchange per side, wire bytes per exchange
        each way.
    """
    body = bytes(range(256)) * (bodySize // 256) + b"x" * (bodySize % 256)
    edge, origin, _ = makePair(body)
    results: list[int] = []
    sentUp = edge.link.counters.sent
    sentDown = origin.link.counters.sent
    opened = 0

    def openBatch(first: int, count: int) -> None:
        link = edge.link
        for i in range(first, first + count):
            link.openStream(EdgeHandler(results), requestHeaders(i), endStream=True)

    gcWas = gc.isenabled()
    gc.disable()
    try:
        while opened < exchanges:
            count = min(concurrency, exchanges - opened)
            edge.run(openBatch, opened, count)
            opened += count
            origin.deliver(edge.transport.take(), chunk)
            edge.deliver(origin.transport.take(), chunk)
        # Whatever credit is still in flight.
        origin.deliver(edge.transport.take(), chunk)
    finally:
        if gcWas:
            gc.enable()
    if len(results) != exchanges or any(size != bodySize for size in results):
        raise RuntimeError(
            f"{len(results)} of {exchanges} exchanges completed with the full body"
        )
    if edge.link.openStreamCount or origin.link.openStreamCount:
        raise RuntimeError("streams left open")
    return {
        "edge_us": edge.ns / 1000 / exchanges,
        "origin_us": origin.ns / 1000 / exchanges,
        "up_bytes": (edge.link.counters.sent - sentUp) / exchanges,
        "down_bytes": (origin.link.counters.sent - sentDown) / exchanges,
    }


def headerSequence(
    n: int, bodySize: int
) -> Iterator[tuple[list[Header], list[Header]]]:
    """
    The request (with a C{:request-id}) and response lists of C{n} exchanges.
    """
    import hpack

    from railgun.link.requestid import RequestIdGenerator

    ids = RequestIdGenerator(b"linkperf")
    for i in range(n):
        # Never indexed, as the link sends it.
        request: list[Header] = [
            hpack.NeverIndexedHeaderTuple(b":request-id", ids.next().encode("ascii"))
        ]
        request += requestHeaders(i)
        yield request, responseHeaders(i, bodySize)


def runHeaderCodecs(n: int, bodySize: int) -> list[dict[str, Any]]:
    """
    Compare header-block codecs over the same C{n} exchanges (both
    directions).

    @return: one row per codec: name, bytes per exchange (request block +
        response block), and encode and decode microseconds per exchange.
    """
    import hpack

    lists = list(headerSequence(n, bodySize))

    def hpackCodec(
        huffman: bool,
    ) -> tuple[Callable[[Any], bytes], Callable[[bytes], Any]]:
        encoder, decoder = hpack.Encoder(), hpack.Decoder()

        def encode(headers: Any) -> bytes:
            return encoder.encode(headers, huffman=huffman)

        def decode(block: bytes) -> Any:
            return decoder.decode(block, raw=True)

        return encode, decode

    def linkCodec() -> tuple[Callable[[Any], bytes], Callable[[bytes], Any]]:
        return HeaderBlockEncoder().encode, HeaderBlockDecoder().decode

    rows = []
    for name, make in (
        ("hpack, Huffman", lambda: hpackCodec(True)),
        ("hpack, no Huffman", lambda: hpackCodec(False)),
        ("link HeaderBlockEncoder/Decoder", linkCodec),
    ):
        # One codec pair per direction, as on a link.
        encodeUp, decodeUp = make()
        encodeDown, decodeDown = make()
        blocks: list[tuple[bytes, bytes]] = []
        # The results pile up: keep the cyclic GC's scans of them out.
        gc.disable()
        start = _ns()
        for request, response in lists:
            blocks.append((encodeUp(request), encodeDown(response)))
        encodeNs = _ns() - start
        start = _ns()
        decoded = [(decodeUp(up), decodeDown(down)) for up, down in blocks]
        decodeNs = _ns() - start
        gc.enable()
        for (request, response), (up, down) in zip(lists, decoded, strict=True):
            if [tuple(h) for h in up] != [tuple(h) for h in request] or [
                tuple(h) for h in down
            ] != [tuple(h) for h in response]:
                raise RuntimeError(f"{name}: headers do not round-trip")
        steady = blocks[n // 2 :]
        rows.append(
            {
                "codec": name,
                "first_bytes": len(blocks[0][0]) + len(blocks[0][1]),
                "bytes": sum(len(u) + len(d) for u, d in steady) / len(steady),
                "encode_us": encodeNs / 1000 / n,
                "decode_us": decodeNs / 1000 / n,
            }
        )
    return rows


def profileSide(
    side: str, exchanges: int, concurrency: int, bodySize: int, chunk: int
) -> None:
    """
    Print the functions that cost the most in one side's work.
    """
    profiler = cProfile.Profile()
    original = Side.run, Side.deliver
    owner: dict[str, Side] = {}

    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(self: Side, *args: Any) -> None:
            if owner and self is owner["side"]:
                profiler.enable()
                try:
                    method(self, *args)
                finally:
                    profiler.disable()
            else:
                method(self, *args)

        return wrapped

    realMakePair = makePair

    def trackingMakePair(body: bytes) -> tuple[Side, Side, list[int]]:
        edge, origin, counter = realMakePair(body)
        owner["side"] = edge if side == "edge" else origin
        return edge, origin, counter

    Side.run, Side.deliver = wrap(Side.run), wrap(Side.deliver)  # type: ignore[method-assign]
    globals()["makePair"] = trackingMakePair
    try:
        runExchanges(exchanges, concurrency, bodySize, chunk)
    finally:
        Side.run, Side.deliver = original  # type: ignore[method-assign]
        globals()["makePair"] = realMakePair
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(25)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.linkperf", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--exchanges", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--body", type=int, default=10240, help="body bytes")
    parser.add_argument("--chunk", type=int, default=16384, help="bytes per read")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", choices=("edge", "origin"))
    parser.add_argument("--headers-only", action="store_true")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)

    if args.profile:
        profileSide(
            args.profile, args.exchanges, args.concurrency, args.body, args.chunk
        )
        return 0

    report: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "params": vars(args),
    }
    print(f"Python {platform.python_version()} on {platform.machine()}")
    print(f"\nHeader blocks, {args.exchanges} exchanges (request + response block):")
    rows = runHeaderCodecs(args.exchanges, args.body)
    print(f"  {'codec':34} {'first B':>8} {'steady B':>9} {'enc µs':>8} {'dec µs':>8}")
    for row in rows:
        print(
            f"  {row['codec']:34} {row['first_bytes']:8d} {row['bytes']:9.1f} "
            f"{row['encode_us']:8.2f} {row['decode_us']:8.2f}"
        )
    report["headers"] = rows
    if not args.headers_only:
        runs = [
            runExchanges(args.exchanges, args.concurrency, args.body, args.chunk)
            for _ in range(args.repeat)
        ]
        summary = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        report["exchanges"] = {"median": summary, "runs": runs}
        print(
            f"\nExchanges: {args.exchanges} x (request headers -> response headers"
            f" + {args.body} B body), {args.concurrency} in flight,"
            f" {args.chunk} B reads; median of {args.repeat}:"
        )
        print(f"  edge   (dialer)   CPU µs per exchange: {summary['edge_us']:7.2f}")
        print(f"  origin (acceptor) CPU µs per exchange: {summary['origin_us']:7.2f}")
        print(
            f"  both sides:                          "
            f"{summary['edge_us'] + summary['origin_us']:7.2f}"
        )
        print(
            f"  wire bytes per exchange: edge->origin {summary['up_bytes']:.1f},"
            f" origin->edge {summary['down_bytes']:.1f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
