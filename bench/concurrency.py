"""
Scenario 4: concurrency.

  - C{streams}: 10,000 streams open at once on one link (C{railgun.link}
    over mutual TLS on loopback). The accepting end runs in a child process
    (C{python -m bench.concurrency serve ...}) so that each end's memory is
    measured on its own. Every stream: the dialer opens it, the acceptor
    answers its head at once and holds it; once all heads are back (all
    streams open on both ends) both resident sets are read; then the dialer
    ends each stream, and the acceptor answers C{ok} and ends it.
  - C{connections}: 2,000 concurrent client connections at the edge (wrk),
    each request held ~1 s by the origin (C{/slow/1000}) so that all are in
    flight together through the link; errors from wrk, the edge's memory
    before and at its peak.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.threads import deferToThread
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from bench.harness import (
    BENCH_HOST,
    Child,
    HarnessError,
    Processes,
    RailgunDeployment,
    edgeArgv,
    findTool,
    freePort,
    originRoleArgv,
    originServerArgv,
    procStatusKb,
    raiseFileLimit,
    runTool,
    sleep,
    target,
    waitForHttp,
)
from railgun.link import LinkClientFactory, LinkServerFactory, Settings, StreamProtocol

FULL_STREAMS = 10_000
FULL_CONNECTIONS = 2_000


class _HoldServer(StreamProtocol):
    """
    Acceptor side: answer the head at once, hold the stream, answer C{ok}
    when the dialer ends its side.
    """

    def headersReceived(
        self, headers: list[tuple[bytes, bytes]], endStream: bool
    ) -> None:
        assert self.transport is not None
        self.transport.sendHeaders([(b":status", b"200")])

    def readConnectionLost(self) -> None:
        assert self.transport is not None
        self.transport.write(b"ok")
        self.transport.loseConnection()


class _Tally:
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.heads = 0
        self.done = 0
        self.errors = 0
        self.firstError: str | None = None
        self.allOpen: Deferred[None] = Deferred()
        self.allDone: Deferred[None] = Deferred()

    def head(self) -> None:
        self.heads += 1
        if self.heads == self.expected:
            self.allOpen.callback(None)

    def finished(self, ok: bool, why: str = "") -> None:
        self.done += 1
        if not ok:
            self.errors += 1
            self.firstError = self.firstError or why
        if self.done == self.expected:
            self.allDone.callback(None)


class _HoldClient(StreamProtocol):
    def __init__(self, tally: _Tally) -> None:
        self._tally = tally
        self._data = b""
        self._headed = False

    def headersReceived(
        self, headers: list[tuple[bytes, bytes]], endStream: bool
    ) -> None:
        if not self._headed:
            self._headed = True
            self._tally.head()

    def dataReceived(self, data: bytes) -> None:
        self._data += data

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:  # noqa: B008
        ok = reason.check(ConnectionDone) is not None and self._data == b"ok"
        self._tally.finished(ok, f"{reason.getErrorMessage()} data={self._data!r}")


def linkSettings(streams: int) -> Settings:
    return Settings(maxConcurrentStreams=streams)


def serve(argv: list[str]) -> int:
    """
    The accepting end, in its own process: C{serve --port P --certs DIR
    --token T --streams N}.
    """
    parser = argparse.ArgumentParser(prog="python -m bench.concurrency serve")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--certs", type=Path, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--streams", type=int, required=True)
    args = parser.parse_args(argv)
    raiseFileLimit()

    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint

    from railgun.tls import loadCredentials, serverOptions

    links = LinkServerFactory(
        token=args.token.encode(),
        clock=reactor,
        streamFactory=lambda stream: _HoldServer(),
        settings=linkSettings(args.streams),
        pingInterval=0,
    )
    tls = TLSMemoryBIOFactory(
        serverOptions(loadCredentials(args.certs, "origin")), False, links
    )
    TCP4ServerEndpoint(reactor, args.port, interface="127.0.0.1").listen(tls)
    sys.stdout.write(f"link acceptor on {args.port}\n")
    reactor.run()
    return 0


async def runStreams(reactor: Any, procs: Processes, streams: int) -> dict[str, Any]:
    """
    Open C{streams} streams on one link at once; see the module docstring.
    """
    from twisted.internet.endpoints import TCP4ClientEndpoint

    from railgun.tls import clientOptions, loadCredentials

    deployment = RailgunDeployment.create(procs.workdir)
    port = freePort()
    server = procs.start(
        "link-acceptor",
        [
            sys.executable,
            "-m",
            "bench.concurrency",
            "serve",
            "--port",
            str(port),
            "--certs",
            str(deployment.certs),
            "--token",
            deployment.token,
            "--streams",
            str(streams),
        ],
    )
    await procs.waitForPort(server, port)
    client = LinkClientFactory(
        token=deployment.token.encode(),
        clock=reactor,
        settings=linkSettings(streams),
        pingInterval=0,
    )
    tls = TLSMemoryBIOFactory(
        clientOptions(loadCredentials(deployment.certs, "edge"), "localhost"),
        True,
        client,
    )
    wrapper = await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(tls)
    try:
        link = next(iter(client.links))
        await link.whenReady()
        gc.collect()
        await sleep(reactor, 0.2)
        clientBefore = procStatusKb("self", "VmRSS")
        serverBefore = server.rssKb()
        tally = _Tally(streams)
        handlers = []
        started = time.perf_counter()
        for i in range(streams):
            handler = _HoldClient(tally)
            handlers.append(handler)
            link.openStream(handler, [(b":method", b"GET"), (b":path", b"/%d" % i)])
        tally.allOpen.addTimeout(120, reactor)
        await tally.allOpen
        openSeconds = time.perf_counter() - started
        openOnLink = link.openStreamCount
        clientAt = procStatusKb("self", "VmRSS")
        serverAt = server.rssKb()
        for handler in handlers:
            assert handler.transport is not None
            handler.transport.loseConnection()
        tally.allDone.addTimeout(120, reactor)
        await tally.allDone
        totalSeconds = time.perf_counter() - started
    finally:
        wrapper.transport.abortConnection()
    perStream = {
        "dialer": (clientAt - clientBefore) * 1024 / streams,
        "acceptor": (serverAt - serverBefore) * 1024 / streams,
    }
    return {
        "streams": streams,
        "open_at_peak": openOnLink,
        "errors": tally.errors + (streams - tally.done),
        "first_error": tally.firstError,
        "seconds_to_open_all": openSeconds,
        "seconds_total": totalSeconds,
        "rss_kb": {
            "dialer_before": clientBefore,
            "dialer_open": clientAt,
            "acceptor_before": serverBefore,
            "acceptor_open": serverAt,
        },
        "bytes_per_stream": perStream,
    }


async def runConnections(
    reactor: Any, procs: Processes, connections: int, seconds: int
) -> dict[str, Any]:
    """
    Hold C{connections} client connections at the edge with wrk.
    """
    wrk = findTool("wrk", "/usr/bin/wrk")
    if wrk is None:
        return {"skipped": "wrk is not installed (Debian: apt-get install wrk)"}
    deployment = RailgunDeployment.create(procs.workdir)
    originPort, linkPort, edgePort = freePort(), freePort(), freePort()
    origin = procs.start("origin-server", originServerArgv("--http", str(originPort)))
    await procs.waitForPort(origin, originPort)
    limits = ["--max-streams", str(max(1000, 2 * connections))]
    originRole = procs.start(
        "origin-role",
        originRoleArgv(
            deployment, linkPort, f"http://127.0.0.1:{originPort}", extra=limits
        ),
    )
    await procs.waitForPort(originRole, linkPort)
    edge = procs.start("edge", edgeArgv(deployment, edgePort, linkPort, extra=limits))
    await waitForHttp(reactor, edge, edgePort, "/page", timeout=30)
    children: list[Child] = [edge, originRole, origin]
    before = {c.name: c.rssKb() for c in children}
    argv = [
        wrk,
        "-t2",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "20s",
        "-H",
        f"Host: {BENCH_HOST}",
        f"http://127.0.0.1:{edgePort}/slow/1000",
    ]
    done = await deferToThread(runTool, argv, seconds + 60)
    procs.checkAlive()
    if done.returncode != 0:
        raise HarnessError(f"wrk failed: {done.stderr[-400:]!r}")
    from bench.loopback import parseWrk

    result = parseWrk(done.stdout)
    peak = {c.name: c.peakRssKb() for c in children}
    return {
        "connections": connections,
        "requests": result["requests"],
        "seconds": result["seconds"],
        # 1 s per request: about this many were in flight at once.
        "mean_in_flight": result["requests"] / result["seconds"],
        "errors": result["socket_errors"] + result["non2xx"],
        "socket_errors": result["socket_errors"],
        "non2xx": result["non2xx"],
        "rss_kb_before": before,
        "peak_rss_kb": peak,
        "edge_bytes_per_connection": (peak["edge"] - before["edge"])
        * 1024
        / connections,
    }


async def runConcurrency(reactor: Any, quick: bool) -> dict[str, Any]:
    """
    Run scenario 4 (quick: 500 streams, 200 connections).
    """
    raiseFileLimit()
    streams = 500 if quick else FULL_STREAMS
    connections = 200 if quick else FULL_CONNECTIONS
    procs = Processes.create(reactor, "railgun-bench-conc-")
    try:
        streamResult = await runStreams(reactor, procs, streams)
    finally:
        await procs.stopAll()
    procs = Processes.create(reactor, "railgun-bench-conc-")
    try:
        connResult = await runConnections(
            reactor, procs, connections, 2 if quick else 10
        )
    finally:
        await procs.stopAll()
    perStream = streamResult["bytes_per_stream"]
    targets = [
        target(
            f"Concurrency: errors with {streams} streams on one link",
            streamResult["errors"],
            0,
            "<=",
        ),
        target(
            "Concurrency: memory per open stream, dialer end (bytes)",
            perStream["dialer"],
            8192,
            "<=",
        ),
        target(
            "Concurrency: memory per open stream, acceptor end (bytes)",
            perStream["acceptor"],
            8192,
            "<=",
        ),
    ]
    if "skipped" not in connResult:
        targets.append(
            target(
                f"Concurrency: errors with {connections} client connections at the edge",
                connResult["errors"],
                0,
                "<=",
            )
        )
    return {
        "scenario": "concurrency",
        "skipped": None,
        "errors": streamResult["errors"] + connResult.get("errors", 0),
        "streams": streamResult,
        "connections": connResult,
        "targets": targets,
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        return serve(argv[1:])
    sys.stderr.write(
        "usage: python -m bench.concurrency serve --port P --certs DIR "
        "--token T --streams N (run the scenario with python -m bench "
        "concurrency)\n"
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
