"""
The admin endpoint's resource tree: C{/metrics}, C{/stats}, C{/healthz},
C{/readyz} and the dashboard (C{/} and its assets under C{/static/}).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from typing import Any

from prometheus_client.exposition import choose_encoder
from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource

from railgun.admin.document import statsDocument
from railgun.admin.metrics import makeRegistry
from railgun.admin.views import RoleView

#: the dashboard's files (package data) and their content types.
STATIC = {
    "index.html": b"text/html; charset=utf-8",
    "dashboard.js": b"text/javascript; charset=utf-8",
    "dashboard.css": b"text/css; charset=utf-8",
}


def _answer(request: Any, status: int, contentType: bytes, body: bytes) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", contentType)
    request.setHeader(b"cache-control", b"no-store")
    return body


class _Leaf(Resource):
    isLeaf = True

    def __init__(self, render: Callable[[Any], bytes]) -> None:
        super().__init__()
        self._render = render

    def render_GET(self, request: Any) -> bytes:
        return self._render(request)

    def render_HEAD(self, request: Any) -> bytes:
        return self._render(request)


class _Static(Resource):
    """
    The dashboard's assets, read from the package once.
    """

    def __init__(self) -> None:
        super().__init__()
        files = resources.files("railgun.admin") / "static"
        self._files = {
            name: (contentType, (files / name).read_bytes())
            for name, contentType in STATIC.items()
        }

    def getChild(self, path: bytes, request: Any) -> Resource:
        found = self._files.get(path.decode("utf-8", "replace"))
        if found is None:
            return _Leaf(lambda r: _answer(r, 404, b"text/plain", b"not found\n"))
        contentType, body = found
        return _Leaf(lambda r: _answer(r, 200, contentType, body))


class AdminResource(Resource):
    """
    The root of the admin endpoint.

    Metrics are collected on the reactor thread, where the counters
    change (prometheus_client's own Twisted resource collects in a thread
    pool, and imports the global reactor).
    """

    def __init__(
        self, views: Callable[[], list[RoleView]], clock: IReactorTime, started: float
    ) -> None:
        super().__init__()
        self._views = views
        self._clock = clock
        self._started = started
        self.registry = makeRegistry(views)
        static = _Static()
        self.putChild(b"static", static)
        self.putChild(b"metrics", _Leaf(self._metrics))
        self.putChild(b"stats", _Leaf(self._stats))
        self.putChild(b"healthz", _Leaf(self._healthz))
        self.putChild(b"readyz", _Leaf(self._readyz))
        index = static.getChild(b"index.html", None)
        self.putChild(b"", index)

    def document(self) -> dict[str, Any]:
        """
        @return: the statistics document now.
        """
        return statsDocument(self._views(), self._clock.seconds(), self._started)

    def _metrics(self, request: Any) -> bytes:
        accept = request.getHeader(b"accept") or b""
        encoder, contentType = choose_encoder(accept.decode("latin-1"))
        return _answer(
            request, 200, contentType.encode("ascii"), encoder(self.registry)
        )

    def _stats(self, request: Any) -> bytes:
        body = json.dumps(self.document(), indent=1, sort_keys=True).encode("utf-8")
        return _answer(request, 200, b"application/json", body + b"\n")

    def _healthz(self, request: Any) -> bytes:
        return _answer(request, 200, b"text/plain; charset=utf-8", b"ok: process up\n")

    def _readyz(self, request: Any) -> bytes:
        views = self._views()
        if not views:
            return _answer(
                request, 503, b"text/plain; charset=utf-8", b"not ready: starting\n"
            )
        answers = [view.readiness() for view in views]
        ready = all(ok for ok, _ in answers)
        lines = "".join(f"{why}\n" for _, why in answers)
        body = ("ready\n" if ready else "not ready\n") + lines
        return _answer(
            request,
            200 if ready else 503,
            b"text/plain; charset=utf-8",
            body.encode("utf-8"),
        )
