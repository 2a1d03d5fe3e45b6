"""
Tests for the benchmark harness (C{bench/}): its pure parts (report
sections, wrk parsing, verdicts, profiles, the benchmark origin) as unit
tests, and C{python -m bench all --quick} as a subprocess whose results must
be well formed and free of errors (no assertion on timing).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from twisted.web.test.requesthelper import DummyChannel, DummyRequest

from bench.harness import percentile, procCpuSeconds, procStatusKb, target
from bench.loopback import nginxConfig, parseWrk, summarizeCollapsed
from bench.origin import (
    BenchRequest,
    SequenceResource,
    _Sink,
    generatedSequences,
    loopbackPage,
)
from bench.report import (
    loopbackTables,
    replaceSection,
    targetsTable,
    updateDocs,
    verdict,
)
from bench.wanfetch import decodeBody

REPO_ROOT = Path(__file__).resolve().parent.parent

WRK_OUTPUT = b"""Running 10s test @ http://127.0.0.1:8080/page
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    10.01ms    1.20ms  30.00ms   90.00%
    Req/Sec     3.20k   100.00     3.40k    70.00%
  31950 requests in 10.01s, 320.50MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   3191.81
Transfer/sec:     32.02MB
"""


class ReportSectionTests(SynchronousTestCase):
    """
    The shared docs file: only the harness's own marked sections change.
    """

    def test_appendsAfterExistingContent(self) -> None:
        """
        Without markers, the section is appended and the old text is kept.
        """
        text = "# Benchmarks\n\n## Codec\n\nnumbers\n"
        out = replaceSection(text, "wan", "WAN table")
        self.assertTrue(out.startswith(text.rstrip("\n")))
        self.assertIn(
            "<!-- bench:wan:start -->\nWAN table\n<!-- bench:wan:end -->", out
        )

    def test_replacesOnlyBetweenMarkers(self) -> None:
        """
        With markers, only the text between them is replaced.
        """
        text = (
            "intro\n<!-- bench:wan:start -->\nold\n<!-- bench:wan:end -->\n"
            "codec section\n"
        )
        out = replaceSection(text, "wan", "new")
        self.assertEqual(
            out,
            "intro\n<!-- bench:wan:start -->\nnew\n"
            "<!-- bench:wan:end -->\ncodec section\n",
        )

    def test_malformedMarkers(self) -> None:
        """
        A start marker without its end is refused, not guessed at.
        """
        self.assertRaises(
            ValueError, replaceSection, "<!-- bench:wan:start -->\nx\n", "wan", "y"
        )

    def test_updateDocsKeepsOtherEdits(self) -> None:
        """
        updateDocs re-reads the file for every section: text written by
        someone else between sections survives.
        """
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "benchmarks.md"
            path.write_text("# B\n\n<!-- codec -->\n")
            updateDocs(path, [("a", "one")])
            path.write_text(path.read_text() + "\nother engineer's text\n")
            updateDocs(path, [("b", "two"), ("a", "uno")])
            text = path.read_text()
        self.assertIn("other engineer's text", text)
        self.assertIn("<!-- codec -->", text)
        self.assertIn("<!-- bench:a:start -->\nuno\n", text)
        self.assertIn("<!-- bench:b:start -->\ntwo\n", text)
        self.assertNotIn("one", text)


class MeasurementTests(SynchronousTestCase):
    """
    Parsing and arithmetic of the measurements.
    """

    def test_parseWrk(self) -> None:
        """
        wrk's summary gives requests, seconds, rate and errors.
        """
        r = parseWrk(WRK_OUTPUT)
        self.assertEqual(r["requests"], 31950)
        self.assertAlmostEqual(r["seconds"], 10.01)
        self.assertAlmostEqual(r["rps"], 31950 / 10.01)
        self.assertEqual(r["socket_errors"], 3)
        self.assertEqual(r["non2xx"], 4)

    def test_parseWrkGarbage(self) -> None:
        """
        Output without a summary is a clear harness error.
        """
        from bench.harness import HarnessError

        self.assertRaises(HarnessError, parseWrk, b"unable to connect")

    def test_percentile(self) -> None:
        """
        Percentiles interpolate linearly; no values give None.
        """
        self.assertEqual(percentile([3.0, 1.0, 2.0], 50), 2.0)
        self.assertEqual(percentile([1.0, 2.0], 50), 1.5)
        self.assertEqual(percentile([1.0, 2.0, 3.0, 4.0, 5.0], 100), 5.0)
        self.assertIsNone(percentile([], 95))

    def test_targetVerdicts(self) -> None:
        """
        Targets report met/missed and the margin, in both directions.
        """
        low = target("t", 0.25, 0.5, "<=")
        self.assertTrue(low["met"])
        self.assertAlmostEqual(low["by"], 0.5)
        high = target("t", 0.4, 0.5, ">=")
        self.assertFalse(high["met"])
        self.assertAlmostEqual(high["by"], -0.2)
        self.assertEqual(verdict(high), "**missed** (by 20%)")
        none = target("t", None, 1.0)
        self.assertFalse(none["met"])
        self.assertIn("no measurement", targetsTable([{"targets": [none]}]))
        self.assertRaises(ValueError, target, "t", 1.0, 1.0, "<")

    def test_procReaders(self) -> None:
        """
        CPU time and memory of a live process are read from /proc.
        """
        if not os.path.exists("/proc/self/stat"):
            raise SkipTest("no /proc on this system")
        self.assertGreater(procCpuSeconds(os.getpid()), 0)
        self.assertGreater(procStatusKb(os.getpid(), "VmHWM"), 1000)

    def test_summarizeCollapsed(self) -> None:
        """
        Collapsed stacks give own and inclusive shares per function.
        """
        text = (
            "main (a.py:1);f (a.py:5);g (b.py:7) 3\n"
            "main (a.py:1);f (a.py:6) 1\n"
            "garbage\n"
        )
        s = summarizeCollapsed(text)
        self.assertEqual(s["samples"], 4)
        self.assertEqual(s["self"][0], ("g (b.py)", 0.75))
        self.assertIn(("f (a.py)", 1.0), s["inclusive"])

    def test_decodeBody(self) -> None:
        """
        Bodies are checked in identity encoding; an unasked coding is an error.
        """
        self.assertEqual(decodeBody(gzip.compress(b"abc"), b"gzip"), b"abc")
        self.assertEqual(decodeBody(b"abc", None), b"abc")
        self.assertRaises(ValueError, decodeBody, b"abc", b"br")

    def test_nginxConfig(self) -> None:
        """
        nginx runs in the foreground, keeps upstream connections alive, and
        keeps every file in the working directory.
        """
        conf = nginxConfig(Path("/tmp/x"), 8080, 9090)
        for needle in (
            "daemon off;",
            "master_process off;",
            "keepalive 64;",
            "pid /tmp/x/nginx.pid;",
            'proxy_set_header Connection "";',
            "listen 127.0.0.1:8080;",
            "server 127.0.0.1:9090;",
        ):
            self.assertIn(needle, conf)


class PreparedTableTests(SynchronousTestCase):
    """
    Tests for L{bench.codec.preparedTable}, on pages made here.
    """

    def test_rowsPerSizeClass(self) -> None:
        """
        One row per size class with pairs, every variant's bytes summed
        (each delta checked by decoding it) and the prepared base's memory.
        """
        from bench.codec import preparedReport, preparedTable
        from bench.corpus import Sequence

        base = b"".join(b"<li>item %d of the list</li>\n" % i for i in range(2000))
        versions = (base, base.replace(b"item 7 ", b"item 7!"), base + b"<p>end</p>")
        rows = preparedTable([Sequence("made", versions)])
        self.assertEqual([r["class"] for r in rows], ["32-128 KB"])
        row = rows[0]
        self.assertEqual(row["pairs"], 2)
        self.assertEqual(row["identity"], len(versions[1]) + len(versions[2]))
        for key in ("nine", "cold", "copied", "attached"):
            self.assertLess(0, row[f"{key}_bytes"])
            self.assertLess(row[f"{key}_bytes"], 1000)
        self.assertLess(len(base), row["prepared_bytes"])
        self.assertIn("| 32-128 KB | 2 |", preparedReport(rows))


class OriginTests(SynchronousTestCase):
    """
    The benchmark origin server's resources.
    """

    def test_sequenceVersions(self) -> None:
        """
        The k-th fetch of a path gets version k, per path, wrapping around.
        """
        seqs = generatedSequences(1, 3)
        resource = SequenceResource(seqs)
        bodies = []
        for _ in range(4):
            request = DummyRequest([b""])
            request.path = b"/seq/a/generated-0"
            bodies.append(resource.render_GET(request))
        self.assertEqual(bodies, [*seqs[0].versions, seqs[0].versions[0]])
        request = DummyRequest([b""])
        request.path = b"/seq/b/generated-0"
        self.assertEqual(resource.render_GET(request), seqs[0].versions[0])

    def test_sequencesArePublic(self) -> None:
        """
        A sequence's versions are public dynamic pages, which Railgun keeps
        versions of (with C{no-store} it kept none, and the WAN benchmark
        measured Railgun without its deltas).
        """
        from railgun.http.privacy import exchangeShareable

        request = DummyRequest([b""])
        request.path = b"/seq/a/generated-0"
        SequenceResource(generatedSequences(1, 2)).render_GET(request)
        self.assertEqual(
            request.responseHeaders.getRawHeaders(b"cache-control"), [b"no-cache"]
        )
        headers = [
            (name.lower(), value)
            for name, values in request.responseHeaders.getAllRawHeaders()
            for value in values
        ]
        self.assertTrue(exchangeShareable([], headers))

    def test_sequenceGzip(self) -> None:
        """
        Clients accepting gzip get the version gzipped.
        """
        seqs = generatedSequences(1, 2)
        request = DummyRequest([b""])
        request.path = b"/seq/a/generated-0"
        request.requestHeaders.setRawHeaders(b"accept-encoding", [b"gzip, br"])
        body = SequenceResource(seqs).render_GET(request)
        self.assertEqual(gzip.decompress(body), seqs[0].versions[0])
        self.assertEqual(
            request.responseHeaders.getRawHeaders(b"content-encoding"), [b"gzip"]
        )

    def test_unknownSequence(self) -> None:
        """
        An unknown sequence is a 404, not an exception.
        """
        request = DummyRequest([b""])
        request.path = b"/seq/a/nope"
        SequenceResource([]).render_GET(request)
        self.assertEqual(request.responseCode, 404)

    def test_generatedAndPage(self) -> None:
        """
        Generated sequences are deterministic and change between versions;
        the loopback page has its size.
        """
        a, b = generatedSequences(2, 3), generatedSequences(2, 3)
        self.assertEqual(a, b)
        self.assertNotEqual(a[0].versions[0], a[0].versions[1])
        self.assertEqual(len(loopbackPage()), 10 * 1024)

    def test_uploadSink(self) -> None:
        """
        Request bodies are counted, never stored.
        """
        sink = _Sink()
        sink.write(b"x" * 10)
        sink.write(b"y" * 5)
        self.assertEqual((sink.count, sink.read()), (15, b""))
        request = BenchRequest(DummyChannel())
        request.gotLength(1024**3)
        self.assertIsInstance(request.content, _Sink)


_quick: Deferred[dict[str, Any]] | None = None


def _runQuick() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "quick.json"
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench",
                "all",
                "--quick",
                "--no-docs",
                "--json",
                str(out),
            ],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            timeout=200,
            check=False,
        )
        if not out.exists():
            raise AssertionError(
                f"python -m bench all --quick wrote no results (exit {done.returncode}):"
                f"\n{done.stdout[-2000:].decode(errors='replace')}"
                f"\n{done.stderr[-2000:].decode(errors='replace')}"
            )
        data = json.loads(out.read_text())
    data["exit"] = done.returncode
    data["stdout"] = done.stdout.decode(errors="replace")
    return data


def quickRun() -> Deferred[dict[str, Any]]:
    """
    Run C{python -m bench all --quick} once for every test that needs it.
    """
    global _quick
    if _quick is None:
        _quick = deferToThread(_runQuick)
    result: Deferred[dict[str, Any]] = Deferred()

    def share(value: Any) -> Any:
        result.callback(value)
        return value

    def shareFailure(failure: Any) -> None:
        result.errback(failure)

    _quick.addCallbacks(share, shareFailure)
    return result


#: Skips allowed only for a missing tool or corpus, with the reason shown.
_ALLOWED_SKIPS = ("not installed", "no corpus", "is absent")


class QuickRunTests(TestCase):
    """
    C{python -m bench all --quick} as users run it.
    """

    timeout = 240

    async def _scenario(self, name: str) -> dict[str, Any]:
        data = await quickRun()
        results = {r["scenario"]: r for r in data["results"]}
        self.assertIn(name, results)
        r = results[name]
        self.assertFalse(r.get("failed"), r.get("failed"))
        if r.get("skipped"):
            if any(s in r["skipped"] for s in _ALLOWED_SKIPS):
                raise SkipTest(f"{name}: {r['skipped']}")
            self.fail(f"{name} skipped without a missing tool: {r['skipped']}")
        self.assertEqual(r["errors"], 0)
        for t in r.get("targets", []):
            self.assertEqual(set(t), {"name", "value", "limit", "op", "met", "by"})
            self.assertIsInstance(t["met"], bool)
        return r

    def test_runsCleanly(self) -> Deferred[None]:
        """
        The quick run exits 0, counts no error, prints the targets, and
        records the machine.
        """

        async def check() -> None:
            data = await quickRun()
            self.assertEqual(data["exit"], 0, data["stdout"][-3000:])
            self.assertEqual((data["errors"], data["failed"]), (0, []))
            self.assertTrue(data["quick"])
            self.assertEqual(data["machine"]["nproc"], os.cpu_count())
            self.assertIn("### Targets", data["stdout"])

        return ensureDeferred(check())

    def test_wan(self) -> Deferred[None]:
        """
        Every WAN alternative fetched every page, correctly, with timings and
        WAN byte counts.
        """

        async def check() -> None:
            r = await self._scenario("wan")
            names = [a["name"] for a in r["alternatives"]]
            self.assertEqual(
                names, ["direct-new", "direct-keepalive", "railgun", "railgun-nodelta"]
            )
            for a in r["alternatives"]:
                s = a["sequential"]
                self.assertEqual(s["n"], r["params"]["fetches_per_alternative"])
                self.assertGreater(s["median_s"], 0)
                self.assertGreater(s["wan_bytes"], 0)
                self.assertEqual(a["burst"]["bursts"], r["params"]["bursts"])
            self.assertEqual(len(r["targets"]), 3)

        return ensureDeferred(check())

    def test_loopback(self) -> Deferred[None]:
        """
        Every loopback alternative served requests and has CPU per request
        for each of its processes.
        """

        async def check() -> None:
            r = await self._scenario("loopback")
            names = {a["name"] for a in r["alternatives"]}
            self.assertTrue({"railgun", "twisted-revproxy", "origin-direct"} <= names)
            for a in r["alternatives"] + r["diagnostics"]:
                self.assertGreater(a["requests"], 0)
                self.assertTrue(
                    all(
                        v is not None and v > 0
                        for v in a["cpu_us_per_request"].values()
                    )
                )
            # The diagnostic chain runs the origin role answering from memory
            # (and served the right page: a wrong body counts as an error).
            self.assertEqual(
                [d["name"] for d in r["diagnostics"]], ["railgun-role-from-memory"]
            )
            self.assertEqual(r["errors"], 0)
            self.assertIn("origin role that answers from memory", loopbackTables(r))

        return ensureDeferred(check())

    def test_scaling(self) -> Deferred[None]:
        """
        Both worker counts served requests with CPU per request for each
        role, and the failover run lost no request while an origin role was
        killed and restarted.
        """

        async def check() -> None:
            r = await self._scenario("scaling")
            rows = r["workers"]["rows"]
            self.assertEqual([row["workers"] for row in rows], [1, 2])
            for row in rows:
                self.assertGreater(row["requests"], 0)
                self.assertTrue(
                    all(
                        v is not None and v > 0
                        for v in row["cpu_us_per_request"].values()
                    )
                )
            failover = r["failover"]
            self.assertGreater(failover["requests"], 0)
            self.assertEqual(failover["failures"], 0)

        return ensureDeferred(check())

    def test_bulk(self) -> Deferred[None]:
        """
        Both directions moved every byte through Railgun and plain TLS, with
        peak RSS per process.
        """

        async def check() -> None:
            r = await self._scenario("bulk")
            for a in r["alternatives"]:
                for direction in ("download", "upload"):
                    self.assertIsNone(a[direction]["error"])
                    self.assertGreater(a[direction]["mb_per_s"], 0)
                    self.assertTrue(a[direction]["peak_rss_mb"])

        return ensureDeferred(check())

    def test_concurrency(self) -> Deferred[None]:
        """
        All streams opened and finished on one link, and the edge held its
        client connections, without errors.
        """

        async def check() -> None:
            r = await self._scenario("concurrency")
            s = r["streams"]
            self.assertEqual((s["errors"], s["open_at_peak"]), (0, s["streams"]))
            c = r["connections"]
            if "skipped" in c:
                raise SkipTest(f"client connections: {c['skipped']}")
            self.assertEqual(c["errors"], 0)
            self.assertGreater(c["requests"], 0)

        return ensureDeferred(check())

    def test_codec(self) -> Deferred[None]:
        """
        The codec benchmark ran through its own entry point.
        """

        async def check() -> None:
            r = await self._scenario("codec")
            self.assertIn("% of identity", r["output"])

        return ensureDeferred(check())
