"""
The listen backlog (C{--backlog}, TOML C{backlog}) of the edge's HTTP port
and the origin role's link port: Twisted's default of 50 made a burst of
connects wait for SYN retransmissions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase, TestCase

from railgun._listening import DEFAULT_BACKLOG, withBacklog
from railgun.tap import Options
from tests.harness import Deployment


class WithBacklogTests(SynchronousTestCase):
    def test_added(self):
        """
        A TCP, TCP6, SSL or UNIX endpoint string without a backlog gets
        the one asked for.
        """
        for description in (
            "tcp:8080:interface=127.0.0.1",
            "TCP:8080",
            "tcp6:8080:interface=\\:\\:1",
            "ssl:443:privateKey=k.pem",
            "unix:/run/railgun.sock",
        ):
            self.assertEqual(
                withBacklog(description, 777), description + ":backlog=777"
            )

    def test_endpointStringWins(self):
        """
        A backlog= already in the endpoint string is kept: it is the more
        specific setting.
        """
        for description in (
            "tcp:8080:backlog=10:interface=127.0.0.1",
            "tcp:8080:interface=127.0.0.1:backlog=10",
        ):
            self.assertEqual(withBacklog(description, 777), description)

    def test_escapedColonIsNotASeparator(self):
        """
        An escaped colon does not start an argument: an interface
        C{\\:backlog=1} (nonsense, but escaped) is not a backlog.
        """
        description = "tcp:8080:interface=x\\:backlog=1"
        self.assertEqual(withBacklog(description, 777), description + ":backlog=777")

    def test_otherTypesUnchanged(self):
        """
        An endpoint type that takes no backlog is left as it is.
        """
        self.assertEqual(
            withBacklog("systemd:domain=INET:index=0", 7), "systemd:domain=INET:index=0"
        )

    def test_listensWithIt(self):
        """
        The endpoint built from the string listens with the backlog asked.
        """
        reactor = MemoryReactor()
        serverFromString(reactor, withBacklog("tcp:0:interface=127.0.0.1", 777)).listen(
            Factory.forProtocol(Protocol)
        )
        [(port, factory, backlog, interface)] = reactor.tcpServers
        self.assertEqual((backlog, interface), (777, "127.0.0.1"))


class BacklogOptionTests(SynchronousTestCase):
    def setUp(self):
        from railgun.certs import generateDeployment, writeDeployment

        self.certs = self.mktemp()
        writeDeployment(generateDeployment("localhost"), self.certs)

    def parse(self, *argv: str) -> Options:
        options = Options()
        options.parseOptions(list(argv) + ["--certs", self.certs, "--token", "t"])
        return options

    def test_default(self):
        """
        Without the option both roles listen with L{DEFAULT_BACKLOG}, 1024.
        """
        built = self.parse("--role", "edge", "--link", "a=b").built
        self.assertEqual(built.edgeConfig().backlog, DEFAULT_BACKLOG)
        self.assertEqual(DEFAULT_BACKLOG, 1024)
        built = self.parse("--role", "origin", "--map", "a=http://b").built
        self.assertEqual(built.originConfig().backlog, DEFAULT_BACKLOG)

    def test_flagAndFile(self):
        """
        --backlog sets both roles' backlog, over the file's top-level
        C{backlog}, which sets it without the flag.
        """
        path = self.mktemp()
        Path(path).write_text(
            'role = "origin"\nbacklog = 300\n[origin.map]\n"a" = "http://b"\n'
        )
        self.assertEqual(self.parse("--config", path).built.originConfig().backlog, 300)
        self.assertEqual(
            self.parse("--config", path, "--backlog", "4096")
            .built.originConfig()
            .backlog,
            4096,
        )
        built = self.parse("--role", "edge", "--link", "a=b", "--backlog", "2048").built
        self.assertEqual(built.edgeConfig().backlog, 2048)

    def test_refused(self):
        """
        A backlog that is not a positive whole number is a usage error
        naming the flag and the key.
        """
        for value in ("0", "-1", "many"):
            e = self.assertRaises(
                UsageError,
                self.parse,
                "--role",
                "edge",
                "--link",
                "a=b",
                "--backlog",
                value,
            )
            self.assertIn("--backlog", str(e))


class RealListenTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_bothPorts(self) -> Any:
        """
        The edge's HTTP port and the origin role's link port, really bound
        on 127.0.0.1, listen with the configured backlog.
        """
        d = Deployment()
        yield d.start(edgeOptions={"backlog": 600}, originOptions={"backlog": 500})
        self.addCleanup(d.stop)
        edgePort = yield d.edge.whenListening()
        linkPort = yield d.origin.whenListening()
        self.assertEqual((edgePort.backlog, linkPort.backlog), (600, 500))
        self.assertEqual(edgePort.getHost().host, "127.0.0.1")
