"""
A stream of a link as an ordinary Twisted transport.

L{LinkStream} is what a L{StreamProtocol} sees as its C{transport}
(C{ITransport}, C{IConsumer}, C{IPushProducer}).  It keeps what is the
handler's business: delivery (buffered while the handler pauses it, with
credit returned only for bytes delivered) and its body producer (paused
above a high-water mark).  Everything on the wire goes through the public
API of the link's L{railgun.link.connection.LinkConnection} (its
C{scheduler} queues what the stream sends), on the stream's
L{StreamRecord}, which the stream only reads; the
L{railgun.link.protocol.LinkProtocol} delivers the connection's events to
the stream, and is told when to flush or deliver (L{LinkProtocol.wakeUp}).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from enum import IntEnum, auto
from typing import TYPE_CHECKING, Any

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
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .errors import ErrorCode, StreamReset
from .headerblock import Header
from .streamstate import (
    END,
    LOCAL_OPEN,
    HeadersItem,
    StreamLife,
    StreamRecord,
    StreamState,
)

if TYPE_CHECKING:
    from .protocol import LinkProtocol

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


class Delivery(IntEnum):
    """
    What a stream's handler was told.
    """

    ATTACHED = auto()  # connected; the peer's side may still send
    READ_ENDED = auto()  # readConnectionLost was delivered
    LOST = auto()  # connectionLost was delivered


class DeliveryInput(IntEnum):
    READ_END = auto()
    LOSE = auto()


DELIVERY_TRANSITIONS: dict[tuple[Delivery, DeliveryInput], Delivery] = {
    (Delivery.ATTACHED, DeliveryInput.READ_END): Delivery.READ_ENDED,
    (Delivery.ATTACHED, DeliveryInput.LOSE): Delivery.LOST,
    (Delivery.READ_ENDED, DeliveryInput.LOSE): Delivery.LOST,
}
_LOST = Delivery.LOST
_READ_END = DeliveryInput.READ_END
_LOSE = DeliveryInput.LOSE


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
    @ivar record: the stream's L{StreamRecord} in the link's connection.
    @ivar counters: body bytes sent and received on this stream.
    @ivar protocol: the L{StreamProtocol}, once connected.
    @ivar producer: the registered producer, if any.
    @ivar delivery: the L{Delivery} state.
    """

    _log = Logger()

    def __init__(self, link: LinkProtocol, record: StreamRecord) -> None:
        self.link = link
        self.record = record
        self._conn = link.connection
        self._scheduler = link.connection.scheduler
        self.streamId = record.streamId
        self.requestId = record.requestId
        self.counters = record.counters
        self.protocol: Any = None
        self.producer: Any = None
        self.delivery = Delivery.ATTACHED
        record.owner = self
        # Outbound.
        self._producerPaused = False
        self._pullPump: _PullPump | None = None
        # Inbound.
        self._inbound: deque[Any] = deque()
        self._inboundBytes = 0
        self._consumerPaused = False
        self._delivering = False
        self._halfCloseable = False

    def __repr__(self) -> str:
        return f"<LinkStream {self.streamId} {self.requestId} {self.state.name}>"

    @property
    def state(self) -> StreamState:
        """
        The stream's L{railgun.link.streamstate.StreamState} on the wire.
        """
        return self.record.state

    @property
    def inboundBytes(self) -> int:
        """
        Received bytes held while the handler pauses delivery.
        """
        return self._inboundBytes

    # Connection to the protocol.

    def connect(self, protocol: Any) -> bool:
        """
        Attach the handler (the link calls this once).

        @return: whether its C{makeConnection} returned normally.
        """
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
        if self.delivery is _LOST:
            return
        if self._scheduler.sendHeaders(self.record, list(headers), endStream):
            self.link.wakeUp()

    def write(self, data: bytes) -> None:
        """
        Queue body bytes.  Dropped silently once the stream is ended or reset,
        as a TCP transport drops writes after C{loseConnection}.
        """
        if data.__class__ is not bytes:
            if isinstance(data, str):
                raise TypeError("LinkStream.write takes bytes, not str")
            data = bytes(data)
        record = self.record
        if not data or record.life not in LOCAL_OPEN:
            return
        wake = self._scheduler.sendData(record, data)
        if self.producer is not None and not self._producerPaused:
            self._updateProducer()
        if wake:
            self.link.wakeUp()

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
        if self.delivery is _LOST:
            return
        if self._scheduler.endStream(self.record):
            self.link.wakeUp()

    def reset(self, code: ErrorCode = ErrorCode.CANCEL) -> None:
        """
        Abort the stream now: send RESET, drop queued data both ways, and
        call C{connectionLost} with a local L{StreamReset}.
        """
        if self.delivery is _LOST:
            return
        self._conn.resetStream(self.record, code)
        self.lose(Failure(StreamReset(code, remote=False)))
        self.link.wakeUp()

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
        if self.delivery is _LOST:
            producer.stopProducing()
            return
        if streaming:
            self.producer = producer
        else:
            self._pullPump = _PullPump(producer, self.link.clock)  # type: ignore[arg-type]
            self.producer = self._pullPump
        self._producerPaused = False
        self.link.producerStreams.add(self)
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
        self.record.wakeBelow = 0
        self.link.producerStreams.discard(self)

    def updateProducer(self) -> None:
        """
        Pause or resume the producer from the queue size (with hysteresis)
        and the link's transport state.
        """
        self._updateProducer()

    def _updateProducer(self) -> None:
        producer = self.producer
        if producer is None:
            return
        link = self.link
        if not self._producerPaused:
            if (
                link.transportPaused
                or self.record.outboundBytes >= link.streamHighWater
            ):
                self._producerPaused = True
                self.record.wakeBelow = link.streamLowWater
                self._call(producer.pauseProducing)
        elif (
            not link.transportPaused
            and self.record.outboundBytes <= link.streamLowWater
        ):
            self._producerPaused = False
            self.record.wakeBelow = 0
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
        self.link.wakeUp()

    def stopProducing(self) -> None:
        """
        The consumer is gone: C{reset(ErrorCode.CANCEL)}.
        """
        self.reset(ErrorCode.CANCEL)

    # Inbound, from the link's events.

    def receiveData(self, data: bytes, endStream: bool) -> None:
        """
        Body bytes arrived: deliver them, or buffer them while paused.
        """
        if self.delivery is _LOST:
            return
        size = len(data)
        if self._consumerPaused or self._inbound or self._delivering:
            if size:
                self._inbound.append(data)
                self._inboundBytes += size
                self._conn.dataBuffered(size)
        elif size:
            if self._call(self.protocol.dataReceived, data):
                self._conn.acknowledgeReceivedData(self.record, size)
        if endStream:
            self._remoteEnded()

    def receiveHeaders(self, headers: list[Header], endStream: bool) -> None:
        """
        A header block arrived: deliver it, or buffer it while paused.
        """
        if self.delivery is _LOST:
            return
        if self._consumerPaused or self._inbound or self._delivering:
            self._inbound.append(HeadersItem(headers, endStream))
        else:
            self._call(self.protocol.headersReceived, headers, endStream)
        if endStream:
            self._remoteEnded()

    def closed(self, reason: Exception | None) -> None:
        """
        The stream is over on the wire: cleanly (C{None}; the handler hears
        of it once it was told the peer's end) or with C{reason}.
        """
        if reason is None:
            self._maybeFinish()
        else:
            self.lose(Failure(reason))

    def _remoteEnded(self) -> None:
        if self.delivery is _LOST:
            return
        if self._consumerPaused or self._inbound or self._delivering:
            self._inbound.append(END)
        else:
            self._deliverReadLost()

    def _deliverReadLost(self) -> None:
        self.delivery = DELIVERY_TRANSITIONS[(self.delivery, _READ_END)]
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
            conn = self._conn
            while inbound and not self._consumerPaused and self.delivery is not _LOST:
                item = inbound.popleft()
                if item is END:
                    self._deliverReadLost()
                elif item.__class__ is HeadersItem:
                    self._call(
                        self.protocol.headersReceived, item.headers, item.endStream
                    )
                else:
                    size = len(item)
                    self._inboundBytes -= size
                    consumed += size
                    if self._call(self.protocol.dataReceived, item):
                        conn.acknowledgeReceivedData(self.record, size)
        finally:
            self._delivering = False
        if consumed:
            self._conn.dataBuffered(-consumed)

    def _maybeFinish(self) -> None:
        if (
            self.delivery is Delivery.READ_ENDED
            and self.record.life is StreamLife.CLOSED
        ):
            self.lose(_STREAM_DONE)

    def lose(self, reason: Failure) -> None:
        """
        End the stream for good (its record is over): drop what is
        buffered, stop the producer, tell the protocol.
        """
        if self.delivery is _LOST:
            return
        self.delivery = DELIVERY_TRANSITIONS[(self.delivery, _LOSE)]
        if self._inboundBytes:
            self._conn.dataBuffered(-self._inboundBytes)
            self._inboundBytes = 0
        self._inbound.clear()
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
