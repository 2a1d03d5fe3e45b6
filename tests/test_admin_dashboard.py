"""
The admin dashboard in a real headless Chromium (Debian's C{chromium}): the
page loads from the package's assets, draws non-empty plots from C{/stats},
and updates as more requests are served.

Chromium runs with a virtual time budget: its timers (the page's polling)
run as fast as the page's requests are answered, so the test waits for no
wall-clock time. Set C{RAILGUN_DASHBOARD_SCREENSHOT=PATH} to also write a
screenshot (docs/dashboard.png is made that way).
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from railgun.admin import AdminService
from railgun.admin.views import viewsOf
from railgun.config import LinkTuning
from tests.harness import HOST, Deployment
from tests.test_admin_e2e import _within

#: the page's polls per run: each one first serves one more request.
POLLS = 8


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def findChromium() -> str:
    """
    @return: the path of Debian's chromium (or another Chromium build).
    @raise SkipTest: when none is installed.
    """
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path is not None:
            return path
    raise SkipTest(
        "no chromium found: install Debian's chromium package (.ci/run does) "
        "to run the dashboard tests"
    )


class _ServeThenStats(Resource):
    """
    C{/stats} that first serves one more request through the edge, so
    that every poll of the page sees more than the one before.
    """

    isLeaf = True

    def __init__(self, stats: Resource, deployment: Deployment) -> None:
        super().__init__()
        self._stats = stats
        self._deployment = deployment
        self.polls = 0

    def render_GET(self, request: Any) -> Any:
        self.polls += 1
        path = "/changing" if self.polls % 2 else "/static"
        d = self._deployment.fetch(path)

        def answer(_: Any) -> None:
            if not request._disconnected:
                request.write(self._stats.render(request))
                request.finish()

        d.addBoth(answer)
        return NOT_DONE_YET


class DashboardTests(TestCase):
    """
    The dashboard drawn by Chromium.
    """

    timeout = 120

    async def setUp(self) -> None:
        self.browser = findChromium()
        d = Deployment()
        self.addCleanup(d.stop)
        # PINGs every 0.2 s, so the links have an RTT to show.
        await _within(d.start(linkTuning=LinkTuning(pingInterval=0.2)), "start")
        await _within(d.edge.whenLinked(), "links")
        self.d = d
        for path in ["/static", "/static", "/changing", "/changing", "/big"]:
            await _within(d.fetch(path), path)
        await _within(d.fetch("/", host="nothere.test"), "refused")
        admin = AdminService(
            d.edge,
            _reactor(),
            "tcp:0:interface=127.0.0.1",
            views=lambda: viewsOf(d.edge) + viewsOf(d.origin),
        )
        self.stats = _ServeThenStats(admin.resource.children[b"stats"], d)
        admin.resource.putChild(b"stats", self.stats)
        admin.startService()
        self.addCleanup(admin.stopService)
        self.port = (await _within(admin.whenListening(), "admin")).getHost().port

    async def chromium(self, *arguments: str) -> bytes:
        """
        Run headless Chromium on the dashboard until its page has polled
        about L{POLLS} times (virtual time).

        @return: its standard output.
        """
        profile = self.mktemp()
        os.makedirs(profile)
        url = f"http://127.0.0.1:{self.port}/?interval=0.5"
        run: Deferred[tuple[bytes, bytes, int]] = getProcessOutputAndValue(
            self.browser,
            [
                "--headless",
                "--no-sandbox",  # CI runs as root
                "--disable-gpu",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--window-size=1280,960",
                f"--virtual-time-budget={int(POLLS * 500 - 250)}",
                *arguments,
                url,
            ],
            env={"HOME": profile, "PATH": os.environ.get("PATH", "")},
            path=profile,
        )
        out, err, code = await _within(run, "chromium")
        self.assertEqual(code, 0, err[-2000:])
        return out

    async def test_drawsAndUpdates(self) -> None:
        """
        The page loads its assets, draws the bytes-saved and ratio lines
        and the outcome bars from /stats, lists the host and the links
        with their RTT, and its figures grow poll after poll as requests
        are served.
        """
        dom = (await self.chromium("--dump-dom")).decode("utf-8")
        samples = int(re.search(r'id="samples">(\d+)<', dom).group(1))  # type: ignore[union-attr]
        self.assertGreaterEqual(samples, 3, dom[-3000:])
        self.assertEqual(self.stats.polls, samples)
        # Each poll served one request more: 6 before the page, then one
        # per poll, all counted before the poll's answer.
        total = int(
            re.search(r'id="requests-total" class="value">(\d+)<', dom).group(1)
        )  # type: ignore[union-attr]
        self.assertEqual(total, 6 + samples)
        saved = re.search(
            r'class="line saved" points="([^"]+)" data-count="(\d+)"', dom
        )
        assert saved is not None, dom[-3000:]
        self.assertEqual(int(saved.group(2)), samples)
        heights = [float(p.split(",")[1]) for p in saved.group(1).split()]
        # y grows downwards: more bytes saved, a smaller y; never flat.
        self.assertLess(heights[-1], heights[0])
        self.assertEqual(heights, sorted(heights, reverse=True))
        ratio = re.search(r'class="line ratio" points="([^"]+)"', dom)
        assert ratio is not None
        self.assertEqual(len(ratio.group(1).split()), samples)
        bars = dict(re.findall(r'data-outcome="(\w+)" data-value="(\d+)"', dom))
        self.assertEqual(bars["raw"], "1")
        self.assertEqual(bars["refused"], "1")
        self.assertGreater(int(bars["delta"]) + int(bars["same"]), 2)
        self.assertIn(f"<td>{HOST}</td>", dom)
        self.assertRegex(dom, r"<td>127\.0\.0\.1:\d+</td><td>2/2</td><td>[\d.]+ ms")
        self.assertIn("ready", dom)

    async def test_screenshot(self) -> None:
        """
        Chromium renders the page to a PNG (kept where
        RAILGUN_DASHBOARD_SCREENSHOT says, for docs/dashboard.png).
        """
        path = os.environ.get("RAILGUN_DASHBOARD_SCREENSHOT") or os.path.abspath(
            self.mktemp() + ".png"
        )
        await self.chromium(f"--screenshot={os.path.abspath(path)}")
        with open(path, "rb") as f:
            png = f.read()
        self.assertEqual(png[:8], b"\x89PNG\r\n\x1a\n")
        self.assertGreater(len(png), 10_000)
