"""
What L{railgun._compat.httpclient} relies on in Twisted's private HTTP client
API still exists and behaves as it assumes; an upgrade that changes it fails
here, by name.
"""

from __future__ import annotations

import inspect

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import _newclient, client, http


class PrivateNamesTests(SynchronousTestCase):
    """
    The private names the guarded connection and pool use.
    """

    def test_clientProtocol(self) -> None:
        """
        HTTP11ClientProtocol keeps its parser and state where the guard looks,
        dispatches response ends and losses by state name, and takes the
        quiescent callback as its one argument.
        """
        protocol = _newclient.HTTP11ClientProtocol(lambda p: None)
        self.assertIsNone(protocol._parser)
        self.assertEqual(protocol._state, "QUIESCENT")
        self.assertEqual(protocol.state, "QUIESCENT")
        for name in (
            "_finishResponse_WAITING",
            "_finishResponse_TRANSMITTING",
            "_disconnectParser",
            "_connectionLost_QUIESCENT",
            "_connectionLost_WAITING",
            "_connectionLost_ABORTING",
        ):
            self.assertTrue(callable(getattr(protocol, name)), name)
        self.assertEqual(
            list(inspect.signature(_newclient.HTTP11ClientProtocol).parameters),
            ["quiescentCallback"],
        )

    def test_parserAndDecoder(self) -> None:
        """
        The response parser names its body decoder C{bodyDecoder}; a
        close-delimited body's decoder is an C{_IdentityTransferDecoder}
        with no C{contentLength}, and C{_DataLoss} is what a body cut short
        raises.
        """
        self.assertIn("bodyDecoder", vars(_newclient.HTTPClientParser))
        decoder = http._IdentityTransferDecoder(None, lambda d: None, lambda r: None)  # type: ignore[attr-defined]
        self.assertIsNone(decoder.contentLength)
        self.assertRaises(http.PotentialDataLoss, decoder.noMoreData)
        self.assertTrue(issubclass(http._DataLoss, Exception))  # type: ignore[attr-defined]

    def test_pool(self) -> None:
        """
        HTTPConnectionPool builds connections with its C{_factory}, keeps
        idle ones in C{_connections} and their timeouts in C{_timeouts}, and
        takes them back through C{_putConnection}; the factory keeps the
        quiescent callback as C{_quiescentCallback}.
        """
        pool = client.HTTPConnectionPool(Clock())
        self.assertIs(pool._factory, client._HTTP11ClientFactory)  # type: ignore[attr-defined]
        self.assertEqual(pool._connections, {})
        self.assertEqual(pool._timeouts, {})
        self.assertTrue(callable(pool._putConnection))
        callback = object()
        factory = client._HTTP11ClientFactory(callback, "metadata")  # type: ignore[attr-defined]
        self.assertIs(factory._quiescentCallback, callback)
