"""
What a L{railgun.link.connection.LinkConnection} reports to its I/O layer.

The connection never calls out: each of its methods changes its state
completely, then leaves events in its queue
(L{LinkConnection.takeEvents}); the I/O layer delivers them to stream
handlers and waiters afterwards.  So no callback ever runs in the middle of
a state change.  Plain slotted classes: one is made per frame on the hot
path.
"""

from __future__ import annotations

from typing import Any

from .streamstate import StreamRecord


class LinkEvent:
    """
    Base class of the events.
    """

    __slots__ = ()


class LinkReady(LinkEvent):
    """
    The HELLOs are exchanged: streams may be opened.
    """

    __slots__ = ()


class StreamOpened(LinkEvent):
    """
    The peer opened a stream and we accepted it.

    @ivar record: its L{StreamRecord}.
    @ivar headers: its opening headers, C{:request-id} removed.
    @ivar endStream: whether the peer ended its side with them.
    """

    __slots__ = ("record", "headers", "endStream")

    def __init__(self, record: StreamRecord, headers: list[Any], endStream: bool):
        self.record = record
        self.headers = headers
        self.endStream = endStream


class HeadersReceived(LinkEvent):
    """
    A further header block (response headers, trailers) arrived.
    """

    __slots__ = ("record", "headers", "endStream")

    def __init__(self, record: StreamRecord, headers: list[Any], endStream: bool):
        self.record = record
        self.headers = headers
        self.endStream = endStream


class DataReceived(LinkEvent):
    """
    Body bytes arrived (possibly empty, with END_STREAM).

    @ivar endStream: the peer ended its side with them.
    """

    __slots__ = ("record", "data", "endStream")

    def __init__(self, record: StreamRecord, data: bytes, endStream: bool):
        self.record = record
        self.data = data
        self.endStream = endStream


class StreamClosed(LinkEvent):
    """
    A stream is over on the wire.

    @ivar reason: C{None} when both sides ended it cleanly; else the
        L{StreamReset}, L{StreamRefused} or L{LinkLost} to report.
    """

    __slots__ = ("record", "reason")

    def __init__(self, record: StreamRecord, reason: Exception | None):
        self.record = record
        self.reason = reason


class StreamDrained(LinkEvent):
    """
    A stream's queued bytes fell to its C{wakeBelow} mark.
    """

    __slots__ = ("record",)

    def __init__(self, record: StreamRecord):
        self.record = record


class PongReceived(LinkEvent):
    """
    Our PING was answered.

    @ivar rtt: the round-trip time measured.
    """

    __slots__ = ("rtt",)

    def __init__(self, rtt: float):
        self.rtt = rtt


class DrainStarted(LinkEvent):
    """
    We sent a graceful GOAWAY: a drain deadline may start.
    """

    __slots__ = ()


class LinkClosing(LinkEvent):
    """
    The link stopped: no input is read from now on and no new stream is
    opened.  The I/O layer cancels its timers and fails whoever waits for
    readiness with L{LinkConnection.closeError}.  The streams' own
    L{StreamClosed} events follow, then L{CloseTransport}.
    """

    __slots__ = ()


class CloseTransport(LinkEvent):
    """
    Write what L{LinkConnection.dataToSend} still has (GOAWAY, last control
    frames), then close the transport.

    @ivar abort: abort it instead (a dead or unresponsive peer).
    """

    __slots__ = ("abort",)

    def __init__(self, abort: bool):
        self.abort = abort
