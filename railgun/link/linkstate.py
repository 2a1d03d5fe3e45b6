"""
The lifecycle of a link as explicit state machines, plus its counters:
used by L{railgun.link.connection.LinkConnection}.

A link's phase (L{LinkPhase}) and its drain (L{Drain}: which sides sent
GOAWAY) are two small machines, each a table of (state, input) -> state;
a pair missing from a table is an input that cannot happen in that state.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from enum import IntEnum, auto

from attrs import define


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


class LinkPhase(IntEnum):
    """
    The phase of a link.
    """

    HANDSHAKE = auto()  # waiting for the peer's HELLO
    READY = auto()
    CLOSING = auto()  # close decided: input ignored, transport closing
    CLOSED = auto()  # the transport is gone


class PhaseInput(IntEnum):
    HELLO = auto()  # the peer's good HELLO arrived
    STOP = auto()  # error, timeout, finished drain: stop and close
    LOST = auto()  # the transport went


_P = LinkPhase
_PI = PhaseInput
PHASE_TRANSITIONS: dict[tuple[LinkPhase, PhaseInput], LinkPhase] = {
    (_P.HANDSHAKE, _PI.HELLO): _P.READY,
    (_P.HANDSHAKE, _PI.STOP): _P.CLOSING,
    (_P.READY, _PI.STOP): _P.CLOSING,
    (_P.HANDSHAKE, _PI.LOST): _P.CLOSED,
    (_P.READY, _PI.LOST): _P.CLOSED,
    (_P.CLOSING, _PI.LOST): _P.CLOSED,
}


class Drain(IntEnum):
    """
    Which sides announced a drain (GOAWAY).
    """

    NONE = auto()
    LOCAL = auto()  # we sent GOAWAY: we refuse new peer streams
    REMOTE = auto()  # the peer did: we open no new streams
    BOTH = auto()


class DrainInput(IntEnum):
    SENT = auto()
    RECEIVED = auto()


_D = Drain
DRAIN_TRANSITIONS: dict[tuple[Drain, DrainInput], Drain] = {
    (_D.NONE, DrainInput.SENT): _D.LOCAL,
    (_D.NONE, DrainInput.RECEIVED): _D.REMOTE,
    (_D.LOCAL, DrainInput.SENT): _D.LOCAL,
    (_D.LOCAL, DrainInput.RECEIVED): _D.BOTH,
    (_D.REMOTE, DrainInput.SENT): _D.BOTH,
    (_D.REMOTE, DrainInput.RECEIVED): _D.REMOTE,
    (_D.BOTH, DrainInput.SENT): _D.BOTH,
    (_D.BOTH, DrainInput.RECEIVED): _D.BOTH,
}
#: the phases in which the link reads and writes
ACTIVE = frozenset({_P.HANDSHAKE, _P.READY})


class RateLimit:
    """
    Count events in a rolling one-second window.
    """

    def __init__(self, limit: int, now: Callable[[], float]) -> None:
        self._limit = limit
        self._now = now
        self._times: deque[float] = deque()

    def exceeded(self) -> bool:
        """
        Record one event.

        @return: C{True} when more than the limit happened in the last second.
        """
        now = self._now()
        times = self._times
        times.append(now)
        horizon = now - 1.0
        while times[0] <= horizon:
            times.popleft()
        return len(times) > self._limit
