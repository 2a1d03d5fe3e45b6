"""
L{railgun.workers}: worker processes sharing one listening socket, each
replaced when it dies, all stopped by SIGTERM; real processes on loopback
(stand-in workers from L{tests.workerchild}).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody

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
        self.agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))

    @inlineCallbacks
    def ask(self):
        url = f"http://127.0.0.1:{self.port.getHost().port}/".encode()
        response = yield self.agent.request(b"GET", url)
        body = yield readBody(response)
        pid, index = body.split()
        return int(pid), int(index)

    @inlineCallbacks
    def seenWorkers(self, want, tries=400):
        """
        Ask until every pid in C{want} answered (new connections, one queue).
        """
        seen = set()
        for _ in range(tries):
            try:
                pid, _ = yield self.ask()
            except Exception:
                yield deferLater(reactor, 0.05, lambda: None)
                continue
            seen.add(pid)
            if want <= seen:
                return seen
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
