"""
The origin server of the chaos test (L{tests.test_chaos}), run as a child
process so that the test can kill it (SIGKILL) and freeze it (SIGSTOP).

Every body it serves can be checked byte for byte by the client: its first
line names the path, the request's id (the C{x-chaos-rid} request header)
and the page's version, from which L{chaosBody} rebuilds the whole body;
its last line is the SHA-256 of the rest. Pages change on every hit (the
version counts the hits of each path), a little, so deltas cross the link.
Every POST's id is appended to a log file before the answer is written,
so the test can count how many times each POST reached the origin.

Run: C{python -m tests.chaosorigin PORT POSTLOG}.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import sys
from typing import Any

#: the lines of a page; one of them changes with each version.
_LINES = 240


def chaosBody(path: str, rid: str, version: int) -> bytes:
    """
    The body the chaos origin serves for C{path} to the request C{rid} at
    C{version}: about 16 KB of text, a few lines differing between versions.

    @return: the body, ending with a line holding the SHA-256 of the rest.
    """
    head = f"chaos path={path} rid={rid} version={version}\n"
    lines = [
        f"<p>{path} line {i}: the quick brown fox jumps over the lazy dog</p>\n"
        for i in range(_LINES)
    ]
    lines[version % _LINES] = f"<p>{path} changed at version {version}</p>\n"
    content = (head + "".join(lines)).encode()
    return (
        content + b"end sha256=" + hashlib.sha256(content).hexdigest().encode() + b"\n"
    )


def parseHead(body: bytes) -> tuple[str, str, int] | None:
    """
    The path, request id and version a chaos body names in its first line.

    @return: L{None} when C{body} does not start like a chaos body.
    """
    first = body.split(b"\n", 1)[0].decode("ascii", "replace").split(" ")
    if len(first) != 4 or first[0] != "chaos":
        return None
    try:
        fields = dict(part.split("=", 1) for part in first[1:])
        return fields["path"], fields["rid"], int(fields["version"])
    except (KeyError, ValueError):
        return None


def main(port: int, postLog: str) -> None:
    """
    Serve on 127.0.0.1:C{port} until killed.

      - C{GET /v/N}: a text page with a Content-Length, written at once.
      - C{GET /c/N}: a text page sent chunked in four parts 20 ms apart.
      - C{GET /raw/N}: the same bytes as C{application/octet-stream} (not
        a version: streamed through the link as is), in four parts 20 ms
        apart, with a Content-Length, except C{/raw/1}, sent chunked (the
        edge relays it chunked: only its last chunk says it is complete).
      - C{GET /u/N}: a text page with no length (neither Content-Length
        nor chunked: its end is the close of the connection), in four
        parts 20 ms apart; every third hit of a path is cut after two
        parts by a reset (SO_LINGER 0, then close: an RST), the others end
        with a clean close.
      - C{POST /submit}: logs the request id, answers a text page.
    """
    from twisted.internet import reactor
    from twisted.web.resource import Resource
    from twisted.web.server import NOT_DONE_YET, Site

    log = os.open(postLog, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    hits: dict[str, int] = {}

    def drip(request: Any, body: bytes, parts: int = 4) -> None:
        size = -(-len(body) // parts)
        pieces = [body[i : i + size] for i in range(0, len(body), size)]

        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def next() -> None:
            if gone:
                return
            if pieces:
                request.write(pieces.pop(0))
                reactor.callLater(0.02, next)
            else:
                request.finish()

        next()

    def unframed(request: Any, body: bytes, reset: bool) -> None:
        # Written on the connection itself: twisted.web frames every
        # HTTP/1.1 response, and this one must have no framing at all.
        transport = request.channel.transport
        size = -(-len(body) // 4)
        pieces = [body[i : i + size] for i in range(0, len(body), size)]
        transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\n"
            b"connection: close\r\n\r\n"
        )

        def next() -> None:
            if reset and len(pieces) == 2:
                transport.getHandle().setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                transport.abortConnection()
            elif pieces:
                transport.write(pieces.pop(0))
                reactor.callLater(0.02, next)
            else:
                transport.loseConnection()

        next()

    class Chaos(Resource):
        isLeaf = True

        def render_GET(self, request: Any) -> Any:
            path = request.path.decode("ascii", "replace")
            rid = (request.getHeader(b"x-chaos-rid") or b"-").decode("ascii")
            version = hits.get(path, 0)
            hits[path] = version + 1
            body = chaosBody(path, rid, version)
            if path.startswith("/v/"):
                request.setHeader(b"content-type", b"text/html; charset=utf-8")
                return body
            if path.startswith("/u/"):
                unframed(request, body, reset=version % 3 == 2)
                return NOT_DONE_YET
            if path.startswith("/c/"):
                request.setHeader(b"content-type", b"text/html; charset=utf-8")
            elif path.startswith("/raw/"):
                request.setHeader(b"content-type", b"application/octet-stream")
                if not path.endswith("1"):
                    request.setHeader(b"content-length", b"%d" % len(body))
            else:
                request.setResponseCode(404)
                return b"no such page\n"
            drip(request, body)
            return NOT_DONE_YET

        def render_POST(self, request: Any) -> bytes:
            rid = (request.getHeader(b"x-chaos-rid") or b"-").decode("ascii")
            request.content.read()
            # Logged before the answer: a POST the origin saw is counted
            # even when the process is killed before it answers.
            os.write(log, f"POST {rid}\n".encode())
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return chaosBody("/submit", rid, 0)

    site = Site(Chaos())
    site.displayTracebacks = False
    reactor.listenTCP(port, site, interface="127.0.0.1", backlog=128)
    reactor.run()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
