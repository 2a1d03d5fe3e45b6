"""
Scenario 2: throughput and CPU cost on loopback, under a load generator
(wrk), in front of one small, fast Twisted origin serving a ~10 KB page:

  - C{railgun}: edge -> TLS link -> origin role -> origin (two hops), deltas
    on (the page does not change, so the origin role answers C{same});
  - C{railgun-nodelta}: the same chain with C{--no-delta} (the whole page
    crosses the link every time);
  - C{twisted-revproxy}: one process of C{twisted.web.proxy.ReverseProxyResource};
  - C{nginx}: nginx as a keep-alive reverse proxy (upstream keepalive);
  - C{origin-direct}: the origin alone, for reference;
  - and a diagnostic, not an alternative: C{railgun-role-from-memory}, the
    chain with an origin role that answers from memory (L{bench.memoryrole})
    instead of fetching: by difference with C{railgun}, what fetching
    through treq costs the origin role per request.

Requests/s come from wrk; CPU microseconds per request of each process from
utime + stime in C{/proc/PID/stat} before and after, divided by the
requests wrk completed. Optionally, py-spy profiles the edge and the origin
role under the same load.
"""

from __future__ import annotations

import re
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from attrs import define, field
from twisted.internet.threads import deferToThread

from bench.harness import (
    BENCH_HOST,
    TWISTD,
    Child,
    HarnessError,
    Processes,
    RailgunDeployment,
    edgeArgv,
    findTool,
    freePort,
    originRoleArgv,
    originServerArgv,
    runTool,
    target,
    waitForHttp,
)
from bench.origin import loopbackPage

#: The diagnostic chain whose origin role answers from memory.
MEMORY_ROLE = "railgun-role-from-memory"


@define
class LoopParams:
    duration: int
    warmup: int
    rounds: int
    connections: int
    profileSeconds: float

    @classmethod
    def forMode(cls, quick: bool) -> LoopParams:
        if quick:
            return cls(
                duration=1, warmup=0, rounds=1, connections=16, profileSeconds=2.0
            )
        return cls(duration=10, warmup=2, rounds=5, connections=32, profileSeconds=15.0)


@define
class Target:
    """
    One alternative: the port wrk hits and the processes it costs.
    """

    name: str
    port: int
    processes: list[Child]
    runs: list[dict[str, Any]] = field(factory=list)


_WRK_REQUESTS = re.compile(rb"(\d+) requests in ([\d.]+)(\w+),")
_WRK_ERRORS = re.compile(
    rb"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
)
_WRK_NON2XX = re.compile(rb"Non-2xx or 3xx responses: (\d+)")
_UNITS = {b"us": 1e-6, b"ms": 1e-3, b"s": 1.0, b"m": 60.0, b"h": 3600.0}


def parseWrk(output: bytes) -> dict[str, Any]:
    """
    Read wrk's summary.

    @return: C{requests}, C{seconds}, C{rps}, C{socket_errors},
        C{non2xx}.
    @raise HarnessError: when the output has no summary.
    """
    match = _WRK_REQUESTS.search(output)
    if match is None:
        raise HarnessError(f"unreadable wrk output: {output[-400:]!r}")
    requests = int(match.group(1))
    seconds = float(match.group(2)) * _UNITS.get(match.group(3), 1.0)
    errors = _WRK_ERRORS.search(output)
    socketErrors = sum(int(g) for g in errors.groups()) if errors else 0
    non2xx = _WRK_NON2XX.search(output)
    return {
        "requests": requests,
        "seconds": seconds,
        "rps": requests / seconds if seconds else 0.0,
        "socket_errors": socketErrors,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def wrkArgv(wrk: str, port: int, seconds: float, connections: int) -> list[str]:
    """
    @return: wrk's command line for C{seconds} of GETs of C{/page} (Host
        L{BENCH_HOST}) on loopback C{port}, one thread.
    """
    return [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, int(seconds))}s",
        "--timeout",
        "10s",
        "-H",
        f"Host: {BENCH_HOST}",
        f"http://127.0.0.1:{port}/page",
    ]


def nginxConfig(workdir: Path, port: int, originPort: int) -> str:
    """
    @return: an nginx configuration: one worker, no daemon, every file in
        C{workdir}, keep-alive to the upstream.
    """
    d = workdir
    return f"""
worker_processes 1;
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 10000; }}
http {{
    access_log off;
    client_body_temp_path {d}/nginx-body;
    proxy_temp_path {d}/nginx-proxy;
    fastcgi_temp_path {d}/nginx-fastcgi;
    uwsgi_temp_path {d}/nginx-uwsgi;
    scgi_temp_path {d}/nginx-scgi;
    upstream origin {{
        server 127.0.0.1:{originPort};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_buffering on;
        }}
    }}
}}
"""


async def runLoopback(
    reactor: Any, quick: bool, profile: bool = False
) -> dict[str, Any]:
    """
    Run scenario 2 (and, with C{profile}, py-spy on the Railgun roles).
    """
    wrk = findTool("wrk", "/usr/bin/wrk")
    if wrk is None:
        return {
            "scenario": "loopback",
            "skipped": "wrk is not installed (Debian: apt-get install wrk)",
            "errors": 0,
        }
    params = LoopParams.forMode(quick)
    procs = Processes.create(reactor, "railgun-bench-loop-")
    try:
        return await _run(reactor, procs, params, wrk, profile)
    finally:
        await procs.stopAll()


async def _run(
    reactor: Any, procs: Processes, params: LoopParams, wrk: str, profile: bool
) -> dict[str, Any]:
    deployment = RailgunDeployment.create(procs.workdir)
    originPort = freePort()
    origin = procs.start("origin-server", originServerArgv("--http", str(originPort)))
    await procs.waitForPort(origin, originPort)
    targets: list[Target] = []
    notes: list[str] = []
    roles: dict[str, Child] = {}
    for name, delta in (("railgun", True), ("railgun-nodelta", False)):
        linkPort, edgePort = freePort(), freePort()
        originRole = procs.start(
            f"{name}-origin-role",
            originRoleArgv(
                deployment, linkPort, f"http://127.0.0.1:{originPort}", delta=delta
            ),
        )
        await procs.waitForPort(originRole, linkPort)
        edge = procs.start(
            f"{name}-edge", edgeArgv(deployment, edgePort, linkPort, delta=delta)
        )
        await waitForHttp(reactor, edge, edgePort, "/page", timeout=30)
        targets.append(Target(name, edgePort, [edge, originRole, origin]))
        if delta:
            roles = {"edge": edge, "origin-role": originRole}
    linkPort, edgePort = freePort(), freePort()
    memoryRole = procs.start(
        f"{MEMORY_ROLE}-origin-role",
        [
            sys.executable,
            "-m",
            "bench.memoryrole",
            *originRoleArgv(deployment, linkPort, f"http://127.0.0.1:{originPort}")[
                len(TWISTD) :
            ],
        ],
    )
    await procs.waitForPort(memoryRole, linkPort)
    edge = procs.start(f"{MEMORY_ROLE}-edge", edgeArgv(deployment, edgePort, linkPort))
    await waitForHttp(reactor, edge, edgePort, "/page", timeout=30)
    targets.append(Target(MEMORY_ROLE, edgePort, [edge, memoryRole]))
    proxyPort = freePort()
    proxy = procs.start(
        "twisted-revproxy",
        [
            *originServerArgv()[:2],
            "bench.revproxy",
            "--port",
            str(proxyPort),
            "--to-port",
            str(originPort),
        ],
    )
    await waitForHttp(reactor, proxy, proxyPort, "/page")
    targets.append(Target("twisted-revproxy", proxyPort, [proxy, origin]))
    nginx = findTool("nginx", "/usr/sbin/nginx")
    if nginx is None:
        notes.append("nginx skipped: not installed (Debian: apt-get install nginx)")
    else:
        nginxPort = freePort()
        conf = procs.workdir / "nginx.conf"
        conf.write_text(nginxConfig(procs.workdir, nginxPort, originPort))
        child = procs.start(
            "nginx",
            [
                nginx,
                "-p",
                str(procs.workdir),
                "-e",
                str(procs.workdir / "nginx-error.log"),
                "-c",
                str(conf),
            ],
        )
        await waitForHttp(reactor, child, nginxPort, "/page")
        targets.append(Target("nginx", nginxPort, [child, origin]))
    targets.append(Target("origin-direct", originPort, [origin]))

    # Every alternative must serve the right page before it is timed.
    from bench.wanfetch import fetchBody

    page = loopbackPage()
    bodyErrors = 0
    for t in targets:
        body = await fetchBody(reactor, f"http://127.0.0.1:{t.port}/page")
        if body != page:
            bodyErrors += 1
            notes.append(f"{t.name} served a wrong body ({len(body)} bytes)")

    async def load(t: Target, seconds: int, measure: bool) -> dict[str, Any] | None:
        argv = wrkArgv(wrk, t.port, seconds, params.connections)
        before = {c.name: c.cpuSeconds() for c in t.processes}
        done = await deferToThread(runTool, argv, seconds + 30)
        after = {c.name: c.cpuSeconds() for c in t.processes}
        if done.returncode != 0:
            raise HarnessError(f"wrk failed on {t.name}: {done.stderr[-400:]!r}")
        if not measure:
            return None
        result = parseWrk(done.stdout)
        result["cpu_s"] = {n: after[n] - before[n] for n in before}
        return result

    for r in range(params.rounds):
        # Alternate the order so no alternative always runs first (warm CPU
        # caches, turbo) or last.
        ordered = targets if r % 2 == 0 else list(reversed(targets))
        for t in ordered:
            if params.warmup:
                await load(t, params.warmup, measure=False)
            run = await load(t, params.duration, measure=True)
            assert run is not None
            t.runs.append(run)
            procs.checkAlive()

    rows = []
    for t in targets:
        requests = sum(run["requests"] for run in t.runs)
        cpu: Counter[str] = Counter()
        for run in t.runs:
            cpu.update(run["cpu_s"])
        rows.append(
            {
                "name": t.name,
                "rps_median": statistics.median(run["rps"] for run in t.runs),
                "rps_runs": [run["rps"] for run in t.runs],
                "requests": requests,
                "errors": sum(run["socket_errors"] + run["non2xx"] for run in t.runs),
                "cpu_us_per_request": {
                    name: 1e6 * seconds / requests if requests else None
                    for name, seconds in cpu.items()
                },
                "cpu_us_per_request_total": 1e6 * sum(cpu.values()) / requests
                if requests
                else None,
            }
        )
    byName = {row["name"]: row for row in rows}
    diagnostics = [byName.pop(MEMORY_ROLE)]
    rows = [row for row in rows if row["name"] != MEMORY_ROLE]
    # The machine's speed drifts over minutes (other tenants): the ratio is
    # taken within each round, where the alternatives ran back to back, and
    # the median of those is the figure.
    pairedRatios = [
        ours / theirs
        for ours, theirs in zip(
            byName["railgun"]["rps_runs"],
            byName["twisted-revproxy"]["rps_runs"],
            strict=True,
        )
    ]
    targetsOut = [
        target(
            "Loopback: railgun (2 hops) req/s >= twisted-revproxy (1 hop) req/s",
            statistics.median(pairedRatios),
            1.0,
            ">=",
        )
    ]
    result: dict[str, Any] = {
        "scenario": "loopback",
        "skipped": None,
        "errors": bodyErrors + sum(row["errors"] for row in rows),
        "params": {
            "tool": "wrk -t1",
            "connections": params.connections,
            "duration_s": params.duration,
            "rounds": params.rounds,
            "page_bytes": len(page),
        },
        "alternatives": rows,
        "diagnostics": diagnostics,
        "railgun_over_revproxy_by_round": pairedRatios,
        "targets": targetsOut,
        "notes": notes,
    }
    if profile:
        result["profile"] = await profileRoles(
            reactor, procs, roles, targets[0], params, load
        )
    return result


async def profileRoles(
    reactor: Any,
    procs: Processes,
    roles: dict[str, Child],
    chain: Target,
    params: LoopParams,
    load: Any,
) -> dict[str, Any]:
    """
    Sample the edge and the origin role with py-spy while wrk loads the
    chain.

    @return: per role, the hottest functions by own samples and by samples
        including callees, or the reason it could not run.
    """
    pyspy = findTool("py-spy", "/usr/local/bin/py-spy")
    if pyspy is None:
        return {"skipped": "py-spy not installed (pip install py-spy)"}
    recordings = {}
    for name, child in roles.items():
        out = procs.workdir / f"profile-{name}.txt"
        recordings[name] = (
            out,
            procs.start(
                f"py-spy-{name}",
                [
                    pyspy,
                    "record",
                    "--pid",
                    str(child.pid),
                    "--duration",
                    str(int(params.profileSeconds)),
                    "--rate",
                    "250",
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--output",
                    str(out),
                ],
            ),
        )
    await load(chain, int(params.profileSeconds) + 1, measure=False)
    out: dict[str, Any] = {}
    for name, (path, recorder) in recordings.items():
        for _ in range(200):
            if not recorder.alive():
                break
            from bench.harness import sleep

            await sleep(reactor, 0.1)
        if not path.exists():
            out[name] = {"skipped": f"py-spy wrote nothing: {recorder.logTail(5)}"}
            continue
        out[name] = summarizeCollapsed(path.read_text())
    return out


def summarizeCollapsed(text: str, top: int = 15) -> dict[str, Any]:
    """
    Summarize collapsed stacks (C{frame;frame;... count} per line).

    @return: total samples, and the C{top} functions by own ("self") and by
        inclusive samples, as shares of the total.
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frameName(f) for f in stack.split(";") if f]
        if not frames:
            continue
        own[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
    return {
        "samples": total,
        "self": [(f, n / total) for f, n in own.most_common(top)] if total else [],
        "inclusive": [
            (f, n / total)
            for f, n in inclusive.most_common(top * 3)
            if not _isFramework(f)
        ][:top]
        if total
        else [],
    }


def _frameName(frame: str) -> str:
    """
    C{func (path/module.py:123)} -> C{func (path/module.py)}: aggregate by
    function, not by line.
    """
    return re.sub(r":\d+\)$", ")", frame.strip())


def _isFramework(frame: str) -> bool:
    # The reactor loop, its dispatch and the process bootstrap include
    # everything; listing them says nothing about where the time goes.
    return any(
        s in frame
        for s in (
            "runReactor",
            "mainLoop",
            "doPoll",
            "run (twisted",
            "<module>",
            "runApp",
            "twistd.py",
            "_twistd_unix",
            "app.py",
            "<string>",
            "callWithLogger",
            "callWithContext",
            "_doReadOrWrite",
            "Connection.doRead",
            "Connection._dataReceived",
            "_WrappingProtocol.dataReceived",
            "startReactor",
            "run (twisted/application",
        )
    )
