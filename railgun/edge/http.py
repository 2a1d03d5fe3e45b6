"""
The edge's HTTP/1.1 server: twisted.web's L{HTTPChannel} and L{Request},
with the limits a proxy needs (431 for oversized request heads, 413 for
oversized bodies), and request bodies streamed to the proxy as they arrive.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from io import BytesIO
from typing import Any

from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.http_headers import Headers

from railgun._compat import web as _web
from railgun._sockets import tuneForVolume, writeEagerly
from railgun.edge.body import RequestBody
from railgun.http.headers import FRAMING_FIELDS, methodProblem, requestFieldProblem

log = Logger()


def _rawResponse(status: int, reason: bytes, message: bytes) -> bytes:
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
        % (status, reason, len(message), message)
    )


#: A request body larger than this (or chunked) gets its connection's read
#: size raised (L{tuneForVolume}): 64 KiB reads cost the edge ~15% more CPU
#: per uploaded byte than 256 KiB ones.
LARGE_BODY = 1024 * 1024


#: Reason phrases by status, for the statuses twisted.web has none for.
_PHRASES = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}


class EdgeRequest(http.Request):
    """
    One client request. A request with a body goes to the proxy as soon as
    its head has arrived, and its body is relayed as it arrives
    (L{RequestBody}); one without goes when complete, as twisted.web does.

    @ivar body: the body being received, or L{None} when there is none.
    """

    channel: EdgeChannel
    body: RequestBody | None = None
    _onGone: Callable[[Failure], None] | None = None

    def whenGone(self, callback: Callable[[Failure], None]) -> None:
        """
        Call C{callback} with the reason if the client's connection is lost
        before the response is finished: what C{notifyFinish()}'s errback
        tells, without a L{Deferred} for every request.
        """
        self._onGone = callback

    def setResponseCode(self, code: int, message: bytes | None = None) -> None:
        # twisted.web knows no reason phrase for some statuses the edge
        # sends or relays (421, 431, ...): take Python's rather than
        # "Unknown Status".
        if message is None and code not in http.RESPONSES:
            message = _PHRASES.get(code)
        super().setResponseCode(code, message)

    def connectionLost(self, reason: Failure) -> None:
        factory = self.channel.factory if self.channel is not None else None
        super().connectionLost(reason)
        if factory is not None:
            factory.proxy.requestEnded(self, finished=False)
        self.abandon(reason)

    def abandon(self, reason: Failure) -> None:
        """
        Give up serving this request (its client is gone, or was refused
        in the middle of its body): whatever serves it stops, its stream
        reset, so no partial body ever ends as if complete.
        """
        onGone, self._onGone = self._onGone, None
        if onGone is not None:
            onGone(reason)

    def finish(self) -> None:
        super().finish()
        # The callback holds whatever serves this request: let it go now
        # rather than through the cycle collector.
        self._onGone = None

    def gotLength(self, length: int | None) -> None:
        # Nothing is collected here: bodies stream (see RequestBody).
        self.content = BytesIO()
        if length != 0:
            transport = self.channel.transport
            assert transport is not None
            self.body = RequestBody(
                length,
                transport.pauseProducing,  # type: ignore[attr-defined]
                transport.resumeProducing,  # type: ignore[attr-defined]
            )
            if length is None or length > LARGE_BODY:
                tuneForVolume(transport)

    def startStreaming(self, command: bytes, path: bytes, version: bytes) -> None:
        """
        The head of a request with a body has arrived: hand it to the proxy
        now; the body follows.
        """
        self.method, self.uri, self.clientproto = command, path, version
        self.channel.factory.proxy.handle(self)

    def handleContentChunk(self, data: bytes) -> None:
        channel = getattr(self, "channel", None)
        if channel is None:
            # Answered early and finished: twisted.web has let go of this
            # request, but body bytes already read still come through.
            return
        if channel._countBody(data) and self.body is not None:
            self.body.dataReceived(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.body is not None:
            # Already being served; this only says the body is complete.
            self.body.finished()
            return
        # twisted.web's version also parses the query string and form
        # bodies into args, which a proxy forwards untouched: skipped.
        self.method, self.uri, self.clientproto = command, path, version
        self.path = path.split(b"?", 1)[0]
        self.args = {}
        self.process()

    def write(self, data: bytes) -> None:
        if self.startedWriting:
            super().write(data)
            return
        if self.body is not None and not self.body.complete:
            # Answered before the client finished sending its body (an
            # error, or an origin that does not read it): what is left of
            # the body will not be read, so this connection cannot carry
            # another request.
            self.channel.persistent = False
            self.responseHeaders.setRawHeaders(b"connection", [b"close"])
        if not data:
            super().write(data)
            return
        # The head and the first body bytes, written by twisted.web one
        # after the other, leave in one send (see EdgeChannel.writeHeaders).
        channel = self.channel
        channel.holdHead = True
        try:
            super().write(data)
        finally:
            channel.holdHead = False
            channel.flushHead()

    def process(self) -> None:
        self.channel.factory.proxy.handle(self)


#: seconds a request head has to arrive in, from its first byte (nginx's
#: client_header_timeout is 60 s too).
HEAD_TIMEOUT = 60.0

#: seconds a client may read nothing of a response before it is cut off.
SEND_TIMEOUT = 120.0


class BodyTooLarge(Exception):
    """
    A request body went over C{max_body_bytes} while it was being relayed.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body over {limit} bytes")


class EdgeChannel(http.HTTPChannel):
    """
    An HTTP/1.1 connection from a client, answering 431 when the request
    line and headers exceed C{totalHeadersSize} and 413 when the body
    exceeds C{maxBodyBytes}, then closing (the rest of the request is not
    read).
    """

    maxBodyBytes = 2 * 1024**3
    _bodyBytes = 0
    _peer: IAddress | None = None
    _host: IAddress | None = None
    _secure: bool | None = None
    #: set by EdgeRequest.write around twisted.web's first write of a
    #: response: writeHeaders then keeps the head for the body bytes.
    holdHead = False
    _heldHead: bytes | None = None
    #: when the first byte of the request head being read arrived
    _headStarted: float | None = None
    seconds: Callable[[], float]
    _sendDeadline: Any = None
    #: pipelined requests read while the client was not reading responses
    _pipelined: bytes | None = None
    #: the framing fields (L{FRAMING_FIELDS}) received in the current head
    _framing: frozenset[bytes] = frozenset()
    #: whether this connection was refused (answered with an error, and
    #: closing): nothing more is answered on it
    _refused = False

    # The addresses and the security of a connection do not change: asked
    # for by every request (twisted.web's Request.__init__ takes both
    # addresses, getHost being a system call), they are looked up once.

    def getPeer(self) -> IAddress:
        if self._peer is None:
            self._peer = super().getPeer()
        return self._peer

    def getHost(self) -> IAddress:
        if self._host is None:
            self._host = super().getHost()
        return self._host

    def isSecure(self) -> bool:
        if self._secure is None:
            self._secure = super().isSecure()
        return self._secure

    def connectionMade(self) -> None:
        super().connectionMade()
        # A response goes out in the write() that completes it, not on the
        # reactor's next turn (see railgun._sockets).
        writeEagerly(self.transport)

    # Deadlines twisted.web does not keep: its idle timeout restarts with
    # every byte received, and stops while a request is being answered.

    def dataReceived(self, data: bytes) -> None:
        if not _web.handlingRequest(self) and self.line_mode:
            # Bytes of a request head: all of it must arrive within
            # HEAD_TIMEOUT of its first byte, however slowly it trickles
            # (slowloris). Checked as bytes come, not with a timer per
            # request: a client that stops sending meets the idle timeout.
            now = self.seconds()
            if self._headStarted is None:
                self._headStarted = now
            elif now - self._headStarted > HEAD_TIMEOUT:
                self._refuse(
                    408, b"Request Timeout", b"request head not received in time\n"
                )
                return
        super().dataReceived(data)

    def pauseProducing(self) -> None:
        # The client is not reading what we send: it may be slow, but not
        # forever (its response holds a stream and an origin connection).
        super().pauseProducing()
        if self._sendDeadline is None:
            self._sendDeadline = self.callLater(SEND_TIMEOUT, self._clientNotReading)

    def resumeProducing(self) -> None:
        self._cancelSendDeadline()
        super().resumeProducing()
        pipelined, self._pipelined = self._pipelined, None
        if pipelined is not None:
            # Requests read while the client was not reading responses.
            _web.setHandlingRequest(self, False)
            self.setLineMode(pipelined)

    def _clientNotReading(self) -> None:
        self._sendDeadline = None
        assert self.transport is not None
        log.info(
            "client {peer} read nothing of its response for {s} s: closing",
            peer=self.transport.getPeer(),
            s=SEND_TIMEOUT,
        )
        self.transport.abortConnection()  # type: ignore[attr-defined]

    def requestDone(self, request: Any) -> None:
        pending = _web.takeBufferedRequests(self) if self.persistent else None
        if pending is not None:
            # The client sent more requests but is not reading responses:
            # answering them now would only pile their bodies up in memory.
            # They are parsed when it reads again (resumeProducing).
            super().requestDone(request)
            self._pipelined = pending
            _web.setHandlingRequest(self, True)  # (what is read is buffered)
            return
        super().requestDone(request)

    def _cancelSendDeadline(self) -> None:
        if self._sendDeadline is not None and self._sendDeadline.active():
            self._sendDeadline.cancel()
        self._sendDeadline = None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancelSendDeadline()
        super().connectionLost(reason)

    def writeHeaders(
        self, version: bytes, code: bytes, reason: bytes, headers: Any
    ) -> None:
        if not isinstance(headers, Headers):
            super().writeHeaders(version, code, reason, headers)
            return
        # As twisted.web writes them, in one piece rather than as a
        # sequence of small strings each checked by the transport.
        parts = [version, b" ", code, b" ", reason, b"\r\n"]
        for name, values in headers.getAllRawHeaders():
            for value in values:
                parts += (name, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        head = b"".join(parts)
        if self.holdHead:
            # Sent with the body bytes that follow in the same
            # Request.write: with eager writes, one send instead of two
            # (and one wake-up of the client).
            self._heldHead = head
            return
        assert self.transport is not None
        self.transport.write(head)

    def flushHead(self) -> None:
        """
        Send a response head still held (a HEAD request, or a status
        without a body: no body bytes followed it).
        """
        head, self._heldHead = self._heldHead, None
        if head is not None:
            assert self.transport is not None
            self.transport.write(head)

    def write(self, data: bytes) -> None:
        head, self._heldHead = self._heldHead, None
        assert self.transport is not None
        self.transport.write(data if head is None else head + data)

    def writeSequence(self, iovec: Any) -> None:
        head, self._heldHead = self._heldHead, None
        assert self.transport is not None
        self.transport.writeSequence(iovec if head is None else [head, *iovec])

    def lineReceived(self, line: bytes) -> None:
        if _web.receivedHeaderSize(self) + len(line) > self.totalHeadersSize:
            self._refuse(
                431,
                b"Request Header Fields Too Large",
                b"request header section too large\n",
            )
            return
        if line[:1] in (b" ", b"\t"):
            # obs-fold (RFC 9112 5.2), which twisted.web joins to the line
            # before: a server in front of another must refuse it, or the
            # two can read different headers. (Whitespace before the request
            # line, the only other place a line can start with it, is
            # refused as well: 2.2.)
            self._refuseBadRequest(400, "obsolete line folding in the request head")
            return
        super().lineReceived(line)

    def headerReceived(self, line: bytes) -> bool:
        name, colon, value = line.partition(b":")
        problem = (
            requestFieldProblem(name, value.strip(b" \t"), self._framing)
            if colon
            else (400, "a header line without a colon")
        )
        lowered = name.lower()
        if (
            problem is None
            and lowered == b"transfer-encoding"
            and _web.requestLine(self)[2] == b"HTTP/1.0"
        ):
            # RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has
            # faulty framing (a 1.0 server behind could read it otherwise).
            problem = (400, "Transfer-Encoding in an HTTP/1.0 request")
        if problem is not None:
            self._refuseBadRequest(*problem)
            return False
        if lowered in FRAMING_FIELDS:
            self._framing = self._framing | {lowered}
        return super().headerReceived(line)  # type: ignore[no-any-return]

    def lineLengthExceeded(self, line: bytes) -> None:
        # One line longer than the whole head may be: same answer.
        self._refuse(
            431, b"Request Header Fields Too Large", b"request header line too large\n"
        )

    def allHeadersReceived(self) -> None:
        self._headStarted = None
        self._bodyBytes = 0
        self._framing = frozenset()
        problem = methodProblem(_web.requestLine(self)[0])
        if problem is not None:
            self._refuseBadRequest(400, problem)
            return
        if self.length is not None and self.length > self.maxBodyBytes:
            self._refuse(413, b"Content Too Large", b"request body too large\n")
            return
        super().allHeadersReceived()
        request = self.requests[-1]
        if request.body is not None:
            request.startStreaming(*_web.requestLine(self))

    def _refuseBadRequest(self, status: int, why: str) -> None:
        """
        Refuse a malformed request (L{_refuse}), saying why.
        """
        self._refuse(status, _PHRASES[status], why.encode("utf-8") + b"\n")

    def _refuse(self, status: int, reason: bytes, message: bytes) -> None:
        if self._refused:
            # Already answered and closing: twisted.web may still be
            # decoding the rest of the read that went over a limit (every
            # chunk of a chunked body), and it gets no second answer.
            return
        self._refused = True
        assert self.transport is not None
        log.info(
            "refusing a request from {peer}: {status}",
            peer=self.transport.getPeer(),
            status=status,
        )
        if any(request.startedWriting for request in self.requests):
            # A response is already on its way (a streamed request): no
            # room for another; closing is the only signal left.
            self.transport.abortConnection()  # type: ignore[attr-defined]
            return
        self.transport.write(_rawResponse(status, reason, message))
        # Stop parsing: nothing more from this client is read, and no other
        # timer closes the connection again.
        self.dataReceived = self.lineReceived = lambda *a: None  # type: ignore[method-assign,assignment]
        self.setTimeout(None)
        self._headStarted = None
        self.loseConnection()

    def _countBody(self, data: bytes) -> bool:
        if self._refused:
            return False
        self._bodyBytes += len(data)
        if self._bodyBytes > self.maxBodyBytes:
            request = self.requests[-1] if self.requests else None
            self._refuse(413, b"Content Too Large", b"request body too large\n")
            if request is not None:
                # twisted.web's chunked decoder goes on with the rest of
                # this read, up to the terminating chunk: the request must
                # not take that for the end of its body.
                request.abandon(Failure(BodyTooLarge(self.maxBodyBytes)))
            return False
        return True

    def allContentReceived(self) -> None:
        if not self.requests or self._refused:
            # The request was answered and let go of before its body ended
            # (an early answer on a connection that closes), or refused
            # with its head: the rest is not for anyone.
            return
        super().allContentReceived()


class EdgeHTTPFactory(http.HTTPFactory):
    """
    Builds L{EdgeChannel}s whose requests go to C{proxy}.
    """

    noisy = False  # no "Starting factory" line

    def __init__(
        self, proxy: Any, *, reactor: Any, maxHeaderBytes: int, maxBodyBytes: int
    ) -> None:
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
        channel.seconds = self.reactor.seconds
        return channel

    def log(self, request: Any) -> None:
        # Access logging is the proxy's (with the request id), instead of
        # twisted.web's combined log line: called as each response is
        # finished.
        self.proxy.requestEnded(request, finished=True)
