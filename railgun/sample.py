"""
A small built-in origin server whose pages change over time, so that
C{twistd railgun --role both} shows Railgun working (and its deltas) with
no origin of one's own.

Pages: C{/} (an HTML "front page": a few of its headlines and counters
change every C{period} seconds), C{/api/items.json} (the same as JSON) and
C{/robots.txt}.
"""

from __future__ import annotations

import json
import random
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource
from twisted.web.server import Site

_WORDS = (
    "railgun twisted delta origin edge link stream window frame header "
    "latency bandwidth page version digest cache proxy reactor deferred "
    "protocol factory transport producer consumer memcached zstd market "
    "weather football election science health travel music books film"
).split()


def _headline(rng: random.Random) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 9))).capitalize()


def items(epoch: int, count: int = 120) -> list[dict[str, Any]]:
    """
    The sample page's items at a given epoch: most stay the same from one
    epoch to the next, a few change (like a real front page).

    @param epoch: the number of periods since the start of time.
    """
    result = []
    for index in range(count):
        # An item is re-written every 20 epochs, at an offset of its own, so
        # about 5% of items change each epoch.
        generation = (epoch + index) // 20
        rng = random.Random(f"{index}:{generation}")
        result.append(
            {
                "id": index,
                "title": _headline(rng),
                "summary": " ".join(_headline(rng) for _ in range(3)),
                "comments": rng.randint(0, 500) + (epoch if index % 7 == 0 else 0),
            }
        )
    return result


def renderPage(epoch: int) -> bytes:
    """
    @return: the HTML front page at C{epoch}.
    """
    rows = "\n".join(
        f'<article id="item-{i["id"]}"><h2>{i["title"]}</h2><p>{i["summary"]}</p>'
        f'<span class="comments">{i["comments"]} comments</span></article>'
        for i in items(epoch)
    )
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8"><title>Railgun sample'
        f"</title></head>\n<body><header>Edition {epoch}</header>\n<main>\n{rows}\n"
        "</main>\n<footer>Served by Railgun's built-in sample origin.</footer>\n"
        "</body></html>\n"
    ).encode()


class _SampleResource(Resource):
    isLeaf = True

    def render_HEAD(self, request: Any) -> bytes:
        # twisted.web sends the right head when a HEAD is answered with a
        # body, but logs a warning each time: give it the length alone.
        body = self.render_GET(request)  # type: ignore[attr-defined]
        request.setHeader(b"content-length", b"%d" % len(body))
        return b""


class _Page(_SampleResource):
    def __init__(self, clock: IReactorTime, period: float, kind: str) -> None:
        super().__init__()
        self._clock = clock
        self._period = period
        self._kind = kind

    def render_GET(self, request: Any) -> bytes:
        epoch = int(self._clock.seconds() // self._period)
        if self._kind == "html":
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            return renderPage(epoch)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"epoch": epoch, "items": items(epoch)}, indent=2).encode()


class _Robots(_SampleResource):
    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"text/plain")
        return b"User-agent: *\nDisallow:\n"


def sampleSite(clock: IReactorTime, period: float = 5.0) -> Site:
    """
    @param period: seconds between two editions of the pages.
    @return: the sample origin as a twisted.web L{Site}.
    """
    root = Resource()
    page = _Page(clock, period, "html")
    root.putChild(b"", page)
    root.putChild(b"index.html", page)
    api = Resource()
    api.putChild(b"items.json", _Page(clock, period, "json"))
    root.putChild(b"api", api)
    root.putChild(b"robots.txt", _Robots())
    site = Site(root)
    site.noisy = False
    site.displayTracebacks = False
    return site
