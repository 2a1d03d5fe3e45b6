"""
Scenario 1: dynamic pages fetched across an emulated WAN (C{bench.wan}).

Four alternatives, measured in the same run against the same origin server:

  - C{direct-new}: HTTPS, a new TCP + TLS connection per request, client to
    origin across the WAN;
  - C{direct-keepalive}: HTTPS over kept-alive connections, across the WAN;
  - C{railgun}: the client talks plain HTTP to the edge on loopback (the edge
    is at the CDN, next to it); the link crosses the WAN; deltas on;
  - C{railgun-nodelta}: the same with C{--no-delta} on both roles.

The origin serves version k of a sequence on the k-th fetch of a URL, so
every alternative sees the same successive versions. Every body is checked
against the version it must be (a wrong body is an error, not a fast fetch).
Bytes on the WAN come from each relay's counters.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence as SequenceType
from typing import Any

from attrs import define, field
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from bench.corpus import CorpusMissing, Sequence, loadCorpus
from bench.harness import (
    BENCH_HOST,
    HarnessError,
    Processes,
    RailgunDeployment,
    edgeArgv,
    freePort,
    originRoleArgv,
    originServerArgv,
    percentile,
    sleep,
    target,
    waitForHttp,
)
from bench.origin import generatedSequences, loopbackPage
from bench.wan import WanProfile, WanRelayFactory

_log = Logger()

ALTERNATIVES = ("direct-new", "direct-keepalive", "railgun", "railgun-nodelta")
BURST = 16

#: The order sequences are taken in (a full run takes every sequence of the
#: corpus; this only fixes which come first, for runs asking for fewer).
FULL_SEQUENCES = (
    "hn-json",
    "cdr-home",
    "netcup-offers",
    "spiegeldaily-home",
    "cafires-json",
    "fr-politik",
)


@define
class WanParams:
    """
    How much to measure.

    @ivar sequences: how many sequences to fetch.
    @ivar versions: fetches per sequence (versions 1..n) per alternative.
    @ivar interval: seconds from one sequential fetch's start to the next.
    @ivar bursts: number of 16-way bursts per alternative.
    @ivar rtt: emulated round trip, seconds.
    @ivar rateBps: emulated bandwidth, bits/s.
    @ivar sharedBottleneck: whether the connections of one alternative share
        C{rateBps} (one path with one narrowest link, as between a real edge
        and a real origin) rather than each getting C{rateBps} of its own.
    """

    sequences: int
    versions: int
    interval: float
    bursts: int
    rtt: float = 0.100
    rateBps: float = 20e6
    sharedBottleneck: bool = True

    @classmethod
    def forMode(cls, quick: bool) -> WanParams:
        if quick:
            return cls(sequences=2, versions=3, interval=0.2, bursts=2)
        # Every sequence of the corpus (12), small pages and large.
        return cls(sequences=100, versions=8, interval=1.5, bursts=8)


@implementer(IPolicyForHTTPS)
class _TrustCA:
    """
    Verify the origin's certificate against the benchmark's CA, as a real
    client verifies a real origin (the name checked is C{localhost}).
    """

    def __init__(self, ca: Certificate) -> None:
        self._ca = ca

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return optionsForClientTLS("localhost", trustRoot=self._ca)


@define
class Fetch:
    seconds: float
    wireBytes: int
    ok: bool
    error: str | None = None
    sequence: str = ""


@define
class Alternative:
    """
    One way of fetching: where the requests go, through which agent, and
    which relay's counters say what crossed the WAN.
    """

    name: str
    agent: Agent
    base: str
    relay: WanRelayFactory
    pool: HTTPConnectionPool
    sequential: list[Fetch] = field(factory=list)
    bursts: list[float] = field(factory=list)
    burstFetches: list[Fetch] = field(factory=list)
    seqWanBytes: int = 0
    burstWanBytes: int = 0
    errors: list[str] = field(factory=list)


def decodeBody(body: bytes, coding: bytes | None) -> bytes:
    """
    @return: C{body} in identity encoding.
    @raise ValueError: for an encoding the benchmark did not ask for.
    """
    if not coding or coding in (b"identity", b""):
        return body
    if coding == b"gzip":
        return zlib.decompress(body, 47)
    raise ValueError(f"unexpected content-encoding {coding!r}")


async def fetchOne(
    reactor: Any, alt: Alternative, path: str, expected: bytes, timeout: float = 60.0
) -> Fetch:
    """
    GET C{path} (Accept-Encoding: gzip), time it to the last body byte, and
    check the body against C{expected}.
    """
    headers = Headers({b"host": [BENCH_HOST.encode()], b"accept-encoding": [b"gzip"]})
    start = time.perf_counter()
    try:
        d = alt.agent.request(b"GET", (alt.base + path).encode(), headers)
        d.addTimeout(timeout, reactor)
        response = await d
        bodyD = readBody(response)
        bodyD.addTimeout(timeout, reactor)
        body = await bodyD
    except Exception as e:  # noqa: BLE001 (any failure is a counted error)
        return Fetch(time.perf_counter() - start, 0, False, f"{path}: {e!r}")
    seconds = time.perf_counter() - start
    if response.code != 200:
        return Fetch(seconds, len(body), False, f"{path}: status {response.code}")
    coding = (response.headers.getRawHeaders(b"content-encoding") or [None])[0]
    try:
        decoded = decodeBody(body, coding)
    except (ValueError, zlib.error) as e:
        return Fetch(seconds, len(body), False, f"{path}: cannot decode: {e}")
    if decoded != expected:
        return Fetch(
            seconds,
            len(body),
            False,
            f"{path}: wrong body ({len(decoded)} bytes, expected {len(expected)})",
        )
    return Fetch(seconds, len(body), True)


def _summary(values: SequenceType[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "median_s": percentile(values, 50),
        "p95_s": percentile(values, 95),
        "mean_s": sum(values) / len(values) if values else None,
    }


def loadSequences(
    corpus: Any, quick: bool, params: WanParams
) -> tuple[list[Sequence], str]:
    """
    @return: the sequences to fetch and where they come from.
    @raise CorpusMissing: when the corpus is missing in a full run.
    """
    try:
        allSequences = {s.name: s for s in loadCorpus(corpus)}
    except CorpusMissing:
        if not quick:
            raise
        return generatedSequences(params.sequences, params.versions), "generated"
    names = [n for n in FULL_SEQUENCES if n in allSequences]
    names += [n for n in sorted(allSequences) if n not in names]
    if quick:
        # Small pages keep the quick run quick.
        names = sorted(names, key=lambda n: len(allSequences[n].versions[0]))
    return [allSequences[n] for n in names[: params.sequences]], str(corpus)


async def runWan(reactor: Any, quick: bool, corpus: Any) -> dict[str, Any]:
    """
    Run scenario 1.

    @return: its results (see C{docs/benchmarks.md}); C{skipped} says why
        when the corpus is missing in a full run.
    """
    params = WanParams.forMode(quick)
    try:
        sequences, source = loadSequences(corpus, quick, params)
    except CorpusMissing as e:
        return {"scenario": "wan", "skipped": str(e), "errors": 0}
    procs = Processes.create(reactor, "railgun-bench-wan-")
    pools: list[HTTPConnectionPool] = []
    relays: list[Any] = []
    try:
        return await _runWan(
            reactor, procs, params, sequences, source, quick, pools, relays
        )
    finally:
        for pool in pools:
            await pool.closeCachedConnections()
        for factory, port in relays:
            await factory.closeAll()
            await port.stopListening()
        await procs.stopAll()


async def _runWan(
    reactor: Any,
    procs: Processes,
    params: WanParams,
    sequences: list[Sequence],
    source: str,
    quick: bool,
    pools: list[HTTPConnectionPool],
    relays: list[Any],
) -> dict[str, Any]:
    deployment = RailgunDeployment.create(procs.workdir)
    profile = WanProfile(
        rtt=params.rtt, rateBps=params.rateBps, sharedBottleneck=params.sharedBottleneck
    )
    http, https = freePort(), freePort()
    originArgs = [
        "--http",
        str(http),
        "--https",
        str(https),
        "--certs",
        str(deployment.certs),
    ]
    if source == "generated":
        originArgs.append("--generated")
    else:
        originArgs += ["--corpus", source]
    origin = procs.start("origin-server", originServerArgv(*originArgs))
    await procs.waitForPort(origin, http)
    await procs.waitForPort(origin, https)

    async def relayTo(port: int) -> tuple[WanRelayFactory, int]:
        factory = WanRelayFactory(reactor, "127.0.0.1", port, profile)
        listening = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            factory
        )
        relays.append((factory, listening))
        return factory, listening.getHost().port

    ca = Certificate.loadPEM((deployment.certs / "ca.pem").read_bytes())
    alternatives: list[Alternative] = []
    for name in ("direct-new", "direct-keepalive"):
        relay, relayPort = await relayTo(https)
        pool = HTTPConnectionPool(reactor, persistent=name == "direct-keepalive")
        pool.maxPersistentPerHost = BURST
        pools.append(pool)
        agent = Agent(
            reactor, contextFactory=_TrustCA(ca), pool=pool, connectTimeout=30
        )
        alternatives.append(
            Alternative(name, agent, f"https://127.0.0.1:{relayPort}", relay, pool)
        )
    for name, delta in (("railgun", True), ("railgun-nodelta", False)):
        linkPort, edgePort = freePort(), freePort()
        procs.start(
            f"{name}-origin-role",
            originRoleArgv(
                deployment, linkPort, f"http://127.0.0.1:{http}", delta=delta
            ),
        )
        relay, relayPort = await relayTo(linkPort)
        edge = procs.start(
            f"{name}-edge", edgeArgv(deployment, edgePort, relayPort, delta=delta)
        )
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = BURST
        pools.append(pool)
        agent = Agent(reactor, pool=pool, connectTimeout=30)
        alternatives.append(
            Alternative(name, agent, f"http://127.0.0.1:{edgePort}", relay, pool)
        )
        await waitForHttp(reactor, edge, edgePort, "/page", timeout=30)
    procs.checkAlive()

    # Warm up every alternative once (connections, links, TLS sessions are
    # what a running system already has), outside the measurement.
    page = loopbackPage()
    for alt in alternatives:
        fetch = await fetchOne(reactor, alt, "/page", page)
        if not fetch.ok:
            raise HarnessError(f"warm-up of {alt.name} failed: {fetch.error}")

    # Sequential: the alternatives run side by side, staggered within the
    # interval so that their fetches rarely overlap.
    order = [(v, s) for v in range(params.versions) for s in sequences]

    async def sequential(alt: Alternative, offset: float) -> None:
        await sleep(reactor, offset)
        before = alt.relay.counters.total
        start = time.perf_counter()
        for i, (v, seq) in enumerate(order):
            due = start + i * params.interval
            delay = due - time.perf_counter()
            if delay > 0:
                await sleep(reactor, delay)
            fetch = await fetchOne(
                reactor,
                alt,
                f"/seq/{alt.name}/{seq.name}",
                seq.versions[v % len(seq.versions)],
            )
            fetch.sequence = seq.name
            alt.sequential.append(fetch)
            if fetch.error:
                alt.errors.append(fetch.error)
        alt.seqWanBytes = alt.relay.counters.total - before

    began = time.perf_counter()
    await gatherResults(
        [
            Deferred.fromCoroutine(
                sequential(alt, i * params.interval / len(alternatives))
            )
            for i, alt in enumerate(alternatives)
        ]
    )
    sequentialSeconds = time.perf_counter() - began

    # Bursts: one alternative at a time, round-robin, so bursts never compete.
    burstPaths = [(i, sequences[i % len(sequences)]) for i in range(BURST)]
    for alt in alternatives:
        alt.burstWanBytes = -alt.relay.counters.total
    for b in range(params.bursts):
        for alt in alternatives:
            start = time.perf_counter()
            fetches = await gatherResults(
                [
                    Deferred.fromCoroutine(
                        fetchOne(
                            reactor,
                            alt,
                            f"/seq/{alt.name}-burst{i}/{seq.name}",
                            seq.versions[b % len(seq.versions)],
                        )
                    )
                    for i, seq in burstPaths
                ]
            )
            alt.bursts.append(time.perf_counter() - start)
            alt.burstFetches.extend(fetches)
            alt.errors.extend(f.error for f in fetches if f.error)
            await sleep(reactor, params.interval)
    for alt in alternatives:
        alt.burstWanBytes += alt.relay.counters.total
    procs.checkAlive()
    return _results(params, alternatives, sequences, source, sequentialSeconds)


def _results(
    params: WanParams,
    alternatives: list[Alternative],
    sequences: list[Sequence],
    source: str,
    sequentialSeconds: float,
) -> dict[str, Any]:
    rows = []
    for alt in alternatives:
        seqOk = [f.seconds for f in alt.sequential if f.ok]
        rows.append(
            {
                "name": alt.name,
                "sequential": _summary(seqOk)
                | {
                    "fetches": len(alt.sequential),
                    "errors": sum(not f.ok for f in alt.sequential),
                    "wan_bytes": alt.seqWanBytes,
                    "wan_bytes_per_fetch": alt.seqWanBytes
                    / max(1, len(alt.sequential)),
                    "client_body_bytes": sum(f.wireBytes for f in alt.sequential),
                },
                "burst": _summary(alt.bursts)
                | {
                    "bursts": len(alt.bursts),
                    "fetch_median_s": percentile(
                        [f.seconds for f in alt.burstFetches if f.ok], 50
                    ),
                    "errors": sum(not f.ok for f in alt.burstFetches),
                    "wan_bytes": alt.burstWanBytes,
                    "wan_bytes_per_fetch": alt.burstWanBytes
                    / max(1, len(alt.burstFetches)),
                },
                "error_samples": alt.errors[:5],
            }
        )
    byName = {r["name"]: r for r in rows}
    perSequence = []
    for seq in sequences:
        medians = {
            alt.name: percentile(
                [f.seconds for f in alt.sequential if f.ok and f.sequence == seq.name],
                50,
            )
            for alt in alternatives
        }
        perSequence.append(
            {
                "sequence": seq.name,
                "identity_bytes": len(seq.versions[0]),
                "gzip_bytes": len(zlib.compress(seq.versions[0], 6)),
                "median_s": medians,
            }
        )

    def ratio(a: str, b: str, part: str) -> float | None:
        x, y = byName[a][part]["median_s"], byName[b][part]["median_s"]
        return x / y if x is not None and y else None

    targets = [
        target(
            "WAN sequential: railgun median / direct-new median",
            ratio("railgun", "direct-new", "sequential"),
            1 / 3,
        ),
        target(
            "WAN sequential: railgun median / direct-keepalive median",
            ratio("railgun", "direct-keepalive", "sequential"),
            0.6,
        ),
        target(
            "WAN 16-way bursts: railgun burst median / direct-keepalive",
            ratio("railgun", "direct-keepalive", "burst"),
            0.5,
        ),
    ]
    info = {
        "railgun-nodelta / direct-new (sequential)": ratio(
            "railgun-nodelta", "direct-new", "sequential"
        ),
        "railgun-nodelta / direct-keepalive (sequential)": ratio(
            "railgun-nodelta", "direct-keepalive", "sequential"
        ),
        "railgun-nodelta / direct-keepalive (bursts)": ratio(
            "railgun-nodelta", "direct-keepalive", "burst"
        ),
        "railgun / railgun-nodelta (sequential)": ratio(
            "railgun", "railgun-nodelta", "sequential"
        ),
    }
    errors = sum(r["sequential"]["errors"] + r["burst"]["errors"] for r in rows)
    return {
        "scenario": "wan",
        "skipped": None,
        "errors": errors,
        "params": {
            "rtt_s": params.rtt,
            "rate_bps": params.rateBps,
            "shared_bottleneck": params.sharedBottleneck,
            "interval_s": params.interval,
            "burst": BURST,
            "bursts": params.bursts,
            "fetches_per_alternative": len(sequences) * params.versions,
            "sequences": [s.name for s in sequences],
            "versions_per_sequence": params.versions,
            "source": source,
            "identity_bytes_per_sequence_pass": sum(
                len(s.versions[v % len(s.versions)])
                for s in sequences
                for v in range(params.versions)
            )
            // params.versions,
            "sequential_wall_s": sequentialSeconds,
        },
        "alternatives": rows,
        "per_sequence": perSequence,
        "ratios": info,
        "targets": targets,
    }


async def fetchBody(
    reactor: Any, url: str, host: str = BENCH_HOST, timeout: float = 10.0
) -> bytes:
    """
    GET C{url} over a fresh plain-HTTP connection (no Accept-Encoding).

    @return: the body, whatever the status.
    """
    agent = Agent(reactor, connectTimeout=timeout)
    d = agent.request(b"GET", url.encode(), Headers({b"host": [host.encode()]}))
    d.addTimeout(timeout, reactor)
    response = await d
    body = readBody(response)
    body.addTimeout(timeout, reactor)
    return await body
