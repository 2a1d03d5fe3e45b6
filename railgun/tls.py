"""
Mutual TLS for the link between the edge and the origin role.

The origin role accepts a link only from a client that presents a
certificate issued by the deployment's CA for TLS clients (EKU clientAuth);
the edge dials only an origin role whose certificate is issued by that CA for
TLS servers (EKU serverAuth) and names the host it dialled (checked by
C{service_identity}).  Both sides refuse anything older than TLS 1.2.

Twisted and OpenSSL do the verification: this module loads and checks the
credentials up front, so that a wrong file is a clear error at startup rather
than a puzzling handshake failure later, and builds the connection creators
that C{listenSSL}, C{connectSSL} and the SSL endpoints take.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import stat
from collections.abc import Sequence
from typing import Any, Literal

from attrs import frozen
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import (
    PrivateKeyTypes,
    PublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID
from OpenSSL import crypto
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
)
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    KeyPair,
    PrivateCertificate,
    TLSVersion,
    optionsForClientTLS,
    trustRootFromCertificates,
)
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from zope.interface import implementer

from railgun._compat.tls import TLS_INTERNALS, BatchedTLSProtocol
from railgun.certs import CA_FILE, EDGE_FILE, ORIGIN_FILE, Deployment

_log = Logger()

Role = Literal["origin", "edge"]

#: The oldest protocol version either side accepts.
MINIMUM_TLS_VERSION = TLSVersion.TLSv1_2

#: Credentials that expire sooner than this are loaded with a warning.
EXPIRY_WARNING = datetime.timedelta(days=30)

# A PEM file with a certificate and a key is a few kilobytes; refuse to read
# an arbitrarily large file that was named by mistake.
_MAX_FILE_SIZE = 1024 * 1024

_IDENTITY_FILES: dict[str, str] = {"origin": ORIGIN_FILE, "edge": EDGE_FILE}
_PURPOSES: dict[str, tuple[x509.ObjectIdentifier, str, str]] = {
    "origin": (ExtendedKeyUsageOID.SERVER_AUTH, "serverAuth", "a TLS server"),
    "edge": (ExtendedKeyUsageOID.CLIENT_AUTH, "clientAuth", "a TLS client"),
}


class CredentialsError(Exception):
    """
    A role's credentials are missing, unreadable or inconsistent.  The message
    is meant for a human and names the file (or source) at fault.
    """


@frozen
class Credentials:
    """
    What one role needs for mutual TLS.

    @ivar authority: The CA certificate that must have issued the peer's
        certificate.
    @ivar identity: This role's own certificate and private key.
    @ivar additionalAuthorities: Further CA certificates that are trusted as
        well (from extra certificates in C{ca.pem}), so that a new CA can be
        rolled out before the old one is withdrawn.
    """

    authority: Certificate
    identity: PrivateCertificate
    additionalAuthorities: tuple[Certificate, ...] = ()

    def authorities(self) -> list[Certificate]:
        """
        @return: Every CA certificate this role trusts, L{authority} first.
        """
        return [self.authority, *self.additionalAuthorities]

    def fingerprint(self) -> bytes:
        """
        @return: a digest of every certificate and the key: equal for
            credentials read again from unchanged files (a reload keeps the
            links made with them), different when any was replaced.
        """
        digest = hashlib.sha256()
        for certificate in self.authorities():
            digest.update(certificate.dump())
        digest.update(self.identity.dump())
        digest.update(self.identity.privateKey.dump())
        return digest.digest()


def _checkRole(role: str) -> None:
    if role not in _IDENTITY_FILES:
        raise CredentialsError(f"unknown role {role!r}: expected 'origin' or 'edge'")


def _readFile(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_FILE_SIZE + 1)
    except FileNotFoundError as e:
        raise CredentialsError(
            f"{path}: missing (create credentials with 'railgun certs DIR')"
        ) from e
    except OSError as e:
        raise CredentialsError(f"{path}: cannot read: {e.strerror or e}") from e
    if len(data) > _MAX_FILE_SIZE:
        raise CredentialsError(
            f"{path}: larger than {_MAX_FILE_SIZE} bytes; not a PEM credentials file"
        )
    return data


def _warnIfExposed(path: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        _log.warn(
            "Private key file {path} is accessible to group or others "
            "(mode {mode}); run 'chmod 600 {path}'",
            path=path,
            mode=oct(stat.S_IMODE(mode)),
        )


def _parseAuthorities(data: bytes, source: str) -> list[x509.Certificate]:
    try:
        authorities = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise CredentialsError(f"{source}: no PEM certificate found") from e
    for authority in authorities:
        try:
            constraints = authority.extensions.get_extension_for_class(
                x509.BasicConstraints
            ).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise CredentialsError(
                f"{source}: {authority.subject.rfc4514_string()} is not a CA "
                "certificate (is this an origin or edge certificate?)"
            )
    return authorities


def _parseIdentity(
    data: bytes, source: str
) -> tuple[x509.Certificate, PrivateKeyTypes]:
    try:
        certificate = x509.load_pem_x509_certificates(data)[0]
    except ValueError as e:
        raise CredentialsError(f"{source}: no PEM certificate found") from e
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as e:
        raise CredentialsError(
            f"{source}: the private key is encrypted; an unencrypted key is needed"
        ) from e
    except (ValueError, UnsupportedAlgorithm) as e:
        raise CredentialsError(
            f"{source}: no usable private key found (the file must hold the "
            "certificate followed by its key)"
        ) from e

    def spki(publicKey: PublicKeyTypes) -> bytes:
        return publicKey.public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )

    if spki(key.public_key()) != spki(certificate.public_key()):
        raise CredentialsError(
            f"{source}: the private key does not match the certificate"
        )
    return certificate, key


def _checkIdentity(
    certificate: x509.Certificate,
    authorities: Sequence[x509.Certificate],
    role: str,
    source: str,
    authoritySource: str,
    now: datetime.datetime,
) -> None:
    for authority in authorities:
        try:
            certificate.verify_directly_issued_by(authority)
        except (ValueError, TypeError, InvalidSignature):
            continue
        break
    else:
        raise CredentialsError(
            f"{source}: certificate {certificate.subject.rfc4514_string()} was not "
            f"issued by the CA in {authoritySource}"
        )

    purpose, purposeName, purposeText = _PURPOSES[role]
    try:
        usages = certificate.extensions.get_extension_for_class(
            x509.ExtendedKeyUsage
        ).value
    except x509.ExtensionNotFound:
        # No EKU means any purpose, for OpenSSL as for RFC 5280.
        usages = None
    if usages is not None and purpose not in usages:
        other = "edge" if role == "origin" else "origin"
        raise CredentialsError(
            f"{source}: certificate is not for {purposeText} (its extended key "
            f"usage lacks {purposeName}); is this the {other} certificate?"
        )

    notBefore = certificate.not_valid_before_utc
    notAfter = certificate.not_valid_after_utc
    if now < notBefore:
        raise CredentialsError(
            f"{source}: certificate is not valid until {notBefore.isoformat()} "
            "(check the clock)"
        )
    if now >= notAfter:
        raise CredentialsError(
            f"{source}: certificate expired at {notAfter.isoformat()}"
        )
    if notAfter - now < EXPIRY_WARNING:
        _log.warn(
            "Certificate in {source} expires at {notAfter}; issue a new one",
            source=source,
            notAfter=notAfter.isoformat(),
        )


def _build(
    authorities: Sequence[x509.Certificate],
    certificate: x509.Certificate,
    key: PrivateKeyTypes,
    source: str,
) -> Credentials:
    twistedAuthorities = [
        Certificate(crypto.X509.from_cryptography(authority))
        for authority in authorities
    ]
    try:
        keyPair = KeyPair(crypto.PKey.from_cryptography_key(key))  # type: ignore[arg-type]
    except (TypeError, ValueError) as e:
        raise CredentialsError(
            f"{source}: unsupported private key type {type(key).__name__}"
        ) from e
    identity = PrivateCertificate.fromCertificateAndKeyPair(
        Certificate(crypto.X509.from_cryptography(certificate)), keyPair
    )
    return Credentials(
        authority=twistedAuthorities[0],
        identity=identity,
        additionalAuthorities=tuple(twistedAuthorities[1:]),
    )


def loadCredentials(
    directory: str | os.PathLike[str],
    role: Role,
    *,
    now: datetime.datetime | None = None,
) -> Credentials:
    """
    Load and check one role's credentials from a directory written by
    C{railgun certs}: C{ca.pem} and C{origin.pem} or C{edge.pem}.

    Beyond parsing, it checks that the key matches the certificate, that the
    certificate was issued by (one of) the CA(s) in C{ca.pem}, that it is meant
    for this role (EKU) and that it is valid now.  It logs a warning if the
    key file is accessible to group or others, or if the certificate expires
    within L{EXPIRY_WARNING}.

    @param directory: The credentials directory.
    @param role: C{"origin"} (the TLS server) or C{"edge"} (the TLS client).
    @param now: The current time (for tests); defaults to the system clock.

    @return: The role's L{Credentials}.

    @raise CredentialsError: Naming the file at fault, if anything is wrong.
    """
    _checkRole(role)
    if now is None:
        now = datetime.datetime.now(datetime.UTC)
    directory = os.fspath(directory)
    caPath = os.path.join(directory, CA_FILE)
    identityPath = os.path.join(directory, _IDENTITY_FILES[role])
    authorities = _parseAuthorities(_readFile(caPath), caPath)
    identityData = _readFile(identityPath)
    _warnIfExposed(identityPath)
    certificate, key = _parseIdentity(identityData, identityPath)
    _checkIdentity(certificate, authorities, role, identityPath, caPath, now)
    return _build(authorities, certificate, key, identityPath)


def credentialsFromDeployment(
    deployment: Deployment,
    role: Role,
    *,
    now: datetime.datetime | None = None,
) -> Credentials:
    """
    Build one role's credentials from an in-memory deployment, with the same
    checks as L{loadCredentials} (used by C{--role both} and by tests).

    @param deployment: Made by L{railgun.certs.generateDeployment}.
    @param role: C{"origin"} or C{"edge"}.
    @param now: The current time (for tests); defaults to the system clock.

    @return: The role's L{Credentials}.

    @raise CredentialsError: If the deployment is inconsistent.
    """
    _checkRole(role)
    if now is None:
        now = datetime.datetime.now(datetime.UTC)
    if role == "origin":
        certificate, key = deployment.originCertificate, deployment.originKey
    else:
        certificate, key = deployment.edgeCertificate, deployment.edgeKey
    source = f"in-memory {role} certificate"
    authorities = [deployment.caCertificate]
    _checkIdentity(certificate, authorities, role, source, "in-memory CA", now)
    return _build(authorities, certificate, key, source)


def serverOptions(credentials: Credentials) -> IOpenSSLServerConnectionCreator:
    """
    TLS options for the origin role's listening side.

    A client must present a certificate that chains to one of the
    credentials' CAs, or the handshake fails.  OpenSSL checks the client
    certificate for the TLS client purpose (an extended key usage, if
    present, must include clientAuth), so the origin certificate, issued by
    the same CA for serverAuth only, is refused as a client certificate.

    @param credentials: The origin role's credentials.

    @return: A server connection creator for C{listenSSL} or
        L{twisted.internet.endpoints.SSL4ServerEndpoint}.
    """
    return CertificateOptions(
        privateKey=credentials.identity.privateKey.original,
        certificate=credentials.identity.original,
        trustRoot=trustRootFromCertificates(credentials.authorities()),
        raiseMinimumTo=MINIMUM_TLS_VERSION,
    )


def clientOptions(
    credentials: Credentials, hostname: str
) -> IOpenSSLClientConnectionCreator:
    """
    TLS options for the edge's dialing side.

    The origin role's certificate must chain to one of the credentials' CAs,
    be meant for TLS servers, and name C{hostname} (a DNS name, or an IP
    address, in a subject alternative name; C{service_identity} checks it).
    The edge presents its own certificate.

    @param credentials: The edge's credentials.
    @param hostname: The name or address the edge dials, as in its
        configuration; an IPv6 literal may be given in brackets.

    @return: A client connection creator for C{connectSSL} or
        L{twisted.internet.endpoints.SSL4ClientEndpoint}.
    """
    if hostname.startswith("[") and hostname.endswith("]"):
        hostname = hostname[1:-1]
    return optionsForClientTLS(
        hostname,
        trustRoot=trustRootFromCertificates(credentials.authorities()),
        clientCertificate=credentials.identity,
        extraCertificateOptions={"raiseMinimumTo": MINIMUM_TLS_VERSION},
    )


def peerIdentity(transport: object) -> str | None:
    """
    Describe the certificate the peer presented on a TLS transport, for logs.

    @param transport: A connected transport, normally a protocol's
        C{transport}.

    @return: The peer certificate's subject as an RFC 4514 string (for
        example C{"CN=railgun-edge,O=Railgun for Twisted"}), or L{None} if the
        transport is not TLS, the handshake has not finished, or the peer sent
        no certificate.
    """
    getPeerCertificate = getattr(transport, "getPeerCertificate", None)
    if getPeerCertificate is None:
        return None
    try:
        peer = getPeerCertificate()
    except Exception:
        # Before the handshake, or on a transport torn down under us, there
        # is nothing to report; a log line must not fail because of it.
        return None
    if peer is None:
        return None
    if isinstance(peer, crypto.X509):
        peer = peer.to_cryptography()
    if not isinstance(peer, x509.Certificate):
        return None
    return peer.subject.rfc4514_string()


#: The link's TLS transport (see L{railgun._compat.tls.BatchedTLSProtocol},
#: which builds on Twisted's private API).
LinkTLSProtocol = BatchedTLSProtocol

#: What L{LinkTLSProtocol} relies on in Twisted's TLSMemoryBIOProtocol
#: besides its public interface.
_TLS_INTERNALS = TLS_INTERNALS


def batchedTLSAvailable() -> bool:
    """
    @return: whether this Twisted's TLS transport has the internals
        L{LinkTLSProtocol} builds on.
    """
    return all(hasattr(TLSMemoryBIOProtocol, name) for name in _TLS_INTERNALS)


class LinkTLSFactory(TLSMemoryBIOFactory):
    """
    A L{TLSMemoryBIOFactory} whose connections are L{LinkTLSProtocol}s (or
    Twisted's own transport, should this Twisted lack what it needs): give
    it to the origin role's link listener.
    """

    protocol = (
        LinkTLSProtocol if batchedTLSAvailable() else TLSMemoryBIOFactory.protocol
    )

    def buildProtocol(self, addr: Any) -> Any:
        # Twisted's WrappingFactory wraps whatever its factory returns,
        # None included, and the connection then fails inside
        # makeConnection. A factory refusing a connection (the edge's link
        # pool while it stops) refuses it here, so the endpoint fails the
        # attempt cleanly (NoProtocol) and the socket is closed.
        wrapped = self.wrappedFactory.buildProtocol(addr)
        if wrapped is None:
            return None
        return self.protocol(self, wrapped)


@implementer(IStreamClientEndpoint)
class _LinkTLSClientEndpoint:
    def __init__(
        self,
        connectionCreator: IOpenSSLClientConnectionCreator,
        wrappedEndpoint: IStreamClientEndpoint,
    ) -> None:
        self._connectionCreator = connectionCreator
        self._wrappedEndpoint = wrappedEndpoint

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        factory = LinkTLSFactory(self._connectionCreator, True, protocolFactory)
        connected: Deferred[Any] = self._wrappedEndpoint.connect(factory)
        return connected.addCallback(_wrappedProtocol)


def _wrappedProtocol(protocol: Any) -> IProtocol:
    return protocol.wrappedProtocol  # type: ignore[no-any-return]


def wrapLinkClientTLS(
    connectionCreator: IOpenSSLClientConnectionCreator,
    wrappedEndpoint: IStreamClientEndpoint,
) -> IStreamClientEndpoint:
    """
    Like L{twisted.internet.endpoints.wrapClientTLS}, with L{LinkTLSProtocol}
    connections: for the edge's link dialers.

    @param connectionCreator: from L{clientOptions}.
    @param wrappedEndpoint: the TCP endpoint to dial.
    @return: an endpoint whose C{connect} fires with the application protocol.
    """
    return _LinkTLSClientEndpoint(connectionCreator, wrappedEndpoint)


__all__ = [
    "EXPIRY_WARNING",
    "MINIMUM_TLS_VERSION",
    "Credentials",
    "CredentialsError",
    "LinkTLSFactory",
    "LinkTLSProtocol",
    "Role",
    "batchedTLSAvailable",
    "clientOptions",
    "credentialsFromDeployment",
    "loadCredentials",
    "peerIdentity",
    "serverOptions",
    "wrapLinkClientTLS",
]
