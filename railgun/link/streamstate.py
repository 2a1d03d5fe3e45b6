"""
The wire side of one stream, without I/O: its lifecycle as a transition
table, its flow-control windows and its outbound queue.

A L{StreamRecord} belongs to a L{railgun.link.connection.LinkConnection},
which alone changes it; the stream's transport
(L{railgun.link.stream.LinkStream}) reads its public attributes.  This is
the role of C{h2.stream.H2Stream} beside C{h2.connection.H2Connection}.
"""

from __future__ import annotations

from collections import deque
from enum import Enum, IntEnum, auto
from typing import Any

from .counting import ByteCounters


class StreamState(Enum):
    """
    The wire state of a stream, named as in HTTP/2.
    """

    OPEN = auto()
    HALF_CLOSED_LOCAL = auto()  # we sent END_STREAM
    HALF_CLOSED_REMOTE = auto()  # the peer sent END_STREAM
    CLOSED = auto()


class StreamLife(IntEnum):
    """
    The full life of a stream on the wire: L{StreamState} plus whether our
    END_STREAM is queued but not yet written, and whether the stream ended
    cleanly or was aborted.
    """

    OPEN = auto()
    #: our END_STREAM is queued behind data, not yet written
    ENDING = auto()
    HALF_CLOSED_LOCAL = auto()
    HALF_CLOSED_REMOTE = auto()
    #: the peer ended its side; our END_STREAM is queued
    HALF_CLOSED_REMOTE_ENDING = auto()
    #: both sides ended cleanly
    CLOSED = auto()
    #: aborted: RESET sent or received, refused, or the link went
    RESET = auto()


class StreamInput(IntEnum):
    """
    What happens to a stream.
    """

    QUEUE_END = auto()  # our END_STREAM was queued
    SEND_END = auto()  # our END_STREAM was written
    RECV_END = auto()  # the peer's END_STREAM arrived
    RESET = auto()  # aborted, either way


_L = StreamLife
_I = StreamInput

#: (state, input) -> next state; a pair missing here is a bug of the
#: caller, except RESET, which every state but the two ends accepts.
TRANSITIONS: dict[tuple[StreamLife, StreamInput], StreamLife] = {
    (_L.OPEN, _I.QUEUE_END): _L.ENDING,
    (_L.OPEN, _I.RECV_END): _L.HALF_CLOSED_REMOTE,
    (_L.ENDING, _I.SEND_END): _L.HALF_CLOSED_LOCAL,
    (_L.ENDING, _I.RECV_END): _L.HALF_CLOSED_REMOTE_ENDING,
    (_L.HALF_CLOSED_LOCAL, _I.RECV_END): _L.CLOSED,
    (_L.HALF_CLOSED_REMOTE, _I.QUEUE_END): _L.HALF_CLOSED_REMOTE_ENDING,
    (_L.HALF_CLOSED_REMOTE_ENDING, _I.SEND_END): _L.CLOSED,
}
for _state in _L:
    if _state is not _L.CLOSED and _state is not _L.RESET:
        TRANSITIONS[(_state, _I.RESET)] = _L.RESET

#: what L{StreamState} each life state shows
PUBLIC_STATE: dict[StreamLife, StreamState] = {
    _L.OPEN: StreamState.OPEN,
    _L.ENDING: StreamState.OPEN,
    _L.HALF_CLOSED_LOCAL: StreamState.HALF_CLOSED_LOCAL,
    _L.HALF_CLOSED_REMOTE: StreamState.HALF_CLOSED_REMOTE,
    _L.HALF_CLOSED_REMOTE_ENDING: StreamState.HALF_CLOSED_REMOTE,
    _L.CLOSED: StreamState.CLOSED,
    _L.RESET: StreamState.CLOSED,
}

#: states in which the peer may still send HEADERS and DATA
REMOTE_OPEN = frozenset({_L.OPEN, _L.ENDING, _L.HALF_CLOSED_LOCAL})
#: states in which we may still queue headers, data or END_STREAM
LOCAL_OPEN = frozenset({_L.OPEN, _L.HALF_CLOSED_REMOTE})
#: states in which the stream is over
OVER = frozenset({_L.CLOSED, _L.RESET})


class HeadersItem:
    """
    A header list waiting in a stream queue; encoded only when written, so
    that header blocks reach the wire in the order they were encoded.
    """

    __slots__ = ("headers", "endStream")

    def __init__(self, headers: list[Any], endStream: bool) -> None:
        self.headers = headers
        self.endStream = endStream


class EndMarker:
    """
    The type of L{END}.
    """

    __slots__ = ()


#: END_STREAM queued behind data in an outbound queue (or inbound, in a
#: stream transport's delivery buffer)
END = EndMarker()


class StreamRecord:
    """
    One stream as its connection sees it.

    @ivar streamId: the stream id.
    @ivar requestId: the request id of its opening HEADERS.
    @ivar life: the L{StreamLife}; changed only through L{transition}.
    @ivar owner: whatever the I/O layer attached (its stream transport).
    @ivar counters: body bytes sent and received.
    @ivar outbound: queued bytes, memoryviews, L{HeadersItem}s and L{END}.
    @ivar outboundBytes: body bytes in C{outbound}.
    @ivar sendWindow: the peer's credit for this stream.
    @ivar recvWindow: our credit left to the peer.
    @ivar unacked: bytes consumed whose credit is not returned yet.
    @ivar headersReceived: header blocks received.
    @ivar pendingOpen: the opening HEADERS, until written.
    @ivar scheduled: whether the stream is in its connection's ready queue.
    @ivar wakeBelow: outbound bytes at or below which the connection
        reports L{railgun.link.events.StreamDrained} (0: nobody waits).
    """

    __slots__ = (
        "streamId",
        "requestId",
        "life",
        "owner",
        "counters",
        "outbound",
        "outboundBytes",
        "sendWindow",
        "recvWindow",
        "unacked",
        "headersReceived",
        "pendingOpen",
        "scheduled",
        "wakeBelow",
    )

    def __init__(
        self, streamId: int, requestId: str, sendWindow: int, recvWindow: int
    ) -> None:
        self.streamId = streamId
        self.requestId = requestId
        self.life = StreamLife.OPEN
        self.owner: Any = None
        self.counters = ByteCounters()
        self.outbound: deque[Any] = deque()
        self.outboundBytes = 0
        self.sendWindow = sendWindow
        self.recvWindow = recvWindow
        self.unacked = 0
        self.headersReceived = 0
        self.pendingOpen: HeadersItem | None = None
        self.scheduled = False
        self.wakeBelow = 0

    def __repr__(self) -> str:
        return f"<StreamRecord {self.streamId} {self.life.name}>"

    @property
    def state(self) -> StreamState:
        """
        The L{StreamState} of this stream.
        """
        return PUBLIC_STATE[self.life]

    def transition(self, event: StreamInput) -> StreamLife:
        """
        Move to the next state.

        @raise RuntimeError: when C{event} cannot happen in this state.
        """
        try:
            life = self.life = TRANSITIONS[(self.life, event)]
        except KeyError:
            raise RuntimeError(
                f"stream {self.streamId}: {event.name} in {self.life.name}"
            ) from None
        return life
