"""
The link as a state machine without I/O: bytes in, events out, bytes to
send.

L{LinkConnection} parses frames, runs the HELLO handshake, keeps the
stream table and the flow-control windows, schedules outbound frames
(control first, then opening HEADERS, then a fair round-robin of stream
frames), and decides drains and closes.  It owns no transport, no reactor
and no timer: the I/O layer (L{railgun.link.protocol.LinkProtocol}) feeds
it with L{receiveData}, writes what L{dataToSend} returns, calls the
timeout methods when its timers fire, and delivers the events of
L{takeEvents} (see L{railgun.link.events}) once each call has returned.
Time comes from a C{now} function, for rate limits and round trips.

Its lifecycle is two explicit machines: the phase (L{LinkPhase}: handshake,
ready, closing, closed) and the drain (L{Drain}: which sides sent GOAWAY),
each with its transition table; every stream's life is the table of
L{railgun.link.streamstate}.

See C{docs/protocol.md} for the wire format and the rules implemented here.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from typing import Any

from twisted.logger import Logger

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
from .events import (
    CLOSE_TRANSPORT,
    DATA_RECEIVED,
    DRAIN_STARTED,
    HEADERS_RECEIVED,
    LINK_CLOSED,
    LINK_CLOSING,
    LINK_READY,
    PONG_RECEIVED,
    STREAM_CLOSED,
    STREAM_OPENED,
    LinkEvent,
)
from .flowcontrol import Liveness, ReceiveCredit
from .frames import (
    FLAG_END_STREAM,
    MAX_WINDOW,
    PROTOCOL_VERSION,
    TYPE_DATA,
    FrameParser,
    GoAway,
    Hello,
    Ping,
    Pong,
    Reset,
    Settings,
    Unknown,
    Window,
    truncateReason,
)
from .headerblock import (
    DEFAULT_MAX_HEADER_LIST_SIZE,
    Header,
    HeaderBlockDecoder,
    HeaderBlockEncoder,
)
from .linkstate import (
    ACTIVE,
    DRAIN_TRANSITIONS,
    PHASE_TRANSITIONS,
    Drain,
    DrainInput,
    LinkPhase,
    LinkStats,
    PhaseInput,
    RateLimit,
)
from .requestid import RequestIdGenerator
from .scheduler import Scheduler
from .streamstate import (
    OVER,
    REMOTE_OPEN,
    TRANSITIONS,
    HeadersItem,
    StreamInput,
    StreamLife,
    StreamRecord,
)
from .streamtable import REQUEST_ID_HEADER, StreamTable, splitRequestId

MAX_HEADERS_PER_STREAM = 16
_RECV_END = StreamInput.RECV_END
_QUEUE_END = StreamInput.QUEUE_END
_SEND_END = StreamInput.SEND_END
_RESET = StreamInput.RESET
_CLOSED = StreamLife.CLOSED


class LinkConnection:
    """
    One end of a link, without I/O.

    @ivar isDialer: whether this is the side that dialed.
    @ivar localSettings: the settings we announce.
    @ivar peerSettings: the peer's settings (the defaults until its HELLO).
    @ivar peerCodecs: the codec names of the peer's HELLO.
    @ivar counters: bytes on the wire, both directions.
    @ivar stats: the L{LinkStats}.
    @ivar credit: the receive side of flow control (L{ReceiveCredit}).
    @ivar liveness: PING and round-trip times (L{Liveness}).
    @ivar phase: the L{LinkPhase}.
    @ivar drain: the L{Drain}.
    @ivar closeError: why the link is closing, for whoever waits for it to
        be ready.
    @ivar events: the events not taken yet (test it for emptiness; take
        them with L{takeEvents}).
    @ivar streams: the open streams by id.
    @ivar peerName: how logs name the peer (set by the I/O layer).
    @ivar scheduler: the outbound queues and windows (L{Scheduler}).
    """

    _log = Logger()

    def __init__(
        self,
        *,
        isDialer: bool,
        token: bytes,
        now: Callable[[], float],
        settings: Settings = Settings(),  # noqa: B008 (frozen: immutable)
        acceptStreams: bool = True,
        requestIds: RequestIdGenerator | None = None,
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
        @param now: the time, in seconds.
        @param settings: our limits, announced in HELLO.
        @param acceptStreams: whether the peer may open streams; C{False}
            refuses every one.
        @param requestIds: request id source for streams we open.
        @param maxBufferedBytes: inbound bytes held by paused streams beyond
            which connection credit waits for consumption.
        @param maxHeaderListSize: largest decoded header list accepted.
        @param maxResetsPerSecond: peer resets plus refusals tolerated per
            rolling second.
        @param maxPingsPerSecond: PINGs tolerated per rolling second.
        @param codecs: codec names announced in HELLO.
        """
        self.isDialer = isDialer
        self._token = token
        self._now = now
        self.localSettings = settings
        self.peerSettings = Settings()
        self.peerCodecs: tuple[str, ...] = ()
        self._codecs = tuple(codecs)
        self._acceptStreams = acceptStreams
        self._requestIds = (
            requestIds if requestIds is not None else RequestIdGenerator()
        )
        self._resetRate = RateLimit(maxResetsPerSecond, now)
        self._pingRate = RateLimit(maxPingsPerSecond, now)
        self.counters = ByteCounters()
        self.stats = LinkStats()
        self.liveness = Liveness(now)
        self.peerName = "?"

        self.phase = LinkPhase.HANDSHAKE
        self.drain = Drain.NONE
        self.remoteLastStreamId: int | None = None
        self.closeError: Exception | None = None
        self.events: list[LinkEvent] = []

        self._parser = FrameParser(settings.maxFrameSize, settings.maxHeaderBlock)
        self._decoder = HeaderBlockDecoder(maxHeaderListSize)
        # DATA and HEADERS come as tuples (FrameParser.feedRaw).
        self._handlers: dict[type, Callable[[Any], None]] = {
            Window: self._onWindow,
            Reset: self._onReset,
            Ping: self._onPing,
            Pong: self._onPong,
            GoAway: self._onGoAway,
            Hello: self._onHello,
            Unknown: self._onUnknown,
        }

        self.table = StreamTable(isDialer)
        self.streams = self.table.streams

        # Receive side of flow control (the send side is the scheduler's).
        self.credit = ReceiveCredit(
            settings.connectionWindow, settings.initialStreamWindow, maxBufferedBytes
        )

        self.scheduler = Scheduler(
            HeaderBlockEncoder(neverIndexed=(REQUEST_ID_HEADER,)),
            self.counters,
            self.stats,
            self.events,
            self.peerSettings,
        )

    def __repr__(self) -> str:
        role = "dialer" if self.isDialer else "acceptor"
        return f"<LinkConnection {role} {self.phase.name} streams={len(self.streams)}>"

    # State.

    def isReady(self) -> bool:
        """
        @return: C{True} once HELLOs are exchanged and until the link closes.
        """
        return self.phase is LinkPhase.READY

    def isDraining(self) -> bool:
        """
        @return: C{True} once a GOAWAY was sent or received.
        """
        return self.drain is not Drain.NONE

    def isActive(self) -> bool:
        """
        @return: C{True} while neither closing nor closed.
        """
        return self.phase in ACTIVE

    def _phaseTo(self, event: PhaseInput) -> bool:
        """
        Move the phase; C{False} when C{event} cannot happen now.
        """
        phase = PHASE_TRANSITIONS.get((self.phase, event))
        if phase is None:
            return False
        self.phase = phase
        return True

    def takeEvents(self) -> list[LinkEvent]:
        """
        @return: the events since the last call, oldest first.
        """
        if self.scheduler.overflowed:
            self.scheduler.overflowed = False
            self.controlOverflowed()
        events = self.events
        if not events:
            return events[:0]
        taken = events[:]
        events.clear()
        return taken

    def hasEvents(self) -> bool:
        """
        @return: whether L{takeEvents} has something.
        """
        return bool(self.events) or self.scheduler.overflowed

    # Input.

    def initiateConnection(self) -> None:
        """
        The transport is up: the dialer queues its HELLO.
        """
        if self.isDialer:
            self.scheduler.queueControl(self._hello(self._token).encode())

    def receiveData(self, data: bytes) -> list[LinkEvent]:
        """
        Parse bytes from the peer and act on every whole frame.

        @return: L{takeEvents}.
        """
        if self.phase not in ACTIVE:
            return self.takeEvents()
        self.counters.received += len(data)
        try:
            frames = self._parser.feedRaw(data)
        except ProtocolError as e:
            self._protocolError(e)
            return self.takeEvents()
        handlers = self._handlers
        stats = self.stats
        ready = LinkPhase.READY
        for frame in frames:
            phase = self.phase
            if phase is not ready:
                if phase is not LinkPhase.HANDSHAKE:
                    break
                cls = frame.__class__
                if cls is not Hello and cls is not GoAway:
                    if cls is tuple:
                        kind = "DATA" if frame[0] == TYPE_DATA else "HEADERS"  # type: ignore[index]
                    else:
                        kind = cls.__name__
                    self._protocolError(
                        ProtocolError(
                            ErrorCode.PROTOCOL_ERROR, f"{kind} frame before HELLO"
                        )
                    )
                    break
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
                break
            if self.scheduler.overflowed:
                break
        return self.takeEvents()

    def _hello(self, token: bytes) -> Hello:
        return Hello(PROTOCOL_VERSION, token, self.localSettings, self._codecs)

    def _onHello(self, hello: Hello) -> None:
        if self.phase is not LinkPhase.HANDSHAKE:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "second HELLO")
        if not self.isDialer and not hmac.compare_digest(hello.token, self._token):
            raise ProtocolError(ErrorCode.AUTH_FAILED, "authentication failed")
        self.peerSettings = hello.settings
        self.peerCodecs = hello.codecs
        self.scheduler.peerSettingsChanged(hello.settings)
        if not self.isDialer:
            self.scheduler.queueControl(self._hello(b"").encode())
        self._phaseTo(PhaseInput.HELLO)
        self._log.debug(
            "link ready; peer settings {settings}", settings=self.peerSettings
        )
        self.events.append((LINK_READY,))

    def _receiveData(self, streamId: int, data: bytes, endStream: int) -> None:
        size = len(data)
        credit = self.credit
        if size > credit.window:
            raise credit.exceeded(size)
        credit.window -= size
        credit.debt += size
        record = self.streams.get(streamId)
        if record is None:
            self.table.checkClosed(streamId, "DATA")
            # Dropped, but credited, or the connection window would leak.
            if credit.due():
                self.scheduler.wantFlush()
            return
        if record.life not in REMOTE_OPEN:
            self._resetProvoked(record, ErrorCode.STREAM_CLOSED)
        elif size > record.recvWindow:
            self._resetProvoked(record, ErrorCode.FLOW_CONTROL_ERROR)
        else:
            record.recvWindow -= size
            record.counters.received += size
            self.events.append((DATA_RECEIVED, record, data, bool(endStream)))
            if endStream:
                self._remoteEnded(record)
        if credit.due():
            self.scheduler.wantFlush()

    def _remoteEnded(self, record: StreamRecord) -> None:
        life = record.life = TRANSITIONS[(record.life, _RECV_END)]
        if life is _CLOSED:
            # No event: the handler learns of it with the END_STREAM's own
            # event, queued already.
            self._remove(record)

    def _receiveHeaders(self, streamId: int, block: bytes, endStream: int) -> None:
        # Always decode first: the HPACK state must follow every block, even
        # one for a stream we drop or refuse.
        headers = self._decoder.decode(block)
        ended = bool(endStream)
        record = self.streams.get(streamId)
        if record is not None:
            if record.life not in REMOTE_OPEN:
                self._resetProvoked(record, ErrorCode.STREAM_CLOSED)
                return
            record.headersReceived += 1
            if record.headersReceived > MAX_HEADERS_PER_STREAM:
                self._resetProvoked(record, ErrorCode.ENHANCE_YOUR_CALM)
                return
            self.events.append((HEADERS_RECEIVED, record, headers, ended))
            if ended:
                self._remoteEnded(record)
            return
        if not self.table.isPeerStreamId(streamId):
            self.table.checkClosed(streamId, "HEADERS")
            return
        if not self.table.isNewPeerStream(streamId):
            # A late frame on a stream that is already closed.
            return
        self._acceptStream(streamId, headers, ended)

    def _refuse(self, streamId: int, code: ErrorCode, why: str) -> None:
        self.stats.streamsRefused += 1
        self._log.debug("refusing stream {streamId}: {why}", streamId=streamId, why=why)
        self.scheduler.queueControl(Reset(streamId, code).encode())
        self._countReset()

    def _acceptStream(
        self, streamId: int, headers: list[Header], endStream: bool
    ) -> None:
        if self.drain is Drain.LOCAL or self.drain is Drain.BOTH:
            self._refuse(streamId, ErrorCode.REFUSED_STREAM, "draining")
            return
        if not self._acceptStreams:
            self._refuse(streamId, ErrorCode.REFUSED_STREAM, "no stream factory")
            return
        if self.table.peerOpen >= self.localSettings.maxConcurrentStreams:
            self._refuse(streamId, ErrorCode.REFUSED_STREAM, "too many streams")
            return
        requestId, rest = splitRequestId(headers)
        if requestId is None:
            self._refuse(
                streamId, ErrorCode.PROTOCOL_ERROR, "missing or bad :request-id"
            )
            return
        record = StreamRecord(
            streamId,
            requestId.decode("ascii"),
            self.peerSettings.initialStreamWindow,
            self.localSettings.initialStreamWindow,
        )
        record.headersReceived = 1
        self.table.addPeer(record)
        self.stats.streamsAccepted += 1
        self.events.append((STREAM_OPENED, record, rest, endStream))
        if endStream:
            self._remoteEnded(record)

    def _onWindow(self, frame: Window) -> None:
        increment = frame.increment
        scheduler = self.scheduler
        if frame.streamId == 0:
            window = scheduler.sendWindow + increment
            if window > MAX_WINDOW:
                raise ProtocolError(
                    ErrorCode.FLOW_CONTROL_ERROR, "connection window above 2^31-1"
                )
            scheduler.sendWindow = window
            scheduler.connectionWindowOpened()
            return
        record = self.streams.get(frame.streamId)
        if record is None:
            self.table.checkClosed(frame.streamId, "WINDOW")
            return
        window = record.sendWindow + increment
        if window > MAX_WINDOW:
            raise ProtocolError(
                ErrorCode.FLOW_CONTROL_ERROR,
                f"stream {frame.streamId} window above 2^31-1",
            )
        record.sendWindow = window
        scheduler.hasOutput(record)

    def _onReset(self, frame: Reset) -> None:
        record = self.streams.get(frame.streamId)
        if record is None:
            self.table.checkClosed(frame.streamId, "RESET")
            return
        self.stats.resetsReceived += 1
        code = errorCodeFromWire(frame.code)
        if code == ErrorCode.REFUSED_STREAM:
            self._abort(
                record, StreamRefused(f"stream {frame.streamId} refused by peer")
            )
        else:
            self._abort(record, StreamReset(code, remote=True))
        self._countReset()

    def _resetProvoked(self, record: StreamRecord, code: ErrorCode) -> None:
        """
        Reset a stream whose peer broke a stream-level rule. Such resets
        count against the same rate limit as the peer's own RESETs and
        refused streams: a peer could otherwise open and get reset stream
        after stream, each one work for us ("MadeYouReset",
        CVE-2025-8671), without ever sending a RESET itself.
        """
        self.resetStream(record, code)
        self.events.append((STREAM_CLOSED, record, StreamReset(code, remote=False)))
        self._countReset()

    def _countReset(self) -> None:
        if self._resetRate.exceeded():
            raise ProtocolError(
                ErrorCode.ENHANCE_YOUR_CALM, "too many streams reset or refused"
            )

    def _onPing(self, frame: Ping) -> None:
        if self._pingRate.exceeded():
            raise ProtocolError(ErrorCode.ENHANCE_YOUR_CALM, "too many PINGs")
        self.scheduler.queueControl(Pong(frame.opaque).encode())

    def _onPong(self, frame: Pong) -> None:
        sample = self.liveness.pong(frame.opaque)
        if sample is not None:
            self.stats.pongsReceived += 1
            self.events.append((PONG_RECEIVED, sample))

    def _onGoAway(self, frame: GoAway) -> None:
        last = frame.lastStreamId
        if frame.code != ErrorCode.NO_ERROR:
            code = errorCodeFromWire(frame.code)
            self._log.warn(
                "peer {peer} closed the link: GOAWAY {code} {reason!r}",
                peer=self.peerName,
                code=describeCode(frame.code),
                reason=frame.reason,
            )
            self._stop(ProtocolError(code, f"peer sent GOAWAY: {frame.reason}"))
            self._refuseAbove(last)
            self._failStreams(
                LinkLost(
                    f"peer closed the link: {describeCode(frame.code)} {frame.reason}"
                )
            )
            self.events.append((CLOSE_TRANSPORT, False))
            return
        self._log.info(
            "peer {peer} is draining the link (last stream {last}, {reason!r})",
            peer=self.peerName,
            last=last,
            reason=frame.reason,
        )
        if self.remoteLastStreamId is None or last < self.remoteLastStreamId:
            self.remoteLastStreamId = last
        self.drain = DRAIN_TRANSITIONS[(self.drain, DrainInput.RECEIVED)]
        self._refuseAbove(last)
        if self.phase is LinkPhase.HANDSHAKE:
            self._stop(LinkLost("peer sent GOAWAY before HELLO"))
            self.events.append((CLOSE_TRANSPORT, False))
            return
        self._maybeFinishDrain()

    def _refuseAbove(self, last: int) -> None:
        """
        Fail our streams that the peer's GOAWAY says it never processed.
        """
        for streamId, record in list(self.streams.items()):
            if streamId > last and not self.table.isPeerStreamId(streamId):
                self._abort(
                    record, StreamRefused(f"stream {streamId} above GOAWAY last {last}")
                )

    def _onUnknown(self, frame: Unknown) -> None:
        self.stats.unknownFrames += 1

    # Inbound flow control.

    def dataBuffered(self, size: int) -> None:
        """
        A paused stream holds C{size} more received bytes (or fewer, when
        negative), which count against the connection credit.
        """
        self.credit.bufferedBytes += size
        if size < 0 and self.credit.due():
            self.scheduler.wantFlush()

    def acknowledgeReceivedData(self, record: StreamRecord, size: int) -> None:
        """
        The stream's handler took C{size} bytes: return stream credit in
        batches (the connection credit follows on its own).
        """
        if record.life not in REMOTE_OPEN:
            # No more DATA can come: credit would be wasted.
            return
        unacked = record.unacked + size
        if unacked >= self.credit.streamThreshold or record.recvWindow == 0:
            record.unacked = 0
            record.recvWindow += unacked
            self.scheduler.queueControl(Window(record.streamId, unacked).encode())
        else:
            record.unacked = unacked

    # Streams we open and end.

    def openStream(
        self, headers: Iterable[Header], endStream: bool = False
    ) -> StreamRecord:
        """
        Open a stream; its HEADERS leave with the next L{dataToSend}.

        @param headers: the opening headers; C{:request-id} is added.
        @param endStream: nothing more will be sent on the stream.
        @raise LinkUnavailable: when the link is not ready, is draining or
            closed, or is at the peer's MAX_CONCURRENT_STREAMS.
        @raise ValueError: when the header block could exceed the peer's
            limits.
        """
        if self.phase is not LinkPhase.READY:
            raise LinkUnavailable(f"link not ready ({self.phase.name})")
        if self.drain is not Drain.NONE:
            raise LinkUnavailable("link is draining")
        table = self.table
        if table.localOpen >= self.peerSettings.maxConcurrentStreams:
            raise LinkUnavailable(
                f"at the peer's limit of {self.peerSettings.maxConcurrentStreams} "
                "streams"
            )
        if table.idsExhausted():
            raise LinkUnavailable("stream ids exhausted")
        requestId = self._requestIds.next()
        # The encoder never indexes it: a fresh id per request would churn
        # the dynamic table.
        block: list[Any] = [(REQUEST_ID_HEADER, requestId.encode("ascii"))]
        block.extend(headers)
        self.scheduler.checkHeaderSize(block)
        record = StreamRecord(
            table.nextStreamId,
            requestId,
            self.peerSettings.initialStreamWindow,
            self.localSettings.initialStreamWindow,
        )
        record.pendingOpen = HeadersItem(block, endStream)
        if endStream:
            record.life = TRANSITIONS[(record.life, _QUEUE_END)]
        table.addLocal(record)
        self.stats.streamsOpened += 1
        self.scheduler.opening(record)
        return record

    def resetStream(self, record: StreamRecord, code: ErrorCode) -> None:
        """
        Abort a stream now: send RESET (unless its opening HEADERS never
        left), drop its queues.  No event: the caller tells its handler.
        """
        if record.life in OVER:
            return
        if record.pendingOpen is None:
            self.scheduler.queueControl(Reset(record.streamId, code).encode())
        self._drop(record)
        self._remove(record)

    def _abort(self, record: StreamRecord, reason: Exception) -> None:
        """
        End a stream for good and report it with C{reason}.
        """
        if record.life in OVER:
            return
        self._drop(record)
        self.events.append((STREAM_CLOSED, record, reason))
        self._remove(record)

    def _drop(self, record: StreamRecord) -> None:
        record.transition(_RESET)
        record.outbound.clear()
        record.outboundBytes = 0
        record.pendingOpen = None

    def _remove(self, record: StreamRecord) -> None:
        if self.table.remove(record) and not self.streams:
            self._maybeFinishDrain()

    def streamEndSent(self, record: StreamRecord) -> None:
        """
        The scheduler wrote the stream's END_STREAM.
        """
        if record.life in OVER:
            return
        life = record.life = TRANSITIONS[(record.life, _SEND_END)]
        if life is _CLOSED:
            self.events.append((STREAM_CLOSED, record, None))
            self._remove(record)

    # Liveness.

    def ping(self) -> bool:
        """
        Send a PING unless one is unanswered.

        @return: whether one was sent (the I/O layer starts its timeout).
        """
        if self.phase is not LinkPhase.READY:
            return False
        frame = self.liveness.ping()
        if frame is None:
            return False
        self.stats.pingsSent += 1
        self.scheduler.queueControl(frame.encode())
        return True

    def helloTimedOut(self, timeout: float) -> None:
        """
        The peer's HELLO did not come in time.
        """
        self._protocolError(
            ProtocolError(ErrorCode.HELLO_TIMEOUT, f"no HELLO within {timeout} s")
        )

    def pingTimedOut(self, timeout: float) -> None:
        """
        Our PING went unanswered: the link is dead.
        """
        if self.phase is not LinkPhase.READY:
            return
        self._log.warn(
            "no PONG within {timeout} s: link to {peer} is dead",
            timeout=timeout,
            peer=self.peerName,
        )
        self._stop(LinkLost(f"no PONG within {timeout} s"))
        self._failStreams(LinkLost(f"link dead: no PONG within {timeout} s"))
        self.events.append((CLOSE_TRANSPORT, True))

    def drainTimedOut(self, timeout: float) -> None:
        """
        The drain took too long: fail what is left and abort.
        """
        if self.phase not in ACTIVE:
            return
        self._log.warn(
            "drain did not finish within {timeout} s; aborting {streams} streams",
            timeout=timeout,
            streams=len(self.streams),
        )
        self._stop(None)
        self._failStreams(LinkLost(f"drain timed out after {timeout} s"))
        self.events.append((CLOSE_TRANSPORT, True))

    # Drain and close.

    def goAway(self, code: ErrorCode = ErrorCode.NO_ERROR, reason: str = "") -> None:
        """
        Drain the link: send GOAWAY, refuse new peer streams, open no new
        ones, close once the open ones are done.  With an error code, close
        at once instead.
        """
        if self.phase not in ACTIVE:
            return
        if code != ErrorCode.NO_ERROR:
            self._log.info(
                "closing link with {peer}: {code} {reason}",
                peer=self.peerName,
                code=code.name,
                reason=reason,
            )
            self._terminate(
                code,
                reason,
                LinkLost(f"link closed locally: {code.name} {reason}"),
                ProtocolError(code, reason),
            )
            return
        if self.drain is Drain.LOCAL or self.drain is Drain.BOTH:
            return
        self.drain = DRAIN_TRANSITIONS[(self.drain, DrainInput.SENT)]
        self._log.info(
            "draining link: GOAWAY last stream {lastStreamId}, {streams} open",
            lastStreamId=self.table.lastAcceptedPeerStreamId,
            streams=len(self.streams),
        )
        self.scheduler.queueControl(
            GoAway(
                self.table.lastAcceptedPeerStreamId,
                ErrorCode.NO_ERROR,
                truncateReason(reason),
            ).encode()
        )
        self.events.append((DRAIN_STARTED,))
        self._maybeFinishDrain()

    def _maybeFinishDrain(self) -> None:
        if self.streams or self.drain is Drain.NONE:
            return
        if self.phase in ACTIVE:
            self._stop(None)
            self.events.append((CLOSE_TRANSPORT, False))

    def _stop(self, error: Exception | None) -> None:
        """
        Enter L{LinkPhase.CLOSING}: no more input, no new streams.

        @param error: why, for whoever waits for readiness (C{None}: keep
            what is known).
        """
        self._phaseTo(PhaseInput.STOP)
        self.scheduler.stop()
        if error is not None and self.closeError is None:
            self.closeError = error
        self.events.append((LINK_CLOSING,))

    def _failStreams(self, error: Exception) -> None:
        for record in list(self.streams.values()):
            self._abort(record, error)

    def _protocolError(self, error: ProtocolError) -> None:
        """
        The peer broke the protocol (or a timeout fired): GOAWAY with the
        code, fail every stream with L{LinkLost}, close.
        """
        if self.phase not in ACTIVE:
            return
        self._log.warn(
            "link protocol error with {peer}: {code} {reason}",
            peer=self.peerName,
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
        self._stop(readyError)
        self._failStreams(streamError)
        self.scheduler.finalControl(
            GoAway(
                self.table.lastAcceptedPeerStreamId, code, truncateReason(reason)
            ).encode()
        )
        self.events.append((CLOSE_TRANSPORT, False))

    def controlOverflowed(self) -> None:
        """
        The peer does not read its control frames: abort.
        """
        if self.phase not in ACTIVE:
            return
        self._log.error(
            "{count} bytes of control frames queued while {peer} does not "
            "read; aborting the link",
            count=self.scheduler.controlBytes,
            peer=self.peerName,
        )
        self._stop(LinkLost("peer does not read its control frames"))
        self._failStreams(LinkLost("peer does not read its control frames"))
        self.events.append((CLOSE_TRANSPORT, True))

    def connectionLost(self, why: str) -> None:
        """
        The transport is gone: fail every stream with L{LinkLost}, then
        report the link closed.

        @param why: the transport's reason, for the streams' failure.
        """
        if not self._phaseTo(PhaseInput.LOST):
            return
        self.scheduler.stop()
        self._failStreams(LinkLost(f"link lost: {why}"))
        self.scheduler.clear()
        self.events.append((LINK_CLOSED,))

    # Output.

    def dataToSend(self) -> list[bytes]:
        """
        @return: the bytes to write now, for one C{writeSequence}: control
            frames, opening HEADERS, then stream frames up to the
            scheduler's budget and the windows.
        """
        if self.phase not in ACTIVE:
            return self.scheduler.takeFinalControl()
        credit = self.credit.take()
        if credit:
            self.scheduler.queueControl(Window(0, credit).encode(), check=False)
        out, ended = self.scheduler.frames()
        for record in ended:
            self.streamEndSent(record)
        return out
