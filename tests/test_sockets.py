"""
L{railgun._sockets.tuneForVolume} finds the socket under wrapping layers.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    wrapClientTLS,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from railgun._sockets import TUNED_BUFFER, tuneForVolume


class TuneTests(SynchronousTestCase):
    """
    Transports that are not sockets are left alone.
    """

    def test_inMemory(self):
        """
        An in-memory transport (no socket) is not touched.
        """
        transport = StringTransport()
        tuneForVolume(transport)
        self.assertFalse(hasattr(transport, "bufferSize"))


class TuneSocketTests(TestCase):
    """
    Real TCP and TLS transports get the larger buffer on their socket.
    """

    @inlineCallbacks
    def test_throughTLS(self):
        """
        A TLS transport's underlying TCP transport is tuned.
        """
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(Protocol)
        )
        self.addCleanup(port.stopListening)
        endpoint = wrapClientTLS(
            CertificateOptions(verify=False),
            TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port),
        )
        protocol = yield endpoint.connect(Factory.forProtocol(Protocol))
        self.addCleanup(protocol.transport.abortConnection)
        tuneForVolume(protocol.transport)
        self.assertEqual(protocol.transport.transport.bufferSize, TUNED_BUFFER)
