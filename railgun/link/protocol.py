"""
The multiplexed link: many streams over one long-lived connection.

L{LinkProtocol} owns the connection: it parses frames, runs the HELLO
handshake, flow control, liveness and drain, and schedules outbound frames
(control first, then a fair round-robin of stream frames, written with one
C{writeSequence} per reactor turn).  Each stream is a L{LinkStream}, an
ordinary Twisted transport (C{ITransport}, C{IConsumer}, C{IPushProducer})
under a L{StreamProtocol}.

See C{docs/protocol.md} for the wire format and the rules implemented here.
"""

from __future__ import annotations

import hmac
from collections import deque
from collections.abc import Callable, Iterable
from enum import Enum, auto
from operator import itemgetter
from struct import Struct
from typing import Any

from attrs import define
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IConsumer,
    IDelayedCall,
    IHalfCloseableProtocol,
    IProducer,
    IPullProducer,
    IPushProducer,
    IReactorTime,
    ITransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from railgun._sockets import noDelay, tuneForVolume, writeEagerly

from .counting import ByteCounters
from .errors import (
    ErrorCode,
    LinkLost,
    LinkUnavailable,
    ProtocolError,
    StreamRefused,
    StreamReset,
    describeCode,
    errorCodeFromWire,
)
from .frames import (
    FLAG_END_STREAM,
    MAX_STREAM_ID,
    MAX_WINDOW,
    PROTOCOL_VERSION,
    TYPE_DATA,
    TYPE_HEADERS,
    Data,
    FrameParser,
    GoAway,
    Headers,
    Hello,
    Ping,
    Pong,
    Reset,
    Settings,
    Unknown,
    Window,
    encodeStreamFrameHeader,
    truncateReason,
)
from .headerblock import (
    DEFAULT_MAX_HEADER_LIST_SIZE,
    Header,
    HeaderBlockDecoder,
    HeaderBlockEncoder,
    blockFits,
)
from .requestid import RequestIdGenerator

REQUEST_ID_HEADER = b":request-id"
MAX_HEADERS_PER_STREAM = 16
_HEX = b"0123456789abcdefABCDEF"
_pingOpaque = Struct("!Q")
_headerName = itemgetter(0)
# One shared reason for every clean stream end, as Twisted shares
# twisted.internet.protocol.connectionDone: building a Failure per stream
# costs more than the rest of the stream's teardown.
_STREAM_DONE = Failure(ConnectionDone("stream ended cleanly"))


@implementer(IHalfCloseableProtocol)
class StreamProtocol(Protocol):
    """
    Base class for the handler of one stream.

    The link calls, in order: C{makeConnection(stream)}, C{headersReceived}
    (possibly again later, e.g. for trailers), C{dataReceived},
    C{readConnectionLost} (the peer sent END_STREAM), and finally
    C{connectionLost} (C{ConnectionDone} when both sides ended cleanly; a
    L{StreamReset}, L{StreamRefused} or L{LinkLost} failure otherwise).

    @ivar transport: the L{LinkStream}.
    """

    # Narrowed from ITransport | None: handlers run only while connected.
    transport: LinkStream = None  # type: ignore[assignment]

    def headersReceived(self, headers: list[Header], endStream: bool) -> None:
        """
        A header block arrived on the stream.

        @param headers: the decoded headers (C{:request-id} removed).
        @param endStream: the peer ended its side with this block.
        """

    def readConnectionLost(self) -> None:
        """
        The peer ended its side of the stream: no more data will arrive.
        """

    def writeConnectionLost(self) -> None:
        """
        Part of C{IHalfCloseableProtocol}; the link does not call it.
        """


@define
class LinkStats:
    """
    Counters of one link, for statistics.

    @ivar framesSent: frames written.
    @ivar framesReceived: frames parsed.
    @ivar streamsOpened: streams we opened.
    @ivar streamsAccepted: streams the peer opened that we accepted.
    @ivar streamsRefused: peer streams answered with RESET REFUSED_STREAM.
    @ivar resetsReceived: RESET frames received for open streams.
    @ivar unknownFrames: frames of unknown type, ignored.
    @ivar pingsSent: PINGs we sent.
    @ivar pongsReceived: PONGs answering our PINGs.
    """

    framesSent: int = 0
    framesReceived: int = 0
    streamsOpened: int = 0
    streamsAccepted: int = 0
    streamsRefused: int = 0
    resetsReceived: int = 0
    unknownFrames: int = 0
    pingsSent: int = 0
    pongsReceived: int = 0


class StreamState(Enum):
    """
    The wire state of a stream, named as in HTTP/2.
    """

    OPEN = auto()
    HALF_CLOSED_LOCAL = auto()  # we sent END_STREAM
    HALF_CLOSED_REMOTE = auto()  # the peer sent END_STREAM
    CLOSED = auto()


class _LinkState(Enum):
    HANDSHAKE = auto()  # waiting for the peer's HELLO
    READY = auto()
    CLOSING = auto()  # transport close requested; input ignored
    CLOSED = auto()  # connectionLost happened


class _HeadersItem:
    """
    A header list waiting in a stream queue; encoded only when written, so
    that HPACK blocks reach the wire in the order they were encoded.
    """

    __slots__ = ("headers", "endStream")

    def __init__(self, headers: list[Any], endStream: bool) -> None:
        self.headers = headers
        self.endStream = endStream


class _EndMarker:
    __slots__ = ()


_END = _EndMarker()
_DATA_TYPES = (bytes, memoryview)


class _RateLimit:
    """
    Count events in a rolling one-second window.
    """

    def __init__(self, limit: int, clock: IReactorTime) -> None:
        self._limit = limit
        self._clock = clock
        self._times: deque[float] = deque()

    def exceeded(self) -> bool:
        """
        Record one event.

        @return: C{True} when more than the limit happened in the last second.
        """
        now = self._clock.seconds()
        times = self._times
        times.append(now)
        horizon = now - 1.0
        while times[0] <= horizon:
            times.popleft()
        return len(times) > self._limit


@implementer(IPushProducer)
class _PullPump:
    """
    Drive a pull producer as a push producer, one C{resumeProducing} per
    reactor turn, on the link's clock (not the global cooperator).
    """

    def __init__(self, producer: IPullProducer, clock: IReactorTime) -> None:
        self._producer = producer
        self._clock = clock
        self._call: IDelayedCall | None = None
        self._paused = False
        self._stopped = False

    def start(self) -> None:
        self._schedule()

    def _schedule(self) -> None:
        if self._call is None and not self._paused and not self._stopped:
            self._call = self._clock.callLater(0, self._pull)

    def _pull(self) -> None:
        self._call = None
        self._producer.resumeProducing()
        self._schedule()

    def pauseProducing(self) -> None:
        self._paused = True
        if self._call is not None:
            self._call.cancel()
            self._call = None

    def resumeProducing(self) -> None:
        self._paused = False
        self._schedule()

    def stopPumping(self) -> None:
        self._stopped = True
        self.pauseProducing()

    def stopProducing(self) -> None:
        self.stopPumping()
        self._producer.stopProducing()


@implementer(ITransport, IConsumer, IPushProducer)
class LinkStream:
    """
    One stream of a link, seen by its L{StreamProtocol} as its transport.

    Outbound: C{write} queues body bytes, sent as the windows allow;
    C{loseConnection} half-closes (END_STREAM after the queued data);
    C{reset}/C{abortConnection} abort at once.  A registered producer is
    paused while more than the link's C{streamHighWater} bytes wait.

    Inbound: C{pauseProducing} stops delivery to the protocol (data is then
    buffered, bounded by the stream window); flow-control credit is returned
    only for delivered data.

    @ivar streamId: the stream id.
    @ivar requestId: the request id carried by the opening HEADERS.
    @ivar link: the L{LinkProtocol}.
    @ivar counters: body bytes sent and received on this stream.
    @ivar protocol: the L{StreamProtocol}, once connected.
    @ivar state: the L{StreamState}.
    @ivar producer: the registered producer, if any.
    """

    _log = Logger()

    def __init__(
        self,
        link: LinkProtocol,
        streamId: int,
        requestId: str,
        sendWindow: int,
        recvWindow: int,
    ) -> None:
        self.link = link
        self.streamId = streamId
        self.requestId = requestId
        self.counters = ByteCounters()
        self.protocol: Any = None
        self.state = StreamState.OPEN
        self.producer: Any = None
        # Outbound.
        self._outbound: deque[Any] = deque()
        self._outboundBytes = 0
        self._endQueued = False
        self._sendWindow = sendWindow
        self._scheduled = False
        self._pendingOpen: _HeadersItem | None = None
        self._producerPaused = False
        self._pullPump: _PullPump | None = None
        # Inbound.
        self._recvWindow = recvWindow
        self._unacked = 0
        self._inbound: deque[Any] = deque()
        self._inboundBytes = 0
        self._consumerPaused = False
        self._delivering = False
        self._remoteEnded = False
        self._readLostDelivered = False
        self._headersReceived = 0
        self._halfCloseable = False
        self._lost = False

    def __repr__(self) -> str:
        return f"<LinkStream {self.streamId} {self.requestId} {self.state.name}>"

    # Connection to the protocol.

    def _connect(self, protocol: Any) -> bool:
        self.protocol = protocol
        self._halfCloseable = IHalfCloseableProtocol.providedBy(protocol)
        return self._call(protocol.makeConnection, self)

    def _call(self, method: Callable[..., Any], *args: Any) -> bool:
        """
        Call into the stream's protocol or producer; an exception resets the
        stream (INTERNAL_ERROR) instead of breaking the link.

        @return: C{True} when the call returned normally.
        """
        try:
            method(*args)
        except Exception:
            self._log.failure(
                "stream {streamId} (request {requestId}) handler raised; "
                "resetting the stream",
                streamId=self.streamId,
                requestId=self.requestId,
            )
            self.reset(ErrorCode.INTERNAL_ERROR)
            return False
        return True

    # ITransport / outbound.

    def sendHeaders(self, headers: Iterable[Header], endStream: bool = False) -> None:
        """
        Queue a header block (response headers, trailers...) behind the data
        already written.

        @param headers: (name, value) byte pairs, names lowercase.
        @param endStream: end our side of the stream with this block.
        @raise RuntimeError: when our side was already ended.
        @raise ValueError: when the block could exceed the peer's limits.
        """
        if self._lost:
            return
        if self._endQueued or self.state in (
            StreamState.HALF_CLOSED_LOCAL,
            StreamState.CLOSED,
        ):
            raise RuntimeError(f"stream {self.streamId}: headers after END_STREAM")
        headers = list(headers)
        self.link._checkHeaderSize(headers)
        self._outbound.append(_HeadersItem(headers, endStream))
        if endStream:
            self._endQueued = True
        self.link._streamHasOutput(self)

    def write(self, data: bytes) -> None:
        """
        Queue body bytes.  Dropped silently once the stream is ended or reset,
        as a TCP transport drops writes after C{loseConnection}.
        """
        if data.__class__ is not bytes:
            if isinstance(data, str):
                raise TypeError("LinkStream.write takes bytes, not str")
            data = bytes(data)
        if self._lost or self._endQueued or not data:
            return
        self._outbound.append(data)
        self._outboundBytes += len(data)
        link = self.link
        if not self._scheduled:
            link._streamHasOutput(self)
        if self.producer is not None and not self._producerPaused:
            self._updateProducer()

    def writeSequence(self, seq: Iterable[bytes]) -> None:
        """
        Queue several chunks of body bytes.
        """
        for chunk in seq:
            self.write(chunk)

    def loseConnection(self) -> None:
        """
        Half-close: send END_STREAM once all queued data is sent.  The stream
        is over when the peer ends its side too.
        """
        if self._lost or self._endQueued:
            return
        self._endQueued = True
        self._outbound.append(_END)
        self.link._streamHasOutput(self)

    def reset(self, code: ErrorCode = ErrorCode.CANCEL) -> None:
        """
        Abort the stream now: send RESET, drop queued data both ways, and
        call C{connectionLost} with a local L{StreamReset}.
        """
        if self._lost:
            return
        if self.state is not StreamState.CLOSED and self._pendingOpen is None:
            # A stream whose opening HEADERS never left needs no RESET.
            self.link._queueControl(Reset(self.streamId, code).encode())
        self._lose(Failure(StreamReset(code, remote=False)))

    def abortConnection(self) -> None:
        """
        Same as C{reset(ErrorCode.CANCEL)}.
        """
        self.reset(ErrorCode.CANCEL)

    def getPeer(self) -> Any:
        """
        @return: the peer address of the link's transport.
        """
        return self.link.transport.getPeer()  # type: ignore[union-attr]

    def getHost(self) -> Any:
        """
        @return: the host address of the link's transport.
        """
        return self.link.transport.getHost()  # type: ignore[union-attr]

    # IConsumer.

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        """
        Register the producer of this stream's outbound body; it is paused
        while the queue is above the high-water mark or the link's transport
        is paused.

        @raise RuntimeError: when a producer is already registered.
        """
        if self.producer is not None:
            raise RuntimeError(
                f"stream {self.streamId}: producer {self.producer!r} still registered"
            )
        if self._lost:
            producer.stopProducing()
            return
        if streaming:
            self.producer = producer
        else:
            self._pullPump = _PullPump(producer, self.link._clock)  # type: ignore[arg-type]
            self.producer = self._pullPump
        self._producerPaused = False
        self.link._producerStreams.add(self)
        self._updateProducer()
        if self._pullPump is not None and not self._producerPaused:
            self._pullPump.start()

    def unregisterProducer(self) -> None:
        """
        Forget the producer.
        """
        if self._pullPump is not None:
            self._pullPump.stopPumping()
            self._pullPump = None
        self.producer = None
        self._producerPaused = False
        self.link._producerStreams.discard(self)

    def _updateProducer(self) -> None:
        """
        Pause or resume the producer from the queue size (with hysteresis)
        and the link's transport state.
        """
        producer = self.producer
        if producer is None:
            return
        link = self.link
        if not self._producerPaused:
            if link._transportPaused or self._outboundBytes >= link.streamHighWater:
                self._producerPaused = True
                self._call(producer.pauseProducing)
        elif not link._transportPaused and self._outboundBytes <= link.streamLowWater:
            self._producerPaused = False
            self._call(producer.resumeProducing)

    # IPushProducer (inbound delivery).

    def pauseProducing(self) -> None:
        """
        Stop delivering data to the protocol; it is buffered meanwhile and no
        credit is returned for it.
        """
        self._consumerPaused = True

    def resumeProducing(self) -> None:
        """
        Deliver what was buffered and resume delivery.
        """
        self._consumerPaused = False
        self._deliverBuffered()

    def stopProducing(self) -> None:
        """
        The consumer is gone: C{reset(ErrorCode.CANCEL)}.
        """
        self.reset(ErrorCode.CANCEL)

    # Inbound, called by the link.

    def _dataArrived(self, data: bytes) -> None:
        size = len(data)
        self.counters.received += size
        if self._consumerPaused or self._inbound or self._delivering:
            if size:
                self._inbound.append(data)
                self._inboundBytes += size
                self.link._bufferedBytes += size
        elif size:
            if self._call(self.protocol.dataReceived, data):
                self._consumed(size)

    def _headersArrived(self, headers: list[Header], endStream: bool) -> None:
        self._headersReceived += 1
        if self._headersReceived > MAX_HEADERS_PER_STREAM:
            self.link._resetProvoked(self, ErrorCode.ENHANCE_YOUR_CALM)
            return
        if self._consumerPaused or self._inbound or self._delivering:
            self._inbound.append(_HeadersItem(headers, endStream))
        else:
            self._call(self.protocol.headersReceived, headers, endStream)
        if endStream:
            self._remoteEndArrived()

    def _remoteEndArrived(self) -> None:
        if self._lost:
            return
        self._remoteEnded = True
        if self.state is StreamState.OPEN:
            self.state = StreamState.HALF_CLOSED_REMOTE
        elif self.state is StreamState.HALF_CLOSED_LOCAL:
            self.state = StreamState.CLOSED
            self.link._forget(self)
        if self._consumerPaused or self._inbound or self._delivering:
            self._inbound.append(_END)
        else:
            self._deliverReadLost()

    def _deliverReadLost(self) -> None:
        self._readLostDelivered = True
        if self._halfCloseable:
            self._call(self.protocol.readConnectionLost)
        self._maybeFinish()

    def _deliverBuffered(self) -> None:
        if self._delivering:
            return
        self._delivering = True
        consumed = 0
        try:
            inbound = self._inbound
            while inbound and not self._consumerPaused and not self._lost:
                item = inbound.popleft()
                if item is _END:
                    self._deliverReadLost()
                elif item.__class__ is _HeadersItem:
                    self._call(
                        self.protocol.headersReceived, item.headers, item.endStream
                    )
                else:
                    size = len(item)
                    self._inboundBytes -= size
                    self.link._bufferedBytes -= size
                    consumed += size
                    if self._call(self.protocol.dataReceived, item):
                        self._consumed(size)
        finally:
            self._delivering = False
        if consumed:
            self.link._creditChanged()

    def _consumed(self, size: int) -> None:
        """
        The protocol took C{size} bytes: return stream credit in batches.
        """
        if self._remoteEnded or self.state is StreamState.CLOSED or self._lost:
            # No more DATA can come: credit would be wasted.
            return
        self._unacked += size
        if self._unacked >= self.link._streamCreditThreshold or self._recvWindow == 0:
            self.link._queueControl(Window(self.streamId, self._unacked).encode())
            self._recvWindow += self._unacked
            self._unacked = 0

    def _localEndSent(self) -> None:
        if self._lost:
            return
        if self.state is StreamState.OPEN:
            self.state = StreamState.HALF_CLOSED_LOCAL
        elif self.state is StreamState.HALF_CLOSED_REMOTE:
            self.state = StreamState.CLOSED
            self.link._forget(self)
            self._maybeFinish()

    def _maybeFinish(self) -> None:
        if (
            self.state is StreamState.CLOSED
            and self._readLostDelivered
            and not self._lost
        ):
            self._lose(_STREAM_DONE)

    def _lose(self, reason: Failure) -> None:
        """
        End the stream for good: drop the queues, stop the producer, tell
        the protocol.
        """
        if self._lost:
            return
        self._lost = True
        self.state = StreamState.CLOSED
        link = self.link
        self._outbound.clear()
        self._outboundBytes = 0
        if self._inboundBytes:
            link._bufferedBytes -= self._inboundBytes
            self._inboundBytes = 0
            link._creditChanged()
        self._inbound.clear()
        link._forget(self)
        producer = self.producer
        if producer is not None:
            self.unregisterProducer()
            try:
                producer.stopProducing()
            except Exception:
                self._log.failure(
                    "stopProducing of stream {streamId} raised", streamId=self.streamId
                )
        protocol = self.protocol
        if protocol is not None:
            try:
                protocol.connectionLost(reason)
            except Exception:
                self._log.failure(
                    "connectionLost of stream {streamId} raised",
                    streamId=self.streamId,
                )


@implementer(IPushProducer)
class LinkProtocol(Protocol):
    """
    One end of a link.  Registers itself as its transport's streaming
    producer: while the transport is paused it sends no DATA and pauses the
    streams' producers, but it always keeps reading.

    @ivar localSettings: the settings we announce.
    @ivar peerSettings: the peer's settings (the defaults until its HELLO).
    @ivar peerCodecs: the codec names of the peer's HELLO.
    @ivar counters: bytes on the wire, both directions.
    @ivar stats: the L{LinkStats}.
    @ivar rtt: smoothed round-trip time from PING/PONG, or C{None}.
    @ivar lastRtt: the last measured round-trip time, or C{None}.
    @ivar streamHighWater: queued bytes above which a stream's producer is
        paused.
    @ivar streamLowWater: queued bytes below which it is resumed.
    @ivar maxControlBytes: bound of control frames queued while the
        transport is paused; past it the link is aborted.
    @ivar flushBudget: DATA bytes written per reactor turn at most.
    @ivar closeGrace: seconds given to C{loseConnection} before aborting.
    """

    _log = Logger()

    streamHighWater = 64 * 1024
    streamLowWater = 16 * 1024
    maxControlBytes = 1024 * 1024
    flushBudget = 512 * 1024
    closeGrace = 5.0

    def __init__(
        self,
        *,
        isDialer: bool,
        token: bytes,
        clock: IReactorTime,
        settings: Settings = Settings(),  # noqa: B008 (frozen: immutable)
        streamFactory: Callable[[LinkStream], Any] | None = None,
        requestIds: RequestIdGenerator | None = None,
        pingInterval: float = 10.0,
        pingTimeout: float = 30.0,
        helloTimeout: float = 10.0,
        drainTimeout: float = 30.0,
        maxBufferedBytes: int = 32 * 1024 * 1024,
        maxHeaderListSize: int = DEFAULT_MAX_HEADER_LIST_SIZE,
        maxResetsPerSecond: int = 1000,
        maxPingsPerSecond: int = 100,
        codecs: Iterable[str] = (),
    ) -> None:
        """
        @param isDialer: C{True} on the side that dialed (the edge): it sends
            HELLO first and opens odd stream ids.
        @param token: the shared secret; the dialer sends it, the accepting
            side compares it in constant time.
        @param clock: time source for timers and the per-turn flush.
        @param settings: our limits, announced in HELLO.
        @param streamFactory: builds the protocol of a stream the peer opens;
            C{None} refuses every peer stream.
        @param requestIds: request id source for streams we open.
        @param pingInterval: seconds between PINGs; 0 disables them.
        @param pingTimeout: seconds without PONG after which the link is dead.
        @param helloTimeout: seconds to wait for the peer's HELLO.
        @param drainTimeout: seconds a drain may take before aborting.
        @param maxBufferedBytes: inbound bytes held in paused streams beyond
            which connection credit waits for consumption.
        @param maxHeaderListSize: largest decoded header list accepted.
        @param maxResetsPerSecond: peer resets plus refusals tolerated per
            rolling second.
        @param maxPingsPerSecond: PINGs tolerated per rolling second.
        @param codecs: codec names announced in HELLO.
        """
        self._isDialer = isDialer
        self._token = token
        self._clock = clock
        self.localSettings = settings
        self.peerSettings = Settings()
        self.peerCodecs: tuple[str, ...] = ()
        self._codecs = tuple(codecs)
        self._streamFactory = streamFactory
        self._requestIds = (
            requestIds if requestIds is not None else RequestIdGenerator()
        )
        self._pingInterval = pingInterval
        self._pingTimeout = pingTimeout
        self._helloTimeout = helloTimeout
        self._drainTimeout = drainTimeout
        self._maxBufferedBytes = maxBufferedBytes
        self._resetRate = _RateLimit(maxResetsPerSecond, clock)
        self._pingRate = _RateLimit(maxPingsPerSecond, clock)

        self.counters = ByteCounters()
        self.stats = LinkStats()
        self.rtt: float | None = None
        self.lastRtt: float | None = None

        self._state = _LinkState.HANDSHAKE
        self._parser = FrameParser(settings.maxFrameSize, settings.maxHeaderBlock)
        self._encoder = HeaderBlockEncoder(neverIndexed=(REQUEST_ID_HEADER,))
        self._decoder = HeaderBlockDecoder(maxHeaderListSize)
        self._handlers: dict[type, Callable[[Any], None]] = {
            Data: self._onData,
            Headers: self._onHeaders,
            Window: self._onWindow,
            Reset: self._onReset,
            Ping: self._onPing,
            Pong: self._onPong,
            GoAway: self._onGoAway,
            Hello: self._onHello,
            Unknown: self._onUnknown,
        }

        self._streams: dict[int, LinkStream] = {}
        self._nextStreamId = 1 if isDialer else 2
        self._highestPeerStreamId = 0
        self._lastAcceptedPeerStreamId = 0
        self._localOpenCount = 0
        self._peerOpenCount = 0

        # Flow control: send side from the peer's settings, receive side ours.
        self._sendWindow = self.peerSettings.connectionWindow
        self._recvWindow = settings.connectionWindow
        self._connDebt = 0  # received bytes whose connection credit is unsent
        self._bufferedBytes = 0  # bytes held by paused streams
        self._streamCreditThreshold = max(1, settings.initialStreamWindow // 2)

        # Outbound scheduling.
        self._control: list[bytes] = []
        self._controlBytes = 0
        self._pendingOpens: deque[LinkStream] = deque()
        self._ready: deque[LinkStream] = deque()
        self._flushCall: IDelayedCall | None = None
        self._transportPaused = False
        self._producerStreams: set[LinkStream] = set()

        # Lifecycle.
        self._localGoAway = False
        self._remoteGoAway: int | None = None
        self._closeError: Exception | None = None
        self._readyWaiters: list[Deferred[LinkProtocol]] = []
        self._closedWaiters: list[Deferred[None]] = []
        self._helloCall: IDelayedCall | None = None
        self._pingCall: IDelayedCall | None = None
        self._pingTimeoutCall: IDelayedCall | None = None
        self._drainCall: IDelayedCall | None = None
        self._abortCall: IDelayedCall | None = None
        #: whether _loseTransport ran (it closes the transport once)
        self._transportLost = False
        self._pingSentAt: float | None = None
        self._pingOpaque = b""
        self._pingCounter = 0

    def __repr__(self) -> str:
        role = "dialer" if self._isDialer else "acceptor"
        return f"<LinkProtocol {role} {self._state.name} streams={len(self._streams)}>"

    # Public API.

    @property
    def openStreamCount(self) -> int:
        """
        Streams open on the wire, in both directions.
        """
        return len(self._streams)

    def isReady(self) -> bool:
        """
        @return: C{True} once HELLOs are exchanged and until the link closes
            (see L{isDraining} for whether new streams may be opened).
        """
        return self._state is _LinkState.READY

    def isDraining(self) -> bool:
        """
        @return: C{True} once a GOAWAY was sent or received.
        """
        return self._localGoAway or self._remoteGoAway is not None

    def whenReady(self) -> Deferred[LinkProtocol]:
        """
        @return: a Deferred firing with this link when the HELLOs are
            exchanged, or failing (L{ProtocolError} or L{LinkLost}) when the
            link closes first.
        """
        if self._state is _LinkState.READY:
            return succeed(self)
        if self._state is not _LinkState.HANDSHAKE:
            return fail(self._readyFailure())
        d: Deferred[LinkProtocol] = Deferred()
        self._readyWaiters.append(d)
        return d

    def whenClosed(self) -> Deferred[None]:
        """
        @return: a Deferred firing with C{None} once the transport is gone.
        """
        if self._state is _LinkState.CLOSED:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._closedWaiters.append(d)
        return d

    def openStream(
        self, protocol: Any, headers: Iterable[Header], endStream: bool = False
    ) -> LinkStream:
        """
        Open a stream now (its HEADERS leave in this reactor turn; there is
        no round trip) and connect C{protocol} to it.

        @param protocol: the L{StreamProtocol} for the stream.
        @param headers: the opening headers; C{:request-id} is added.
        @param endStream: nothing more will be sent on the stream.
        @return: the L{LinkStream}.
        @raise LinkUnavailable: when the link is not ready, is draining or
            closed, or is at the peer's MAX_CONCURRENT_STREAMS.
        @raise ValueError: when the header block could exceed the peer's
            limits.
        """
        if self._state is not _LinkState.READY:
            raise LinkUnavailable(f"link not ready ({self._state.name})")
        if self.isDraining():
            raise LinkUnavailable("link is draining")
        if self._localOpenCount >= self.peerSettings.maxConcurrentStreams:
            raise LinkUnavailable(
                f"at the peer's limit of {self.peerSettings.maxConcurrentStreams} "
                "streams"
            )
        streamId = self._nextStreamId
        if streamId > MAX_STREAM_ID:
            raise LinkUnavailable("stream ids exhausted")
        requestId = self._requestIds.next()
        # The encoder never indexes it: a fresh id per request would churn
        # the dynamic table.
        block: list[Any] = [(REQUEST_ID_HEADER, requestId.encode("ascii"))]
        block.extend(headers)
        self._checkHeaderSize(block)
        self._nextStreamId += 2
        stream = LinkStream(
            self,
            streamId,
            requestId,
            self.peerSettings.initialStreamWindow,
            self.localSettings.initialStreamWindow,
        )
        stream._pendingOpen = _HeadersItem(block, endStream)
        if endStream:
            stream._endQueued = True
        self._streams[streamId] = stream
        self._localOpenCount += 1
        self.stats.streamsOpened += 1
        self._pendingOpens.append(stream)
        self._scheduleFlush()
        stream._connect(protocol)
        return stream

    def goAway(
        self, code: ErrorCode = ErrorCode.NO_ERROR, reason: str = ""
    ) -> Deferred[None]:
        """
        Drain the link: send GOAWAY, refuse new peer streams, open no new
        ones, let the open ones finish (at most C{drainTimeout} seconds), then
        close.  With an error code, close at once instead.

        @return: a Deferred firing when the transport is gone.
        """
        closed = self.whenClosed()
        if self._state in (_LinkState.CLOSING, _LinkState.CLOSED):
            return closed
        if code != ErrorCode.NO_ERROR:
            self._log.info(
                "closing link with {peer}: {code} {reason}",
                peer=self._peerName(),
                code=code.name,
                reason=reason,
            )
            self._terminate(
                code,
                reason,
                LinkLost(f"link closed locally: {code.name} {reason}"),
                ProtocolError(code, reason),
            )
            return closed
        if self._localGoAway:
            return closed
        self._localGoAway = True
        self._log.info(
            "draining link: GOAWAY last stream {lastStreamId}, {streams} open",
            lastStreamId=self._lastAcceptedPeerStreamId,
            streams=len(self._streams),
        )
        self._queueControl(
            GoAway(
                self._lastAcceptedPeerStreamId,
                ErrorCode.NO_ERROR,
                truncateReason(reason),
            ).encode()
        )
        if self._drainTimeout > 0:
            self._drainCall = self._clock.callLater(
                self._drainTimeout, self._drainTimedOut
            )
        self._maybeFinishDrain()
        return closed

    # IProtocol.

    def connectionMade(self) -> None:
        transport = self.transport
        assert transport is not None
        tuneForVolume(transport)
        noDelay(transport)
        writeEagerly(transport)
        transport.registerProducer(self, True)  # type: ignore[attr-defined]
        if self._helloTimeout > 0:
            self._helloCall = self._clock.callLater(
                self._helloTimeout, self._helloTimedOut
            )
        if self._isDialer:
            hello = self._hello(self._token).encode()
            self.counters.sent += len(hello)
            self.stats.framesSent += 1
            transport.write(hello)

    def dataReceived(self, data: bytes) -> None:
        if (
            self._state is not _LinkState.HANDSHAKE
            and self._state is not _LinkState.READY
        ):
            return
        self.counters.received += len(data)
        try:
            frames = self._parser.feedRaw(data)
        except ProtocolError as e:
            self._protocolError(e)
            return
        handlers = self._handlers
        stats = self.stats
        ready = _LinkState.READY
        for frame in frames:
            state = self._state
            if state is not ready:
                if state is not _LinkState.HANDSHAKE:
                    return
                if frame.__class__ is tuple:
                    kind = "DATA" if frame[0] == TYPE_DATA else "HEADERS"  # type: ignore[index]
                    self._protocolError(
                        ProtocolError(
                            ErrorCode.PROTOCOL_ERROR, f"{kind} frame before HELLO"
                        )
                    )
                    return
                if frame.__class__ is not Hello and frame.__class__ is not GoAway:
                    self._protocolError(
                        ProtocolError(
                            ErrorCode.PROTOCOL_ERROR,
                            f"{frame.__class__.__name__} frame before HELLO",
                        )
                    )
                    return
            stats.framesReceived += 1
            try:
                if frame.__class__ is tuple:
                    frameType, streamId, flags, payload = frame  # type: ignore[misc]
                    if frameType == TYPE_DATA:
                        self._receiveData(streamId, payload, flags & FLAG_END_STREAM)
                    else:
                        self._receiveHeaders(streamId, payload, flags & FLAG_END_STREAM)
                else:
                    handlers[frame.__class__](frame)
            except ProtocolError as e:
                self._protocolError(e)
                return

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._state is _LinkState.CLOSED:
            return
        self._state = _LinkState.CLOSED
        for call in (
            self._flushCall,
            self._helloCall,
            self._pingCall,
            self._pingTimeoutCall,
            self._drainCall,
            self._abortCall,
        ):
            if call is not None and call.active():
                call.cancel()
        self._flushCall = self._helloCall = self._pingCall = None
        self._pingTimeoutCall = self._drainCall = self._abortCall = None
        self._failStreams(LinkLost(f"link lost: {reason.getErrorMessage()}"))
        self._pendingOpens.clear()
        self._ready.clear()
        self._control = []
        self._controlBytes = 0
        waiters, self._readyWaiters = self._readyWaiters, []
        if waiters:
            failure = self._readyFailure(reason)
            for waiter in waiters:
                waiter.errback(failure)
        closed, self._closedWaiters = self._closedWaiters, []
        for closedWaiter in closed:
            closedWaiter.callback(None)

    # IPushProducer (toward our transport).

    def pauseProducing(self) -> None:
        """
        The transport's buffer is full: stop sending DATA and pause the
        streams' producers.  Reading goes on.
        """
        if self._transportPaused:
            return
        self._transportPaused = True
        for stream in list(self._producerStreams):
            stream._updateProducer()

    def resumeProducing(self) -> None:
        """
        The transport drained: send again and resume the streams' producers.
        """
        if not self._transportPaused:
            return
        self._transportPaused = False
        self._scheduleFlush()
        for stream in list(self._producerStreams):
            stream._updateProducer()

    def stopProducing(self) -> None:
        """
        The transport is going away; C{connectionLost} follows.
        """
        self._transportPaused = True

    # Handshake and timers.

    def _hello(self, token: bytes) -> Hello:
        return Hello(PROTOCOL_VERSION, token, self.localSettings, self._codecs)

    def _onHello(self, hello: Hello) -> None:
        if self._state is not _LinkState.HANDSHAKE:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "second HELLO")
        if not self._isDialer and not hmac.compare_digest(hello.token, self._token):
            raise ProtocolError(ErrorCode.AUTH_FAILED, "authentication failed")
        self.peerSettings = hello.settings
        self.peerCodecs = hello.codecs
        self._sendWindow = hello.settings.connectionWindow
        if not self._isDialer:
            self._queueControl(self._hello(b"").encode())
        self._state = _LinkState.READY
        if self._helloCall is not None and self._helloCall.active():
            self._helloCall.cancel()
        self._helloCall = None
        if self._pingInterval > 0:
            self._pingCall = self._clock.callLater(self._pingInterval, self._sendPing)
        self._log.debug(
            "link ready; peer settings {settings}", settings=self.peerSettings
        )
        waiters, self._readyWaiters = self._readyWaiters, []
        for d in waiters:
            d.callback(self)

    def _helloTimedOut(self) -> None:
        self._helloCall = None
        self._protocolError(
            ProtocolError(
                ErrorCode.HELLO_TIMEOUT, f"no HELLO within {self._helloTimeout} s"
            )
        )

    def _sendPing(self) -> None:
        self._pingCall = None
        if self._state is not _LinkState.READY:
            return
        if self._pingSentAt is None:
            self._pingCounter += 1
            self._pingOpaque = _pingOpaque.pack(self._pingCounter)
            self._pingSentAt = self._clock.seconds()
            self.stats.pingsSent += 1
            self._queueControl(Ping(self._pingOpaque).encode())
            self._pingTimeoutCall = self._clock.callLater(
                self._pingTimeout, self._pingTimedOut
            )
        if self._state is _LinkState.READY:
            self._pingCall = self._clock.callLater(self._pingInterval, self._sendPing)

    def _pingTimedOut(self) -> None:
        self._pingTimeoutCall = None
        if self._state is not _LinkState.READY:
            return
        self._log.warn(
            "no PONG within {timeout} s: link to {peer} is dead",
            timeout=self._pingTimeout,
            peer=self._peerName(),
        )
        self._enterClosing(LinkLost(f"no PONG within {self._pingTimeout} s"))
        self._failStreams(LinkLost(f"link dead: no PONG within {self._pingTimeout} s"))
        self.transport.abortConnection()  # type: ignore[union-attr]

    def _drainTimedOut(self) -> None:
        self._drainCall = None
        if (
            self._state is not _LinkState.READY
            and self._state is not _LinkState.HANDSHAKE
        ):
            return
        self._log.warn(
            "drain did not finish within {timeout} s; aborting {streams} streams",
            timeout=self._drainTimeout,
            streams=len(self._streams),
        )
        self._enterClosing(None)
        self._failStreams(LinkLost(f"drain timed out after {self._drainTimeout} s"))
        self.transport.abortConnection()  # type: ignore[union-attr]

    # Frame handlers.

    def _isPeerStreamId(self, streamId: int) -> bool:
        # The dialer opens odd ids, the accepting side even ones.
        return (streamId & 1) == (0 if self._isDialer else 1)

    def _checkClosedStream(self, streamId: int, what: str) -> None:
        """
        A frame names a stream we do not have: fine if the stream existed and
        closed (frames cross RESETs), a protocol error if it never existed.
        """
        if self._isPeerStreamId(streamId):
            if streamId > self._highestPeerStreamId:
                raise ProtocolError(
                    ErrorCode.PROTOCOL_ERROR, f"{what} on idle stream {streamId}"
                )
        elif streamId >= self._nextStreamId:
            raise ProtocolError(
                ErrorCode.PROTOCOL_ERROR,
                f"{what} on stream {streamId}, which we never opened",
            )

    def _onData(self, frame: Data) -> None:
        self._receiveData(frame.streamId, frame.data, frame.endStream)

    def _receiveData(self, streamId: int, data: bytes, endStream: int) -> None:
        size = len(data)
        if size > self._recvWindow:
            raise ProtocolError(
                ErrorCode.FLOW_CONTROL_ERROR,
                f"DATA of {size} bytes beyond the connection window {self._recvWindow}",
            )
        self._recvWindow -= size
        self._connDebt += size
        stream = self._streams.get(streamId)
        if stream is None:
            self._checkClosedStream(streamId, "DATA")
            # Dropped, but credited, or the connection window would leak.
            self._creditChanged()
            return
        if stream._remoteEnded:
            self._resetProvoked(stream, ErrorCode.STREAM_CLOSED)
        elif size > stream._recvWindow:
            self._resetProvoked(stream, ErrorCode.FLOW_CONTROL_ERROR)
        else:
            stream._recvWindow -= size
            stream._dataArrived(data)
            if endStream:
                stream._remoteEndArrived()
        if self._connDebt:
            self._creditChanged()

    def _onHeaders(self, frame: Headers) -> None:
        self._receiveHeaders(frame.streamId, frame.block, frame.endStream)

    def _receiveHeaders(self, streamId: int, block: bytes, endStream: int) -> None:
        # Always decode first: the HPACK state must follow every block, even
        # one for a stream we drop or refuse.
        headers = self._decoder.decode(block)
        endStream = bool(endStream)
        stream = self._streams.get(streamId)
        if stream is not None:
            if stream._remoteEnded:
                self._resetProvoked(stream, ErrorCode.STREAM_CLOSED)
            else:
                stream._headersArrived(headers, endStream)
            return
        if not self._isPeerStreamId(streamId):
            self._checkClosedStream(streamId, "HEADERS")
            return
        if streamId <= self._highestPeerStreamId:
            # A late frame on a stream that is already closed.
            return
        self._highestPeerStreamId = streamId
        self._acceptStream(streamId, headers, endStream)

    def _refuse(self, streamId: int, code: ErrorCode, why: str) -> None:
        self.stats.streamsRefused += 1
        self._log.debug("refusing stream {streamId}: {why}", streamId=streamId, why=why)
        self._queueControl(Reset(streamId, code).encode())
        self._countReset()

    def _acceptStream(
        self, streamId: int, headers: list[Header], endStream: bool
    ) -> None:
        if self._localGoAway:
            self._refuse(streamId, ErrorCode.REFUSED_STREAM, "draining")
            return
        if self._streamFactory is None:
            self._refuse(streamId, ErrorCode.REFUSED_STREAM, "no stream factory")
            return
        if self._peerOpenCount >= self.localSettings.maxConcurrentStreams:
            self._refuse(streamId, ErrorCode.REFUSED_STREAM, "too many streams")
            return
        # Our peer sends the id first and once: check that at C speed, and
        # fall back to a full scan for any other order.
        if (
            headers
            and headers[0][0] == REQUEST_ID_HEADER
            and REQUEST_ID_HEADER not in map(_headerName, headers[1:])
        ):
            requestId = headers[0][1]
            rest = headers[1:]
        else:
            requestId = None
            rest = []
            for header in headers:
                if header[0] == REQUEST_ID_HEADER:
                    if requestId is None:
                        requestId = header[1]
                else:
                    rest.append(header)
        if not requestId or len(requestId) > 64 or requestId.strip(_HEX):
            self._refuse(
                streamId, ErrorCode.PROTOCOL_ERROR, "missing or bad :request-id"
            )
            return
        stream = LinkStream(
            self,
            streamId,
            requestId.decode("ascii"),
            self.peerSettings.initialStreamWindow,
            self.localSettings.initialStreamWindow,
        )
        self._streams[streamId] = stream
        self._peerOpenCount += 1
        self._lastAcceptedPeerStreamId = streamId
        self.stats.streamsAccepted += 1
        try:
            protocol = self._streamFactory(stream)
        except Exception:
            self._log.failure(
                "stream factory raised for stream {streamId}", streamId=streamId
            )
            stream.reset(ErrorCode.INTERNAL_ERROR)
            return
        if stream._connect(protocol) and not stream._lost:
            stream._headersArrived(rest, endStream)

    def _onWindow(self, frame: Window) -> None:
        increment = frame.increment
        if frame.streamId == 0:
            window = self._sendWindow + increment
            if window > MAX_WINDOW:
                raise ProtocolError(
                    ErrorCode.FLOW_CONTROL_ERROR, "connection window above 2^31-1"
                )
            self._sendWindow = window
            if self._ready:
                self._scheduleFlush()
            return
        stream = self._streams.get(frame.streamId)
        if stream is None:
            self._checkClosedStream(frame.streamId, "WINDOW")
            return
        window = stream._sendWindow + increment
        if window > MAX_WINDOW:
            raise ProtocolError(
                ErrorCode.FLOW_CONTROL_ERROR,
                f"stream {frame.streamId} window above 2^31-1",
            )
        stream._sendWindow = window
        self._streamHasOutput(stream)

    def _onReset(self, frame: Reset) -> None:
        stream = self._streams.get(frame.streamId)
        if stream is None:
            self._checkClosedStream(frame.streamId, "RESET")
            return
        self.stats.resetsReceived += 1
        code = errorCodeFromWire(frame.code)
        if code == ErrorCode.REFUSED_STREAM:
            stream._lose(
                Failure(StreamRefused(f"stream {frame.streamId} refused by peer"))
            )
        else:
            stream._lose(Failure(StreamReset(code, remote=True)))
        self._countReset()

    def _resetProvoked(self, stream: LinkStream, code: ErrorCode) -> None:
        """
        Reset a stream whose peer broke a stream-level rule. Such resets
        count against the same rate limit as the peer's own RESETs and
        refused streams: a peer could otherwise open and get reset stream
        after stream, each one work for us ("MadeYouReset",
        CVE-2025-8671), without ever sending a RESET itself.
        """
        stream.reset(code)
        self._countReset()

    def _countReset(self) -> None:
        if self._resetRate.exceeded():
            raise ProtocolError(
                ErrorCode.ENHANCE_YOUR_CALM, "too many streams reset or refused"
            )

    def _onPing(self, frame: Ping) -> None:
        if self._pingRate.exceeded():
            raise ProtocolError(ErrorCode.ENHANCE_YOUR_CALM, "too many PINGs")
        self._queueControl(Pong(frame.opaque).encode())

    def _onPong(self, frame: Pong) -> None:
        if self._pingSentAt is None or frame.opaque != self._pingOpaque:
            return
        self.stats.pongsReceived += 1
        sample = self._clock.seconds() - self._pingSentAt
        self._pingSentAt = None
        self.lastRtt = sample
        # Smoothed as TCP's SRTT (RFC 6298): 7/8 old + 1/8 new.
        self.rtt = sample if self.rtt is None else 0.875 * self.rtt + 0.125 * sample
        if self._pingTimeoutCall is not None and self._pingTimeoutCall.active():
            self._pingTimeoutCall.cancel()
        self._pingTimeoutCall = None

    def _onGoAway(self, frame: GoAway) -> None:
        last = frame.lastStreamId
        if frame.code != ErrorCode.NO_ERROR:
            code = errorCodeFromWire(frame.code)
            self._log.warn(
                "peer {peer} closed the link: GOAWAY {code} {reason!r}",
                peer=self._peerName(),
                code=describeCode(frame.code),
                reason=frame.reason,
            )
            # Closing first: failing streams could otherwise end a drain,
            # which would close the transport before we do.
            self._enterClosing(ProtocolError(code, f"peer sent GOAWAY: {frame.reason}"))
            self._refuseAbove(last)
            self._failStreams(
                LinkLost(
                    f"peer closed the link: {describeCode(frame.code)} {frame.reason}"
                )
            )
            self._loseTransport()
            return
        self._log.info(
            "peer {peer} is draining the link (last stream {last}, {reason!r})",
            peer=self._peerName(),
            last=last,
            reason=frame.reason,
        )
        if self._remoteGoAway is None or last < self._remoteGoAway:
            self._remoteGoAway = last
        self._refuseAbove(last)
        if self._state is _LinkState.HANDSHAKE:
            self._closeError = LinkLost("peer sent GOAWAY before HELLO")
            self._terminateQuietly()
            return
        self._maybeFinishDrain()

    def _refuseAbove(self, last: int) -> None:
        """
        Fail our streams that the peer's GOAWAY says it never processed.
        """
        for streamId, stream in list(self._streams.items()):
            if streamId > last and not self._isPeerStreamId(streamId):
                stream._lose(
                    Failure(
                        StreamRefused(f"stream {streamId} above GOAWAY last {last}")
                    )
                )

    def _onUnknown(self, frame: Unknown) -> None:
        self.stats.unknownFrames += 1

    # Stream bookkeeping.

    def _forget(self, stream: LinkStream) -> None:
        if self._streams.pop(stream.streamId, None) is None:
            return
        if self._isPeerStreamId(stream.streamId):
            self._peerOpenCount -= 1
        else:
            self._localOpenCount -= 1
        if self._streams:
            return
        self._maybeFinishDrain()

    def _maybeFinishDrain(self) -> None:
        if self._streams or not self.isDraining():
            return
        if self._state is _LinkState.READY or self._state is _LinkState.HANDSHAKE:
            self._terminateQuietly()

    def _failStreams(self, error: Exception) -> None:
        for stream in list(self._streams.values()):
            stream._lose(Failure(error))
        self._pendingOpens.clear()

    def _checkHeaderSize(self, headers: list[Any]) -> None:
        limit = min(self.peerSettings.maxHeaderBlock, self.peerSettings.maxFrameSize)
        if not blockFits(headers, limit):
            raise ValueError(
                f"header block may exceed the peer's limit of {limit} bytes"
            )

    # Closing.

    def _readyFailure(self, reason: Failure | None = None) -> Failure:
        if self._closeError is not None:
            return Failure(self._closeError)
        why = reason.getErrorMessage() if reason is not None else "closed"
        error = LinkLost(f"link closed before it was ready: {why}")
        # Why the transport went (a certificate check that failed, say),
        # for whoever explains the failure to an operator.
        error.__cause__ = reason.value if reason is not None else None
        return Failure(error)

    def _peerName(self) -> str:
        try:
            return str(self.transport.getPeer())  # type: ignore[union-attr]
        except Exception:
            return "?"

    def _enterClosing(self, error: Exception | None) -> None:
        """
        Stop all activity: no more input, timers cancelled; whoever waits
        for readiness learns at once that it will not come.

        @param error: why, for L{whenReady} (C{None}: keep what is known,
            else L{LinkLost}).
        """
        self._state = _LinkState.CLOSING
        if error is not None and self._closeError is None:
            self._closeError = error
        self._cancelTimers()
        waiters, self._readyWaiters = self._readyWaiters, []
        if waiters:
            failure = self._readyFailure()
            for waiter in waiters:
                waiter.errback(failure)

    def _cancelTimers(self) -> None:
        for name in ("_helloCall", "_pingCall", "_pingTimeoutCall", "_drainCall"):
            call = getattr(self, name)
            if call is not None and call.active():
                call.cancel()
            setattr(self, name, None)

    def _protocolError(self, error: ProtocolError) -> None:
        """
        The peer broke the protocol (or a timeout fired): GOAWAY with the
        code, fail every stream with L{LinkLost}, close.
        """
        if (
            self._state is not _LinkState.READY
            and self._state is not _LinkState.HANDSHAKE
        ):
            return
        self._log.warn(
            "link protocol error with {peer}: {code} {reason}",
            peer=self._peerName(),
            code=error.code.name,
            reason=error.reason,
        )
        self._terminate(
            error.code,
            error.reason,
            LinkLost(f"link protocol error: {error.code.name} {error.reason}"),
            error,
        )

    def _terminate(
        self,
        code: ErrorCode,
        reason: str,
        streamError: Exception,
        readyError: Exception,
    ) -> None:
        self._enterClosing(readyError)
        self._failStreams(streamError)
        self._control.append(
            GoAway(
                self._lastAcceptedPeerStreamId, code, truncateReason(reason)
            ).encode()
        )
        self._loseTransport()

    def _terminateQuietly(self) -> None:
        """
        Close after a clean drain: write what control frames are queued (the
        GOAWAY, final RESETs and WINDOWs), then close.
        """
        self._enterClosing(None)
        self._loseTransport()

    def _loseTransport(self) -> None:
        if self._transportLost:
            return
        self._transportLost = True
        transport = self.transport
        if self._flushCall is not None and self._flushCall.active():
            self._flushCall.cancel()
        self._flushCall = None
        if transport is None:
            return
        if self._control:
            self.stats.framesSent += len(self._control)
            self.counters.sent += sum(map(len, self._control))
            transport.writeSequence(self._control)
            self._control = []
            self._controlBytes = 0
        # A transport with a registered producer waits for it to go before
        # closing (TLSMemoryBIOProtocol will not even send close_notify).
        transport.unregisterProducer()  # type: ignore[attr-defined]
        transport.loseConnection()
        if self._state is not _LinkState.CLOSED and self.closeGrace > 0:
            self._abortCall = self._clock.callLater(self.closeGrace, self._abortNow)

    def _abortNow(self) -> None:
        self._abortCall = None
        if self._state is not _LinkState.CLOSED and self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    # Outbound.

    def _scheduleFlush(self) -> None:
        if self._flushCall is None and (
            self._state is _LinkState.READY or self._state is _LinkState.HANDSHAKE
        ):
            self._flushCall = self._clock.callLater(0, self._flush)

    def _queueControl(self, frame: bytes) -> None:
        if (
            self._state is not _LinkState.READY
            and self._state is not _LinkState.HANDSHAKE
        ):
            return
        self._control.append(frame)
        self._controlBytes += len(frame)
        if self._transportPaused and self._controlBytes > self.maxControlBytes:
            self._log.error(
                "{count} bytes of control frames queued while {peer} does not "
                "read; aborting the link",
                count=self._controlBytes,
                peer=self._peerName(),
            )
            self._enterClosing(LinkLost("peer does not read its control frames"))
            self._failStreams(LinkLost("peer does not read its control frames"))
            self.transport.abortConnection()  # type: ignore[union-attr]
            return
        self._scheduleFlush()

    def _streamHasOutput(self, stream: LinkStream) -> None:
        if stream._scheduled or stream._lost:
            return
        queue = stream._outbound
        if not queue:
            return
        if queue[0].__class__ in _DATA_TYPES and stream._sendWindow <= 0:
            return
        stream._scheduled = True
        self._ready.append(stream)
        self._scheduleFlush()

    def _creditChanged(self) -> None:
        """
        Inbound bytes were received or consumed: schedule a flush when a
        connection WINDOW is due.
        """
        if self._connectionCreditDue() and self._flushCall is None:
            self._scheduleFlush()

    def _connectionCreditDue(self) -> int:
        """
        @return: the connection credit to send now, or 0 to keep batching.
        """
        debt = self._connDebt
        if not debt:
            return 0
        # Bytes held by paused streams beyond maxBufferedBytes keep their
        # credit until they are consumed: memory stays bounded.
        withheld = self._bufferedBytes - self._maxBufferedBytes
        credit = debt - withheld if withheld > 0 else debt
        if credit <= 0:
            return 0
        half = self.localSettings.connectionWindow // 2
        if credit >= half or self._recvWindow < half:
            return credit
        return 0

    def _flush(self) -> None:
        """
        Write, with one C{writeSequence}: control frames, then opening
        HEADERS in stream id order, then a round-robin of one frame per
        stream until the budget or the windows run out.
        """
        self._flushCall = None
        transport = self.transport
        if transport is None or (
            self._state is not _LinkState.READY
            and self._state is not _LinkState.HANDSHAKE
        ):
            return
        credit = self._connectionCreditDue()
        if credit:
            self._connDebt -= credit
            self._recvWindow += credit
            frame = Window(0, credit).encode()
            self._control.append(frame)
            self._controlBytes += len(frame)
        if self._transportPaused:
            return
        out = self._control
        frames = len(out)
        self._control = []
        self._controlBytes = 0
        ended: list[LinkStream] = []
        encoder = self._encoder

        while self._pendingOpens:
            stream = self._pendingOpens.popleft()
            item = stream._pendingOpen
            stream._pendingOpen = None
            if stream._lost or item is None:
                continue
            block = encoder.encode(item.headers)
            out.append(
                encodeStreamFrameHeader(
                    TYPE_HEADERS, stream.streamId, len(block), item.endStream
                )
            )
            out.append(block)
            frames += 1
            if item.endStream:
                ended.append(stream)

        ready = self._ready
        budget = self.flushBudget
        maxFrame = self.peerSettings.maxFrameSize
        idle = 0
        resume: list[LinkStream] = []
        while ready and budget > 0 and idle < len(ready):
            stream = ready.popleft()
            queue = stream._outbound
            if stream._lost or not queue:
                stream._scheduled = False
                continue
            head = queue[0]
            if head is _END:
                queue.popleft()
                out.append(encodeStreamFrameHeader(TYPE_DATA, stream.streamId, 0, True))
                frames += 1
                ended.append(stream)
            elif head.__class__ is _HeadersItem:
                queue.popleft()
                block = encoder.encode(head.headers)
                out.append(
                    encodeStreamFrameHeader(
                        TYPE_HEADERS, stream.streamId, len(block), head.endStream
                    )
                )
                out.append(block)
                frames += 1
                if head.endStream:
                    ended.append(stream)
            else:
                allowed = min(stream._sendWindow, self._sendWindow, maxFrame)
                if allowed <= 0:
                    if stream._sendWindow <= 0:
                        stream._scheduled = False
                    else:
                        # Blocked on the connection window only.
                        ready.append(stream)
                        idle += 1
                    continue
                size, endStream = self._takeData(stream, allowed, out)
                budget -= size
                if (
                    stream._producerPaused
                    and stream._outboundBytes <= self.streamLowWater
                ):
                    resume.append(stream)
                frames += 1
                if endStream:
                    ended.append(stream)
            idle = 0
            if queue and (
                queue[0].__class__ not in _DATA_TYPES or stream._sendWindow > 0
            ):
                ready.append(stream)
            else:
                stream._scheduled = False

        if out:
            self.stats.framesSent += frames
            self.counters.sent += sum(map(len, out))
            transport.writeSequence(out)
        if budget <= 0 and ready:
            self._scheduleFlush()
        for stream in ended:
            stream._localEndSent()
        for stream in resume:
            stream._updateProducer()

    def _takeData(
        self, stream: LinkStream, allowed: int, out: list[Any]
    ) -> tuple[int, bool]:
        """
        Append one DATA frame of at most C{allowed} bytes from the stream's
        queue to C{out}; whole chunks go as they are (no copy).  When the
        frame empties the queue up to an END marker, the frame carries
        END_STREAM.

        @return: the payload size, and whether END_STREAM was set.
        """
        queue = stream._outbound
        headerIndex = len(out)
        out.append(b"")
        size = 0
        while queue and size < allowed:
            item = queue[0]
            cls = item.__class__
            if cls is bytes:
                room = allowed - size
                length = len(item)
                if length <= room:
                    queue.popleft()
                    out.append(item)
                    size += length
                else:
                    out.append(item[:room])
                    queue[0] = memoryview(item)[room:]
                    size += room
            elif cls is memoryview:
                room = allowed - size
                length = len(item)
                if length <= room:
                    queue.popleft()
                    out.append(item.tobytes())
                    size += length
                else:
                    out.append(item[:room].tobytes())
                    queue[0] = item[room:]
                    size += room
            else:
                break
        endStream = bool(queue) and queue[0] is _END
        if endStream:
            queue.popleft()
        out[headerIndex] = encodeStreamFrameHeader(
            TYPE_DATA, stream.streamId, size, endStream
        )
        stream._sendWindow -= size
        self._sendWindow -= size
        stream._outboundBytes -= size
        stream.counters.sent += size
        return size, endStream
