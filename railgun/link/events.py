"""
What a L{railgun.link.connection.LinkConnection} reports to its I/O layer.

The connection never calls out: each of its methods changes its state
completely, then leaves events in its queue
(L{LinkConnection.takeEvents}); the I/O layer delivers them to stream
handlers and waiters afterwards.  So no callback ever runs in the middle of
a state change.

An event is a plain tuple whose first item is its L{Event} kind: one is
made per DATA or HEADERS frame, and a tuple costs a fraction of an object
with an C{__init__}.  The layouts:

  - C{(LINK_READY,)}: the HELLOs are exchanged; streams may be opened.
  - C{(STREAM_OPENED, record, headers, endStream)}: the peer opened a
    stream and we accepted it (C{headers} without C{:request-id}).
  - C{(HEADERS_RECEIVED, record, headers, endStream)}: a further header
    block (response headers, trailers).
  - C{(DATA_RECEIVED, record, data, endStream)}: body bytes (possibly
    none, with END_STREAM).
  - C{(STREAM_CLOSED, record, reason)}: the stream is over on the wire;
    C{reason} is C{None} when both sides ended it cleanly (reported when
    our END_STREAM was written; when the peer's comes last, its own event
    says so), else the L{StreamReset}, L{StreamRefused} or L{LinkLost} to
    report.
  - C{(STREAM_DRAINED, record)}: the stream's queued bytes fell to its
    C{wakeBelow} mark.
  - C{(PONG_RECEIVED, rtt)}: our PING was answered after C{rtt} seconds.
  - C{(DRAIN_STARTED,)}: we sent a graceful GOAWAY; a drain deadline may
    start.
  - C{(LINK_CLOSING,)}: the link stopped: no input is read from now on and
    no stream is opened; the I/O layer cancels its timers and fails
    whoever waits for readiness with C{closeError}.  The streams'
    STREAM_CLOSED follow, then CLOSE_TRANSPORT.
  - C{(CLOSE_TRANSPORT, abort)}: write what C{dataToSend} still has
    (GOAWAY, last control frames) and close the transport, or abort it
    (a dead or unresponsive peer).
  - C{(LINK_CLOSED,)}: the transport is gone, after the streams' last
    STREAM_CLOSED: whoever waits for the link hears of it last.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class Event(IntEnum):
    """
    The kinds of events (the first item of each).
    """

    LINK_READY = 0
    STREAM_OPENED = 1
    HEADERS_RECEIVED = 2
    DATA_RECEIVED = 3
    STREAM_CLOSED = 4
    STREAM_DRAINED = 5
    PONG_RECEIVED = 6
    DRAIN_STARTED = 7
    LINK_CLOSING = 8
    CLOSE_TRANSPORT = 9
    LINK_CLOSED = 10


LINK_READY = Event.LINK_READY
STREAM_OPENED = Event.STREAM_OPENED
HEADERS_RECEIVED = Event.HEADERS_RECEIVED
DATA_RECEIVED = Event.DATA_RECEIVED
STREAM_CLOSED = Event.STREAM_CLOSED
STREAM_DRAINED = Event.STREAM_DRAINED
PONG_RECEIVED = Event.PONG_RECEIVED
DRAIN_STARTED = Event.DRAIN_STARTED
LINK_CLOSING = Event.LINK_CLOSING
CLOSE_TRANSPORT = Event.CLOSE_TRANSPORT
LINK_CLOSED = Event.LINK_CLOSED

#: an event: its L{Event} kind, then its fields (see the module docstring)
LinkEvent = tuple[Any, ...]
