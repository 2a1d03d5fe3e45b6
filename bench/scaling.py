"""
Scenario 6: scaling out.

  - C{workers}: the loopback chain of scenario 2 (wrk -> edge -> link ->
    origin role -> origin server, the ~10 KB page) with the edge and the
    origin role at C{--workers 1} and at C{--workers 2} each, both roles
    keeping versions in one memcached (origin role workers must share them),
    alternated round by round. Requests/s from wrk; CPU microseconds per
    request of each role summed over its supervisor and workers
    (C{/proc/PID/stat} of the process tree).
  - C{failover}: one edge, two origin roles for the host sharing memcached,
    under wrk; one origin role is killed (SIGKILL) a third of the way in and
    started again two seconds later. wrk's non-2xx responses and socket
    errors are the failures; the restarted origin role's CPU use in the last
    third says it serves again.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

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
    runTool,
    sleep,
    waitForHttp,
)
from bench.loopback import parseWrk, wrkArgv


def treeCpuSeconds(pid: int) -> float:
    """
    @return: CPU seconds (user + system) used so far by C{pid} and every
        live descendant (a supervisor and its workers).
    """
    from bench.harness import procCpuSeconds

    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            total += procCpuSeconds(current)
        except HarnessError:
            continue
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text()
        except OSError:
            continue
        pending.extend(int(child) for child in children.split())
    return total


async def _wrk(wrk: str, port: int, seconds: float, connections: int) -> dict[str, Any]:
    argv = wrkArgv(wrk, port, seconds, connections)
    done = await deferToThread(runTool, argv, seconds + 30)
    if done.returncode != 0:
        raise HarnessError(f"wrk failed: {done.stderr[-400:]!r}")
    return parseWrk(done.stdout)


async def _memcached(procs: Processes) -> str:
    binary = findTool("memcached", "/usr/bin/memcached")
    if binary is None:
        raise HarnessError(
            "memcached is not installed (Debian: apt-get install memcached)"
        )
    port = freePort()
    child = procs.start(
        "memcached",
        [
            binary,
            "-l",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "0",
            "-m",
            "256",
            "-u",
            "root",
        ],
    )
    await procs.waitForPort(child, port)
    return f"127.0.0.1:{port}"


async def runScaling(reactor: Any, quick: bool) -> dict[str, Any]:
    """
    Run scenario 6.
    """
    wrk = findTool("wrk", "/usr/bin/wrk")
    if wrk is None:
        return {
            "scenario": "scaling",
            "skipped": "wrk is not installed (Debian: apt-get install wrk)",
            "errors": 0,
        }
    procs = Processes.create(reactor, "railgun-bench-scale-")
    try:
        workers = await _workers(reactor, procs, wrk, quick)
        failover = await _failover(reactor, procs, wrk, quick)
    finally:
        await procs.stopAll()
    return {
        "scenario": "scaling",
        "skipped": None,
        "errors": workers["errors"] + failover["failures"],
        "workers": workers,
        "failover": failover,
    }


async def _workers(
    reactor: Any, procs: Processes, wrk: str, quick: bool
) -> dict[str, Any]:
    duration, rounds, connections = (1, 1, 16) if quick else (10, 4, 64)
    deployment = RailgunDeployment.create(procs.workdir)
    memcached = await _memcached(procs)
    originPort = freePort()
    origin = procs.start("origin-server", originServerArgv("--http", str(originPort)))
    await procs.waitForPort(origin, originPort)
    chains: dict[int, tuple[int, Child, Child]] = {}
    for count in (1, 2):
        linkPort, edgePort = freePort(), freePort()
        workers = ["--workers", str(count)]
        role = procs.start(
            f"origin-role-{count}w",
            originRoleArgv(
                deployment,
                linkPort,
                f"http://127.0.0.1:{originPort}",
                extra=[*workers, "--memcached", memcached],
            ),
        )
        await procs.waitForPort(role, linkPort)
        edge = procs.start(
            f"edge-{count}w",
            edgeArgv(
                deployment,
                edgePort,
                linkPort,
                extra=[*workers, "--links-per-origin", "2"],
            ),
        )
        await waitForHttp(reactor, edge, edgePort, "/page", timeout=30)
        chains[count] = (edgePort, edge, role)
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for r in range(rounds):
        for count in (1, 2) if r % 2 == 0 else (2, 1):
            edgePort, edge, role = chains[count]
            await _wrk(wrk, edgePort, 1, connections)  # warm up
            before = {
                "edge": treeCpuSeconds(edge.pid),
                "origin-role": treeCpuSeconds(role.pid),
                "origin-server": treeCpuSeconds(origin.pid),
            }
            result = await _wrk(wrk, edgePort, duration, connections)
            after = {
                "edge": treeCpuSeconds(edge.pid),
                "origin-role": treeCpuSeconds(role.pid),
                "origin-server": treeCpuSeconds(origin.pid),
            }
            result["cpu_s"] = {name: after[name] - before[name] for name in before}
            runs[count].append(result)
            procs.checkAlive()
    rows = []
    for count in (1, 2):
        requests = sum(run["requests"] for run in runs[count])
        cpu = {
            name: sum(run["cpu_s"][name] for run in runs[count])
            for name in ("edge", "origin-role", "origin-server")
        }
        rows.append(
            {
                "workers": count,
                "rps_median": statistics.median(run["rps"] for run in runs[count]),
                "rps_runs": [run["rps"] for run in runs[count]],
                "requests": requests,
                "errors": sum(
                    run["socket_errors"] + run["non2xx"] for run in runs[count]
                ),
                "cpu_us_per_request": {
                    name: 1e6 * seconds / requests if requests else None
                    for name, seconds in cpu.items()
                },
            }
        )
    ratios = [
        two["rps"] / one["rps"] for one, two in zip(runs[1], runs[2], strict=True)
    ]
    return {
        "params": {
            "duration_s": duration,
            "rounds": rounds,
            "connections": connections,
            "tool": "wrk -t1",
        },
        "rows": rows,
        "rps_ratio_by_round": ratios,
        "rps_ratio": statistics.median(ratios),
        "errors": sum(row["errors"] for row in rows),
    }


async def _failover(
    reactor: Any, procs: Processes, wrk: str, quick: bool
) -> dict[str, Any]:
    duration = 6 if quick else 15
    deployment = RailgunDeployment.create(procs.workdir / "failover")
    memcached = await _memcached(procs)
    originPort = freePort()
    origin = procs.start(
        "failover-origin-server", originServerArgv("--http", str(originPort))
    )
    await procs.waitForPort(origin, originPort)
    linkPorts = [freePort(), freePort()]
    argvs = [
        originRoleArgv(
            deployment,
            port,
            f"http://127.0.0.1:{originPort}",
            extra=["--memcached", memcached],
        )
        for port in linkPorts
    ]
    roles = []
    for index, (port, argv) in enumerate(zip(linkPorts, argvs, strict=True)):
        role = procs.start(f"failover-origin-role-{index}", argv)
        await procs.waitForPort(role, port)
        roles.append(role)
    edgePort = freePort()
    edge = procs.start(
        "failover-edge",
        edgeArgv(
            deployment,
            edgePort,
            linkPorts[0],
            extra=["--link", f"{BENCH_HOST}=127.0.0.1:{linkPorts[1]}"],
        ),
    )
    await waitForHttp(reactor, edge, edgePort, "/page", timeout=30)
    load: Deferred[dict[str, Any]] = Deferred.fromCoroutine(
        _wrk(wrk, edgePort, duration, 16)
    )
    await sleep(reactor, duration / 3)
    victim = roles[0]
    victim.proc.kill()  # SIGKILL: no drain, links cut
    await deferToThread(victim.proc.wait, 10)
    procs.children.remove(victim)
    await sleep(reactor, 2.0)
    restarted = procs.start("failover-origin-role-0-restarted", argvs[0])
    await procs.waitForPort(restarted, linkPorts[0])
    cpuAtRestart = treeCpuSeconds(restarted.pid)
    result = await load
    cpuAfter = treeCpuSeconds(restarted.pid)
    return {
        "params": {
            "duration_s": duration,
            "connections": 16,
            "kill_at_s": duration / 3,
        },
        "requests": result["requests"],
        "rps": result["rps"],
        "non2xx": result["non2xx"],
        "socket_errors": result["socket_errors"],
        "failures": result["non2xx"] + result["socket_errors"],
        "restarted_cpu_s_under_load": cpuAfter - cpuAtRestart,
    }
