"""
Certificates for a Railgun deployment: one private CA, an origin-role (TLS
server) certificate and an edge (TLS client) certificate, all signed by it.

This module only makes and writes certificates; it knows nothing of Twisted's
TLS machinery (see L{railgun.tls} for that) and needs no reactor.

Keys are ECDSA on P-256: generating one takes well under a millisecond (RSA
2048 takes tens to hundreds), so tests and C{railgun certs} stay instant; the
signatures and keys are small; P-256 gives about 128-bit security, above
RSA 2048's ~112; and every TLS 1.2 and 1.3 stack supports ECDSA P-256 with
SHA-256.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import secrets
import tempfile
from collections.abc import Sequence

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: The common name of every edge (client) certificate this module issues.
EDGE_COMMON_NAME = "railgun-edge"

#: File names inside a deployment directory.
CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
ORIGIN_FILE = "origin.pem"
EDGE_FILE = "edge.pem"

#: Upper bound on C{days}: a hundred years is already absurd for a leaf
#: certificate; beyond it, datetimes overflow.
MAX_DAYS = 36500

_ORGANIZATION = "Railgun for Twisted"
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# Tolerate small clock differences between the machine that makes the
# certificates and the machines that check them.
_BACKDATE = datetime.timedelta(hours=1)

OriginName = x509.DNSName | x509.IPAddress


class DeploymentError(Exception):
    """
    Certificates could not be made or written: a bad origin name or
    lifetime, a file that exists already, or a file system error.  The
    message is meant for a human and names the offending value or file.
    """


@frozen
class Deployment:
    """
    A complete set of credentials for one deployment, in memory.

    @ivar caCertificate: The self-signed CA certificate both roles trust.
    @ivar caKey: The CA's private key; only needed to issue more certificates.
    @ivar originCertificate: The origin role's (server) certificate.
    @ivar originKey: Its private key.
    @ivar edgeCertificate: The edge's (client) certificate.
    @ivar edgeKey: Its private key.
    """

    caCertificate: x509.Certificate
    caKey: ec.EllipticCurvePrivateKey
    originCertificate: x509.Certificate
    originKey: ec.EllipticCurvePrivateKey
    edgeCertificate: x509.Certificate
    edgeKey: ec.EllipticCurvePrivateKey

    def caPEM(self) -> bytes:
        """
        @return: The CA certificate, PEM-encoded (the content of C{ca.pem}).
        """
        return _certificatePEM(self.caCertificate)

    def caKeyPEM(self) -> bytes:
        """
        @return: The CA private key, PEM-encoded PKCS#8 (C{ca-key.pem}).
        """
        return _keyPEM(self.caKey)

    def originPEM(self) -> bytes:
        """
        @return: The origin certificate followed by its key (C{origin.pem}).
        """
        return _certificatePEM(self.originCertificate) + _keyPEM(self.originKey)

    def edgePEM(self) -> bytes:
        """
        @return: The edge certificate followed by its key (C{edge.pem}).
        """
        return _certificatePEM(self.edgeCertificate) + _keyPEM(self.edgeKey)


def _certificatePEM(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _keyPEM(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def parseOriginName(originName: str) -> OriginName:
    """
    Turn the name the edge will dial into the subject alternative name the
    origin certificate must carry.

    @param originName: A DNS name (ASCII; give internationalised names in
        their C{xn--} form) or an IPv4/IPv6 address literal.

    @return: An L{x509.IPAddress} for an address literal, else an
        L{x509.DNSName} in lower case without a trailing dot.

    @raise DeploymentError: If it is neither a valid DNS name nor an address.
    """
    try:
        return x509.IPAddress(ipaddress.ip_address(originName))
    except ValueError:
        pass
    name = originName.lower()
    if name.endswith("."):
        name = name[:-1]
    labels = name.split(".")
    if (
        not name
        or len(name) > 253
        or not name.isascii()
        or not all(_LABEL.match(label) for label in labels)
    ):
        raise DeploymentError(
            f"invalid origin name {originName!r}: expected a DNS name (letters, "
            "digits, hyphens; internationalised names in xn-- form) or an IP address"
        )
    return x509.DNSName(name)


def _name(commonName: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION),
            # X.520 caps a common name at 64 characters; the SAN is what
            # verifiers check, the CN is only for humans.
            x509.NameAttribute(NameOID.COMMON_NAME, commonName[:64]),
        ]
    )


def _newKey() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _leafKeyUsage() -> x509.KeyUsage:
    # ECDHE key exchange only needs signatures from the certificate's key.
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _issueLeaf(
    caCertificate: x509.Certificate,
    caKey: ec.EllipticCurvePrivateKey,
    commonName: str,
    purpose: x509.ObjectIdentifier,
    alternativeNames: Sequence[x509.GeneralName],
    notBefore: datetime.datetime,
    notAfter: datetime.datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _newKey()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(commonName))
        .issuer_name(caCertificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(notBefore)
        .not_valid_after(notAfter)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(_leafKeyUsage(), True)
        .add_extension(x509.ExtendedKeyUsage([purpose]), False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(caKey.public_key()),
            False,
        )
    )
    if alternativeNames:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(list(alternativeNames)), False
        )
    return builder.sign(caKey, hashes.SHA256()), key


def generateDeployment(
    originName: str = "localhost",
    days: int = 3650,
    *,
    now: datetime.datetime | None = None,
) -> Deployment:
    """
    Make a fresh CA and the origin and edge certificates it signs, in memory.

    The CA is limited to signing leaf certificates (C{pathlen:0}).  The origin
    certificate is only good for TLS servers (EKU serverAuth) and names
    C{originName} in its subject alternative name; the edge certificate is
    only good for TLS clients (EKU clientAuth), so neither can stand in for
    the other.  Each CA gets a random serial in its name, so certificates from
    two deployments are never confused.

    @param originName: The DNS name or IP address the edge dials to reach the
        origin role; the edge checks the origin certificate against it.
    @param days: How long all three certificates are valid, from now.
    @param now: The current time (for tests); defaults to the system clock.

    @return: The new L{Deployment}.

    @raise DeploymentError: For a bad C{originName} or C{days}.
    """
    san = parseOriginName(originName)
    if (
        isinstance(days, bool)
        or not isinstance(days, int)
        or not (1 <= days <= MAX_DAYS)
    ):
        raise DeploymentError(
            f"invalid lifetime {days!r}: days must be between 1 and {MAX_DAYS}"
        )
    if now is None:
        now = datetime.datetime.now(datetime.UTC)
    notBefore = now - _BACKDATE
    notAfter = now + datetime.timedelta(days=days)

    caKey = _newKey()
    caName = _name(f"Railgun CA {secrets.token_hex(8)}")
    caCertificate = (
        x509.CertificateBuilder()
        .subject_name(caName)
        .issuer_name(caName)
        .public_key(caKey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(notBefore)
        .not_valid_after(notAfter)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(caKey.public_key()), False
        )
        .sign(caKey, hashes.SHA256())
    )
    if isinstance(san, x509.DNSName):
        originCommonName = san.value
    else:
        originCommonName = str(san.value)
    originCertificate, originKey = _issueLeaf(
        caCertificate,
        caKey,
        originCommonName,
        ExtendedKeyUsageOID.SERVER_AUTH,
        [san],
        notBefore,
        notAfter,
    )
    edgeCertificate, edgeKey = _issueLeaf(
        caCertificate,
        caKey,
        EDGE_COMMON_NAME,
        ExtendedKeyUsageOID.CLIENT_AUTH,
        # Strict verifiers (RFC 5280 profiles such as cryptography's) want a
        # subject alternative name even in a client certificate.
        [x509.DNSName(EDGE_COMMON_NAME)],
        notBefore,
        notAfter,
    )
    return Deployment(
        caCertificate=caCertificate,
        caKey=caKey,
        originCertificate=originCertificate,
        originKey=originKey,
        edgeCertificate=edgeCertificate,
        edgeKey=edgeKey,
    )


def _writeNew(path: str, content: bytes, mode: int) -> None:
    # O_EXCL: a file that appeared since the existence check is still never
    # overwritten.  The mode is applied at creation, so a key is never
    # readable by others, not even for an instant.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have removed bits we want
        with os.fdopen(fd, "wb", closefd=False) as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(path)
        raise
    finally:
        os.close(fd)


def _replace(path: str, content: bytes, mode: int) -> None:
    # Write beside the target, then rename: readers see the old file or the
    # new one, never a mix, and a key keeps mode 0600 throughout (mkstemp
    # creates files 0600).
    directory = os.path.dirname(path) or "."
    fd, temporary = tempfile.mkstemp(prefix=".railgun-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def writeDeployment(
    deployment: Deployment, directory: str | os.PathLike[str], force: bool = False
) -> list[str]:
    """
    Write a deployment's files into C{directory} (created, mode 0700, if
    missing): C{ca.pem} (mode 0644), and C{ca-key.pem}, C{origin.pem} and
    C{edge.pem}, which hold private keys (mode 0600).

    @param deployment: What to write.
    @param directory: Where to write it.
    @param force: Replace existing files instead of refusing.

    @return: The paths written, in the order above.

    @raise DeploymentError: If any of the files exists and C{force} is false
        (then nothing is written), or on any file system error.
    """
    directory = os.fspath(directory)
    files = [
        (CA_FILE, deployment.caPEM(), 0o644),
        (CA_KEY_FILE, deployment.caKeyPEM(), 0o600),
        (ORIGIN_FILE, deployment.originPEM(), 0o600),
        (EDGE_FILE, deployment.edgePEM(), 0o600),
    ]
    paths = [os.path.join(directory, name) for name, _, _ in files]
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as e:
        raise DeploymentError(
            f"cannot create directory {directory}: {e.strerror or e}"
        ) from e
    if not os.path.isdir(directory):
        raise DeploymentError(f"{directory} exists and is not a directory")
    if not force:
        existing = [path for path in paths if os.path.lexists(path)]
        if existing:
            raise DeploymentError(
                "refusing to overwrite existing "
                + ", ".join(existing)
                + " (use --force to replace them)"
            )
    created: list[str] = []
    for path, (_, content, mode) in zip(paths, files, strict=True):
        try:
            if force:
                _replace(path, content, mode)
            else:
                _writeNew(path, content, mode)
                created.append(path)
        except OSError as e:
            # A half-written deployment (say, a CA key without the
            # certificates it signed) is only confusing: take back what this
            # call created.  With force, the old files are already gone.
            for done in created:
                try:
                    os.unlink(done)
                except OSError:
                    pass
            if isinstance(e, FileExistsError):
                raise DeploymentError(
                    f"refusing to overwrite existing {path} (use --force to replace it)"
                ) from e
            raise DeploymentError(f"cannot write {path}: {e.strerror or e}") from e
    return paths


__all__ = [
    "CA_FILE",
    "CA_KEY_FILE",
    "EDGE_COMMON_NAME",
    "EDGE_FILE",
    "MAX_DAYS",
    "ORIGIN_FILE",
    "Deployment",
    "DeploymentError",
    "generateDeployment",
    "parseOriginName",
    "writeDeployment",
]
