"""
L{railgun._compat.clientservice}: Twisted's L{ClientService} still logs its
retries through the class attribute the quiet subclass replaces.
"""

from __future__ import annotations

from twisted.application.internet import ClientService
from twisted.internet.defer import fail
from twisted.internet.task import Clock
from twisted.logger import Logger, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from railgun._compat.clientservice import QuietClientService


class _FailingEndpoint:
    def connect(self, factory):
        return fail(ConnectionRefusedError("no"))


class QuietClientServiceTests(SynchronousTestCase):
    def retryLines(self, serviceClass):
        events: list = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        clock = Clock()
        service = serviceClass(_FailingEndpoint(), object(), clock=clock)
        service.startService()
        clock.advance(10)
        service.stopService()
        return [e for e in events if "Scheduling retry" in e.get("log_format", "")]

    def test_privateLoggerStillUsed(self):
        """
        ClientService has the class-level C{_log} Logger the subclass
        overrides, and its retry lines go through it.
        """
        self.assertIsInstance(ClientService.__dict__.get("_log"), Logger)
        self.assertNotEqual(self.retryLines(ClientService), [])

    def test_quiet(self):
        """
        The quiet subclass logs no retry line.
        """
        self.assertEqual(self.retryLines(QuietClientService), [])
