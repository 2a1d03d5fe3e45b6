"""
Tests for L{railgun.tls}: loading and checking credentials, and real mutual
TLS on loopback with the options it builds.
"""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import tempfile
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import (
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    PrivateCertificate,
    TLSVersion,
)
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from railgun.certs import (
    CA_FILE,
    EDGE_COMMON_NAME,
    EDGE_FILE,
    ORIGIN_FILE,
    Deployment,
    generateDeployment,
    writeDeployment,
)
from railgun.tls import (
    Credentials,
    CredentialsError,
    clientOptions,
    credentialsFromDeployment,
    loadCredentials,
    peerIdentity,
    serverOptions,
)

# Generating a deployment costs a few milliseconds (P-256); share the common
# ones across tests, they are never mutated.
_MAIN = generateDeployment("localhost")
_OTHER = generateDeployment("localhost")


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _keyPEM(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _issue(
    deployment: Deployment,
    names: Sequence[x509.GeneralName],
    usages: Sequence[x509.ObjectIdentifier],
    commonName: str = "test leaf",
    notBefore: datetime.datetime | None = None,
    notAfter: datetime.datetime | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """
    Issue an arbitrary leaf certificate from a deployment's CA, to build the
    wrong credentials that the real ones must be told apart from.
    """
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, commonName)]))
        .issuer_name(deployment.caCertificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(notBefore or now - datetime.timedelta(hours=1))
        .not_valid_after(notAfter or now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(x509.ExtendedKeyUsage(list(usages)), False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), False)
    return builder.sign(deployment.caKey, hashes.SHA256()), key


def _credentials(
    deployment: Deployment,
    certificate: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
) -> Credentials:
    """
    Credentials made directly, bypassing the checks of L{loadCredentials}, so
    that the handshake itself is what refuses them.
    """
    return Credentials(
        authority=Certificate.loadPEM(deployment.caPEM()),
        identity=PrivateCertificate.loadPEM(_pem(certificate) + _keyPEM(key)),
    )


@implementer(ILogObserver)
class _Collector:
    """
    Collect the log events emitted by L{railgun.tls} during a test.
    """

    def __init__(self, case: SynchronousTestCase) -> None:
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self)
        case.addCleanup(globalLogPublisher.removeObserver, self)

    def __call__(self, event: LogEvent) -> None:
        if event.get("log_namespace") == "railgun.tls":
            self.events.append(event)

    def messages(self) -> list[str]:
        return [formatEvent(event) for event in self.events]


class LoadCredentialsTests(SynchronousTestCase):
    """
    Tests for L{loadCredentials} and L{credentialsFromDeployment}.
    """

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="railgun-tls-test-")
        self.addCleanup(shutil.rmtree, self.directory)
        writeDeployment(_MAIN, self.directory, force=True)

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def write(self, name: str, content: bytes, mode: int = 0o600) -> None:
        with open(self.path(name), "wb") as f:
            f.write(content)
        os.chmod(self.path(name), mode)

    def assertErrorNames(self, role: str, *fragments: str) -> CredentialsError:
        """
        Loading fails with a L{CredentialsError} whose message contains every
        fragment.
        """
        with self.assertRaises(CredentialsError) as caught:
            loadCredentials(self.directory, role)  # type: ignore[arg-type]
        message = str(caught.exception)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return caught.exception

    def test_loadOrigin(self) -> None:
        """
        The origin role loads the CA and its own server certificate and key.
        """
        credentials = loadCredentials(self.directory, "origin")
        self.assertEqual(
            credentials.authority.original.to_cryptography(), _MAIN.caCertificate
        )
        self.assertEqual(
            credentials.identity.original.to_cryptography(), _MAIN.originCertificate
        )
        self.assertTrue(
            credentials.identity.privateKey.matches(credentials.identity.getPublicKey())
        )
        self.assertEqual(credentials.additionalAuthorities, ())

    def test_loadEdge(self) -> None:
        """
        The edge loads the CA and its own client certificate and key.
        """
        credentials = loadCredentials(self.directory, "edge")
        self.assertEqual(
            credentials.identity.original.to_cryptography(), _MAIN.edgeCertificate
        )

    def test_fromDeploymentMatchesFiles(self) -> None:
        """
        Credentials built in memory equal those loaded from the written files.
        """
        for role in ("origin", "edge"):
            fromFiles = loadCredentials(self.directory, role)
            inMemory = credentialsFromDeployment(_MAIN, role)
            self.assertEqual(
                inMemory.identity.original.to_cryptography(),
                fromFiles.identity.original.to_cryptography(),
            )
            self.assertEqual(
                inMemory.authority.original.to_cryptography(),
                fromFiles.authority.original.to_cryptography(),
            )

    def test_unknownRole(self) -> None:
        """
        A role other than origin or edge is a clear error, not a KeyError.
        """
        self.assertErrorNames("both", "unknown role", "'both'")
        with self.assertRaises(CredentialsError):
            credentialsFromDeployment(_MAIN, "both")  # type: ignore[arg-type]

    def test_missingCA(self) -> None:
        """
        A missing ca.pem is reported with its path.
        """
        os.unlink(self.path(CA_FILE))
        self.assertErrorNames("edge", self.path(CA_FILE), "missing")

    def test_missingIdentity(self) -> None:
        """
        A missing origin.pem is reported with its path.
        """
        os.unlink(self.path(ORIGIN_FILE))
        self.assertErrorNames("origin", self.path(ORIGIN_FILE), "missing")

    def test_unreadable(self) -> None:
        """
        A path that cannot be read as a file is reported with its path.
        """
        os.unlink(self.path(EDGE_FILE))
        os.mkdir(self.path(EDGE_FILE))
        self.assertErrorNames("edge", self.path(EDGE_FILE), "cannot read")

    def test_tooLarge(self) -> None:
        """
        A huge file named by mistake is refused without being read whole.
        """
        self.write(CA_FILE, b"x" * (2 * 1024 * 1024))
        self.assertErrorNames("edge", self.path(CA_FILE), "larger than")

    def test_garbageCA(self) -> None:
        """
        A ca.pem without a certificate is reported.
        """
        self.write(CA_FILE, b"not a certificate\n", 0o644)
        self.assertErrorNames("edge", self.path(CA_FILE), "no PEM certificate")

    def test_leafAsCA(self) -> None:
        """
        A leaf certificate in place of the CA certificate is refused.
        """
        self.write(CA_FILE, _pem(_MAIN.originCertificate), 0o644)
        self.assertErrorNames("edge", self.path(CA_FILE), "not a CA certificate")

    def test_noKey(self) -> None:
        """
        An identity file holding only a certificate is reported.
        """
        self.write(EDGE_FILE, _pem(_MAIN.edgeCertificate))
        self.assertErrorNames("edge", self.path(EDGE_FILE), "no usable private key")

    def test_encryptedKey(self) -> None:
        """
        An encrypted private key is reported as such.
        """
        encrypted = _MAIN.edgeKey.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
        self.write(EDGE_FILE, _pem(_MAIN.edgeCertificate) + encrypted)
        self.assertErrorNames("edge", self.path(EDGE_FILE), "encrypted")

    def test_mismatchedKey(self) -> None:
        """
        A key that does not belong to the certificate is refused.
        """
        self.write(EDGE_FILE, _pem(_MAIN.edgeCertificate) + _keyPEM(_OTHER.edgeKey))
        self.assertErrorNames("edge", self.path(EDGE_FILE), "does not match")

    def test_otherCA(self) -> None:
        """
        A certificate issued by another deployment's CA is refused, naming
        both files.
        """
        self.write(EDGE_FILE, _OTHER.edgePEM())
        self.assertErrorNames(
            "edge", self.path(EDGE_FILE), "not issued by", self.path(CA_FILE)
        )

    def test_swappedRoles(self) -> None:
        """
        The edge's certificate in origin.pem (and the other way round) is
        refused because of its extended key usage.
        """
        self.write(ORIGIN_FILE, _MAIN.edgePEM())
        self.write(EDGE_FILE, _MAIN.originPEM())
        self.assertErrorNames("origin", self.path(ORIGIN_FILE), "serverAuth", "edge")
        self.assertErrorNames("edge", self.path(EDGE_FILE), "clientAuth", "origin")

    def test_expired(self) -> None:
        """
        An expired certificate is refused at load time.
        """
        later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=4000)
        with self.assertRaises(CredentialsError) as caught:
            loadCredentials(self.directory, "edge", now=later)
        self.assertIn("expired", str(caught.exception))
        with self.assertRaises(CredentialsError):
            credentialsFromDeployment(_MAIN, "edge", now=later)

    def test_notYetValid(self) -> None:
        """
        A certificate that is not valid yet is refused at load time.
        """
        earlier = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
        with self.assertRaises(CredentialsError) as caught:
            loadCredentials(self.directory, "origin", now=earlier)
        self.assertIn("not valid until", str(caught.exception))

    def test_expiringSoonWarns(self) -> None:
        """
        A certificate that expires within 30 days loads, with a warning.
        """
        collector = _Collector(self)
        soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3640)
        loadCredentials(self.directory, "origin", now=soon)
        self.assertTrue(
            any("expires" in message for message in collector.messages()),
            collector.messages(),
        )

    def test_exposedKeyWarns(self) -> None:
        """
        A key file readable by others is loaded with a warning naming it.
        """
        collector = _Collector(self)
        os.chmod(self.path(EDGE_FILE), 0o644)
        loadCredentials(self.directory, "edge")
        messages = collector.messages()
        self.assertEqual(len(messages), 1, messages)
        self.assertIn(self.path(EDGE_FILE), messages[0])
        self.assertIn("0o644", messages[0])

    def test_privateKeyNoWarning(self) -> None:
        """
        A key file with mode 0600 loads without any warning.
        """
        collector = _Collector(self)
        loadCredentials(self.directory, "edge")
        self.assertEqual(collector.messages(), [])

    def test_severalAuthorities(self) -> None:
        """
        A ca.pem holding two CAs trusts both, and accepts an identity issued
        by the second.
        """
        self.write(CA_FILE, _OTHER.caPEM() + _MAIN.caPEM(), 0o644)
        credentials = loadCredentials(self.directory, "origin")
        self.assertEqual(
            [a.original.to_cryptography() for a in credentials.authorities()],
            [_OTHER.caCertificate, _MAIN.caCertificate],
        )


class OptionsTests(SynchronousTestCase):
    """
    Tests for the connection creators and L{peerIdentity}, without sockets.
    """

    def test_serverOptionsInterface(self) -> None:
        """
        L{serverOptions} returns a server connection creator.
        """
        options = serverOptions(credentialsFromDeployment(_MAIN, "origin"))
        self.assertTrue(verifyObject(IOpenSSLServerConnectionCreator, options))

    def test_serverOptionsDemandClientCertificate(self) -> None:
        """
        The server context demands a peer certificate.
        """
        options = serverOptions(credentialsFromDeployment(_MAIN, "origin"))
        context = options.getContext()  # type: ignore[attr-defined]
        mode = context.get_verify_mode()
        self.assertTrue(mode & SSL.VERIFY_PEER)
        self.assertTrue(mode & SSL.VERIFY_FAIL_IF_NO_PEER_CERT)

    def test_clientOptionsInterface(self) -> None:
        """
        L{clientOptions} returns a client connection creator, for names and
        for (bracketed) IP addresses.
        """
        credentials = credentialsFromDeployment(_MAIN, "edge")
        for host in ("localhost", "127.0.0.1", "::1", "[::1]"):
            options = clientOptions(credentials, host)
            self.assertTrue(verifyObject(IOpenSSLClientConnectionCreator, options))

    def test_peerIdentityNotTLS(self) -> None:
        """
        A transport without TLS has no peer identity.
        """
        self.assertIsNone(peerIdentity(StringTransport()))
        self.assertIsNone(peerIdentity(None))

    def test_peerIdentityBeforeHandshake(self) -> None:
        """
        A TLS transport whose peer certificate cannot be had yet gives None,
        not an exception.
        """

        class Broken:
            def getPeerCertificate(self) -> None:
                raise SSL.Error("no connection yet")

        class Anonymous:
            def getPeerCertificate(self) -> None:
                return None

        self.assertIsNone(peerIdentity(Broken()))
        self.assertIsNone(peerIdentity(Anonymous()))


def _tls11Available() -> str | None:
    """
    Whether this OpenSSL can still negotiate TLS 1.1 at all (when both ends
    allow it), which a test of its refusal needs.

    @return: None if it can, else why not.
    """
    certificate, key = _MAIN.originCertificate, _MAIN.originKey

    def context(server: bool) -> SSL.Context:
        ctx = SSL.Context(SSL.TLS_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_1_VERSION)
        ctx.set_max_proto_version(SSL.TLS1_1_VERSION)
        ctx.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
        if server:
            ctx.use_certificate(certificate)
            ctx.use_privatekey(key)
        return ctx

    try:
        server = SSL.Connection(context(True))
        server.set_accept_state()
        client = SSL.Connection(context(False))
        client.set_connect_state()
        for _ in range(10):
            for a, b in ((client, server), (server, client)):
                try:
                    a.do_handshake()
                except SSL.WantReadError:
                    pass
                while True:
                    try:
                        b.bio_write(a.bio_read(65536))
                    except SSL.WantReadError:
                        break
        if client.get_protocol_version_name() != "TLSv1.1":
            return "OpenSSL negotiated something other than TLS 1.1"
        return None
    except SSL.Error as e:
        return f"this OpenSSL cannot negotiate TLS 1.1 at all: {e}"


@implementer(IHandshakeListener)
class _Peer(Protocol):
    """
    One end of a test connection: records what happens to it.  The client
    sends C{ping} and hangs up once it is echoed; the server echoes.
    """

    def __init__(self, client: bool) -> None:
        self.client = client
        self.received = b""
        self.handshook = False
        self.peer: str | None = None
        self.version: str | None = None
        self.reason: Failure | None = None
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        if self.client:
            self.transport.write(b"ping")  # type: ignore[union-attr]

    def handshakeCompleted(self) -> None:
        self.handshook = True
        self.peer = peerIdentity(self.transport)
        self.version = self.transport._tlsConnection.get_protocol_version_name()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if not self.client:
            self.transport.write(data)  # type: ignore[union-attr]
        elif self.received == b"ping":
            self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:  # noqa: B008
        self.reason = reason
        self.lost.callback(None)


class _ServerFactory(Factory):
    def __init__(self) -> None:
        self.peers: list[_Peer] = []

    def buildProtocol(self, addr: object) -> _Peer:
        peer = _Peer(client=False)
        self.peers.append(peer)
        return peer


class _ClientFactory(ClientFactory):
    def __init__(self) -> None:
        self.peer = _Peer(client=True)
        self.failed: Deferred[None] = Deferred()

    def buildProtocol(self, addr: object) -> _Peer:
        return self.peer

    def clientConnectionFailed(self, connector: object, reason: Failure) -> None:
        self.failed.errback(reason)


class LoopbackTests(TestCase):
    """
    Real mutual TLS over loopback sockets with L{serverOptions} and
    L{clientOptions}.
    """

    timeout = 15

    async def _connect(
        self,
        server: object,
        client: object,
        interface: str = "127.0.0.1",
    ) -> tuple[_Peer, _Peer]:
        """
        Listen with the server options, connect with the client options, and
        wait (at most 5 seconds) until both ends have closed.

        @return: The server's and the client's protocol.
        """
        from twisted.internet import reactor

        serverFactory = _ServerFactory()
        port = reactor.listenSSL(  # type: ignore[attr-defined]
            0, serverFactory, server, interface=interface
        )
        self.addCleanup(port.stopListening)
        clientFactory = _ClientFactory()
        connector = reactor.connectSSL(  # type: ignore[attr-defined]
            interface, port.getHost().port, clientFactory, client
        )
        self.addCleanup(connector.disconnect)
        clientFactory.failed.addErrback(self.fail)

        async def bothClosed() -> None:
            await clientFactory.peer.lost
            # Accepting happens in the same reactor, so the server end
            # exists by the time the client has seen anything at all.
            self.assertEqual(len(serverFactory.peers), 1)
            await serverFactory.peers[0].lost

        closed = Deferred.fromCoroutine(bothClosed())
        closed.addTimeout(5, reactor)
        await gatherResults([closed])
        return serverFactory.peers[0], clientFactory.peer

    def assertRefused(self, server: _Peer, client: _Peer) -> None:
        """
        The connection was closed without the server's application ever
        getting a byte, and the server did not complete a handshake.
        """
        self.assertEqual(server.received, b"")
        self.assertEqual(client.received, b"")
        self.assertFalse(server.handshook)
        self.assertIsNotNone(client.reason)

    def tlsError(self, peer: _Peer) -> str:
        """
        @return: The TLS error (or alert from the other end) that one end's
            connection ended with, as text.
        """
        assert peer.reason is not None
        self.assertIsInstance(peer.reason.value, SSL.Error)
        return str(peer.reason.value)

    def origin(self) -> object:
        return serverOptions(credentialsFromDeployment(_MAIN, "origin"))

    def edge(self, hostname: str = "localhost") -> object:
        return clientOptions(credentialsFromDeployment(_MAIN, "edge"), hostname)

    async def test_edgeConnects(self) -> None:
        """
        The edge's certificate gets through, bytes flow both ways over TLS
        1.2 or later, and each end sees the other's identity.
        """
        server, client = await self._connect(self.origin(), self.edge())
        self.assertEqual(server.received, b"ping")
        self.assertEqual(client.received, b"ping")
        self.assertEqual(server.peer, f"CN={EDGE_COMMON_NAME},O=Railgun for Twisted")
        self.assertEqual(client.peer, "CN=localhost,O=Railgun for Twisted")
        self.assertIn(client.version, ("TLSv1.2", "TLSv1.3"))

    async def test_edgeConnectsByAddress(self) -> None:
        """
        An origin certificate made for an IP address verifies when the edge
        dials that address.
        """
        deployment = generateDeployment("127.0.0.1")
        server, client = await self._connect(
            serverOptions(credentialsFromDeployment(deployment, "origin")),
            clientOptions(credentialsFromDeployment(deployment, "edge"), "127.0.0.1"),
        )
        self.assertEqual(client.received, b"ping")

    async def test_edgeConnectsByIPv6Address(self) -> None:
        """
        An origin certificate made for an IPv6 address verifies when the edge
        dials it, written with or without brackets.
        """
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
                probe.bind(("::1", 0))
        except OSError as e:
            raise SkipTest(f"no IPv6 loopback here: {e}") from e
        deployment = generateDeployment("::1")
        origin = serverOptions(credentialsFromDeployment(deployment, "origin"))
        edge = credentialsFromDeployment(deployment, "edge")
        for hostname in ("::1", "[::1]"):
            server, client = await self._connect(
                origin, clientOptions(edge, hostname), interface="::1"
            )
            self.assertEqual(client.received, b"ping")

    async def test_filesConnect(self) -> None:
        """
        Credentials loaded from the files C{railgun certs} writes connect.
        """
        directory = tempfile.mkdtemp(prefix="railgun-tls-test-")
        self.addCleanup(shutil.rmtree, directory)
        writeDeployment(_OTHER, directory)
        server, client = await self._connect(
            serverOptions(loadCredentials(directory, "origin")),
            clientOptions(loadCredentials(directory, "edge"), "localhost"),
        )
        self.assertEqual(client.received, b"ping")

    async def test_secondAuthority(self) -> None:
        """
        An origin role that trusts two CAs (during a CA rotation) accepts an
        edge certificate from the second one.
        """
        origin = credentialsFromDeployment(_MAIN, "origin")
        rotating = Credentials(
            authority=origin.authority,
            identity=origin.identity,
            additionalAuthorities=(Certificate.loadPEM(_OTHER.caPEM()),),
        )
        edge = Credentials(
            authority=origin.authority,
            identity=credentialsFromDeployment(_OTHER, "edge").identity,
        )
        server, client = await self._connect(
            serverOptions(rotating), clientOptions(edge, "localhost")
        )
        self.assertEqual(server.received, b"ping")

    async def test_noClientCertificate(self) -> None:
        """
        A client that presents no certificate is refused.
        """
        anonymous = CertificateOptions(
            trustRoot=Certificate.loadPEM(_MAIN.caPEM()),
            raiseMinimumTo=TLSVersion.TLSv1_2,
        )
        server, client = await self._connect(self.origin(), anonymous)
        self.assertRefused(server, client)
        self.assertIn("certificate", self.tlsError(server))

    async def test_clientFromOtherCA(self) -> None:
        """
        A client certificate issued by another CA is refused.
        """
        stranger = Credentials(
            authority=Certificate.loadPEM(_MAIN.caPEM()),
            identity=credentialsFromDeployment(_OTHER, "edge").identity,
        )
        server, client = await self._connect(
            self.origin(), clientOptions(stranger, "localhost")
        )
        self.assertRefused(server, client)
        self.assertIn("certificate verify failed", self.tlsError(server))
        self.assertIn("unknown ca", self.tlsError(client))

    async def test_originCertificateAsClient(self) -> None:
        """
        The origin certificate, from the right CA but meant for servers only,
        is refused as a client certificate.
        """
        impostor = _credentials(_MAIN, _MAIN.originCertificate, _MAIN.originKey)
        server, client = await self._connect(
            self.origin(), clientOptions(impostor, "localhost")
        )
        self.assertRefused(server, client)
        self.assertIn("certificate verify failed", self.tlsError(server))
        self.assertIn("unsupported certificate", self.tlsError(client))

    async def _refusedServer(
        self,
        certificate: x509.Certificate,
        key: ec.EllipticCurvePrivateKey,
        authority: Deployment,
        hostname: str = "localhost",
    ) -> tuple[_Peer, _Peer]:
        server, client = await self._connect(
            serverOptions(_credentials(authority, certificate, key)),
            self.edge(hostname),
        )
        self.assertRefused(server, client)
        self.assertFalse(client.handshook)
        return server, client

    async def test_serverFromOtherCA(self) -> None:
        """
        The edge refuses an origin certificate for the right name from
        another CA.
        """
        server, client = await self._refusedServer(
            _OTHER.originCertificate, _OTHER.originKey, _OTHER
        )
        self.assertIn("certificate verify failed", self.tlsError(client))
        self.assertIn("unknown ca", self.tlsError(server))

    async def test_serverForOtherName(self) -> None:
        """
        The edge refuses an origin certificate from the right CA for another
        name, and one for another address.
        """
        certificate, key = _issue(
            _MAIN, [x509.DNSName("other.example")], [ExtendedKeyUsageOID.SERVER_AUTH]
        )
        server, client = await self._refusedServer(certificate, key, _MAIN)
        assert client.reason is not None
        self.assertIsInstance(client.reason.value, VerificationError)
        server, client = await self._refusedServer(
            certificate, key, _MAIN, hostname="127.0.0.1"
        )
        assert client.reason is not None
        self.assertIsInstance(client.reason.value, VerificationError)

    async def test_serverWithClientCertificate(self) -> None:
        """
        The edge refuses a server certificate from the right CA for the right
        name that is meant for clients only.
        """
        certificate, key = _issue(
            _MAIN, [x509.DNSName("localhost")], [ExtendedKeyUsageOID.CLIENT_AUTH]
        )
        server, client = await self._refusedServer(certificate, key, _MAIN)
        self.assertIn("certificate verify failed", self.tlsError(client))
        self.assertIn("unsupported certificate", self.tlsError(server))

    async def test_tls11Refused(self) -> None:
        """
        A client that speaks at most TLS 1.1 is refused, even with the right
        certificate.
        """
        why = _tls11Available()
        if why is not None:
            raise SkipTest(why)
        edge = credentialsFromDeployment(_MAIN, "edge")
        old = CertificateOptions(
            privateKey=edge.identity.privateKey.original,
            certificate=edge.identity.original,
            trustRoot=Certificate.loadPEM(_MAIN.caPEM()),
            insecurelyLowerMinimumTo=TLSVersion.TLSv1_1,
            lowerMaximumSecurityTo=TLSVersion.TLSv1_1,
        )
        # OpenSSL 3 only does TLS 1.1 at security level 0.
        old.getContext().set_cipher_list(b"DEFAULT:@SECLEVEL=0")
        server, client = await self._connect(self.origin(), old)
        self.assertRefused(server, client)
        self.assertFalse(client.handshook)
        self.assertIn("unsupported protocol", self.tlsError(server))
