"""
The multiplexed link: many streams over one long-lived connection.

L{LinkProtocol} is the thin Twisted layer of a link: it feeds the bytes it
reads to its L{LinkConnection} (the state machine without I/O, in
L{railgun.link.connection}), writes what the connection has to send (with
one C{writeSequence} per reactor turn), runs the timers (HELLO, PING,
drain, close grace), and delivers the connection's events to the streams
(L{LinkStream}, in L{railgun.link.stream}) and to whoever waits for the
link, always after the connection's call has returned: no handler ever
runs in the middle of a state change, and events raised while delivering
wait their turn.

Socket tuning is the factories' business (L{railgun.link.factory}).

See C{docs/protocol.md} for the wire format and the rules implemented here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IPushProducer,
    IReactorTime,
    ITransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .connection import REQUEST_ID_HEADER, LinkConnection
from .errors import ErrorCode, LinkLost
from .events import DATA_RECEIVED, HEADERS_RECEIVED, Event, LinkEvent
from .frames import Settings
from .headerblock import DEFAULT_MAX_HEADER_LIST_SIZE, Header
from .linkstate import LinkPhase, LinkStats
from .requestid import RequestIdGenerator
from .stream import Delivery, LinkStream, StreamProtocol
from .streamstate import StreamState

__all__ = [
    "REQUEST_ID_HEADER",
    "LinkProtocol",
    "LinkStats",
    "LinkStream",
    "StreamProtocol",
    "StreamState",
]


@implementer(IPushProducer)
class LinkProtocol(Protocol):
    """
    One end of a link.  Registers itself as its transport's streaming
    producer: while the transport is paused it sends no DATA and pauses the
    streams' producers, but it always keeps reading.

    @ivar connection: the L{LinkConnection}.
    @ivar clock: the time source of the timers and of the per-turn flush.
    @ivar counters: bytes on the wire, both directions.
    @ivar stats: the L{LinkStats}.
    @ivar streamHighWater: queued bytes above which a stream's producer is
        paused.
    @ivar streamLowWater: queued bytes below which it is resumed.
    @ivar closeGrace: seconds given to C{loseConnection} before aborting.
    @ivar transportPaused: whether the transport asked us to stop writing.
    @ivar producerStreams: the streams with a registered producer.
    """

    _log = Logger()

    streamHighWater = 64 * 1024
    streamLowWater = 16 * 1024
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
        tuneTransport: Callable[[ITransport], None] | None = None,
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
        @param tuneTransport: called with the transport once connected (the
            factories pass the socket tuning).
        """
        self.clock = clock
        self.connection = conn = LinkConnection(
            isDialer=isDialer,
            token=token,
            now=clock.seconds,
            settings=settings,
            acceptStreams=streamFactory is not None,
            requestIds=requestIds,
            maxBufferedBytes=maxBufferedBytes,
            maxHeaderListSize=maxHeaderListSize,
            maxResetsPerSecond=maxResetsPerSecond,
            maxPingsPerSecond=maxPingsPerSecond,
            codecs=codecs,
        )
        self._scheduler = conn.scheduler
        self._events = conn.events
        self._streamFactory = streamFactory
        self._tuneTransport = tuneTransport
        self._pingInterval = pingInterval
        self._pingTimeout = pingTimeout
        self._helloTimeout = helloTimeout
        self._drainTimeout = drainTimeout
        self.counters = conn.counters
        self.stats: LinkStats = conn.stats
        self.transportPaused = False
        self.producerStreams: set[LinkStream] = set()

        self._pending: deque[LinkEvent] = deque()
        self._delivering = False
        handlers: dict[Event, Callable[[LinkEvent], None]] = {
            Event.DATA_RECEIVED: self._onData,
            Event.HEADERS_RECEIVED: self._onHeaders,
            Event.STREAM_OPENED: self._onStreamOpened,
            Event.STREAM_CLOSED: self._onStreamClosed,
            Event.STREAM_DRAINED: self._onStreamDrained,
            Event.LINK_READY: self._onReady,
            Event.PONG_RECEIVED: self._onPong,
            Event.DRAIN_STARTED: self._onDrainStarted,
            Event.LINK_CLOSING: self._onClosing,
            Event.CLOSE_TRANSPORT: self._onCloseTransport,
            Event.LINK_CLOSED: self._onClosed,
        }
        # Indexed by kind.
        self._handlers = [handlers[kind] for kind in Event]
        self._readyWaiters: list[Deferred[LinkProtocol]] = []
        self._closedWaiters: list[Deferred[None]] = []
        self._flushCall: IDelayedCall | None = None
        self._helloCall: IDelayedCall | None = None
        self._pingCall: IDelayedCall | None = None
        self._pingTimeoutCall: IDelayedCall | None = None
        self._drainCall: IDelayedCall | None = None
        self._abortCall: IDelayedCall | None = None
        self._lostReason: Failure | None = None

    def __repr__(self) -> str:
        conn = self.connection
        role = "dialer" if conn.isDialer else "acceptor"
        return f"<LinkProtocol {role} {conn.phase.name} streams={len(conn.streams)}>"

    # Public API.

    @property
    def localSettings(self) -> Settings:
        """
        The settings we announce.
        """
        return self.connection.localSettings

    @property
    def peerSettings(self) -> Settings:
        """
        The peer's settings (the defaults until its HELLO).
        """
        return self.connection.peerSettings

    @property
    def peerCodecs(self) -> tuple[str, ...]:
        """
        The codec names of the peer's HELLO.
        """
        return self.connection.peerCodecs

    @peerCodecs.setter
    def peerCodecs(self, codecs: tuple[str, ...]) -> None:
        self.connection.peerCodecs = codecs

    @property
    def rtt(self) -> float | None:
        """
        Smoothed round-trip time from PING/PONG, or C{None}.
        """
        return self.connection.liveness.rtt

    @property
    def lastRtt(self) -> float | None:
        """
        The last measured round-trip time, or C{None}.
        """
        return self.connection.liveness.lastRtt

    @property
    def maxControlBytes(self) -> int:
        """
        Bound of control frames queued while the transport is paused; past
        it the link is aborted.
        """
        return self._scheduler.maxControlBytes

    @maxControlBytes.setter
    def maxControlBytes(self, value: int) -> None:
        self._scheduler.maxControlBytes = value

    @property
    def flushBudget(self) -> int:
        """
        DATA bytes written per reactor turn at most.
        """
        return self._scheduler.flushBudget

    @flushBudget.setter
    def flushBudget(self, value: int) -> None:
        self._scheduler.flushBudget = value

    @property
    def openStreamCount(self) -> int:
        """
        Streams open on the wire, in both directions.
        """
        return len(self.connection.streams)

    def isReady(self) -> bool:
        """
        @return: C{True} once HELLOs are exchanged and until the link closes
            (see L{isDraining} for whether new streams may be opened).
        """
        return self.connection.isReady()

    def isDraining(self) -> bool:
        """
        @return: C{True} once a GOAWAY was sent or received.
        """
        return self.connection.isDraining()

    def whenReady(self) -> Deferred[LinkProtocol]:
        """
        @return: a Deferred firing with this link when the HELLOs are
            exchanged, or failing (L{ProtocolError} or L{LinkLost}) when the
            link closes first.
        """
        phase = self.connection.phase
        if phase is LinkPhase.READY:
            return succeed(self)
        if phase is not LinkPhase.HANDSHAKE:
            return fail(self._readyFailure())
        d: Deferred[LinkProtocol] = Deferred()
        self._readyWaiters.append(d)
        return d

    def whenClosed(self) -> Deferred[None]:
        """
        @return: a Deferred firing with C{None} once the transport is gone.
        """
        if self.connection.phase is LinkPhase.CLOSED:
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
        record = self.connection.openStream(headers, endStream)
        stream = LinkStream(self, record)
        if self._flushCall is None:
            self._scheduleFlush()
        stream.connect(protocol)
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
        self.connection.goAway(code, reason)
        self.wakeUp()
        return closed

    def wakeUp(self) -> None:
        """
        Something was asked of the connection: deliver its events, and
        schedule a flush when it has something to send.
        """
        scheduler = self._scheduler
        if self._events or scheduler.overflowed:
            self._dispatch(self.connection.takeEvents())
        elif scheduler.flushWanted and self._flushCall is None:
            self._scheduleFlush()

    # IProtocol.

    def connectionMade(self) -> None:
        transport = self.transport
        assert transport is not None
        if self._tuneTransport is not None:
            self._tuneTransport(transport)
        conn = self.connection
        try:
            conn.peerName = str(transport.getPeer())
        except Exception:
            conn.peerName = "?"
        transport.registerProducer(self, True)  # type: ignore[attr-defined]
        if self._helloTimeout > 0:
            self._helloCall = self.clock.callLater(
                self._helloTimeout, self._helloTimedOut
            )
        conn.initiateConnection()
        if conn.isDialer:
            # The HELLO goes at once, not with the next turn's flush.
            transport.writeSequence(conn.dataToSend())

    def dataReceived(self, data: bytes) -> None:
        self._dispatch(self.connection.receiveData(data))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        conn = self.connection
        if conn.phase is LinkPhase.CLOSED:
            return
        self._lostReason = reason
        conn.connectionLost(reason.getErrorMessage())
        self._cancelTimers()
        for name in ("_flushCall", "_abortCall"):
            call = getattr(self, name)
            if call is not None and call.active():
                call.cancel()
            setattr(self, name, None)
        self._dispatch(conn.takeEvents())

    # IPushProducer (toward our transport).

    def pauseProducing(self) -> None:
        """
        The transport's buffer is full: stop sending DATA and pause the
        streams' producers.  Reading goes on.
        """
        if self.transportPaused:
            return
        self.transportPaused = self._scheduler.paused = True
        for stream in list(self.producerStreams):
            stream.updateProducer()

    def resumeProducing(self) -> None:
        """
        The transport drained: send again and resume the streams' producers.
        """
        if not self.transportPaused:
            return
        self.transportPaused = self._scheduler.paused = False
        self._scheduleFlush()
        for stream in list(self.producerStreams):
            stream.updateProducer()

    def stopProducing(self) -> None:
        """
        The transport is going away; C{connectionLost} follows.
        """
        self.transportPaused = self._scheduler.paused = True

    # Event delivery.

    def _dispatch(self, events: list[LinkEvent]) -> None:
        """
        Deliver C{events}, in order, after those already waiting; while a
        delivery is under way, only queue them.  (Whatever a handler asks of
        the link or its stream ends with L{wakeUp}, which brings the events
        it caused here.)
        """
        if events:
            pending = self._pending
            if self._delivering:
                pending.extend(events)
            else:
                self._delivering = True
                handlers = self._handlers
                try:
                    # The events of every exchange go straight to their
                    # stream; the rest through their handlers.
                    for event in events:
                        kind = event[0]
                        if kind is DATA_RECEIVED:
                            event[1].owner.receiveData(event[2], event[3])
                        elif kind is HEADERS_RECEIVED:
                            event[1].owner.receiveHeaders(event[2], event[3])
                        else:
                            handlers[kind](event)
                    while pending:
                        event = pending.popleft()
                        handlers[event[0]](event)
                finally:
                    self._delivering = False
        if self._scheduler.flushWanted and self._flushCall is None:
            self._scheduleFlush()

    def _onData(self, event: LinkEvent) -> None:
        _, record, data, endStream = event
        record.owner.receiveData(data, endStream)

    def _onHeaders(self, event: LinkEvent) -> None:
        _, record, headers, endStream = event
        record.owner.receiveHeaders(headers, endStream)

    def _onStreamOpened(self, event: LinkEvent) -> None:
        _, record, headers, endStream = event
        stream = LinkStream(self, record)
        assert self._streamFactory is not None
        try:
            protocol = self._streamFactory(stream)
        except Exception:
            self._log.failure(
                "stream factory raised for stream {streamId}",
                streamId=stream.streamId,
            )
            stream.reset(ErrorCode.INTERNAL_ERROR)
            return
        if stream.connect(protocol) and stream.delivery is not Delivery.LOST:
            stream.receiveHeaders(headers, endStream)

    def _onStreamClosed(self, event: LinkEvent) -> None:
        _, record, reason = event
        if record.owner is not None:
            record.owner.closed(reason)

    def _onStreamDrained(self, event: LinkEvent) -> None:
        _, record = event
        if record.owner is not None:
            record.owner.updateProducer()

    def _onReady(self, event: LinkEvent) -> None:
        if self._helloCall is not None and self._helloCall.active():
            self._helloCall.cancel()
        self._helloCall = None
        if self._pingInterval > 0:
            self._pingCall = self.clock.callLater(self._pingInterval, self._sendPing)
        waiters, self._readyWaiters = self._readyWaiters, []
        for d in waiters:
            d.callback(self)

    def _onPong(self, event: LinkEvent) -> None:
        if self._pingTimeoutCall is not None and self._pingTimeoutCall.active():
            self._pingTimeoutCall.cancel()
        self._pingTimeoutCall = None

    def _onDrainStarted(self, event: LinkEvent) -> None:
        if self._drainTimeout > 0 and self._drainCall is None:
            self._drainCall = self.clock.callLater(
                self._drainTimeout, self._drainTimedOut
            )

    def _onClosing(self, event: LinkEvent) -> None:
        self._cancelTimers()
        waiters, self._readyWaiters = self._readyWaiters, []
        if waiters:
            failure = self._readyFailure()
            for waiter in waiters:
                waiter.errback(failure)

    def _onCloseTransport(self, event: LinkEvent) -> None:
        _, abort = event
        transport = self.transport
        if self._flushCall is not None and self._flushCall.active():
            self._flushCall.cancel()
        self._flushCall = None
        if transport is None:
            return
        if abort:
            transport.abortConnection()  # type: ignore[attr-defined]
            return
        out = self.connection.dataToSend()
        if out:
            transport.writeSequence(out)
        # A transport with a registered producer waits for it to go before
        # closing (TLSMemoryBIOProtocol will not even send close_notify).
        transport.unregisterProducer()  # type: ignore[attr-defined]
        transport.loseConnection()
        if self.connection.phase is not LinkPhase.CLOSED and self.closeGrace > 0:
            self._abortCall = self.clock.callLater(self.closeGrace, self._abortNow)

    def _onClosed(self, event: LinkEvent) -> None:
        waiters, self._readyWaiters = self._readyWaiters, []
        if waiters:
            failure = self._readyFailure(self._lostReason)
            for waiter in waiters:
                waiter.errback(failure)
        closed, self._closedWaiters = self._closedWaiters, []
        for closedWaiter in closed:
            closedWaiter.callback(None)

    # Timers.

    def _cancelTimers(self) -> None:
        for name in ("_helloCall", "_pingCall", "_pingTimeoutCall", "_drainCall"):
            call = getattr(self, name)
            if call is not None and call.active():
                call.cancel()
            setattr(self, name, None)

    def _helloTimedOut(self) -> None:
        self._helloCall = None
        self.connection.helloTimedOut(self._helloTimeout)
        self.wakeUp()

    def _sendPing(self) -> None:
        self._pingCall = None
        conn = self.connection
        if not conn.isReady():
            return
        if conn.ping():
            self._pingTimeoutCall = self.clock.callLater(
                self._pingTimeout, self._pingTimedOut
            )
        if conn.isReady():
            self._pingCall = self.clock.callLater(self._pingInterval, self._sendPing)
        self.wakeUp()

    def _pingTimedOut(self) -> None:
        self._pingTimeoutCall = None
        self.connection.pingTimedOut(self._pingTimeout)
        self.wakeUp()

    def _drainTimedOut(self) -> None:
        self._drainCall = None
        self.connection.drainTimedOut(self._drainTimeout)
        self.wakeUp()

    def _abortNow(self) -> None:
        self._abortCall = None
        if self.connection.phase is not LinkPhase.CLOSED and self.transport:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    # Output.

    def _scheduleFlush(self) -> None:
        if self._flushCall is None and self.connection.isActive():
            self._flushCall = self.clock.callLater(0, self._flush)

    def _flush(self) -> None:
        """
        Write what the connection has to send, with one C{writeSequence}.
        """
        self._flushCall = None
        transport = self.transport
        conn = self.connection
        if transport is None or not conn.isActive():
            return
        out = conn.dataToSend()
        if out:
            transport.writeSequence(out)
        self.wakeUp()

    # Closing.

    def _readyFailure(self, reason: Failure | None = None) -> Failure:
        error = self.connection.closeError
        if error is not None:
            return Failure(error)
        why = reason.getErrorMessage() if reason is not None else "closed"
        lost = LinkLost(f"link closed before it was ready: {why}")
        # Why the transport went (a certificate check that failed, say),
        # for whoever explains the failure to an operator.
        lost.__cause__ = reason.value if reason is not None else None
        return Failure(lost)
