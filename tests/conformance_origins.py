"""
Third-party origin servers for the conformance tests: Debian's nginx and
Python's own C{http.server}, each run as a child process on 127.0.0.1 in
front of a document root the tests fill themselves.

Nothing here belongs to Railgun: these are the applications the edge must be
transparent for.
"""

from __future__ import annotations

import json
import os
import random
import socket
import sys
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath

NGINX = "/usr/sbin/nginx"

#: a fixed modification time (2024-01-02 03:04:05 UTC) for every file, so
#: Last-Modified and nginx's ETag are the same on every run.
MTIME = 1704164645

#: the name of the file with a space and non-ASCII characters, and its path
#: percent-encoded in UTF-8 (upper- and lowercase hex digits).
ODD_NAME = "hello wörld ünïcode.txt"
ODD_PATH = "/hello%20w%C3%B6rld%20%C3%BCn%C3%AFcode.txt"
ODD_PATH_LOWER = "/hello%20w%c3%b6rld%20%c3%bcn%c3%afcode.txt"

#: sizes of the large files: 3 MB of binary, and a text file larger than a
#: version may be (1 MiB by default), so it streams through raw.
LARGE_SIZE = 3 * 1000 * 1000
LARGE_TEXT_SIZE = 1536 * 1024


def _pattern(size: int, seed: int) -> bytes:
    """
    Deterministic, poorly compressible bytes, so a lost, repeated or
    reordered chunk shows.
    """
    return random.Random(seed).randbytes(size)


def _largeText(size: int) -> bytes:
    lines = []
    total = 0
    n = 0
    while total < size:
        line = f"line {n:07d}: the quick brown fox jumps over the lazy dog {n * 7919 % 10007}\n"
        lines.append(line)
        total += len(line)
        n += 1
    return "".join(lines).encode("ascii")[:size]


def htmlPage(edition: int) -> bytes:
    """
    A ~40 KB HTML page; editions differ in a few lines (so a changed page
    can cross the link as a delta).
    """
    rows = [
        f"<p>row {i}: conformance lorem ipsum dolor sit amet {i * 31 % 97}</p>"
        for i in range(600)
    ]
    rows[edition % 600] = f"<p>edition {edition} changed this row</p>"
    head = (
        f"<!DOCTYPE html>\n<html><head><title>Edition {edition}</title></head><body>\n"
    )
    return (head + "\n".join(rows) + "\n</body></html>\n").encode("utf-8")


def fillDocumentRoot(root: FilePath) -> dict[str, bytes]:
    """
    Create the files the conformance requests ask for, every one with the
    mtime L{MTIME}.

    @param root: an empty directory.
    @return: URL path -> file contents, for the files created.
    """
    files: dict[str, bytes] = {
        "index.html": htmlPage(1),
        "page.html": htmlPage(1),
        "data.json": json.dumps(
            {
                "items": [
                    {"id": i, "name": f"item {i}", "tags": ["a", "b"]}
                    for i in range(300)
                ]
            },
            indent=1,
        ).encode("ascii"),
        "style.css": b"".join(
            b".c%d { color: #%06x; margin: %dpx; }\n" % (i, i * 4099 % 0xFFFFFF, i % 17)
            for i in range(400)
        ),
        "app.js": b"".join(
            b"function f%d(x) { return x * %d + %d; }\n" % (i, i, i * 3)
            for i in range(400)
        ),
        "plain.txt": b"a small text file\n",
        "empty.txt": b"",
        "image.bin": _pattern(70000, 7),
        "large.bin": _pattern(LARGE_SIZE, 11),
        "large.txt": _largeText(LARGE_TEXT_SIZE),
        ODD_NAME: "text in a file whose name has a space and ünïcode\n".encode(),
        "subdir/inner.txt": b"inside the sub-directory\n",
        "subdir/second file.html": b"<p>second</p>\n",
        "subdir/nested/deep.json": b'{"deep": true}\n',
    }
    for name, content in files.items():
        path = root.preauthChild(name)
        path.parent().makedirs(ignoreExistingDirectory=True)
        path.setContent(content)
    for path in [root, *root.walk()]:
        os.utime(path.path, (MTIME, MTIME))
        # nginx may run as an unprivileged user; the tree must be readable.
        os.chmod(path.path, 0o755 if path.isdir() else 0o644)
    return {"/" + name: content for name, content in files.items()}


def setMTime(path: FilePath, mtime: int = MTIME) -> None:
    """
    Give C{path} the fixed mtime again after it was rewritten.
    """
    os.utime(path.path, (mtime, mtime))


def freePort() -> int:
    """
    A TCP port on 127.0.0.1 that was free a moment ago (the child process
    binds it; a lost race is retried by L{_ChildServer.start}).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _ChildProtocol(ProcessProtocol):
    """
    Collects a child's output (bounded) and tells when it ended.
    """

    _LIMIT = 64 * 1024

    def __init__(self) -> None:
        self.output = b""
        self.ended: Deferred[None] = Deferred()
        self.reason: Failure | None = None
        self.running = True

    def outReceived(self, data: bytes) -> None:
        self.output = (self.output + data)[-self._LIMIT :]

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        self.running = False
        self.reason = reason
        self.ended.callback(None)


class _Probe(Protocol):
    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.loseConnection()


class OriginStartError(Exception):
    """
    The origin server process did not come up.
    """


class _ChildServer:
    """
    An HTTP server run as a child process listening on 127.0.0.1:port.
    """

    name = "server"

    def __init__(self, reactor: Any, workdir: FilePath) -> None:
        self._reactor = reactor
        self.workdir = workdir
        self.docroot = workdir.child("docroot")
        self.docroot.makedirs()
        self.files = fillDocumentRoot(self.docroot)
        self.port = 0
        self._child: _ChildProtocol | None = None

    def argv(self, port: int) -> list[str]:
        raise NotImplementedError

    def prepare(self, port: int) -> None:
        """
        Write whatever the child needs before it starts.
        """

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @inlineCallbacks
    def start(self, attempts: int = 3, timeout: float = 10.0) -> Any:
        """
        Start the child and wait until it accepts connections.

        @raise OriginStartError: if it exits or never listens.
        """
        for _ in range(attempts):
            port = freePort()
            self.prepare(port)
            child = _ChildProtocol()
            argv = self.argv(port)
            self._reactor.spawnProcess(
                child, argv[0], argv, env=dict(os.environ), path=self.workdir.path
            )
            self._child = child
            listening = yield self._waitListening(child, port, timeout)
            if listening:
                self.port = port
                return self
            if child.running:
                yield self.stop()
        raise OriginStartError(
            f"{self.name} did not start: {self._child.output[-2000:]!r}"  # type: ignore[union-attr]
        )

    @inlineCallbacks
    def _waitListening(self, child: _ChildProtocol, port: int, timeout: float) -> Any:
        deadline = self._reactor.seconds() + timeout
        endpoint = TCP4ClientEndpoint(self._reactor, "127.0.0.1", port, timeout=1)
        while child.running and self._reactor.seconds() < deadline:
            try:
                yield endpoint.connect(Factory.forProtocol(_Probe))
            except Exception:
                yield deferLater(self._reactor, 0.02, lambda: None)
                continue
            return child.running
        return False

    @inlineCallbacks
    def stop(self) -> Any:
        """
        Terminate the child and wait for it to be gone.
        """
        child, self._child = self._child, None
        if child is None or not child.running:
            return
        child.transport.signalProcess("TERM")  # type: ignore[union-attr]
        timer = self._reactor.callLater(5, _kill, child)
        # TERM is how we stop it: the exit status it reports is not checked.
        yield child.ended
        if timer.active():
            timer.cancel()


def _kill(child: _ChildProtocol) -> None:
    if child.running:
        child.transport.signalProcess("KILL")  # type: ignore[union-attr]


NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {work}/access.log;
    client_body_temp_path {work}/tmp/body;
    proxy_temp_path {work}/tmp/proxy;
    fastcgi_temp_path {work}/tmp/fastcgi;
    uwsgi_temp_path {work}/tmp/uwsgi;
    scgi_temp_path {work}/tmp/scgi;
    types {{
        text/html html;
        text/css css;
        text/plain txt;
        application/javascript js;
        application/json json;
        application/octet-stream bin;
    }}
    default_type application/octet-stream;
    sendfile on;
    keepalive_requests 1000;
    gzip on;
    gzip_min_length 20;
    gzip_vary on;
    gzip_types text/css text/plain application/javascript application/json;
    server {{
        listen 127.0.0.1:{port};
        server_name www.example.test;
        root {docroot};
        location / {{
            autoindex on;
        }}
        location = /echo-uri {{
            default_type text/plain;
            return 200 "$request_method $request_uri args=$args\\n";
        }}
        location = /status/204 {{ return 204; }}
        location = /status/302 {{ return 302 /plain.txt; }}
        location = /status/307 {{ return 307 "http://other.example.test/elsewhere?x=1"; }}
        location = /status/403 {{ return 403; }}
        location = /status/410 {{ return 410; }}
        location = /status/418 {{ default_type text/plain; return 418 "short and stout\\n"; }}
        location = /status/500 {{ return 500; }}
        location = /status/503 {{ return 503; }}
        location = /cookies {{
            default_type text/plain;
            add_header Set-Cookie "a=1; Path=/";
            add_header Set-Cookie "b=2; Path=/; HttpOnly";
            add_header Set-Cookie "c=three; Max-Age=60; SameSite=Lax";
            add_header X-Multi one;
            add_header X-Multi two;
            add_header Cache-Control "private, max-age=30";
            add_header Link "</style.css>; rel=preload; as=style";
            add_header X-Utf8 "caf\u00e9 \u00fcn\u00efcode";
            return 200 "three cookies\\n";
        }}
        location = /echo-headers {{
            default_type text/plain;
            return 200 "cookie=[$http_cookie] ua=[$http_user_agent] accept=[$http_accept] custom=[$http_x_custom] long=[$http_x_long] expect=[$http_expect] length=[$content_length]\\n";
        }}
        location = /many-headers {{
            default_type text/plain;
{manyHeaders}
            return 200 "many headers\\n";
        }}
        location /dav/ {{
            dav_methods PUT DELETE;
            create_full_put_path on;
            client_max_body_size 16m;
        }}
    }}
}}
"""


class NginxOrigin(_ChildServer):
    """
    Debian's nginx in one process (no master, no daemon), its pid file,
    logs and temporary files in the work directory.
    """

    name = "nginx"

    @staticmethod
    def available() -> bool:
        return os.access(NGINX, os.X_OK)

    def __init__(self, reactor: Any, workdir: FilePath) -> None:
        super().__init__(reactor, workdir)
        dav = self.docroot.child("dav")
        dav.makedirs()
        os.chmod(dav.path, 0o777)
        os.utime(dav.path, (MTIME, MTIME))
        os.utime(self.docroot.path, (MTIME, MTIME))
        workdir.child("tmp").makedirs()

    def prepare(self, port: int) -> None:
        self.workdir.child("nginx.conf").setContent(
            NGINX_CONF.format(
                work=self.workdir.path,
                docroot=self.docroot.path,
                port=port,
                manyHeaders="\n".join(
                    f"            add_header X-Header-{i:02d} value-{i}-{'v' * i};"
                    for i in range(60)
                )
                + f"\n            add_header X-Long {'L' * 4000};",
            ).encode("utf-8")
        )

    def argv(self, port: int) -> list[str]:
        conf = self.workdir.child("nginx.conf").path
        return [
            NGINX,
            "-p",
            self.workdir.path,
            "-c",
            conf,
            "-e",
            self.workdir.child("error.log").path,
        ]


class PythonHTTPServerOrigin(_ChildServer):
    """
    C{python -m http.server} from the standard library.
    """

    name = "python-http.server"

    def argv(self, port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "--directory",
            self.docroot.path,
            str(port),
        ]
