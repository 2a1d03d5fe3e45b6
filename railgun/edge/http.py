"""
The edge's HTTP/1.1 server: twisted.web's L{HTTPChannel} and L{Request},
with the limits a proxy needs (431 for oversized request heads, 413 for
oversized bodies) and every complete request handed to the edge proxy.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.web import http

log = Logger()


def _rawResponse(status: int, reason: bytes, message: bytes) -> bytes:
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
        % (status, reason, len(message), message)
    )


class EdgeRequest(http.Request):
    """
    One client request; its body is collected by twisted.web (in memory up
    to 100 kB, in a temporary file beyond, so memory stays bounded), then the
    whole request goes to the proxy.
    """

    channel: EdgeChannel

    def handleContentChunk(self, data: bytes) -> None:
        if self.channel._countBody(data):
            super().handleContentChunk(data)

    def process(self) -> None:
        self.channel.factory.proxy.handle(self)


class EdgeChannel(http.HTTPChannel):
    """
    An HTTP/1.1 connection from a client, answering 431 when the request
    line and headers exceed C{totalHeadersSize} and 413 when the body
    exceeds C{maxBodyBytes}, then closing (the rest of the request is not
    read).
    """

    maxBodyBytes = 2 * 1024**3
    _bodyBytes = 0

    def lineReceived(self, line: bytes) -> None:
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            self._refuse(431, b"Request Header Fields Too Large", b"request header section too large\n")
            return
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        # One line longer than the whole head may be: same answer.
        self._refuse(431, b"Request Header Fields Too Large", b"request header line too large\n")

    def allHeadersReceived(self) -> None:
        self._bodyBytes = 0
        if self.length is not None and self.length > self.maxBodyBytes:
            self._refuse(413, b"Content Too Large", b"request body too large\n")
            return
        super().allHeadersReceived()

    def _refuse(self, status: int, reason: bytes, message: bytes) -> None:
        assert self.transport is not None
        log.info("refusing a request from {peer}: {status}", peer=self.transport.getPeer(), status=status)
        self.transport.write(_rawResponse(status, reason, message))
        # Stop parsing: nothing more from this client is read.
        self.dataReceived = self.lineReceived = lambda *a: None  # type: ignore[method-assign]
        self.loseConnection()

    def _countBody(self, data: bytes) -> bool:
        self._bodyBytes += len(data)
        if self._bodyBytes > self.maxBodyBytes:
            self._refuse(413, b"Content Too Large", b"request body too large\n")
            return False
        return True


class EdgeHTTPFactory(http.HTTPFactory):
    """
    Builds L{EdgeChannel}s whose requests go to C{proxy}.
    """

    def __init__(self, proxy: Any, *, reactor: Any, maxHeaderBytes: int, maxBodyBytes: int) -> None:
        super().__init__(reactor=reactor, timeout=120)
        self.proxy = proxy
        self._maxHeaderBytes = maxHeaderBytes
        self._maxBodyBytes = maxBodyBytes

    def buildProtocol(self, addr: Any) -> EdgeChannel:  # type: ignore[override]
        channel = EdgeChannel()
        channel.factory = self
        channel.requestFactory = EdgeRequest
        channel.totalHeadersSize = self._maxHeaderBytes
        channel.MAX_LENGTH = self._maxHeaderBytes
        channel.maxBodyBytes = self._maxBodyBytes
        channel.timeOut = self.timeOut  # type: ignore[assignment]
        channel.callLater = self.reactor.callLater  # type: ignore[method-assign,assignment]
        return channel

    def log(self, request: Any) -> None:
        # Access logging is the proxy's (with the request id); twisted.web's
        # own combined log line would repeat it.
        pass
