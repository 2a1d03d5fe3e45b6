"""
L{railgun.workers}: worker processes sharing one listening socket, each
replaced when it dies, all stopped by SIGTERM; real processes on loopback
(stand-in workers from L{tests.workerchild}).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from railgun.workers import WorkerSupervisor

ROOT = Path(__file__).resolve().parent.parent


class SupervisorTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def setUp(self):
        # The supervisor binds; it never accepts: reading stops at once.
        self.port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(Protocol)
        )
        self.port.stopReading()
        self.addCleanup(self.port.stopListening)
        self.supervisor = WorkerSupervisor(
            reactor,
            2,
            [],
            [self.port.fileno()],
            module="tests.workerchild",
            stopTimeout=10,
            environ={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.supervisor.startService()
        self.addCleanup(
            lambda: self.supervisor.stopService() if self.supervisor.running else None
        )
        self.agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))

    @inlineCallbacks
    def ask(self):
        url = f"http://127.0.0.1:{self.port.getHost().port}/".encode()
        response = yield self.agent.request(b"GET", url)
        body = yield readBody(response)
        pid, index = body.split()
        return int(pid), int(index)

    @inlineCallbacks
    def seenWorkers(self, want, deadline=40.0):
        """
        Ask until every pid in C{want} answered (new connections, one
        queue); a worker just started may take seconds to listen on a busy
        machine.
        """
        import time

        seen = set()
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            try:
                pid, _ = yield self.ask()
            except Exception:
                yield deferLater(reactor, 0.05, lambda: None)
                continue
            seen.add(pid)
            if want <= seen:
                return seen
            yield deferLater(reactor, 0.01, lambda: None)
        self.fail(f"workers {want - seen} never answered; saw {seen}")

    def pids(self):
        return {w.pid for w in self.supervisor.workers.values()}

    @inlineCallbacks
    def test_lifecycle(self):
        """
        Both workers serve from the one socket; a worker killed with SIGKILL
        is replaced by a new process that serves too; stopService sends
        SIGTERM and every worker exits.
        """
        first = self.pids()
        self.assertEqual(len(first), 2)
        yield self.seenWorkers(first)
        victim = self.supervisor.workers[0]
        os.kill(victim.pid, signal.SIGKILL)
        yield victim.ended
        for _ in range(200):
            if len(self.supervisor.workers) == 2:
                break
            yield deferLater(reactor, 0.05, lambda: None)
        second = self.pids()
        self.assertEqual(len(second), 2)
        self.assertNotIn(victim.pid, second)
        self.assertEqual(self.supervisor.restarts, 1)
        yield self.seenWorkers(second)
        ended = [w.ended for w in self.supervisor.workers.values()]
        yield self.supervisor.stopService()
        self.assertTrue(all(d.called for d in ended))
        self.assertEqual(self.supervisor.workers, {})
        for pid in second:
            self.assertRaises(ProcessLookupError, os.kill, pid, 0)


def _children(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(p) for p in text.split()}


def _establishedOwners(port: int, pids: set[int]) -> set[int]:
    """
    Which of C{pids} hold an established connection accepted on loopback
    C{port} (from /proc: the socket inodes of /proc/net/tcp against each
    process's descriptors).
    """
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "01" and int(local.split(":")[1], 16) == port:
            inodes.add(inode)
    owners = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    owners.add(pid)
                    break
        except OSError:
            continue
    return owners


class _TwistdWorkers(TestCase):
    """
    A role run by C{twistd railgun --workers 2} in real processes, the other
    role in the test's reactor, and a test origin server whose C{/held}
    requests wait for the test.

    @ivar port: the edge's HTTP port (what L{fetch} asks).
    @ivar sharedPort: the port the workers share.
    """

    timeout = 90
    role = ""

    @inlineCallbacks
    def setUp(self):
        from twisted.web.resource import Resource
        from twisted.web.server import NOT_DONE_YET, Site
        from twisted.web.static import Data

        from railgun.certs import generateDeployment, writeDeployment

        held = self.held = []

        class Held(Resource):
            isLeaf = True

            def render_GET(self, request):
                held.append(request)
                return NOT_DONE_YET

        root = Resource()
        root.putChild(b"held", Held())
        root.putChild(b"page", Data(b"<p>a page</p>\n" * 20, "text/html"))
        site = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Site(root)
        )
        self.addCleanup(site.stopListening)
        self.originURL = f"http://127.0.0.1:{site.getHost().port}"
        self.deployment = generateDeployment("localhost")
        self.certs = Path(self.mktemp()).absolute()
        writeDeployment(self.deployment, str(self.certs))
        self.token = self.certs / "token"
        self.token.write_text("workers-test-token-0123456789")
        self.agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
        yield self.startRoles()

    def spawn(self, *arguments: str) -> None:
        import subprocess

        workdir = Path(self.mktemp())
        workdir.mkdir(parents=True)
        self.log = workdir / "twistd.log"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from twisted.scripts.twistd import run; run()",
                "-n",
                "--pidfile=",
                "railgun",
                "--role",
                self.role,
                "--workers",
                "2",
                "--certs",
                str(self.certs),
                "--token-file",
                str(self.token),
                *arguments,
            ],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=str(workdir),
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.addCleanup(self.cleanUpProcesses)

    def cleanUpProcesses(self):
        for pid in _children(self.process.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def workers(self):
        return _children(self.process.pid)

    @inlineCallbacks
    def fetch(self, path):
        url = f"http://127.0.0.1:{self.port}{path}".encode()
        response = yield self.agent.request(
            b"GET", url, Headers({b"host": [b"www.test"]})
        )
        body = yield readBody(response)
        return response.code, body

    @inlineCallbacks
    def until(self, condition, what, tries=300):
        for _ in range(tries):
            result = yield condition()
            if result:
                return result
            yield deferLater(reactor, 0.1, lambda: None)
        self.fail(f"{what}; log:\n{self.log.read_text()}")

    @inlineCallbacks
    def served(self):
        try:
            code, _ = yield self.fetch("/page")
        except Exception:
            return False
        return code == 200

    @inlineCallbacks
    def bothAccept(self, pids):
        """
        Open connections to the shared port until each worker in C{pids}
        holds one.
        """
        import time

        from twisted.internet.endpoints import TCP4ClientEndpoint

        owners: set[int] = set()
        end = time.monotonic() + 40
        while time.monotonic() < end:
            protocols = yield DeferredList(
                [
                    TCP4ClientEndpoint(reactor, "127.0.0.1", self.sharedPort).connect(
                        Factory.forProtocol(Protocol)
                    )
                    for _ in range(16)
                ]
            )
            yield deferLater(reactor, 0.2, lambda: None)
            owners = _establishedOwners(self.sharedPort, pids)
            for ok, protocol in protocols:
                if ok:
                    protocol.transport.loseConnection()
            if owners == pids:
                return
        self.fail(f"not every worker accepted: {owners} of {pids}")

    @inlineCallbacks
    def check(self):
        """
        Two workers serve from one socket; one killed is replaced by a new
        process that serves too; SIGTERM to the supervisor drains both: a
        request held at the origin completes, then every process exits.
        """
        yield self.until(lambda: len(self.workers()) == 2, "two workers")
        yield self.until(self.served, "the role serving")
        first = self.workers()
        yield self.bothAccept(first)
        victim = sorted(first)[0]
        os.kill(victim, signal.SIGKILL)
        yield self.until(
            lambda: len(self.workers()) == 2 and victim not in self.workers(),
            "a replacement worker",
        )
        second = self.workers()
        yield self.until(self.served, "the role serving after the kill")
        yield self.bothAccept(second)
        held = self.fetch("/held")
        yield self.until(lambda: bool(self.held), "the held request at the origin")
        self.process.send_signal(signal.SIGTERM)
        yield deferLater(reactor, 0.5, lambda: None)
        self.assertIsNone(self.process.poll(), "the supervisor waits for the drain")
        request = self.held[0]
        request.write(b"held body")
        request.finish()
        code, body = yield held
        self.assertEqual((code, body), (200, b"held body"))
        yield self.until(lambda: self.process.poll() is not None, "the supervisor exit")
        # twistd ends by the signal that stopped it, as its workers do.
        self.assertIn(
            self.process.returncode, (0, -signal.SIGTERM), self.log.read_text()
        )
        for pid in second:
            self.assertRaises(ProcessLookupError, os.kill, pid, 0)


class TwistdEdgeWorkersTests(_TwistdWorkers):
    """
    C{twistd railgun --role edge --workers 2}, linked to an origin role in
    the test's reactor.
    """

    role = "edge"

    @inlineCallbacks
    def startRoles(self):
        from bench.harness import freePort
        from railgun.config import LinkTuning, OriginConfig, parseOriginMap
        from railgun.origin.service import OriginService
        from railgun.tls import credentialsFromDeployment

        origin = OriginService(
            OriginConfig(
                origins=parseOriginMap([f"www.test={self.originURL}"]),
                token=self.token.read_bytes(),
                linkListen="tcp:0:interface=127.0.0.1",
                link=LinkTuning(pingInterval=0),
            ),
            reactor,
            credentials=credentialsFromDeployment(self.deployment, "origin"),
        )
        origin.startService()
        self.addCleanup(origin.stopService)
        linkPort = (yield origin.whenListening()).getHost().port
        self.port = self.sharedPort = freePort()
        self.spawn(
            "--link",
            f"www.test=127.0.0.1:{linkPort}",
            "--tls-name",
            "localhost",
            "--http-listen",
            f"tcp:{self.port}:interface=127.0.0.1",
        )

    def test_workers(self):
        """
        Edge workers: both serve, a killed one is replaced, SIGTERM drains.
        """
        return self.check()


class TwistdOriginWorkersTests(_TwistdWorkers):
    """
    C{twistd railgun --role origin --workers 2 --memcached ...} sharing a
    real memcached, an edge in the test's reactor linked to it.
    """

    role = "origin"

    @inlineCallbacks
    def startRoles(self):
        from bench.harness import freePort
        from railgun.config import EdgeConfig, LinkTuning, parseLinkMap
        from railgun.edge.service import EdgeService
        from railgun.tls import credentialsFromDeployment
        from tests.memcachedserver import MemcachedServer

        memcached = MemcachedServer()
        memcached.start()  # raises SkipTest without a memcached binary
        self.addCleanup(memcached.stop)
        self.sharedPort = freePort()
        self.spawn(
            "--map",
            f"www.test={self.originURL}",
            "--memcached",
            memcached.address,
            "--link-listen",
            f"tcp:{self.sharedPort}:interface=127.0.0.1",
        )
        edge = EdgeService(
            EdgeConfig(
                links=parseLinkMap([f"www.test=127.0.0.1:{self.sharedPort}"]),
                token=self.token.read_bytes(),
                httpListen="tcp:0:interface=127.0.0.1",
                tlsName="localhost",
                linksPerOrigin=4,
                link=LinkTuning(pingInterval=0),
            ),
            reactor,
            credentials=credentialsFromDeployment(self.deployment, "edge"),
        )
        edge.startService()
        self.addCleanup(edge.stopService)
        self.port = (yield edge.whenListening()).getHost().port

    def test_workers(self):
        """
        Origin role workers: both serve, a killed one is replaced, SIGTERM
        drains.
        """
        return self.check()


class WorkersOptionTests(TestCase):
    """
    C{--workers}: refused where it cannot work, and each worker's command
    line.
    """

    def setUp(self):
        from railgun.certs import generateDeployment, writeDeployment

        self.certs = self.mktemp()
        writeDeployment(generateDeployment("localhost"), self.certs)

    def parse(self, *argv):
        from railgun.tap import Options

        options = Options()
        options.parseOptions(["--certs", self.certs, "--token", "t", *argv])
        return options

    def test_originNeedsMemcached(self):
        """
        Origin role workers without memcached: a usage error saying why.
        """
        from twisted.python.usage import UsageError

        e = self.assertRaises(
            UsageError,
            self.parse,
            "--role",
            "origin",
            "--map",
            "a=http://127.0.0.1:1",
            "--workers",
            "2",
        )
        self.assertIn("--memcached", str(e))
        options = self.parse(
            "--role",
            "origin",
            "--map",
            "a=http://127.0.0.1:1",
            "--workers",
            "2",
            "--memcached",
            "127.0.0.1:11211",
        )
        self.assertEqual(options.built.workers, 2)

    def test_bothRefused(self):
        """
        --role both refuses workers.
        """
        from twisted.python.usage import UsageError

        e = self.assertRaises(
            UsageError, self.parse, "--role", "both", "--workers", "2"
        )
        self.assertIn("--role both", str(e))

    def test_systemdSocketNotInherited(self):
        """
        A systemd: endpoint with no inherited socket is a usage error saying
        so (it was 'list index out of range').
        """
        from twisted.python.usage import UsageError

        e = self.assertRaises(
            UsageError,
            self.parse,
            "--role",
            "edge",
            "--link",
            "a=127.0.0.1:1",
            "--http-listen",
            "systemd:domain=INET:index=0",
        )
        self.assertIn("did not inherit", str(e))

    def test_workerArguments(self):
        """
        A worker runs in the foreground without a pid file, with the same
        railgun options, one worker, the inherited socket, and its own log
        file when the supervisor has one.
        """
        from railgun.tap import workerArguments

        options = self.parse(
            "--role", "edge", "--link", "a=127.0.0.1:1", "--workers", "3"
        )
        options.parent = {"logfile": "/var/log/rg.log", "nodaemon": False}
        arguments = workerArguments(options, 1, "--http-listen=systemd:x")
        self.assertEqual(
            arguments[:3],
            ["--nodaemon", "--pidfile=", "--logfile=/var/log/rg.log.worker1"],
        )
        self.assertEqual(arguments[3], "railgun")
        self.assertEqual(arguments[-2:], ["--workers=1", "--http-listen=systemd:x"])
        self.assertIn("--link", arguments)
