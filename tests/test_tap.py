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

from bench.harness import freePort
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
            UsageError,
            self.parse,
            "--role",
            "edge",
            "--certs",
            self.mktemp(),
            "--token",
            "t",
            "--link",
            "a=b",
        )
        self.assertIn("ca.pem", str(e))
        self.assertIn("railgun certs", str(e))

    def test_origin(self):
        """
        Origin flags become an OriginConfig.
        """
        options = self.parse(
            "--role",
            "origin",
            "--certs",
            "/c",
            "--token",
            "t0k3n",
            "--map",
            "www.example.com=http://127.0.0.1:8000",
            "--map",
            "*.example.org=https://backend:8443",
            "--link-listen",
            "tcp:2408",
            "--response-timeout",
            "12",
            "--no-delta",
            "--delta-level",
            "19",
            "--delta-large-level",
            "22",
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
            "--role",
            "edge",
            "--certs",
            "/c",
            "--token",
            "t",
            "--link",
            "www.example.com=origin.example.net",
            "--links-per-origin",
            "3",
            "--max-header-bytes",
            "8k",
            "--fallback",
            "www.example.com=https://www.example.com",
        )
        config = options.built.edgeConfig()
        self.assertIsInstance(config, EdgeConfig)
        self.assertEqual(config.linksPerOrigin, 3)
        self.assertEqual(config.maxHeaderBytes, 8192)
        self.assertEqual(config.links.lookup("www.example.com").addresses[0].port, 2408)
        self.assertIsNotNone(config.fallback.lookup("www.example.com"))

    def test_diagnosticHeader(self):
        """
        --diagnostic-header (or edge.diagnostic_header) sets the edge's
        diagnostic mode, 'public' by default; another value is a usage
        error naming the three.
        """
        edge = ["--role", "edge", "--certs", "/c", "--token", "t", "--link", "a=b"]
        self.assertEqual(
            self.parse(*edge).built.edgeConfig().diagnosticHeader, "public"
        )
        options = self.parse(*edge, "--diagnostic-header", "off")
        self.assertEqual(options.built.edgeConfig().diagnosticHeader, "off")
        path = self.mktemp()
        Path(path).write_text('[edge]\ndiagnostic_header = "full"\n')
        options = self.parse(*edge, "--config", path)
        self.assertEqual(options.built.edgeConfig().diagnosticHeader, "full")
        e = self.assertRaises(
            UsageError, self.parse, *edge, "--diagnostic-header", "verbose"
        )
        self.assertIn("diagnostic", str(e))
        self.assertIn("off, public, full", str(e))

    def test_badInput(self):
        """
        Each kind of bad input is a UsageError naming the problem.
        """
        cases = [
            (["--role", "sideways"], "--role"),
            (["--role", "origin", "--certs", "/c", "--token", "t"], "--map"),
            (["--role", "origin", "--token", "t", "--map", "a=http://b"], "--certs"),
            (["--role", "edge", "--certs", "/c", "--link", "a=b"], "token"),
            (
                [
                    "--role",
                    "origin",
                    "--certs",
                    "/c",
                    "--token",
                    "t",
                    "--map",
                    "a=ftp://b",
                ],
                "origin URL",
            ),
            (
                [
                    "--role",
                    "origin",
                    "--certs",
                    "/c",
                    "--token",
                    "t",
                    "--map",
                    "nohost",
                ],
                "HOST=VALUE",
            ),
            (
                [
                    "--role",
                    "edge",
                    "--certs",
                    "/c",
                    "--token",
                    "t",
                    "--link",
                    "a=b:notaport",
                ],
                "link address",
            ),
            (
                [
                    "--role",
                    "edge",
                    "--certs",
                    "/c",
                    "--token",
                    "t",
                    "--link",
                    "a=b",
                    "--links-per-origin",
                    "0",
                ],
                "--links-per-origin / edge.links_per_origin must be a whole number > 0, not 0",
            ),
            (
                [
                    "--role",
                    "edge",
                    "--certs",
                    "/c",
                    "--token",
                    "t",
                    "--link",
                    "a=b",
                    "--ping-timeout",
                    "x",
                ],
                "--ping-timeout must be a number, not 'x'",
            ),
            (
                [
                    "--role",
                    "origin",
                    "--certs",
                    "/c",
                    "--token",
                    "t",
                    "--map",
                    "a=http://b",
                    "--delta-level",
                    "23",
                ],
                "--delta-level / delta.level must be a zstd level from 1 to 22, not 23",
            ),
            (
                ["--config", "/nonexistent/railgun.toml", "--role", "edge"],
                "cannot read config file",
            ),
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
        Path(path).write_text(
            'role = "edge"\ntoken = "from-toml"\n[edge]\nlinks = ["a=b"]\n'
        )
        options = self.parse(
            "--config", path, "--certs", "/c", "--token-file", tokenFile
        )
        self.assertEqual(options.built.edgeConfig().token, b"from-flag-file")
        # edge.toml names token_file = "/etc/railgun/token", which need not exist.
        options = self.parse(
            "--config",
            str(EXAMPLES / "edge.toml"),
            "--certs",
            "/c",
            "--token",
            "from-flag",
        )
        self.assertEqual(options.built.edgeConfig().token, b"from-flag")

    def test_tokenGivenTwice(self):
        """
        Both --token and --token-file, or both token and token_file in the
        file, are a usage error rather than one silently winning.
        """
        tokenFile = self.mktemp()
        Path(tokenFile).write_text("t2\n")
        e = self.assertRaises(
            UsageError,
            self.parse,
            "--role",
            "edge",
            "--certs",
            "/c",
            "--link",
            "a=b",
            "--token",
            "t1",
            "--token-file",
            tokenFile,
        )
        self.assertIn("--token or --token-file, not both", str(e))
        path = self.mktemp()
        Path(path).write_text(
            f'role = "edge"\ntoken = "t1"\ntoken_file = "{tokenFile}"\n[edge]\nlinks = ["a=b"]\n'
        )
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
                "--config",
                str(EXAMPLES / f"{role}.toml"),
                "--token-file",
                tokenFile,
                "--certs",
                "/c",
            )
            self.assertEqual(options.role, role)
            self.assertEqual(
                (
                    options.built.originConfig()
                    if role == "origin"
                    else options.built.edgeConfig()
                ).token,
                b"secret",
            )

    def test_flagsOverrideFile(self):
        """
        A command-line flag wins over the config file.
        """
        options = self.parse(
            "--config",
            str(EXAMPLES / "edge.toml"),
            "--token",
            "t",
            "--links-per-origin",
            "5",
            "--certs",
            "/c",
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
            "--config",
            str(EXAMPLES / "origin.toml"),
            "--token-file",
            tokenFile,
            "--certs",
            "/c",
            "--connect-timeout",
            "7",
            "--response-timeout",
            "99",
        )
        config = options.built.originConfig()
        self.assertEqual((config.connectTimeout, config.responseTimeout), (7.0, 99.0))
        # edge.toml sets [edge] response_timeout = 60.0.
        options = self.parse(
            "--config",
            str(EXAMPLES / "edge.toml"),
            "--token-file",
            tokenFile,
            "--certs",
            "/c",
            "--response-timeout",
            "9",
        )
        self.assertEqual(options.built.edgeConfig().responseTimeout, 9.0)
        # --role both: the flag reaches both roles.
        path = self.mktemp()
        Path(path).write_text(
            "connect_timeout = 1.0\n[origin]\nconnect_timeout = 2.0\nresponse_timeout = 3.0\n"
            "[edge]\nconnect_timeout = 4.0\nresponse_timeout = 5.0\n"
        )
        options = self.parse(
            "--config",
            path,
            "--role",
            "both",
            "--connect-timeout",
            "7",
            "--response-timeout",
            "8",
        )
        for role in (options.built.origin, options.built.edge):
            self.assertEqual((role.connectTimeout, role.responseTimeout), (7.0, 8.0))

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
            "max_header_bytes = 1\nmax_body_bytes = 1\nconnect_timeout = 1.0\nresponse_timeout = 1.0\n"
            'links = ["a=file"]\nfallback = ["a=http://file"]\n'
            "[link]\nping_interval = 1.0\nping_timeout = 1.0\nmax_concurrent_streams = 1\n"
            "[delta]\nenabled = true\nmax_size = 1\nlevel = 1\nlarge_level = 1\n"
            '[store]\nmemory_bytes = 1\nmemcached = ["file:1"]\n'
            "[both]\nsample_period = 1.0\n"
        )
        built = self.parse(
            "--config",
            path,
            "--certs",
            "/flag",
            "--link-listen",
            "tcp:2",
            "--http-listen",
            "tcp:2",
            "--links-per-origin",
            "2",
            "--tls-name",
            "flag",
            "--max-header-bytes",
            "2",
            "--max-body-bytes",
            "2",
            "--connect-timeout",
            "2",
            "--response-timeout",
            "2",
            "--ping-interval",
            "2",
            "--ping-timeout",
            "2",
            "--max-streams",
            "2",
            "--delta-max-size",
            "2",
            "--delta-level",
            "2",
            "--delta-large-level",
            "2",
            "--store-size",
            "2",
            "--sample-period",
            "2",
            "--map",
            "a=http://flag",
            "--link",
            "a=flag",
            "--fallback",
            "a=http://flag",
            "--memcached",
            "flag:2",
            "--no-delta",
            "--insecure-origin-tls",
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
            self.assertEqual(
                (config.connectTimeout, config.responseTimeout), (2.0, 2.0)
            )
        link = origin.link
        self.assertEqual(
            (link.pingInterval, link.pingTimeout, link.maxConcurrentStreams),
            (2.0, 2.0, 2),
        )
        delta = origin.delta
        self.assertEqual(
            (delta.enabled, delta.maxSize, delta.level, delta.largeLevel),
            (False, 2, 2, 2),
        )
        self.assertEqual(
            (origin.store.memoryBytes, origin.store.memcached), (2, ("flag:2",))
        )
        self.assertEqual(built.samplePeriod, 2.0)
        self.assertFalse(origin.verifyOriginTLS)
        self.assertEqual(origin.origins.lookup("a").host, "flag")
        self.assertEqual(edge.links.lookup("a").addresses[0].host, "flag")
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
        Path(path).write_text(
            'role = "edge"\ntoken = "t"\n[edge]\nhttp_lisen = "tcp:1"\n'
        )
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
        e = self.assertRaises(
            UsageError, self.parse, "--role", "both", "--sample-period", "0"
        )
        self.assertIn("sample_period must be > 0", str(e))

    def test_linkSettingRanges(self):
        """
        The link values announced in HELLO are checked against the ranges
        the link protocol allows when options are read: an out-of-range
        value is a usage error naming it, each end of a range is accepted.
        """
        path = self.mktemp()

        def parseLink(key, value):
            Path(path).write_text(
                f'role = "edge"\ntoken = "t"\n[edge]\nlinks = ["a=b"]\n[link]\n{key} = {value}\n'
            )
            return self.parse("--config", path, "--certs", "/c")

        for key, attr, bad, good in [
            (
                "max_frame_size",
                "maxFrameSize",
                [1000, 16383, 16777216],
                [16384, 16777215],
            ),
            ("stream_window", "streamWindow", [-1, 2**31], [0, 2**31 - 1]),
            (
                "connection_window",
                "connectionWindow",
                [0, 65534, 2**31],
                [65535, 2**31 - 1],
            ),
            (
                "max_concurrent_streams",
                "maxConcurrentStreams",
                [-1, 2**31],
                [0, 2**31 - 1],
            ),
        ]:
            for value in bad:
                e = self.assertRaises(UsageError, parseLink, key, value)
                self.assertIn(f"link.{key} must be a whole number from", str(e))
            for value in good:
                tuning = parseLink(key, value).built.edgeConfig().link
                self.assertEqual(getattr(tuning, attr), value)
                # The protocol takes what the configuration took.
                tuning.settings()
        e = self.assertRaises(UsageError, parseLink, "max_frame_size", '"64k"')
        self.assertIn(
            "link.max_frame_size must be a whole number of bytes (sizes in the file are plain integers",
            str(e),
        )
        e = self.assertRaises(
            UsageError,
            self.parse,
            "--role",
            "edge",
            "--certs",
            "/c",
            "--token",
            "t",
            "--link",
            "a=b",
            "--max-streams",
            "-1",
        )
        self.assertIn(
            "--max-streams / link.max_concurrent_streams must be a whole number from 0 to",
            str(e),
        )

    def test_badValuesName(self):
        """
        A bad value, from a flag or from the file, is a one-line usage error
        naming the flag and the TOML key, and what was expected.
        """
        origin = [
            "--role",
            "origin",
            "--certs",
            "/c",
            "--token",
            "t",
            "--map",
            "a=http://b",
        ]
        edge = ["--role", "edge", "--certs", "/c", "--token", "t", "--link", "a=b"]

        def withFile(argv, text):
            path = self.mktemp()
            Path(path).write_text(text)
            return [*argv, "--config", path]

        cases = [
            (
                origin + ["--link-listen", "19613"],
                "--link-listen / origin.link_listen must be a Twisted endpoint string, such as "
                "tcp:2408:interface=127.0.0.1; '19613' is not one (Unknown endpoint type: '19613'); "
                "did you mean tcp:19613:interface=127.0.0.1?",
            ),
            (
                origin + ["--link-listen", "10.0.0.1:2408"],
                "did you mean tcp:2408:interface=10.0.0.1?",
            ),
            (
                edge + ["--http-listen", "tcp:http"],
                "--http-listen / edge.http_listen must be a Twisted endpoint string",
            ),
            (
                withFile(edge, "[edge]\nhttp_listen = 8080\n"),
                "--http-listen / edge.http_listen must be a string (a Twisted endpoint such as "
                "tcp:2408:interface=127.0.0.1), not 8080",
            ),
            (
                origin + ["--memcached", "127.0.0.1"],
                "--memcached / store.memcached: memcached server '127.0.0.1' is not host:port or unix:/path",
            ),
            (
                origin + ["--memcached", "a:1", "--memcached", "a:1"],
                "--memcached / store.memcached: a server is listed twice",
            ),
            (
                withFile(origin, "[store]\nmemcached = [11211]\n"),
                '--memcached / store.memcached must be a list of "HOST:PORT" or "unix:/path" strings, not [11211]',
            ),
            (
                withFile(origin, '[link]\nping_interval = "x"\n'),
                "--ping-interval / link.ping_interval must be a number, not 'x'",
            ),
            (
                withFile(origin, "[link]\nping_timeout = nan\n"),
                "--ping-timeout / link.ping_timeout must be a number, not nan",
            ),
            (
                withFile(origin, '[delta]\nenabled = "no"\n'),
                "delta.enabled must be true or false, not 'no'",
            ),
            (
                withFile(origin, "[origin]\nverify_origin_tls = 0\n"),
                "origin.verify_origin_tls must be true or false, not 0",
            ),
            (
                withFile(origin, '[delta]\nmax_size = "1m"\n'),
                "--delta-max-size / delta.max_size must be a whole number of bytes (sizes in the file are "
                "plain integers, like 1048576: the k, m and g suffixes are for flags only), not '1m'",
            ),
            (
                withFile(edge, '[edge]\nlinks_per_origin = "2"\n'),
                "--links-per-origin / edge.links_per_origin must be a whole number, not '2'",
            ),
            (
                withFile(edge, "[edge]\nlinks_per_origin = true\n"),
                "--links-per-origin / edge.links_per_origin must be a whole number, not True",
            ),
            (
                withFile(edge, "[edge]\ntls_name = 1\n"),
                "--tls-name / edge.tls_name must be a string, not 1",
            ),
            (withFile(edge, "link = 1\n"), "link must be a table ([link]), not 1"),
            (
                withFile(origin, "[origin]\nconnect_timeout = -1\n"),
                "--connect-timeout / connect_timeout (or origin.connect_timeout, edge.connect_timeout) must be > 0, not -1",
            ),
            (
                withFile(origin, '[store]\nttl = 2592001\nmemcached = ["a:1"]\n'),
                "store.ttl must be at most 2592000 seconds (30 days) with memcached, not 2592001",
            ),
            (
                origin + ["--delta-level", "30"],
                "--delta-level / delta.level must be a zstd level from 1 to 22, not 30",
            ),
            (
                origin + ["--ping-interval", "-1"],
                "--ping-interval / link.ping_interval must be >= 0, not -1.0",
            ),
            (
                origin + ["--ping-interval", "inf"],
                "--ping-interval must be a number, not 'inf'",
            ),
            (
                origin + ["--links-per-origin", "2.5"],
                "--links-per-origin must be a whole number, not '2.5'",
            ),
            (
                origin + ["--max-body-bytes", "lots"],
                "--max-body-bytes must be a size in bytes (1048576, 64k, 256m, 2g), not 'lots'",
            ),
            (
                origin + ["--store-size", "0"],
                "--store-size / store.memory_bytes must be a whole number > 0, not 0",
            ),
            (
                withFile(origin, "[origin]\nmax_connections_per_origin = 0\n"),
                "origin.max_connections_per_origin must be a whole number > 0, not 0",
            ),
        ]
        for argv, expected in cases:
            e = self.assertRaises(UsageError, self.parse, *argv)
            self.assertIn(expected, str(e), argv)
            self.assertNotIn("\n", str(e))

    def test_memcachedServers(self):
        """
        store.memcached in the file is a list, or one server as a string;
        the edge refuses it (it keeps its versions in memory).
        """
        path = self.mktemp()
        Path(path).write_text(
            'role = "origin"\ntoken = "t"\n[origin.map]\na = "http://b"\n[store]\nmemcached = "127.0.0.1:19620"\n'
        )
        options = self.parse("--config", path, "--certs", "/c")
        self.assertEqual(
            options.built.originConfig().store.memcached, ("127.0.0.1:19620",)
        )
        Path(path).write_text(
            'role = "origin"\ntoken = "t"\n[origin.map]\na = "http://b"\n[store]\nmemcached = ["a:1", "unix:/run/m.sock"]\n'
        )
        options = self.parse("--config", path, "--certs", "/c")
        self.assertEqual(
            options.built.originConfig().store.memcached, ("a:1", "unix:/run/m.sock")
        )
        e = self.assertRaises(
            UsageError,
            self.parse,
            "--role",
            "edge",
            "--certs",
            "/c",
            "--token",
            "t",
            "--link",
            "a=b",
            "--memcached",
            "127.0.0.1:11211",
        )
        self.assertEqual(
            str(e),
            "--memcached / store.memcached is for the origin role: the edge keeps its versions "
            "in its own memory (--store-size); remove it for --role edge",
        )
        # --role both runs an origin role, which uses it.
        built = self.parse("--role", "both", "--memcached", "127.0.0.1:11211").built
        self.assertEqual(
            built.originConfig(["*=http://b"]).store.memcached, ("127.0.0.1:11211",)
        )

    def test_endpointsAccepted(self):
        """
        Endpoint strings Railgun can listen on pass the check made when the
        options are read.
        """
        for endpoint in [
            "tcp:2408",
            "tcp:0:interface=127.0.0.1",
            r"tcp6:2408:interface=\:\:1",
            "unix:/run/railgun.sock",
        ]:
            self.assertEqual(
                self.parse(
                    "--role",
                    "origin",
                    "--certs",
                    "/c",
                    "--token",
                    "t",
                    "--map",
                    "a=http://b",
                    "--link-listen",
                    endpoint,
                )
                .built.originConfig()
                .linkListen,
                endpoint,
            )

    def test_linkSettingRangesAreTheProtocols(self):
        """
        The ranges the configuration checks are those of the link's
        settings.
        """
        from railgun.config import LINK_SETTING_RANGES
        from railgun.link.frames import SETTINGS_IDS

        names = {
            "maxFrameSize": "maxFrameSize",
            "streamWindow": "initialStreamWindow",
            "connectionWindow": "connectionWindow",
            "maxConcurrentStreams": "maxConcurrentStreams",
        }
        protocol = {name: (low, high) for name, low, high in SETTINGS_IDS.values()}
        for attr, (low, high) in LINK_SETTING_RANGES.items():
            self.assertEqual((low, high), protocol[names[attr]], attr)


def _freePort() -> int:
    return freePort()


def _twistd(*args: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from twisted.scripts.twistd import run; run()",
        "-n",
        "--pidfile=",
        *args,
    ]


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
            argv,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=str(workdir),
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
            capture_output=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        docroot = Path(self.mktemp()).absolute()
        docroot.mkdir()
        page = b"<h1>an origin we did not write</h1>\n" * 100
        (docroot / "index.html").write_bytes(page)
        originPort, linkPort, httpPort = _freePort(), _freePort(), _freePort()
        self.spawn(
            [
                sys.executable,
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                "--directory",
                str(docroot),
                str(originPort),
            ],
            "origin-server",
        )
        self.spawn(
            _twistd(
                "railgun",
                "--role",
                "origin",
                "--link-listen",
                f"tcp:{linkPort}:interface=127.0.0.1",
                "--map",
                f"www.example.com=http://127.0.0.1:{originPort}",
                "--certs",
                str(certs),
                "--token",
                "separate-token",
            ),
            "origin-role",
        )
        edge = self.spawn(
            _twistd(
                "railgun",
                "--role",
                "edge",
                "--http-listen",
                f"tcp:{httpPort}:interface=127.0.0.1",
                "--link",
                f"www.example.com=127.0.0.1:{linkPort}",
                "--tls-name",
                "localhost",
                "--certs",
                str(certs),
                "--token",
                "separate-token",
            ),
            "edge",
        )
        direct, directBody = yield self.waitFor(
            f"http://127.0.0.1:{originPort}/index.html".encode()
        )
        response, body = yield self.waitFor(
            f"http://127.0.0.1:{httpPort}/index.html".encode(),
            {b"host": [b"www.example.com"]},
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
                sys.executable,
                "-c",
                "from twisted.scripts.twistd import run; run()",
                "-n",
                "--pidfile=",
                "railgun",
                "--role",
                "both",
                "--http-listen",
                f"tcp:{port}:interface=127.0.0.1",
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
                response = yield agent.request(
                    b"GET", f"http://127.0.0.1:{port}/".encode()
                )
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
        self.assertEqual(
            process.poll(), -signal.SIGTERM, log.read_text(errors="replace")
        )
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
            "origin": self.spawn(
                _twistd(
                    "railgun",
                    "--role",
                    "origin",
                    "--link-listen",
                    endpoint,
                    "--map",
                    "a=http://127.0.0.1:1",
                    *common,
                ),
                "origin",
            ),
            "edge": self.spawn(
                _twistd(
                    "railgun",
                    "--role",
                    "edge",
                    "--http-listen",
                    endpoint,
                    "--link",
                    "a=127.0.0.1:1",
                    *common,
                ),
                "edge",
            ),
            "both": self.spawn(
                _twistd("railgun", "--role", "both", "--http-listen", endpoint), "both"
            ),
        }
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(
            p.poll() is None for p in processes.values()
        ):
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

    def test_badValueIsUsageError(self):
        """
        twistd railgun with a bad value prints no traceback: it exits with
        status 1, the one-line cause last.
        """
        import subprocess

        from railgun.certs import generateDeployment, writeDeployment

        certs = Path(self.mktemp()).absolute()
        writeDeployment(generateDeployment("localhost"), str(certs))
        config = Path(self.mktemp()).absolute()
        config.write_text('[store]\nmemcached = "127.0.0.1"\n')
        common = [
            "railgun",
            "--role",
            "origin",
            "--certs",
            str(certs),
            "--token",
            "t",
            "--map",
            "a=http://b",
        ]
        for argv, expected in [
            (["--link-listen", "19613"], "did you mean tcp:19613:interface=127.0.0.1?"),
            (
                ["--config", str(config)],
                "--memcached / store.memcached: memcached server '127.0.0.1' is not host:port or unix:/path",
            ),
        ]:
            result = subprocess.run(
                _twistd(*common, *argv),
                capture_output=True,
                text=True,
                timeout=30,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            output = result.stdout + result.stderr
            self.assertEqual(result.returncode, 1, output)
            self.assertNotIn("Traceback", output)
            self.assertTrue(output.rstrip().splitlines()[-1].endswith(expected), output)

    def test_help(self):
        """
        twistd railgun --help prints each option's help as flowing text
        (no runs of spaces from a docstring's indentation) and says which
        role an option is for.
        """
        import re
        import subprocess

        result = subprocess.run(
            _twistd("railgun", "--help"),
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        for line in result.stdout.splitlines():
            # "  --name=   help..." or "        help continued"
            text = re.sub(r"^\s*(-\w, )?(--[\w-]+=?)?\s*", "", line)
            self.assertNotIn("  ", text, line)
        flowing = " ".join(result.stdout.split())
        for expected in [
            "--memcached= origin: HOST:PORT of a memcached server",
            "refused with --role edge",
            "--store-size= bytes of versions kept in memory (edge: the latest version per URL; "
            "origin: versions by digest, unless --memcached)",
            "the longest silence inside its body",
        ]:
            self.assertIn(expected, flowing)

    def test_usageErrorIsShort(self):
        """
        A usage error prints the error and a hint to --help, not the whole
        help first.
        """
        import subprocess

        result = subprocess.run(
            _twistd("railgun", "--role", "sideways"),
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 1, output)
        self.assertNotIn("--store-size", output)
        lines = output.rstrip().splitlines()
        self.assertLessEqual(len(lines), 3, output)
        self.assertIn("'twistd railgun --help' lists the options", output)
        self.assertTrue(
            lines[-1].endswith(
                "--role must be one of edge, origin, both (got 'sideways')"
            ),
            output,
        )

    def test_version(self):
        """
        C{twistd railgun --version} and C{railgun --version} print the
        version of railgun/__init__.py, which setup.py reads too.
        """
        import subprocess

        from railgun import __version__

        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        for argv in [
            _twistd("railgun", "--version"),
            [sys.executable, "-m", "railgun", "--version"],
        ]:
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=30, env=env
            )
            self.assertEqual(
                (result.returncode, result.stdout), (0, f"railgun {__version__}\n")
            )
        result = subprocess.run(
            [sys.executable, "setup.py", "--version"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=str(ROOT),
            env=env,
        )
        self.assertEqual(result.stdout.strip().splitlines()[-1], __version__)


class SchemaTests(SynchronousTestCase):
    """
    The settings schema, the docs and the module structure agree.
    """

    def test_docsListTheSchema(self):
        """
        The tables of docs/configuration.md name exactly the flags and TOML
        keys of the settings schema.
        """
        import re

        from railgun.tap import FLAGS, SCHEMA

        docFlags, docKeys = set(), set()
        text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
        for line in text.splitlines():
            if not line.startswith("|") or line.startswith("|---"):
                continue
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            if len(cells) < 4:
                continue
            docFlags |= set(re.findall(r"`--([a-z][a-z-]*)", cells[0]))
            key = re.match(r"`\[?([a-z_]+(?:\.[a-z_]+)?)", cells[1])
            if key:
                docKeys.add(key[1])
        self.assertEqual(docFlags, {f.name for f in FLAGS} | {"config"})
        # A key also read at the top level is listed there; its per-role
        # tables are named in the text.
        self.assertEqual(
            docKeys,
            {e.setting.key if e.setting.alsoTop else e.where for e in SCHEMA},
        )

    def test_noImportCycle(self):
        """
        railgun.both takes configuration objects: importing it imports
        neither railgun.tap nor a role's service.
        """
        import subprocess

        result = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, railgun.both; print(sorted(m for m in sys.modules "
                "if m in ('railgun.tap', 'railgun.edge.service', 'railgun.origin.service')))",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.assertEqual((result.returncode, result.stdout), (0, "[]\n"), result.stderr)
