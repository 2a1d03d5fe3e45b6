"""
The edge's link pools as an operator sees them: why a link could not be
established, said once per change of cause and naming the address; and a
request that arrives while links are still being dialed waits for one.
"""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import error as ierror
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from railgun.config import EdgeConfig, LinkTuning, parseLinkMap
from railgun.edge.linkfailures import FailureLog, LinkFailure, classifyLinkFailure
from railgun.edge.service import EdgeService
from railgun.link.errors import ErrorCode, ProtocolError
from railgun.tls import credentialsFromDeployment
from tests.harness import HOST, TOKEN, Deployment


def _classify(exception: BaseException) -> LinkFailure:
    return classifyLinkFailure(
        Failure(exception), tlsName="origin.test", connectTimeout=5.0
    )


class ClassifyTests(SynchronousTestCase):
    """
    Each way a dial or HELLO fails gets its own cause and a sentence.
    """

    def test_refused(self):
        """
        A refused TCP connection says so and points at --link-listen.
        """
        failure = _classify(ierror.ConnectionRefusedError())
        self.assertEqual(failure.cause, "refused")
        self.assertIn("--link-listen", failure.text)

    def test_dns(self):
        """
        A name that does not resolve is a DNS failure.
        """
        self.assertEqual(_classify(ierror.DNSLookupError("x")).cause, "dns")

    def test_timeout(self):
        """
        A dial timeout names the timeout and the option.
        """
        failure = _classify(ierror.TimeoutError())
        self.assertEqual(failure.cause, "timeout")
        self.assertIn("5 s", failure.text)
        self.assertIn("--connect-timeout", failure.text)

    def test_token(self):
        """
        AUTH_FAILED from the origin role is a token mismatch.
        """
        failure = _classify(ProtocolError(ErrorCode.AUTH_FAILED, "bad token"))
        self.assertEqual(failure.cause, "token")
        self.assertIn("same link token", failure.text)

    def test_nameMismatch(self):
        """
        A certificate without the dialed name, found as the cause of the
        TLS error, names the name and --tls-name.
        """
        try:
            try:
                raise VerificationError(errors=[])
            except VerificationError as e:
                raise SSL.Error([("SSL routines", "", "bad")]) from e
        except SSL.Error as e:
            failure = _classify(e)
        self.assertEqual(failure.cause, "tls-name")
        self.assertIn("'origin.test'", failure.text)
        self.assertIn("--tls-name", failure.text)

    def test_unknownCA(self):
        """
        A certificate from another CA gets the hint about one deployment's
        certificates, on either side of the handshake.
        """
        ours = _classify(SSL.Error([("SSL routines", "", "certificate verify failed")]))
        theirs = _classify(SSL.Error([("SSL routines", "", "tlsv1 alert unknown ca")]))
        self.assertEqual((ours.cause, theirs.cause), ("tls-unknown-ca",) * 2)
        self.assertIn("railgun certs", ours.text)
        self.assertIn("does not accept the edge's certificate", theirs.text)

    def test_closed(self):
        """
        A connection closed before HELLO completed says so.
        """
        self.assertEqual(_classify(ierror.ConnectionDone()).cause, "closed")


class FailureLogTests(SynchronousTestCase):
    """
    One line per change of cause, with the count of the repeats.
    """

    def setUp(self):
        self.lines: list[str] = []
        self.log = FailureLog(lambda fmt, **kw: self.lines.append(fmt.format(**kw)))

    def test_repeatsCounted(self):
        """
        The same cause five times logs once; a new cause logs the four
        repeats, then itself.
        """
        refused = LinkFailure("refused", "connection refused")
        for _ in range(5):
            self.log.failed(refused, "o:2408")
        self.assertEqual(self.lines, ["link to o:2408 failed: connection refused"])
        self.log.failed(LinkFailure("timeout", "no answer"), "o:2408")
        self.assertEqual(
            self.lines[1:],
            [
                "link to o:2408: 4 more attempts failed the same way (refused)",
                "link to o:2408 failed: no answer",
            ],
        )

    def test_successResets(self):
        """
        After a link came up, the same cause is news again.
        """
        refused = LinkFailure("refused", "connection refused")
        self.log.failed(refused, "o:2408")
        self.log.succeeded("o:2408")
        self.log.failed(refused, "o:2408")
        self.assertEqual(len(self.lines), 2)


class _DelayedRelay(Protocol):
    """
    Relays a connection to C{factory.target} after C{factory.delay}
    seconds: a link that takes that long to come up.
    """

    def connectionMade(self) -> None:
        self.pending: list[bytes] = []
        self.peer: Any = None
        deferLater(reactor, self.factory.delay, self._connect)

    def _connect(self) -> Any:
        relay = self

        class Back(Protocol):
            def connectionMade(self) -> None:
                relay.peer = self.transport
                for chunk in relay.pending:
                    self.transport.write(chunk)

            def dataReceived(self, data: bytes) -> None:
                relay.transport.write(data)

            def connectionLost(self, reason: Any) -> None:
                relay.transport.loseConnection()

        return TCP4ClientEndpoint(reactor, "127.0.0.1", self.factory.target).connect(
            Factory.forProtocol(Back)
        )

    def dataReceived(self, data: bytes) -> None:
        if self.peer is None:
            self.pending.append(data)
        else:
            self.peer.write(data)

    def connectionLost(self, reason: Any) -> None:
        if self.peer is not None:
            self.peer.loseConnection()


class PoolTests(TestCase):
    """
    Real links on loopback.
    """

    timeout = 30

    @inlineCallbacks
    def edgeTo(self, deployment: Deployment, port: int) -> Any:
        """
        Start a second edge, linked to loopback C{port}, for C{HOST}.
        """
        edge = EdgeService(
            EdgeConfig(
                links=parseLinkMap([f"{HOST}=127.0.0.1:{port}"]),
                token=TOKEN,
                httpListen="tcp:0:interface=127.0.0.1",
                tlsName="localhost",
                link=LinkTuning(pingInterval=0),
            ),
            reactor,
            credentials=credentialsFromDeployment(deployment.tlsDeployment, "edge"),
        )
        edge.startService()
        self.addCleanup(edge.stopService)
        edgePort = (yield edge.whenListening()).getHost().port
        return edge, edgePort

    @inlineCallbacks
    def test_requestWaitsForConnectingLink(self):
        """
        A request that arrives while the edge's links are still being dialed
        waits for one and is served, instead of an immediate 503.
        """
        d = Deployment()
        yield d.start()
        self.addCleanup(d.stop)
        factory = Factory.forProtocol(_DelayedRelay)
        factory.delay = 0.3
        factory.target = d.linkPort
        relay = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            factory
        )
        self.addCleanup(relay.stopListening)
        edge, d.edgePort = yield self.edgeTo(d, relay.getHost().port)
        pool = list(edge.pools.values())[0]
        self.assertEqual(pool.readyCount(), 0)
        self.assertTrue(pool.isConnecting())
        response, body = yield d.fetch("/echo")
        self.assertEqual(response.code, 200, body)

    @inlineCallbacks
    def test_unreachableLoggedOncePerCause(self):
        """
        An address nobody listens on: one line naming it and the cause
        over several back-off attempts, none of ClientService's 'Scheduling
        retry' lines; requests get 503 at once (the pool is not connecting:
        its dials fail).
        """
        events: list = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        d = Deployment()
        yield d.start()
        self.addCleanup(d.stop)
        probe = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(Protocol)
        )
        closed = probe.getHost().port
        yield probe.stopListening()
        edge, d.edgePort = yield self.edgeTo(d, closed)
        yield deferLater(reactor, 1.0, lambda: None)  # several back-off steps
        lines = [formatEvent(e) for e in events]
        failed = [line for line in lines if f"127.0.0.1:{closed}" in line]
        self.assertEqual(len(failed), 1, failed)
        self.assertIn("connection refused", failed[0])
        self.assertEqual([line for line in lines if "Scheduling retry" in line], [])
        pool = list(edge.pools.values())[0]
        self.assertFalse(pool.isConnecting())
        response, body = yield d.fetch("/echo")
        self.assertEqual(response.code, 503)
