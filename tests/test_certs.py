"""
Tests for L{railgun.certs} and the C{railgun certs} command (L{railgun.cli}).
"""

from __future__ import annotations

import datetime
import io
import ipaddress
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from twisted.trial.unittest import SynchronousTestCase

from railgun import certs
from railgun.certs import (
    CA_FILE,
    CA_KEY_FILE,
    EDGE_COMMON_NAME,
    EDGE_FILE,
    ORIGIN_FILE,
    Deployment,
    DeploymentError,
    generateDeployment,
    parseOriginName,
    writeDeployment,
)
from railgun.cli import main

_ALL_FILES = (CA_FILE, CA_KEY_FILE, ORIGIN_FILE, EDGE_FILE)
_DEPLOYMENT = generateDeployment("origin.example")


def _serverVerifier(
    deployment: Deployment, name: x509.DNSName | x509.IPAddress
) -> object:
    return (
        PolicyBuilder()
        .store(Store([deployment.caCertificate]))
        .build_server_verifier(name)
    )


def _clientVerifier(deployment: Deployment) -> object:
    return (
        PolicyBuilder().store(Store([deployment.caCertificate])).build_client_verifier()
    )


def _extension(certificate: x509.Certificate, kind: type) -> object:
    return certificate.extensions.get_extension_for_class(kind).value


def _makeDirectory(case: SynchronousTestCase) -> str:
    """
    Make a fresh directory for one test, removed after it.
    """
    directory = tempfile.mkdtemp(prefix="railgun-certs-test-")
    case.addCleanup(shutil.rmtree, directory)
    return directory


class GenerateDeploymentTests(SynchronousTestCase):
    """
    Tests for L{generateDeployment}: the chain verifies, and each certificate
    is good for exactly its purpose.
    """

    def test_originVerifiesAsServer(self) -> None:
        """
        The origin certificate verifies against the CA, by an independent
        RFC 5280 verifier, as a TLS server certificate for the origin name.
        """
        chain = _serverVerifier(_DEPLOYMENT, x509.DNSName("origin.example")).verify(  # type: ignore[attr-defined]
            _DEPLOYMENT.originCertificate, []
        )
        self.assertEqual(
            chain, [_DEPLOYMENT.originCertificate, _DEPLOYMENT.caCertificate]
        )

    def test_edgeVerifiesAsClient(self) -> None:
        """
        The edge certificate verifies against the CA as a TLS client
        certificate.
        """
        verified = _clientVerifier(_DEPLOYMENT).verify(  # type: ignore[attr-defined]
            _DEPLOYMENT.edgeCertificate, []
        )
        self.assertEqual(
            verified.chain, [_DEPLOYMENT.edgeCertificate, _DEPLOYMENT.caCertificate]
        )

    def test_purposesNotInterchangeable(self) -> None:
        """
        The origin certificate does not verify as a client certificate, nor
        the edge certificate as a server certificate.
        """
        with self.assertRaises(VerificationError):
            _clientVerifier(_DEPLOYMENT).verify(  # type: ignore[attr-defined]
                _DEPLOYMENT.originCertificate, []
            )
        with self.assertRaises(VerificationError):
            _serverVerifier(_DEPLOYMENT, x509.DNSName(EDGE_COMMON_NAME)).verify(  # type: ignore[attr-defined]
                _DEPLOYMENT.edgeCertificate, []
            )

    def test_otherNameRefused(self) -> None:
        """
        The origin certificate does not verify for another name.
        """
        with self.assertRaises(VerificationError):
            _serverVerifier(_DEPLOYMENT, x509.DNSName("other.example")).verify(  # type: ignore[attr-defined]
                _DEPLOYMENT.originCertificate, []
            )

    def test_otherCARefused(self) -> None:
        """
        Two deployments' CAs are distinct: neither trusts the other's leaves.
        """
        other = generateDeployment("origin.example")
        self.assertNotEqual(
            other.caCertificate.subject, _DEPLOYMENT.caCertificate.subject
        )
        with self.assertRaises(VerificationError):
            _serverVerifier(other, x509.DNSName("origin.example")).verify(  # type: ignore[attr-defined]
                _DEPLOYMENT.originCertificate, []
            )

    def test_extensions(self) -> None:
        """
        Basic constraints, key usages, extended key usages and names are set
        as the trust model needs.
        """
        ca = _DEPLOYMENT.caCertificate
        constraints = _extension(ca, x509.BasicConstraints)
        self.assertEqual((constraints.ca, constraints.path_length), (True, 0))  # type: ignore[attr-defined]
        usage = _extension(ca, x509.KeyUsage)
        self.assertTrue(usage.key_cert_sign and usage.crl_sign)  # type: ignore[attr-defined]
        self.assertTrue(
            ca.extensions.get_extension_for_class(x509.BasicConstraints).critical
        )

        origin = _DEPLOYMENT.originCertificate
        edge = _DEPLOYMENT.edgeCertificate
        for leaf in (origin, edge):
            self.assertFalse(_extension(leaf, x509.BasicConstraints).ca)  # type: ignore[attr-defined]
            usage = _extension(leaf, x509.KeyUsage)
            self.assertTrue(usage.digital_signature)  # type: ignore[attr-defined]
            self.assertFalse(usage.key_cert_sign)  # type: ignore[attr-defined]
            self.assertEqual(leaf.issuer, ca.subject)
        self.assertEqual(
            list(_extension(origin, x509.ExtendedKeyUsage)),  # type: ignore[call-overload]
            [ExtendedKeyUsageOID.SERVER_AUTH],
        )
        self.assertEqual(
            list(_extension(edge, x509.ExtendedKeyUsage)),  # type: ignore[call-overload]
            [ExtendedKeyUsageOID.CLIENT_AUTH],
        )
        self.assertEqual(
            list(_extension(origin, x509.SubjectAlternativeName)),  # type: ignore[call-overload]
            [x509.DNSName("origin.example")],
        )
        self.assertEqual(
            edge.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,
            EDGE_COMMON_NAME,
        )

    def test_keys(self) -> None:
        """
        Every key is P-256 and belongs to its certificate.
        """
        pairs = [
            (_DEPLOYMENT.caCertificate, _DEPLOYMENT.caKey),
            (_DEPLOYMENT.originCertificate, _DEPLOYMENT.originKey),
            (_DEPLOYMENT.edgeCertificate, _DEPLOYMENT.edgeKey),
        ]
        for certificate, key in pairs:
            self.assertIsInstance(key.curve, ec.SECP256R1)
            self.assertEqual(certificate.public_key(), key.public_key())

    def test_ipAddressOriginName(self) -> None:
        """
        An IP address (v4 or v6) becomes an IP-address SAN, which verifies for
        that address and not as a DNS name.
        """
        for text in ("127.0.0.1", "::1"):
            deployment = generateDeployment(text)
            address = ipaddress.ip_address(text)
            self.assertEqual(
                list(
                    _extension(
                        deployment.originCertificate, x509.SubjectAlternativeName
                    )
                ),  # type: ignore[call-overload]
                [x509.IPAddress(address)],
            )
            _serverVerifier(deployment, x509.IPAddress(address)).verify(  # type: ignore[attr-defined]
                deployment.originCertificate, []
            )

    def test_validity(self) -> None:
        """
        Certificates are valid from shortly before now for the given number
        of days.
        """
        now = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
        deployment = generateDeployment(days=10, now=now)
        for certificate in (
            deployment.caCertificate,
            deployment.originCertificate,
            deployment.edgeCertificate,
        ):
            self.assertLess(certificate.not_valid_before_utc, now)
            self.assertGreater(
                certificate.not_valid_before_utc, now - datetime.timedelta(days=1)
            )
            self.assertEqual(
                certificate.not_valid_after_utc, now + datetime.timedelta(days=10)
            )

    def test_badDays(self) -> None:
        """
        A lifetime that is not a positive, sane number of days is refused.
        """
        for days in (0, -1, 100000, True, 1.5):
            with self.assertRaises(DeploymentError):
                generateDeployment(days=days)  # type: ignore[arg-type]

    def test_originNames(self) -> None:
        """
        DNS names are normalised; anything that is neither a DNS name nor an
        IP address is refused.
        """
        self.assertEqual(
            parseOriginName("Origin.Example."), x509.DNSName("origin.example")
        )
        self.assertEqual(
            parseOriginName("xn--bcher-kva.example").value, "xn--bcher-kva.example"
        )
        for bad in (
            "",
            ".",
            "a b",
            "bücher.example",
            "-a.example",
            "a..b",
            "a_b",
            "x" * 64,
        ):
            with self.assertRaises(DeploymentError):
                parseOriginName(bad)
            with self.assertRaises(DeploymentError):
                generateDeployment(bad)

    def test_pemRoundTrip(self) -> None:
        """
        The PEM forms hold what the deployment holds: identity files carry
        the certificate then its key.
        """
        self.assertEqual(
            x509.load_pem_x509_certificate(_DEPLOYMENT.caPEM()),
            _DEPLOYMENT.caCertificate,
        )
        for pem, certificate, key in (
            (
                _DEPLOYMENT.originPEM(),
                _DEPLOYMENT.originCertificate,
                _DEPLOYMENT.originKey,
            ),
            (_DEPLOYMENT.edgePEM(), _DEPLOYMENT.edgeCertificate, _DEPLOYMENT.edgeKey),
            (_DEPLOYMENT.caKeyPEM(), None, _DEPLOYMENT.caKey),
        ):
            if certificate is not None:
                self.assertEqual(x509.load_pem_x509_certificates(pem), [certificate])
            loaded = serialization.load_pem_private_key(pem, None)
            self.assertEqual(loaded.public_key(), key.public_key())


class WriteDeploymentTests(SynchronousTestCase):
    """
    Tests for L{writeDeployment}.
    """

    def mode(self, path: str) -> int:
        return stat.S_IMODE(os.stat(path).st_mode)

    def test_writesFilesWithModes(self) -> None:
        """
        The four files are written, keys readable only by their owner, in a
        directory created private.
        """
        directory = os.path.join(_makeDirectory(self), "new")
        written = writeDeployment(_DEPLOYMENT, directory)
        self.assertEqual(
            written, [os.path.join(directory, name) for name in _ALL_FILES]
        )
        self.assertEqual(self.mode(directory), 0o700)
        self.assertEqual(self.mode(written[0]), 0o644)
        for path in written[1:]:
            self.assertEqual(self.mode(path), 0o600, path)
        with open(written[0], "rb") as f:
            self.assertEqual(f.read(), _DEPLOYMENT.caPEM())
        with open(written[1], "rb") as f:
            self.assertEqual(f.read(), _DEPLOYMENT.caKeyPEM())
        with open(written[2], "rb") as f:
            self.assertEqual(f.read(), _DEPLOYMENT.originPEM())
        with open(written[3], "rb") as f:
            self.assertEqual(f.read(), _DEPLOYMENT.edgePEM())

    def test_modesDespiteUmask(self) -> None:
        """
        A permissive or strict umask does not change the modes.
        """
        for umask in (0o000, 0o077):
            directory = os.path.join(_makeDirectory(self), "d")
            old = os.umask(umask)
            try:
                written = writeDeployment(_DEPLOYMENT, directory)
            finally:
                os.umask(old)
            self.assertEqual(
                [self.mode(path) for path in written], [0o644, 0o600, 0o600, 0o600]
            )

    def test_refusesOverwrite(self) -> None:
        """
        If any file exists, nothing is written and the error names it.
        """
        directory = _makeDirectory(self)
        existing = os.path.join(directory, EDGE_FILE)
        with open(existing, "wb") as f:
            f.write(b"precious")
        with self.assertRaises(DeploymentError) as caught:
            writeDeployment(_DEPLOYMENT, directory)
        self.assertIn(existing, str(caught.exception))
        self.assertIn("--force", str(caught.exception))
        self.assertEqual(os.listdir(directory), [EDGE_FILE])
        with open(existing, "rb") as f:
            self.assertEqual(f.read(), b"precious")

    def test_fileAppearsMeanwhile(self) -> None:
        """
        A file created by someone else after the existence check is not
        overwritten, and the files this call already wrote are removed.
        """
        directory = _makeDirectory(self)
        intruder = os.path.join(directory, ORIGIN_FILE)
        original = certs._writeNew

        def racingWrite(path: str, content: bytes, mode: int) -> None:
            if path == intruder:
                with open(intruder, "wb") as f:
                    f.write(b"theirs")
            original(path, content, mode)

        self.patch(certs, "_writeNew", racingWrite)
        with self.assertRaises(DeploymentError) as caught:
            writeDeployment(_DEPLOYMENT, directory)
        self.assertIn(intruder, str(caught.exception))
        self.assertEqual(os.listdir(directory), [ORIGIN_FILE])
        with open(intruder, "rb") as f:
            self.assertEqual(f.read(), b"theirs")

    def test_forceReplaces(self) -> None:
        """
        With force, existing files are replaced, and a key file that had a
        loose mode gets 0600.
        """
        directory = _makeDirectory(self)
        writeDeployment(generateDeployment(), directory)
        os.chmod(os.path.join(directory, ORIGIN_FILE), 0o666)
        writeDeployment(_DEPLOYMENT, directory, force=True)
        path = os.path.join(directory, ORIGIN_FILE)
        self.assertEqual(self.mode(path), 0o600)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), _DEPLOYMENT.originPEM())
        self.assertEqual(sorted(os.listdir(directory)), sorted(_ALL_FILES))

    def test_notADirectory(self) -> None:
        """
        A path that is a file is a clear error.
        """
        path = os.path.join(_makeDirectory(self), "file")
        with open(path, "wb"):
            pass
        with self.assertRaises(DeploymentError) as caught:
            writeDeployment(_DEPLOYMENT, path)
        self.assertIn(path, str(caught.exception))


class CommandLineTests(SynchronousTestCase):
    """
    Tests for C{railgun certs} through L{main}.
    """

    def railgun(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        status = main(list(argv), stdout=out, stderr=err)
        return status, out.getvalue(), err.getvalue()

    def test_certs(self) -> None:
        """
        C{railgun certs DIR} writes the files, says so, and prints the
        command lines for both roles.
        """
        directory = os.path.join(_makeDirectory(self), "deploy ment")
        status, out, err = self.railgun("certs", directory)
        self.assertEqual((status, err), (0, ""))
        absolute = os.path.abspath(directory)
        for name in _ALL_FILES:
            self.assertIn(os.path.join(absolute, name), out)
            self.assertTrue(os.path.exists(os.path.join(directory, name)))
        self.assertIn(f"--role origin --certs {shlex.quote(absolute)} ", out)
        self.assertIn(f"--role edge --certs {shlex.quote(absolute)} ", out)
        self.assertIn("offline", out)
        with open(os.path.join(directory, ORIGIN_FILE), "rb") as f:
            origin = x509.load_pem_x509_certificate(f.read())
        self.assertEqual(
            list(_extension(origin, x509.SubjectAlternativeName)),  # type: ignore[call-overload]
            [x509.DNSName("localhost")],
        )
        self.assertEqual(
            origin.not_valid_after_utc - origin.not_valid_before_utc,
            datetime.timedelta(days=3650, hours=1),
        )

    def printedCommands(self, out: str) -> dict[str, str]:
        """
        The command lines that C{railgun certs} printed, by what they run:
        C{"token"} (the shell command that makes the token file),
        C{"origin"} and C{"edge"}.
        """
        commands = {}
        for line in out.splitlines():
            if line.startswith("  (umask 077; "):
                commands["token"] = line.strip()
            elif line.startswith("  twistd "):
                argv = shlex.split(line)
                commands[argv[argv.index("--role") + 1]] = line.strip()
        self.assertEqual(sorted(commands), ["edge", "origin", "token"], out)
        return commands

    def test_printedCommandsWork(self) -> None:
        """
        The command lines printed by C{railgun certs} are complete: the
        token command makes a 0600 file of 64 hex digits, and the two
        C{twistd} commands run in the foreground without a pid file and
        parse into an origin role and an edge that use these files and
        this token, the edge dialling the name in the certificate.
        """
        from railgun.tap import Options

        directory = os.path.join(_makeDirectory(self), "deploy ment")
        status, out, err = self.railgun("certs", directory)
        self.assertEqual((status, err), (0, ""))
        commands = self.printedCommands(out)
        subprocess.run(["sh", "-c", commands["token"]], check=True, timeout=60)
        tokenPath = os.path.join(os.path.abspath(directory), "token")
        self.assertEqual(stat.S_IMODE(os.stat(tokenPath).st_mode), 0o600)
        with open(tokenPath) as f:
            token = f.read().strip()
        self.assertRegex(token, r"^[0-9a-f]{64}$")
        configs = {}
        for role in ("origin", "edge"):
            argv = shlex.split(commands[role])
            self.assertEqual(argv[:4], ["twistd", "--pidfile=", "-n", "railgun"])
            options = Options()
            options.parseOptions(argv[4:])
            self.assertEqual(options.role, role)
            configs[role] = (
                options.built.originConfig()
                if role == "origin"
                else options.built.edgeConfig()
            )
            self.assertEqual(configs[role].token, token.encode())
            self.assertEqual(configs[role].certsDir, os.path.abspath(directory))
        # localhost: the origin role keeps its loopback default.
        self.assertNotIn("--link-listen", commands["origin"])
        self.assertIn(" --link www.example.com=localhost:2408", commands["edge"])
        self.assertIn(
            " --map www.example.com=http://127.0.0.1:8000", commands["origin"]
        )

    def test_printedCommandsOtherNames(self) -> None:
        """
        For any other origin name the printed origin role listens on every
        interface, and the edge dials that name (an IPv6 address in
        brackets), so no C{--tls-name} is needed.
        """
        cases = [
            (
                "origin.example.net",
                "tcp:2408",
                "www.example.com=origin.example.net:2408",
            ),
            ("192.0.2.7", "tcp:2408", "www.example.com=192.0.2.7:2408"),
            ("2001:db8::7", "tcp6:2408", "'www.example.com=[2001:db8::7]:2408'"),
        ]
        for name, listen, link in cases:
            directory = _makeDirectory(self)
            status, out, err = self.railgun("certs", directory, "--origin-name", name)
            self.assertEqual((status, err), (0, ""))
            commands = self.printedCommands(out)
            self.assertIn(f" --link-listen {listen} ", commands["origin"])
            self.assertTrue(commands["edge"].endswith(f" --link {link}"), commands)
            self.assertNotIn("--tls-name", commands["edge"])

    def test_certsOptions(self) -> None:
        """
        C{--origin-name} (an IP address here) and C{--days} reach the
        certificates.
        """
        directory = _makeDirectory(self)
        status, out, err = self.railgun(
            "certs", directory, "--origin-name", "192.0.2.7", "--days", "30"
        )
        self.assertEqual((status, err), (0, ""))
        with open(os.path.join(directory, ORIGIN_FILE), "rb") as f:
            origin = x509.load_pem_x509_certificate(f.read())
        self.assertEqual(
            list(_extension(origin, x509.SubjectAlternativeName)),  # type: ignore[call-overload]
            [x509.IPAddress(ipaddress.ip_address("192.0.2.7"))],
        )
        self.assertEqual(
            origin.not_valid_after_utc - origin.not_valid_before_utc,
            datetime.timedelta(days=30, hours=1),
        )

    def test_existingFails(self) -> None:
        """
        Existing files: exit status 1, one line on stderr, files untouched;
        C{--force} replaces them.
        """
        directory = _makeDirectory(self)
        self.assertEqual(self.railgun("certs", directory)[0], 0)
        with open(os.path.join(directory, CA_FILE), "rb") as f:
            before = f.read()
        status, out, err = self.railgun("certs", directory)
        self.assertEqual((status, out), (1, ""))
        self.assertEqual(err.count("\n"), 1)
        self.assertTrue(err.startswith("railgun certs: error: refusing to overwrite"))
        with open(os.path.join(directory, CA_FILE), "rb") as f:
            self.assertEqual(f.read(), before)
        status, out, err = self.railgun("certs", directory, "--force")
        self.assertEqual((status, err), (0, ""))
        with open(os.path.join(directory, CA_FILE), "rb") as f:
            self.assertNotEqual(f.read(), before)

    def test_usageErrors(self) -> None:
        """
        Usage errors exit with status 2 and one line on stderr, writing
        nothing.
        """
        directory = os.path.join(_makeDirectory(self), "d")
        cases = [
            [],
            ["nonsense"],
            ["certs"],
            ["certs", directory, "--days", "0"],
            ["certs", directory, "--days", "many"],
            ["certs", directory, "--origin-name", "not a name"],
            ["certs", directory, "--unknown"],
        ]
        for argv in cases:
            status, out, err = self.railgun(*argv)
            self.assertEqual((status, out), (2, ""), argv)
            self.assertEqual(err.count("\n"), 1, (argv, err))
            self.assertIn("error:", err)
        self.assertFalse(os.path.exists(directory))

    def test_help(self) -> None:
        """
        C{--help} prints help on stdout and exits 0, for the program and for
        the subcommand.
        """
        status, out, err = self.railgun("--help")
        self.assertEqual((status, err), (0, ""))
        self.assertIn("certs", out)
        status, out, err = self.railgun("certs", "--help")
        self.assertEqual((status, err), (0, ""))
        self.assertIn("--origin-name", out)

    def test_pythonDashM(self) -> None:
        """
        C{python -m railgun} runs the same command line, with its exit
        status.
        """
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [root, *filter(None, [env.get("PYTHONPATH")])]
        )
        directory = _makeDirectory(self)
        command = [sys.executable, "-m", "railgun", "certs", directory]
        first = subprocess.run(command, env=env, capture_output=True, timeout=60)
        self.assertEqual(first.returncode, 0, first.stderr)
        self.assertIn(b"--role origin --certs", first.stdout)
        second = subprocess.run(command, env=env, capture_output=True, timeout=60)
        self.assertEqual(second.returncode, 1)
        self.assertIn(b"refusing to overwrite", second.stderr)
