"""
The receive side of a link's flow control, and its liveness bookkeeping,
without I/O: parts of L{railgun.link.connection.LinkConnection}.
"""

from __future__ import annotations

from collections.abc import Callable
from struct import Struct

from .errors import ErrorCode, ProtocolError
from .frames import Ping

_pingOpaque = Struct("!Q")


class ReceiveCredit:
    """
    The credit we give the peer: the connection window, the bytes received
    whose credit is not returned yet, and the bytes paused streams hold.

    Connection credit is returned in batches of half the window; bytes held
    by paused streams beyond C{maxBufferedBytes} keep their credit until
    they are consumed, so memory stays bounded.  Stream credit is returned
    once half a stream window was consumed.

    @ivar window: the connection credit the peer has left.
    @ivar debt: received bytes whose connection credit is not returned.
    @ivar bufferedBytes: received bytes held by paused streams.
    @ivar streamThreshold: consumed bytes of a stream that make its
        credit worth a WINDOW frame.
    """

    def __init__(
        self, connectionWindow: int, streamWindow: int, maxBufferedBytes: int
    ) -> None:
        self.window = connectionWindow
        self._half = connectionWindow // 2
        self.bufferedBytes = 0
        self.debt = 0
        self._maxBufferedBytes = maxBufferedBytes
        self.streamThreshold = max(1, streamWindow // 2)

    def exceeded(self, size: int) -> ProtocolError:
        """
        @return: the error for a DATA frame of C{size} bytes beyond the
            window (the connection checks and counts each frame inline:
            L{LinkConnection._receiveData} is the hot path).
        """
        return ProtocolError(
            ErrorCode.FLOW_CONTROL_ERROR,
            f"DATA of {size} bytes beyond the connection window {self.window}",
        )

    def due(self) -> int:
        """
        @return: the connection credit to send now, or 0 to keep batching.
        """
        debt = self.debt
        if not debt:
            return 0
        withheld = self.bufferedBytes - self._maxBufferedBytes
        credit = debt - withheld if withheld > 0 else debt
        if credit <= 0:
            return 0
        half = self._half
        if credit >= half or self.window < half:
            return credit
        return 0

    def take(self) -> int:
        """
        @return: the connection credit to send now (counted as sent), or 0.
        """
        credit = self.due()
        if credit:
            self.debt -= credit
            self.window += credit
        return credit


class Liveness:
    """
    Our PING in flight and the round-trip times measured.

    @ivar rtt: smoothed round-trip time, or C{None}.
    @ivar lastRtt: the last measured round-trip time, or C{None}.
    """

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._sentAt: float | None = None
        self._opaque = b""
        self._counter = 0
        self.rtt: float | None = None
        self.lastRtt: float | None = None

    def ping(self) -> Ping | None:
        """
        @return: the PING to send, or C{None} while one is unanswered.
        """
        if self._sentAt is not None:
            return None
        self._counter += 1
        self._opaque = _pingOpaque.pack(self._counter)
        self._sentAt = self._now()
        return Ping(self._opaque)

    def pong(self, opaque: bytes) -> float | None:
        """
        A PONG arrived.

        @return: the round-trip time, or C{None} when it answers no PING of
            ours.
        """
        if self._sentAt is None or opaque != self._opaque:
            return None
        sample = self._now() - self._sentAt
        self._sentAt = None
        self.lastRtt = sample
        # Smoothed as TCP's SRTT (RFC 6298): 7/8 old + 1/8 new.
        self.rtt = sample if self.rtt is None else 0.875 * self.rtt + 0.125 * sample
        return sample
