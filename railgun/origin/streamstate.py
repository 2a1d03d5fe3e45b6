"""
The lifecycle of one stream at the origin role, without I/O: used by
L{railgun.origin.handler.OriginStreamHandler}.

Three small machines, each a table of (state, input) -> state; a pair
missing from a table is an input that cannot happen in that state, a bug
of the caller, refused with L{LifecycleError}:

  - L{Response}: what becomes of the origin server's response (fetched,
    held as a version, encoded, relayed raw, or dropped behind a 502);
  - L{Timer}: the response timer (running, suspended while the edge does
    not take the body, expired);
  - L{Link}: whether the stream is still open.

L{transition} and L{LifecycleError} are L{railgun._lifecycle}'s.

They are C{IntEnum} tables, like the link's (L{railgun.link.linkstate}),
rather than C{automat} machines: one lookup per body chunk.
"""

from __future__ import annotations

from enum import IntEnum, auto

from railgun._lifecycle import LifecycleError, transition


class Response(IntEnum):
    """
    What becomes of the origin server's response.
    """

    FETCHING = auto()  # no response head from the origin server yet
    RECEIVED = auto()  # the head arrived; how to send it is being decided
    COLLECTING = auto()  # the body is held, to be sent as a version
    ENCODING = auto()  # the whole body is held; it is encoded and sent
    RELAYING = auto()  # the head went raw; the body is forwarded as read
    DISCARDING = auto()  # the head could not cross: a 502 went, body dropped
    FAILED = auto()  # the body broke off while held: an error response went


class ResponseInput(IntEnum):
    RECEIVE = auto()  # the origin server's response head arrived
    COLLECT = auto()  # the head arrived; the body is a version candidate
    RELAY = auto()  # the head goes raw (at once, or when held is too much)
    ENCODE = auto()  # the held body is complete
    DISCARD = auto()  # the head was refused by the link
    FAIL = auto()  # the held body broke off


_R = Response
_RI = ResponseInput
RESPONSE_TRANSITIONS: dict[tuple[Response, ResponseInput], Response] = {
    (_R.FETCHING, _RI.RECEIVE): _R.RECEIVED,
    (_R.RECEIVED, _RI.COLLECT): _R.COLLECTING,
    (_R.RECEIVED, _RI.RELAY): _R.RELAYING,
    (_R.COLLECTING, _RI.RELAY): _R.RELAYING,
    (_R.COLLECTING, _RI.ENCODE): _R.ENCODING,
    (_R.COLLECTING, _RI.FAIL): _R.FAILED,
    (_R.RELAYING, _RI.DISCARD): _R.DISCARDING,
    (_R.ENCODING, _RI.DISCARD): _R.DISCARDING,
}


class Timer(IntEnum):
    """
    The response timer, which measures the origin server's silence.
    """

    IDLE = auto()  # not started, or cancelled
    RUNNING = auto()
    SUSPENDED = auto()  # cancelled while the edge takes nothing; rearmed after
    EXPIRED = auto()  # it fired: the fetch or the body is being stopped


class TimerInput(IntEnum):
    START = auto()  # the request went to the origin server
    CANCEL = auto()  # an answer went, or the body ended, or the stream went
    PAUSE = auto()  # the stream stopped taking the body
    RESUME = auto()  # the stream takes the body again, still flowing
    EXPIRE = auto()  # the timer fired


_T = Timer
_TI = TimerInput
TIMER_TRANSITIONS: dict[tuple[Timer, TimerInput], Timer] = {
    (_T.IDLE, _TI.START): _T.RUNNING,
    (_T.IDLE, _TI.CANCEL): _T.IDLE,
    (_T.IDLE, _TI.PAUSE): _T.SUSPENDED,
    (_T.RUNNING, _TI.CANCEL): _T.IDLE,
    (_T.RUNNING, _TI.PAUSE): _T.SUSPENDED,
    (_T.RUNNING, _TI.EXPIRE): _T.EXPIRED,
    # Cancelling a suspended timer leaves it to be rearmed by a resume
    # while the body still flows (the body's end forgets the body).
    (_T.SUSPENDED, _TI.CANCEL): _T.SUSPENDED,
    (_T.SUSPENDED, _TI.PAUSE): _T.SUSPENDED,
    (_T.SUSPENDED, _TI.RESUME): _T.RUNNING,
    # Once expired, the response is being ended in error: nothing rearms it.
    (_T.EXPIRED, _TI.CANCEL): _T.EXPIRED,
    (_T.EXPIRED, _TI.PAUSE): _T.EXPIRED,
}


class Link(IntEnum):
    """
    The stream on the link.
    """

    OPEN = auto()
    GONE = auto()  # closed or reset: nothing more is written to it


class LinkInput(IntEnum):
    LOST = auto()


LINK_TRANSITIONS: dict[tuple[Link, LinkInput], Link] = {
    (Link.OPEN, LinkInput.LOST): Link.GONE,
}


__all__ = [
    "LINK_TRANSITIONS",
    "RESPONSE_TRANSITIONS",
    "TIMER_TRANSITIONS",
    "LifecycleError",
    "Link",
    "LinkInput",
    "Response",
    "ResponseInput",
    "Timer",
    "TimerInput",
    "transition",
]
