"""
Embedded role services whose port cannot be bound: C{whenListening()}
fails with the reason, whenever it is asked, and the service can be
stopped; the process is the embedder's to run or stop.
"""

from __future__ import annotations

import socket

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.error import CannotListenError
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from railgun.certs import generateDeployment
from railgun.config import EdgeConfig, OriginConfig, parseLinkMap, parseOriginMap
from railgun.tls import credentialsFromDeployment


def _busyPort(test: TestCase) -> int:
    """
    @return: a loopback port that something listens on until C{test} ends.
    """
    s = socket.socket()
    test.addCleanup(s.close)
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s.getsockname()[1]


class ListenFailureTests(TestCase):
    """
    L{railgun.origin.service.OriginService} and
    L{railgun.edge.service.EdgeService} on a port in use.
    """

    timeout = 10

    def setUp(self):
        self.deployment = generateDeployment("localhost")
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def services(self, port):
        from railgun.edge.service import EdgeService
        from railgun.origin.service import OriginService

        endpoint = f"tcp:{port}:interface=127.0.0.1"
        origin = OriginService(
            OriginConfig(
                origins=parseOriginMap(["*=http://127.0.0.1:1"]),
                token=b"t",
                linkListen=endpoint,
            ),
            reactor,
            credentials=credentialsFromDeployment(self.deployment, "origin"),
        )
        edge = EdgeService(
            EdgeConfig(
                links=parseLinkMap(["*=127.0.0.1:1"]), token=b"t", httpListen=endpoint
            ),
            reactor,
            credentials=credentialsFromDeployment(self.deployment, "edge"),
        )
        return [origin, edge]

    @inlineCallbacks
    def test_whenListeningAfterStart(self):
        """
        A TCP endpoint fails inside C{startService}; C{whenListening()}
        asked afterwards (as docs/examples/embed.py does) fails with the
        CannotListenError, and a one-line critical message names it.
        """
        port = _busyPort(self)
        for service in self.services(port):
            service.startService()
            try:
                yield self.assertFailure(service.whenListening(), CannotListenError)
            finally:
                yield service.stopService()
        critical = [
            e
            for e in self.events
            if e.get("log_level") is not None and e["log_level"].name == "critical"
        ]
        self.assertEqual(len(critical), 2)
        for event in critical:
            self.assertIn(f"127.0.0.1:{port}", str(event["error"]))
            self.assertNotIn("log_failure", event)

    @inlineCallbacks
    def test_whenListeningBeforeStart(self):
        """
        Asked before C{startService}, C{whenListening()} fails too.
        """
        port = _busyPort(self)
        for service in self.services(port):
            d = service.whenListening()
            service.startService()
            try:
                yield self.assertFailure(d, CannotListenError)
            finally:
                yield service.stopService()
