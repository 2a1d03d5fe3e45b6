"""
C{twistd railgun} as a daemon, in real processes: its event log's format
and level, SIGHUP reloading the configuration under an open stream (and
keeping it when the new one is broken), SIGUSR1 reopening the access log, a
second SIGTERM quitting a drain at once, and a drain that times out
answering its clients.
"""

from __future__ import annotations

import json
import os
import signal
import time
from io import StringIO
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from twisted.web.static import Data

from railgun.daemon import EventLog
from tests import test_tap, test_workers
from tests.test_tap import _freePort, _twistd

PAGE = b"<p>a page through a reloaded daemon</p>\n" * 20


class Held(Resource):
    """
    Holds every request until the test answers it.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Any] = []

    def render_GET(self, request: Any) -> Any:
        self.requests.append(request)
        return NOT_DONE_YET


def _sleep(seconds: float) -> Any:
    return deferLater(reactor, seconds, lambda: None)


class DaemonTests(TestCase):
    """
    Real C{twistd -n railgun --role both} processes in front of an origin
    server of the test's own.
    """

    timeout = 90

    spawn = test_tap.RealTwistdTests.spawn

    @inlineCallbacks
    def setUp(self):
        root = Resource()
        self.held = Held()
        root.putChild(b"held", self.held)
        root.putChild(b"hang", Held())
        root.putChild(b"page", Data(PAGE, "text/html"))
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Site(root)
        )
        self.addCleanup(port.stopListening)
        self.origin = f"http://127.0.0.1:{port.getHost().port}"
        self.httpPort = _freePort()
        self.workdir = Path(self.mktemp()).absolute()
        self.workdir.mkdir(parents=True)
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.agent = Agent(reactor, pool=self.pool)
        self.addCleanup(self.pool.closeCachedConnections)

    def writeConfig(self, hosts: list[str], extra: str = "") -> Path:
        path = self.workdir / "railgun.toml"
        lines = [
            'role = "both"',
            extra,
            "[edge]",
            f'http_listen = "tcp:{self.httpPort}:interface=127.0.0.1"',
            "[origin.map]",
            *(f'"{host}" = "{self.origin}"' for host in hosts),
        ]
        path.write_text("\n".join(lines) + "\n")
        return path

    def get(self, host: str, path: str = "/page") -> Any:
        url = f"http://127.0.0.1:{self.httpPort}{path}".encode()
        d = self.agent.request(b"GET", url, Headers({b"host": [host.encode()]}))

        def read(response: Any) -> Any:
            return readBody(response).addCallback(lambda body: (response, body))

        return d.addCallback(read)

    @inlineCallbacks
    def waitForStatus(self, host: str, status: int, process: Any) -> Any:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                response, body = yield self.get(host)
                if response.code == status:
                    return response, body
            except Exception:
                pass
            yield _sleep(0.1)
        self.fail(f"{host} never answered {status}:\n{self.log(process)}")

    @inlineCallbacks
    def waitForLog(self, process: Any, text: str) -> Any:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if text in self.log(process):
                return
            yield _sleep(0.05)
        self.fail(f"{text!r} never logged:\n{self.log(process)}")

    @inlineCallbacks
    def waitForExit(self, process: Any, within: float = 30.0) -> Any:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and process.poll() is None:
            yield _sleep(0.1)
        return process.poll()

    def log(self, process: Any) -> str:
        return str(process.logPath.read_text(errors="replace"))

    def start(self, *argv: str) -> Any:
        return self.spawn(_twistd("railgun", *argv), "railgun")

    @inlineCallbacks
    def test_hupReloadsUnderOpenStream(self):
        """
        After SIGHUP, a host added to the config file is served and a host
        removed is refused (421), while a request of the removed host held
        open at the origin across the reload completes intact; a broken
        config file is logged in one line and the running configuration
        kept; SIGUSR1 after the access log was moved away starts a new one.
        Every event line is JSON (--log-format json), none is twistd's
        'Starting factory' noise, the origin role logs the certificate of
        each edge whose link it accepts, and the access log has one JSON line per
        request at the edge and per stream at the origin role, with the
        same request id.
        """
        access = self.workdir / "access.log"
        config = self.writeConfig(
            ["a.test"], f'[log]\nformat = "json"\naccess = "{access}"'
        )
        process = self.start("--config", str(config))
        yield self.waitForStatus("a.test", 200, process)
        response, _ = yield self.get("b.test")
        self.assertEqual(response.code, 421)
        held = self.get("a.test", "/held")
        while not self.held.requests:
            yield _sleep(0.02)
        self.writeConfig(["b.test"], f'[log]\nformat = "json"\naccess = "{access}"')
        process.send_signal(signal.SIGHUP)
        response, body = yield self.waitForStatus("b.test", 200, process)
        self.assertEqual(body, PAGE)
        response, _ = yield self.get("a.test")
        self.assertEqual(response.code, 421)
        # The stream opened before the reload is still served.
        request = self.held.requests[0]
        request.setHeader(b"content-type", b"text/plain")
        request.write(b"held across the reload")
        request.finish()
        response, body = yield held
        self.assertEqual((response.code, body), (200, b"held across the reload"))

        # A broken file: one line, the running configuration kept.
        config.write_text('role = "both"\n[origin.map\n')
        process.send_signal(signal.SIGHUP)
        yield self.waitForLog(process, "reload: the configuration was not applied")
        response, body = yield self.get("b.test")
        self.assertEqual((response.code, body), (200, PAGE))

        # Rotation: the file moved away, SIGUSR1, a new file.
        # (The edge writes its line as it finishes the response, which the
        # client may have read a moment before.)
        for _ in range(100):
            before = access.read_text().splitlines()
            roles = [json.loads(line)["role"] for line in before]
            if roles.count("edge") == roles.count("origin"):
                break
            yield _sleep(0.05)
        access.rename(self.workdir / "access.log.1")
        process.send_signal(signal.SIGUSR1)
        yield self.waitForLog(process, "log files reopened")
        response, _ = yield self.get("b.test")
        self.assertEqual(response.code, 200)
        for _ in range(100):
            if access.exists() and len(access.read_text().splitlines()) == 2:
                break
            yield _sleep(0.05)
        after = [json.loads(line) for line in access.read_text().splitlines()]
        self.assertEqual(sorted(r["role"] for r in after), ["edge", "origin"])
        self.assertEqual(after[0]["rid"], after[1]["rid"])

        process.send_signal(signal.SIGTERM)
        status = yield self.waitForExit(process)
        self.assertEqual(status, -signal.SIGTERM, self.log(process))
        text = self.log(process)
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        messages = [line["message"] for line in lines]
        self.assertEqual(
            len([m for m in messages if "configuration was not applied" in m]), 1
        )
        self.assertFalse(
            [m for m in messages if "ing factory" in m], messages
        )  # Starting/Stopping factory
        self.assertNotIn("Traceback", text)
        # The origin role names each edge's certificate as it accepts a link.
        accepted = [
            m for m in messages if m.startswith("link accepted from 127.0.0.1:")
        ]
        self.assertTrue(accepted, messages)
        for message in accepted:
            self.assertIn(": edge certificate CN=railgun-edge,", message)
        # The access log before the rotation: per request at the edge, per
        # stream at the origin role (b.test refused by the origin role
        # twice, and by nobody else).
        records = [json.loads(line) for line in before]
        edge = [r for r in records if r["role"] == "edge"]
        origin = {r["rid"]: r for r in records if r["role"] == "origin"}
        self.assertEqual(len(origin), len(edge), records)
        for record in edge:
            self.assertEqual(origin[record["rid"]]["path"], record["path"])
            self.assertEqual(origin[record["rid"]]["status"], record["status"])
        held = [r for r in edge if r["path"] == "/held"]
        self.assertEqual([(r["status"], r["host"]) for r in held], [(200, "a.test")])

    @inlineCallbacks
    def test_logLevel(self):
        """
        --log-level warn drops the info lines (twistd's own start-up line
        among them) and keeps the warnings, as text lines.
        """
        process = self.start(
            "--role",
            "both",
            "--http-listen",
            f"tcp:{self.httpPort}:interface=127.0.0.1",
            "--map",
            f"a.test={self.origin}",
            "--log-level",
            "warn",
        )
        yield self.waitForStatus("a.test", 200, process)
        response, _ = yield self.get("b.test")
        self.assertEqual(response.code, 421)
        yield self.waitForLog(process, "unmapped host")
        process.send_signal(signal.SIGTERM)
        yield self.waitForExit(process)
        text = self.log(process)
        self.assertNotIn("starting up", text)
        self.assertNotIn("Server Shut Down", text)
        self.assertIn("#warn] refusing request", text)
        self.assertNotIn("#info]", text)

    @inlineCallbacks
    def test_secondSignalQuits(self):
        """
        A second SIGTERM while the first one's drain waits for a request the
        origin never answers ends the process at once (the drain would take
        300 s), without a ReactorNotRunning traceback.
        """
        config = self.writeConfig(["a.test"], "[link]\ndrain_timeout = 300")
        process = self.start("--config", str(config))
        yield self.waitForStatus("a.test", 200, process)
        waiting = self.get("a.test", "/held")
        waiting.addErrback(lambda failure: None)
        while not self.held.requests:
            yield _sleep(0.02)
        process.send_signal(signal.SIGTERM)
        yield self.waitForLog(process, "draining link")
        self.assertIsNone(process.poll())
        process.send_signal(signal.SIGTERM)
        status = yield self.waitForExit(process, within=30)
        text = self.log(process)
        self.assertEqual(status, -signal.SIGTERM, text)
        self.assertIn("Received SIGTERM again while draining: quitting now", text)
        self.assertNotIn("ReactorNotRunning", text)
        self.assertNotIn("Traceback", text)
        yield waiting

    @inlineCallbacks
    def test_drainTimeoutAnswers(self):
        """
        A request still waiting for its origin when the drain times out gets
        a 504 saying the edge is shutting down (not an empty reply), and
        the edge does not try it on another link.
        """
        config = self.writeConfig(["a.test"], "[link]\ndrain_timeout = 1")
        process = self.start("--config", str(config))
        yield self.waitForStatus("a.test", 200, process)
        waiting = self.get("a.test", "/held")
        while not self.held.requests:
            yield _sleep(0.02)
        process.send_signal(signal.SIGTERM)
        response, body = yield waiting
        self.assertEqual(response.code, 504, self.log(process))
        self.assertIn(b"the edge is shutting down", body)
        status = yield self.waitForExit(process)
        text = self.log(process)
        self.assertEqual(status, -signal.SIGTERM, text)
        self.assertNotIn("retrying on another link", text)


class WorkersSignalTests(test_workers._TwistdWorkers):
    """
    C{--workers}: the supervisor passes SIGHUP and SIGUSR1 on to its
    workers, each of which reloads and reopens its own logs.
    """

    role = "edge"
    startRoles = test_workers.TwistdEdgeWorkersTests.startRoles

    def spawn(self, *arguments: str) -> None:
        self.access = Path(self.mktemp()).absolute()
        super().spawn(*arguments, "--access-log", str(self.access))

    @inlineCallbacks
    def test_signalsReachWorkers(self):
        """
        After SIGHUP to the supervisor both workers reload; after the access
        log is moved and SIGUSR1 sent, the workers write to a new file.
        """
        yield self.until(lambda: len(self.workers()) == 2, "two workers")
        yield self.until(self.served, "the role serving")
        # (A worker handles SIGHUP once its service has started.)
        yield self.until(
            lambda: self.log.read_text().count("edge serving HTTP") == 2,
            "both workers serving",
        )
        self.process.send_signal(signal.SIGHUP)
        yield self.until(
            lambda: self.log.read_text().count("reload: serving") == 2,
            "both workers reloading",
        )
        self.assertIn("reload: passing SIGHUP on to the workers", self.log.read_text())
        self.assertTrue(self.access.exists())
        self.access.rename(f"{self.access}.1")
        self.process.send_signal(signal.SIGUSR1)
        yield self.until(
            lambda: self.log.read_text().count("log files reopened") == 3,
            "the supervisor and both workers reopening",
        )
        code, _ = yield self.fetch("/page")
        self.assertEqual(code, 200)
        yield self.until(lambda: self.access.exists(), "a new access log")


class EventLogTests(SynchronousTestCase):
    """
    L{EventLog}: the observer twistd is given, writing where twistd would.
    """

    def test_nodaemonStdout(self):
        """
        With -n and no --logfile, JSON lines go to standard output, and
        lines below the level are dropped.
        """
        from twisted.logger import Logger

        out = StringIO()
        observer = EventLog({"nodaemon": True}, "json", "warn", stdout=out)()
        logger = Logger(namespace="test", observer=observer)
        logger.info("dropped {rid}", rid="r1")
        logger.warn("kept {rid}", rid="r2")
        [line] = out.getvalue().splitlines()
        record = json.loads(line)
        self.assertEqual(
            (record["message"], record["rid"], record["level"]),
            ("kept r2", "r2", "warn"),
        )

    def test_logFileRotates(self):
        """
        Without -n, lines go to --logfile, which L{EventLog.rotate} rotates
        as twistd's SIGUSR1 does.
        """
        from twisted.logger import Logger

        path = Path(self.mktemp()).absolute()
        eventLog = EventLog({"nodaemon": False, "logfile": str(path)}, "text", "info")
        observer = eventLog()
        self.addCleanup(lambda: eventLog.logFile and eventLog.logFile.close())
        logger = Logger(namespace="test", observer=observer)
        logger.info("first")
        eventLog.rotate()
        logger.info("second")
        self.assertIn("first", Path(f"{path}.1").read_text())
        self.assertIn("second", path.read_text())
        self.assertNotIn("first", path.read_text())

    def test_stdoutNeedsNodaemon(self):
        """
        --logfile - without -n is refused as twistd refuses it.
        """
        with self.assertRaises(SystemExit):
            EventLog({"nodaemon": False, "logfile": "-"}, "text", "info")()


class ReloadTests(SynchronousTestCase):
    """
    L{railgun.tap.TwistdService.reload}: what SIGHUP calls.
    """

    def setUp(self):
        from railgun.tap import Options

        self.path = Path(self.mktemp())
        self.path.write_text(
            'role = "both"\n[origin.map]\n"a" = "http://127.0.0.1:1"\n'
        )
        self.options = Options()
        self.options.parseOptions(["--config", str(self.path)])

    def service(self) -> Any:
        from twisted.application.service import Service
        from twisted.internet.testing import MemoryReactorClock

        from railgun.tap import TwistdService

        class Role(Service):
            reloads: list[Any] = []

            def reload(self, config: Any) -> None:
                self.reloads.append(config)

        role = Role()
        role.reloads = []
        role.whenStarted = lambda: succeed(None)  # type: ignore[attr-defined]
        return TwistdService(
            "both",
            role,
            MemoryReactorClock(),
            lambda status: None,
            options=self.options,
        ), role

    def test_hangupHandledFromStart(self):
        """
        SIGHUP and SIGUSR1 are handled as soon as the service starts, before
        the reactor runs (their default action ends the process: a worker
        signalled while it started was killed), SIGTERM only once it runs
        (after the reactor's own handler).
        """
        previous = {
            number: signal.getsignal(number)
            for number in (signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM)
        }
        for number, handler in previous.items():
            self.addCleanup(signal.signal, number, handler)
        service, role = self.service()
        service.startService()
        hangup = signal.getsignal(signal.SIGHUP)
        self.assertEqual(getattr(hangup, "__name__", None), "_hangup")
        self.assertEqual(
            getattr(signal.getsignal(signal.SIGUSR1), "__name__", None), "_user1"
        )
        self.assertIs(signal.getsignal(signal.SIGTERM), previous[signal.SIGTERM])

    def test_reloadReadsTheFile(self):
        """
        The file is read again and the new configuration handed to the role.
        """
        service, role = self.service()
        self.path.write_text(
            'role = "both"\n[origin.map]\n"b" = "http://127.0.0.1:1"\n'
        )
        service.reload()
        [config] = role.reloads
        origins = config.originConfig().origins
        self.assertIsNotNone(origins.lookup("b"))
        self.assertIsNone(origins.lookup("a"))

    def test_brokenFileKept(self):
        """
        A file that does not parse is logged in one error line, and nothing
        is applied.
        """
        from twisted.logger import LogLevel, globalLogPublisher

        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        service, role = self.service()
        self.path.write_text('role = "both"\n[origin.map\n')
        self.assertIsNone(service.reload())
        self.assertEqual(role.reloads, [])
        errors = [e for e in events if e["log_level"] == LogLevel.error]
        self.assertEqual(len(errors), 1, events)
        self.assertIn("not valid TOML", errors[0]["why"])

    def test_roleCannotChange(self):
        """
        A file that names another role is refused: the role is the process's.
        """
        from railgun.certs import generateDeployment, writeDeployment

        certs = Path(self.mktemp()).absolute()
        writeDeployment(generateDeployment("localhost"), str(certs))
        service, role = self.service()
        self.path.write_text(
            f'role = "edge"\ntoken = "t"\ncerts = "{certs}"\n'
            '[edge.links]\n"a" = "127.0.0.1:1"\n'
        )
        self.assertIsNone(service.reload())
        self.assertEqual(role.reloads, [])


__all__ = ["DaemonTests", "EventLogTests", "ReloadTests", "os"]
