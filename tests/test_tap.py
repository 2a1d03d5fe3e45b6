"""
The twistd plugin: found by twistd, options parsed, bad input refused with
a usage error, config files read, and a real C{twistd railgun} serving.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from twisted.application.service import IServiceMaker
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.plugin import getPlugins
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase, TestCase

from railgun.config import EdgeConfig, OriginConfig
from railgun.tap import Options

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"


class PluginDiscoveryTests(SynchronousTestCase):
    """
    twistd's plugin system finds C{railgun}.
    """

    def test_found(self):
        """
        An IServiceMaker named railgun is among twisted.plugins, pointing at
        railgun.tap.
        """
        import twisted.plugins

        makers = {p.tapname: p for p in getPlugins(IServiceMaker, twisted.plugins)}
        self.assertIn("railgun", makers)
        self.assertEqual(makers["railgun"].module, "railgun.tap")


class OptionsTests(SynchronousTestCase):
    """
    L{Options} builds typed configurations and refuses bad input.
    """

    def setUp(self):
        from railgun.certs import generateDeployment, writeDeployment

        self.certs = self.mktemp()
        writeDeployment(generateDeployment("localhost"), self.certs)

    def parse(self, *argv):
        argv = [self.certs if a == "/c" else a for a in argv]
        options = Options()
        options.parseOptions(list(argv))
        return options

    def test_missingCertificates(self):
        """
        A --certs directory without the files is a usage error naming the
        missing file and the command that makes it.
        """
        e = self.assertRaises(
            UsageError, self.parse, "--role", "edge", "--certs", self.mktemp(),
            "--token", "t", "--link", "a=b",
        )
        self.assertIn("ca.pem", str(e))
        self.assertIn("railgun certs", str(e))

    def test_origin(self):
        """
        Origin flags become an OriginConfig.
        """
        options = self.parse(
            "--role", "origin", "--certs", "/c", "--token", "t0k3n",
            "--map", "www.example.com=http://127.0.0.1:8000",
            "--map", "*.example.org=https://backend:8443",
            "--link-listen", "tcp:2408", "--response-timeout", "12", "--no-delta",
            "--delta-level", "19", "--delta-large-level", "22",
        )
        config = options.built.originConfig()
        self.assertIsInstance(config, OriginConfig)
        self.assertEqual(config.token, b"t0k3n")
        self.assertEqual(config.linkListen, "tcp:2408")
        self.assertEqual(config.responseTimeout, 12.0)
        self.assertFalse(config.delta.enabled)
        self.assertEqual(config.delta.level, 19)
        self.assertEqual(config.delta.largeLevel, 22)
        self.assertEqual(config.origins.lookup("x.example.org").port, 8443)

    def test_edge(self):
        """
        Edge flags become an EdgeConfig.
        """
        options = self.parse(
            "--role", "edge", "--certs", "/c", "--token", "t",
            "--link", "www.example.com=origin.example.net",
            "--links-per-origin", "3", "--max-header-bytes", "8k",
            "--fallback", "www.example.com=https://www.example.com",
        )
        config = options.built.edgeConfig()
        self.assertIsInstance(config, EdgeConfig)
        self.assertEqual(config.linksPerOrigin, 3)
        self.assertEqual(config.maxHeaderBytes, 8192)
        self.assertEqual(config.links.lookup("www.example.com").port, 2408)
        self.assertIsNotNone(config.fallback.lookup("www.example.com"))

    def test_badInput(self):
        """
        Each kind of bad input is a UsageError naming the problem.
        """
        cases = [
            (["--role", "sideways"], "--role"),
            (["--role", "origin", "--certs", "/c", "--token", "t"], "--map"),
            (["--role", "origin", "--token", "t", "--map", "a=http://b"], "--certs"),
            (["--role", "edge", "--certs", "/c", "--link", "a=b"], "token"),
            (["--role", "origin", "--certs", "/c", "--token", "t", "--map", "a=ftp://b"], "origin URL"),
            (["--role", "origin", "--certs", "/c", "--token", "t", "--map", "nohost"], "HOST=VALUE"),
            (["--role", "edge", "--certs", "/c", "--token", "t", "--link", "a=b:notaport"], "link address"),
            (["--role", "edge", "--certs", "/c", "--token", "t", "--link", "a=b", "--links-per-origin", "0"], "linksPerOrigin"),
            (["--role", "edge", "--certs", "/c", "--token", "t", "--link", "a=b", "--ping-timeout", "x"], "--ping-timeout"),
            (["--role", "origin", "--certs", "/c", "--token", "t", "--map", "a=http://b", "--delta-level", "23"], "zstd level"),
            (["--config", "/nonexistent/railgun.toml", "--role", "edge"], "cannot read config file"),
        ]
        for argv, expected in cases:
            e = self.assertRaises(UsageError, self.parse, *argv)
            self.assertIn(expected, str(e), argv)

    def test_tokenFromEnvironment(self):
        """
        RAILGUN_TOKEN is used when no token option is given.
        """
        self.patch(os, "environ", {"RAILGUN_TOKEN": "from-env"})
        options = self.parse("--role", "edge", "--certs", "/c", "--link", "a=b")
        self.assertEqual(options.built.edgeConfig().token, b"from-env")

    def test_tokenFlagsOverrideFile(self):
        """
        --token-file on the command line wins over a token in the file, and
        --token over a token_file in the file.
        """
        tokenFile = self.mktemp()
        Path(tokenFile).write_text("from-flag-file\n")
        path = self.mktemp()
        Path(path).write_text('role = "edge"\ntoken = "from-toml"\n[edge]\nlinks = ["a=b"]\n')
        options = self.parse("--config", path, "--certs", "/c", "--token-file", tokenFile)
        self.assertEqual(options.built.edgeConfig().token, b"from-flag-file")
        # edge.toml names token_file = "/etc/railgun/token", which need not exist.
        options = self.parse("--config", str(EXAMPLES / "edge.toml"), "--certs", "/c", "--token", "from-flag")
        self.assertEqual(options.built.edgeConfig().token, b"from-flag")

    def test_tokenGivenTwice(self):
        """
        Both --token and --token-file, or both token and token_file in the
        file, are a usage error rather than one silently winning.
        """
        tokenFile = self.mktemp()
        Path(tokenFile).write_text("t2\n")
        e = self.assertRaises(
            UsageError, self.parse, "--role", "edge", "--certs", "/c", "--link", "a=b",
            "--token", "t1", "--token-file", tokenFile,
        )
        self.assertIn("--token or --token-file, not both", str(e))
        path = self.mktemp()
        Path(path).write_text(f'role = "edge"\ntoken = "t1"\ntoken_file = "{tokenFile}"\n[edge]\nlinks = ["a=b"]\n')
        e = self.assertRaises(UsageError, self.parse, "--config", path, "--certs", "/c")
        self.assertIn("both token and token_file", str(e))

    def test_exampleFiles(self):
        """
        The example files in docs/ parse into configurations.
        """
        tokenFile = self.mktemp()
        Path(tokenFile).write_text("secret\n")
        for role in ("origin", "edge"):
            options = self.parse(
                "--config", str(EXAMPLES / f"{role}.toml"), "--token-file", tokenFile,
                "--certs", "/c",
            )
            self.assertEqual(options.role, role)
            self.assertEqual((options.built.originConfig() if role == "origin" else options.built.edgeConfig()).token, b"secret")

    def test_flagsOverrideFile(self):
        """
        A command-line flag wins over the config file.
        """
        options = self.parse(
            "--config", str(EXAMPLES / "edge.toml"), "--token", "t", "--links-per-origin", "5",
            "--certs", "/c",
        )
        self.assertEqual(options.built.edgeConfig().linksPerOrigin, 5)

    def test_timeoutFlagsOverridePerRoleKeys(self):
        """
        --connect-timeout and --response-timeout win over the per-role
        values of the file's [origin] and [edge] tables, not only over its
        top-level keys.
        """
        tokenFile = self.mktemp()
        Path(tokenFile).write_text("secret\n")
        # origin.toml sets [origin] connect_timeout = 5.0, response_timeout = 30.0.
        options = self.parse(
            "--config", str(EXAMPLES / "origin.toml"), "--token-file", tokenFile, "--certs", "/c",
            "--connect-timeout", "7", "--response-timeout", "99",
        )
        config = options.built.originConfig()
        self.assertEqual((config.connectTimeout, config.responseTimeout), (7.0, 99.0))
        # edge.toml sets [edge] response_timeout = 60.0.
        options = self.parse(
            "--config", str(EXAMPLES / "edge.toml"), "--token-file", tokenFile, "--certs", "/c",
            "--response-timeout", "9",
        )
        self.assertEqual(options.built.edgeConfig().responseTimeout, 9.0)
        # --role both: the flag reaches both roles.
        path = self.mktemp()
        Path(path).write_text(
            "connect_timeout = 1.0\n[origin]\nconnect_timeout = 2.0\nresponse_timeout = 3.0\n"
            "[edge]\nconnect_timeout = 4.0\nresponse_timeout = 5.0\n"
        )
        options = self.parse(
            "--config", path, "--role", "both", "--connect-timeout", "7", "--response-timeout", "8",
        )
        for role in (options.built.origin, options.built.edge):
            self.assertEqual((role["connectTimeout"], role["responseTimeout"]), (7.0, 8.0))

    def test_everyFlagOverridesFile(self):
        """
        Every flag wins over every place in the file that sets the same
        thing.
        """
        path = self.mktemp()
        Path(path).write_text(
            'role = "both"\ncerts = "/file"\nconnect_timeout = 1.0\nresponse_timeout = 1.0\n'
            '[origin]\nlink_listen = "tcp:1"\nconnect_timeout = 1.0\nresponse_timeout = 1.0\n'
            'verify_origin_tls = true\nmap = ["a=http://file"]\n'
            '[edge]\nhttp_listen = "tcp:1"\nlinks_per_origin = 1\ntls_name = "file"\n'
            'max_header_bytes = 1\nmax_body_bytes = 1\nconnect_timeout = 1.0\nresponse_timeout = 1.0\n'
            'links = ["a=file"]\nfallback = ["a=http://file"]\n'
            '[link]\nping_interval = 1.0\nping_timeout = 1.0\nmax_concurrent_streams = 1\n'
            '[delta]\nenabled = true\nmax_size = 1\nlevel = 1\nlarge_level = 1\n'
            '[store]\nmemory_bytes = 1\nmemcached = ["file:1"]\n'
            '[both]\nsample_period = 1.0\n'
        )
        built = self.parse(
            "--config", path, "--certs", "/flag", "--link-listen", "tcp:2", "--http-listen", "tcp:2",
            "--links-per-origin", "2", "--tls-name", "flag", "--max-header-bytes", "2",
            "--max-body-bytes", "2", "--connect-timeout", "2", "--response-timeout", "2",
            "--ping-interval", "2", "--ping-timeout", "2", "--max-streams", "2",
            "--delta-max-size", "2", "--delta-level", "2", "--delta-large-level", "2",
            "--store-size", "2", "--sample-period", "2", "--map", "a=http://flag",
            "--link", "a=flag", "--fallback", "a=http://flag", "--memcached", "flag:2",
            "--no-delta", "--insecure-origin-tls",
        ).built
        origin, edge = built.originConfig(), built.edgeConfig()
        self.assertEqual(origin.certsDir, "/flag")
        self.assertEqual(origin.linkListen, "tcp:2")
        self.assertEqual(edge.httpListen, "tcp:2")
        self.assertEqual(
            (edge.linksPerOrigin, edge.tlsName, edge.maxHeaderBytes, edge.maxBodyBytes),
            (2, "flag", 2, 2),
        )
        for config in (origin, edge):
            self.assertEqual((config.connectTimeout, config.responseTimeout), (2.0, 2.0))
        link = origin.link
        self.assertEqual((link.pingInterval, link.pingTimeout, link.maxConcurrentStreams), (2.0, 2.0, 2))
        delta = origin.delta
        self.assertEqual((delta.enabled, delta.maxSize, delta.level, delta.largeLevel), (False, 2, 2, 2))
        self.assertEqual((origin.store.memoryBytes, origin.store.memcached), (2, ("flag:2",)))
        self.assertEqual(built.samplePeriod, 2.0)
        self.assertFalse(origin.verifyOriginTLS)
        self.assertEqual(origin.origins.lookup("a").host, "flag")
        self.assertEqual(edge.links.lookup("a").host, "flag")
        self.assertEqual(edge.fallback.lookup("a").host, "flag")

    def test_fileTimeouts(self):
        """
        Without the flags, the file's timeouts beat the defaults, and a
        per-role value beats the file's top-level one.
        """
        path = self.mktemp()
        Path(path).write_text(
            'role = "origin"\ntoken = "t"\nconnect_timeout = 3.0\nresponse_timeout = 4.0\n'
            '[origin]\nresponse_timeout = 12.0\n[origin.map]\n"a" = "http://b"\n'
        )
        config = self.parse("--config", path, "--certs", "/c").built.originConfig()
        self.assertEqual((config.connectTimeout, config.responseTimeout), (3.0, 12.0))

    def test_unknownKey(self):
        """
        A typo in the config file is an error, not silently ignored.
        """
        path = self.mktemp()
        Path(path).write_text('role = "edge"\ntoken = "t"\n[edge]\nhttp_lisen = "tcp:1"\n')
        e = self.assertRaises(UsageError, self.parse, "--config", path)
        self.assertIn("http_lisen", str(e))

    def test_unknownKeyInBoth(self):
        """
        The [both] table is checked like the others: a typo is an error
        naming the key, and the sample period must be > 0.
        """
        path = self.mktemp()
        Path(path).write_text('role = "both"\n[both]\nsampel_period = 3\n')
        e = self.assertRaises(UsageError, self.parse, "--config", path)
        self.assertIn("unknown key(s) in [both]: sampel_period", str(e))
        Path(path).write_text('role = "both"\n[both]\nsample_period = 3\n')
        self.assertEqual(self.parse("--config", path).built.samplePeriod, 3.0)
        e = self.assertRaises(UsageError, self.parse, "--role", "both", "--sample-period", "0")
        self.assertIn("sample_period must be > 0", str(e))

    def test_linkSettingRanges(self):
        """
        The link values announced in HELLO are checked against the ranges
        the link protocol allows when options are read: an out-of-range
        value is a usage error naming it, each end of a range is accepted.
        """
        path = self.mktemp()

        def parseLink(key, value):
            Path(path).write_text(f'role = "edge"\ntoken = "t"\n[edge]\nlinks = ["a=b"]\n[link]\n{key} = {value}\n')
            return self.parse("--config", path, "--certs", "/c")

        for key, attr, bad, good in [
            ("max_frame_size", "maxFrameSize", [1000, 16383, 16777216], [16384, 16777215]),
            ("stream_window", "streamWindow", [-1, 2**31], [0, 2**31 - 1]),
            ("connection_window", "connectionWindow", [0, 65534, 2**31], [65535, 2**31 - 1]),
            ("max_concurrent_streams", "maxConcurrentStreams", [-1, 2**31], [0, 2**31 - 1]),
        ]:
            for value in bad:
                e = self.assertRaises(UsageError, parseLink, key, value)
                self.assertIn(f"{attr} must be a whole number from", str(e))
            for value in good:
                tuning = parseLink(key, value).built.edgeConfig().link
                self.assertEqual(getattr(tuning, attr), value)
                # The protocol takes what the configuration took.
                tuning.settings()
        e = self.assertRaises(UsageError, parseLink, "max_frame_size", '"64k"')
        self.assertIn("maxFrameSize", str(e))
        e = self.assertRaises(
            UsageError, self.parse, "--role", "edge", "--certs", "/c", "--token", "t", "--link", "a=b",
            "--max-streams", "-1",
        )
        self.assertIn("maxConcurrentStreams", str(e))

    def test_linkSettingRangesAreTheProtocols(self):
        """
        The ranges the configuration checks are those of the link's
        settings.
        """
        from railgun.config import LINK_SETTING_RANGES
        from railgun.link.frames import SETTINGS_IDS

        names = {"maxFrameSize": "maxFrameSize", "streamWindow": "initialStreamWindow",
                 "connectionWindow": "connectionWindow", "maxConcurrentStreams": "maxConcurrentStreams"}
        protocol = {name: (low, high) for name, low, high in SETTINGS_IDS.values()}
        for attr, (low, high) in LINK_SETTING_RANGES.items():
            self.assertEqual((low, high), protocol[names[attr]], attr)


def _freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _twistd(*args: str) -> list[str]:
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=", *args]


class RealTwistdTests(TestCase):
    """
    C{twistd -n railgun} in real processes serves requests.
    """

    timeout = 60

    def spawn(self, argv: list[str], name: str) -> Any:
        import subprocess

        workdir = Path(self.mktemp())
        workdir.mkdir(parents=True)
        log = workdir / f"{name}.log"
        process = subprocess.Popen(
            argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=str(workdir),
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        process.logPath = log  # type: ignore[attr-defined]
        self.addCleanup(lambda: process.poll() is None and process.kill())
        return process

    @inlineCallbacks
    def waitFor(self, url: bytes, headers=None, deadline: float = 30.0):
        from twisted.internet.task import deferLater
        from twisted.web.client import Agent, readBody
        from twisted.web.http_headers import Headers

        agent = Agent(reactor)
        end = time.monotonic() + deadline
        while True:
            try:
                response = yield agent.request(b"GET", url, Headers(headers or {}))
                body = yield readBody(response)
                if response.code != 503:
                    return response, body
            except Exception:
                if time.monotonic() > end:
                    raise
            if time.monotonic() > end:
                self.fail(f"{url!r} still unavailable after {deadline} s")
            yield deferLater(reactor, 0.2, lambda: None)

    @inlineCallbacks
    def test_separateRoles(self):
        """
        As the README says: `railgun certs DIR`, an origin role and an edge
        in separate processes, and a request through the edge returns
        exactly the origin's body and status, with the Railgun header.
        """
        import subprocess

        certs = Path(self.mktemp()).absolute()
        result = subprocess.run(
            [sys.executable, "-m", "railgun", "certs", str(certs)],
            capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        docroot = Path(self.mktemp()).absolute()
        docroot.mkdir()
        page = b"<h1>an origin we did not write</h1>\n" * 100
        (docroot / "index.html").write_bytes(page)
        originPort, linkPort, httpPort = _freePort(), _freePort(), _freePort()
        self.spawn([sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                    "--directory", str(docroot), str(originPort)], "origin-server")
        self.spawn(_twistd("railgun", "--role", "origin", "--link-listen",
                           f"tcp:{linkPort}:interface=127.0.0.1", "--map",
                           f"www.example.com=http://127.0.0.1:{originPort}",
                           "--certs", str(certs), "--token", "separate-token"), "origin-role")
        edge = self.spawn(_twistd("railgun", "--role", "edge", "--http-listen",
                                  f"tcp:{httpPort}:interface=127.0.0.1", "--link",
                                  f"www.example.com=127.0.0.1:{linkPort}", "--tls-name",
                                  "localhost", "--certs", str(certs), "--token",
                                  "separate-token"), "edge")
        direct, directBody = yield self.waitFor(f"http://127.0.0.1:{originPort}/index.html".encode())
        response, body = yield self.waitFor(
            f"http://127.0.0.1:{httpPort}/index.html".encode(), {b"host": [b"www.example.com"]}
        )
        log = edge.logPath.read_text(errors="replace")
        self.assertEqual(response.code, direct.code, log)
        self.assertEqual(body, directBody)
        self.assertEqual(body, page)
        self.assertTrue(response.headers.getRawHeaders(b"railgun"), log)

    @inlineCallbacks
    def test_bothServes(self):
        """
        twistd starts both roles in front of the sample origin; a request
        through the edge comes back with the sample page and a Railgun
        header; SIGTERM stops it.
        """
        import subprocess

        from twisted.internet.task import deferLater
        from twisted.web.client import Agent, readBody

        port = _freePort()
        log = Path(self.mktemp())
        workdir = Path(self.mktemp())
        workdir.mkdir()
        process = subprocess.Popen(
            [
                sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                "-n", "--pidfile=", "railgun", "--role", "both",
                "--http-listen", f"tcp:{port}:interface=127.0.0.1",
            ],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=str(workdir),
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        agent = Agent(reactor)
        deadline = time.monotonic() + 30
        response = None
        while time.monotonic() < deadline:
            try:
                response = yield agent.request(b"GET", f"http://127.0.0.1:{port}/".encode())
                if response.code != 503:
                    break
            except Exception:
                pass
            yield deferLater(reactor, 0.2, lambda: None)
        self.assertIsNotNone(response, log.read_text(errors="replace"))
        body = yield readBody(response)
        self.assertEqual(response.code, 200, log.read_text(errors="replace"))
        self.assertIn(b"Railgun sample", body)
        self.assertTrue(response.headers.getRawHeaders(b"railgun"))
        process.send_signal(signal.SIGTERM)
        for _ in range(100):
            if process.poll() is not None:
                break
            yield deferLater(reactor, 0.1, lambda: None)
        # twistd re-raises the signal that stopped it, so the status is
        # -SIGTERM after a clean shutdown; the log says it was clean.
        self.assertEqual(process.poll(), -signal.SIGTERM, log.read_text(errors="replace"))
        self.assertIn("Server Shut Down.", log.read_text(errors="replace"))

    @inlineCallbacks
    def test_portInUseExits(self):
        """
        When a port it must listen on is in use, twistd railgun (each role)
        logs the cause in one line and exits with status 1 within seconds,
        rather than running on, serving nothing.
        """
        from twisted.internet.task import deferLater

        from railgun.certs import generateDeployment, writeDeployment

        certs = Path(self.mktemp()).absolute()
        writeDeployment(generateDeployment("localhost"), str(certs))
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        endpoint = f"tcp:{busy.getsockname()[1]}:interface=127.0.0.1"
        common = ["--certs", str(certs), "--token", "t"]
        processes = {
            "origin": self.spawn(_twistd("railgun", "--role", "origin", "--link-listen", endpoint,
                                         "--map", "a=http://127.0.0.1:1", *common), "origin"),
            "edge": self.spawn(_twistd("railgun", "--role", "edge", "--http-listen", endpoint,
                                       "--link", "a=127.0.0.1:1", *common), "edge"),
            "both": self.spawn(_twistd("railgun", "--role", "both", "--http-listen", endpoint), "both"),
        }
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(p.poll() is None for p in processes.values()):
            yield deferLater(reactor, 0.1, lambda: None)
        for role, process in processes.items():
            log = process.logPath.read_text(errors="replace")
            self.assertEqual(process.poll(), 1, log)
            lines = [line for line in log.splitlines() if "cannot start" in line]
            self.assertEqual(len(lines), 1, log)
            self.assertIn(
                f"railgun --role {role} cannot start: Couldn't listen on 127.0.0.1:{busy.getsockname()[1]}:",
                lines[0],
            )
            self.assertIn("in use. Stopping (exit status 1).", lines[0])
            self.assertIn("Server Shut Down.", log)
            self.assertNotIn("Traceback", log)
