"""
Process management and measurement for the benchmarks.

Every process a scenario needs is started here, on loopback only, in its own
process group, with a raised file-descriptor limit and (on Linux) a parent
death signal, so that nothing outlives the harness: L{Processes} stops its
children in a C{finally}, an C{atexit} hook stops any that are left, and a
child whose parent dies is killed by the kernel.

Measurements come from C{/proc}: CPU time (utime + stime) and peak resident
memory (VmHWM) of each process.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import platform
import random
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger

REPO_ROOT = Path(__file__).resolve().parent.parent
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
#: The Host every benchmark request carries; the roles map it.
BENCH_HOST = "bench.test"
#: File descriptors each child may open (2,000 client connections need more
#: than the usual 1,024).
WANT_NOFILE = 20000

_log = Logger()
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_live: set[subprocess.Popen[bytes]] = set()


class HarnessError(Exception):
    """
    A process could not be started, did not become ready, or a measurement
    failed; the message says which and where its log is.
    """


def raiseFileLimit(want: int = WANT_NOFILE) -> int:
    """
    Raise this process's RLIMIT_NOFILE soft limit toward C{want} (up to the
    hard limit); children inherit it.

    @return: the soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def _childSetup() -> None:
    """
    Run in the child between fork and exec: raise the fd limit and ask the
    kernel to kill the child if the harness dies (PR_SET_PDEATHSIG).
    """
    raiseFileLimit()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def _killAll() -> None:
    for proc in list(_live):
        _killGroup(proc, signal.SIGKILL)
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        _live.discard(proc)


atexit.register(_killAll)


def _killGroup(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _ephemeralRange() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def freePort(host: str = "127.0.0.1") -> int:
    """
    A TCP port free on C{host} right now, for a child process to listen on.

    Not one the kernel picks for port 0: that range is also where outgoing
    connections get their source ports, and one of those (any process's)
    could take the port before the child binds it. A random port below
    that range is only taken by someone choosing it.

    @return: the port.
    """
    low, high = _ephemeralRange()
    top = low - 1 if low > 20000 else 65535
    bottom = 20000 if low > 20000 else high + 1
    for _ in range(200):
        port = random.randint(bottom, top)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise HarnessError(f"no free TCP port found on {host} in {bottom}..{top}")


def procCpuSeconds(pid: int) -> float:
    """
    @return: user + system CPU seconds of process C{pid} so far (its threads
        included), from C{/proc/PID/stat}.
    @raise HarnessError: when the process is gone.
    """
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError as e:
        raise HarnessError(f"cannot read /proc/{pid}/stat: {e}") from e
    # The command name (field 2) may hold spaces: split after its ')'.
    fields = data[data.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def procStatusKb(pid: int | str, key: str) -> int:
    """
    @param key: a C{/proc/PID/status} field in kB, e.g. C{VmHWM} or C{VmRSS}.
    @return: its value in kB.
    @raise HarnessError: when the process is gone or has no such field.
    """
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError as e:
        raise HarnessError(f"cannot read /proc/{pid}/status: {e}") from e
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise HarnessError(f"no {key} in /proc/{pid}/status")


def machineInfo() -> dict[str, Any]:
    """
    @return: what the figures were measured on.
    """
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import twisted

    try:
        memTotal = _memTotalKb()
    except OSError:
        memTotal = None
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_mb": memTotal // 1024 if memTotal else None,
        "python": platform.python_version(),
        "twisted": twisted.__version__,
        "platform": platform.platform(),
        "wrk": findTool("wrk", "/usr/bin/wrk"),
        "nginx": _nginxVersion(),
    }


def _memTotalKb() -> int | None:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return None


def _nginxVersion() -> str | None:
    nginx = findTool("nginx", "/usr/sbin/nginx")
    if nginx is None:
        return None
    try:
        out = subprocess.run(
            [nginx, "-v"], capture_output=True, timeout=5, check=False
        ).stderr.decode(errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.strip().rpartition("/")[2] or None


def findTool(name: str, default: str) -> str | None:
    """
    @return: the path of a tool (its Debian location first, then C{PATH}),
        or C{None} when it is not installed.
    """
    if os.access(default, os.X_OK):
        return default
    return shutil.which(name)


@define
class Child:
    """
    One process started by the harness.

    @ivar name: short name for tables and logs (C{"edge"}, C{"nginx"}).
    @ivar proc: the process.
    @ivar logPath: where its stdout and stderr go.
    """

    name: str
    proc: subprocess.Popen[bytes]
    logPath: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpuSeconds(self) -> float:
        """
        @return: CPU seconds (user + system) the process has used so far.
        """
        return procCpuSeconds(self.pid)

    def peakRssKb(self) -> int:
        """
        @return: the process's peak resident set (VmHWM) in kB.
        """
        return procStatusKb(self.pid, "VmHWM")

    def rssKb(self) -> int:
        """
        @return: the process's resident set now (VmRSS) in kB.
        """
        return procStatusKb(self.pid, "VmRSS")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def logTail(self, lines: int = 15) -> str:
        """
        @return: the last lines of the process's output, for error messages.
        """
        try:
            text = self.logPath.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


@define
class Processes:
    """
    The children of one scenario, and a working directory for their files.

    Use as C{async with}-free code: call L{stopAll} in a C{finally}.

    @ivar reactor: the reactor used for non-blocking waits.
    @ivar workdir: a temporary directory for logs, configs and certificates.
    """

    reactor: Any
    workdir: Path
    children: list[Child] = field(factory=list)

    @classmethod
    def create(cls, reactor: Any, prefix: str = "railgun-bench-") -> Processes:
        return cls(reactor, Path(tempfile.mkdtemp(prefix=prefix)))

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Child:
        """
        Start C{argv} in a new process group, output to C{<workdir>/<name>.log}.
        """
        logPath = self.workdir / f"{name}.log"
        environ = dict(os.environ)
        environ["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT)] + [p for p in [environ.get("PYTHONPATH")] if p]
        )
        environ["PYTHONUNBUFFERED"] = "1"
        if env:
            environ.update(env)
        with open(logPath, "wb") as log:
            try:
                proc = subprocess.Popen(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=environ,
                    cwd=str(cwd or self.workdir),
                    start_new_session=True,
                    preexec_fn=_childSetup,
                )
            except OSError as e:
                raise HarnessError(f"cannot start {name} ({argv[0]}): {e}") from e
        _live.add(proc)
        child = Child(name, proc, logPath)
        self.children.append(child)
        return child

    async def waitForPort(self, child: Child, port: int, timeout: float = 20.0) -> None:
        """
        Wait until C{child} accepts TCP connections on 127.0.0.1:C{port}.

        @raise HarnessError: when it exits or the time runs out, with the
            tail of its log.
        """
        deadline = time.monotonic() + timeout
        while True:
            if not child.alive():
                raise HarnessError(
                    f"{child.name} exited with {child.proc.returncode} before "
                    f"listening on {port}; log {child.logPath}:\n{child.logTail()}"
                )
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.settimeout(0.5)
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"{child.name} not listening on {port} after {timeout:.0f} s; "
                    f"log {child.logPath}:\n{child.logTail()}"
                )
            await sleep(self.reactor, 0.05)

    def checkAlive(self) -> None:
        """
        @raise HarnessError: naming every child that has exited.
        """
        dead = [c for c in self.children if not c.alive()]
        if dead:
            raise HarnessError(
                "; ".join(
                    f"{c.name} exited with {c.proc.returncode} (log {c.logPath}):\n"
                    f"{c.logTail()}"
                    for c in dead
                )
            )

    async def stop(self, child: Child, grace: float = 8.0) -> None:
        """
        SIGTERM the child's process group, then SIGKILL after C{grace}.
        """
        if child.alive():
            _killGroup(child.proc, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while child.alive() and time.monotonic() < deadline:
                await sleep(self.reactor, 0.05)
        if child.alive():
            _log.warn(
                "{name} ignored SIGTERM for {grace} s: killed",
                name=child.name,
                grace=grace,
            )
        _killGroup(child.proc, signal.SIGKILL)
        try:
            child.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        _live.discard(child.proc)
        if child in self.children:
            self.children.remove(child)

    async def stopAll(self, grace: float = 8.0, keepDir: bool = False) -> None:
        """
        Stop every child (all at once), then remove the working directory
        unless C{keepDir}.
        """
        children = list(self.children)
        for child in children:
            if child.alive():
                _killGroup(child.proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(c.alive() for c in children) and time.monotonic() < deadline:
            await sleep(self.reactor, 0.05)
        for child in children:
            await self.stop(child, grace=0)
        if not keepDir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def sleep(reactor: Any, seconds: float) -> Deferred[None]:
    """
    @return: a L{Deferred} firing after C{seconds} on C{reactor}.
    """
    return deferLater(reactor, seconds, lambda: None)


@define
class RailgunDeployment:
    """
    Certificates and a token for one Railgun origin role and its edges.
    """

    certs: Path
    token: str

    @classmethod
    def create(cls, directory: Path) -> RailgunDeployment:
        from railgun.certs import generateDeployment, writeDeployment

        writeDeployment(generateDeployment("localhost"), directory / "certs")
        return cls(directory / "certs", secrets.token_hex(16))


def originRoleArgv(
    deployment: RailgunDeployment,
    linkPort: int,
    originUrl: str,
    delta: bool = True,
    extra: Iterable[str] = (),
) -> list[str]:
    """
    @return: the command line of an origin role process, as a user runs it.
    """
    argv = TWISTD + [
        "-n",
        "--pidfile=",
        "railgun",
        "--role",
        "origin",
        "--link-listen",
        f"tcp:{linkPort}:interface=127.0.0.1",
        "--map",
        f"{BENCH_HOST}={originUrl}",
        "--certs",
        str(deployment.certs),
        "--token",
        deployment.token,
    ]
    if not delta:
        argv.append("--no-delta")
    return argv + list(extra)


def edgeArgv(
    deployment: RailgunDeployment,
    httpPort: int,
    linkPort: int,
    delta: bool = True,
    extra: Iterable[str] = (),
) -> list[str]:
    """
    @return: the command line of an edge process, as a user runs it.
    """
    argv = TWISTD + [
        "-n",
        "--pidfile=",
        "railgun",
        "--role",
        "edge",
        "--http-listen",
        f"tcp:{httpPort}:interface=127.0.0.1",
        "--link",
        f"{BENCH_HOST}=127.0.0.1:{linkPort}",
        "--tls-name",
        "localhost",
        "--certs",
        str(deployment.certs),
        "--token",
        deployment.token,
    ]
    if not delta:
        argv.append("--no-delta")
    return argv + list(extra)


def originServerArgv(*args: str) -> list[str]:
    """
    @return: the command line of the benchmark origin server (L{bench.origin}).
    """
    return [sys.executable, "-m", "bench.origin", *args]


async def waitForHttp(
    reactor: Any,
    child: Child,
    port: int,
    path: str = "/page",
    timeout: float = 20.0,
    host: str = BENCH_HOST,
) -> None:
    """
    Wait until an HTTP GET on 127.0.0.1:C{port} answers 200 (for the edge:
    its link is up and the origin answers).

    @raise HarnessError: when the child exits or time runs out.
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        if not child.alive():
            raise HarnessError(
                f"{child.name} exited with {child.proc.returncode}; log "
                f"{child.logPath}:\n{child.logTail()}"
            )
        try:
            status = await _httpStatus(reactor, port, path, host)
            if status == 200:
                return
            last = f"status {status}"
        except Exception as e:  # noqa: BLE001 (any failure means: not yet)
            last = repr(e)
        if time.monotonic() > deadline:
            raise HarnessError(
                f"{child.name} on port {port} did not answer {path} with 200 "
                f"after {timeout:.0f} s ({last}); log {child.logPath}:\n"
                f"{child.logTail()}"
            )
        await sleep(reactor, 0.1)


async def _httpStatus(reactor: Any, port: int, path: str, host: str) -> int:
    from twisted.web.client import Agent, readBody
    from twisted.web.http_headers import Headers

    agent = Agent(reactor, connectTimeout=2)
    d = agent.request(
        b"GET",
        f"http://127.0.0.1:{port}{path}".encode(),
        Headers({b"host": [host.encode()]}),
    )
    d.addTimeout(5, reactor)
    response = await d
    await readBody(response)
    return int(response.code)


def runTool(
    argv: Sequence[str], timeout: float, stdin: Any = None
) -> subprocess.CompletedProcess[bytes]:
    """
    Run a measuring tool (wrk, curl) to completion in its own process group,
    killed on timeout. Blocking: call it through C{deferToThread}.

    @raise HarnessError: on timeout or when it cannot be started.
    """
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=raiseFileLimit,
        )
    except OSError as e:
        raise HarnessError(f"cannot run {argv[0]}: {e}") from e
    _live.add(proc)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as e:
        _killGroup(proc, signal.SIGKILL)
        proc.communicate()
        raise HarnessError(f"{argv[0]} did not finish in {timeout:.0f} s") from e
    finally:
        _live.discard(proc)
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


def percentile(values: Sequence[float], p: float) -> float | None:
    """
    @return: the C{p}-th percentile (0..100) with linear interpolation, or
        C{None} for no values.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def target(
    name: str, value: float | None, limit: float, op: str = "<="
) -> dict[str, Any]:
    """
    A target of the issue and its verdict, never weakened: C{value op limit}.

    @param op: C{"<="} (at most) or C{">="} (at least).
    @return: a JSON-able dict with C{met} and C{by} (the margin as a share
        of the limit: positive when met, negative when missed).
    """
    if op not in ("<=", ">="):
        raise ValueError(f"unknown comparison {op!r}")
    if value is None:
        return {
            "name": name,
            "value": None,
            "limit": limit,
            "op": op,
            "met": False,
            "by": None,
        }
    met = value <= limit if op == "<=" else value >= limit
    margin = (limit - value) if op == "<=" else (value - limit)
    return {
        "name": name,
        "value": value,
        "limit": limit,
        "op": op,
        "met": met,
        "by": margin / limit if limit else None,
    }


def runInReactor(run: Any, args: Any) -> int:
    """
    Run C{run(reactor, args)} (a coroutine function returning an exit code)
    in the global reactor, for a benchmark's C{main}.

    @return: its exit code, or 2 if it raised (the traceback goes to stderr).
    """
    from twisted.internet import reactor

    code: list[int] = []

    def start() -> None:
        d = Deferred.fromCoroutine(run(reactor, args))
        d.addCallback(code.append)
        d.addErrback(lambda f: (code.append(2), f.printTraceback(file=sys.stderr)))
        d.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]

    reactor.callWhenRunning(start)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    return code[0] if code else 2
