"""
A user-space WAN emulator: a TCP relay that puts a slow, far-away network
between a client and a fixed target, for benchmarks and tests.

The kernel's netem is not available everywhere (not in unprivileged
containers), and the costs Railgun removes -- the TCP handshake, slow start,
round trips and serialization time on a narrow link -- are exactly what a
relay on loopback hides. Every accepted connection is relayed to the target
with, in each direction, a one-way delay, a bandwidth limit, a round trip
charged for the TCP handshake, and round-based slow start with
slow-start-after-idle.

The code is in two layers: L{WanPath} is a pure scheduling core (given bytes
handed over at a time, when does each piece arrive at the far end) with no
I/O, and the protocol glue (L{WanRelayFactory}, L{WanRelayProtocol}) moves
bytes at those times with C{callLater}. See C{docs/wan.md} for the model and
its limits.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections import deque
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any, NamedTuple

from attrs import define, field, frozen
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.endpoints import (
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    serverFromString,
)
from twisted.internet.interfaces import (
    IAddress,
    IConnector,
    IDelayedCall,
    IHalfCloseableProtocol,
    IListeningPort,
    IPushProducer,
    IReactorTCP,
    IReactorTime,
    IStreamServerEndpoint,
    ITransport,
)
from twisted.internet.protocol import (
    ClientFactory,
    Protocol,
    ServerFactory,
    connectionDone,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = [
    "Bottleneck",
    "Direction",
    "Release",
    "WanCounters",
    "WanPath",
    "WanProfile",
    "WanRelayFactory",
    "WanRelayProtocol",
    "listenWan",
    "main",
    "parseDuration",
    "parseRate",
]

_log = Logger()

#: Times closer than this are the same instant: float sums such as
#: C{now + (at - now)} may land a hair before C{at}.
_EPSILON = 1e-9


class Direction(Enum):
    """
    One direction of a relayed connection.
    """

    #: From the accepted client toward the target.
    UP = "up"
    #: From the target back to the client.
    DOWN = "down"


def _positive(instance: object, attribute: Any, value: Any) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be finite and > 0, not {value!r}")


def _positiveOrInfinite(instance: object, attribute: Any, value: Any) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, not {value!r}")


def _nonNegative(instance: object, attribute: Any, value: Any) -> None:
    if value is not None and not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be finite and >= 0, not {value!r}")


def _atLeastOne(instance: object, attribute: Any, value: Any) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{attribute.name} must be >= 1, not {value!r}")


@frozen
class WanProfile:
    """
    What the emulated WAN looks like. Both directions get the same bandwidth
    and slow-start parameters; only the one-way delays may differ.

    @ivar rtt: the round-trip time in seconds; it is also the length of one
        slow-start round and the handshake's charge.
    @ivar rateBps: bandwidth of each direction in bits per second, applied as
        serialization time; L{None} for no limit.
    @ivar slowStart: whether to limit each direction to a congestion window
        per round trip that grows by slow start.
    @ivar initialSegments: the initial (and after-idle) congestion window in
        segments (Linux: 10).
    @ivar mss: the segment size in bytes.
    @ivar idleRestart: seconds without sending after which a direction's
        window falls back to C{initialSegments} (Linux's
        slow-start-after-idle); C{math.inf} never.
    @ivar maxWindow: the largest congestion window in bytes (think: the
        receiver's window); L{None} for the bandwidth-delay product when
        C{rateBps} is set, unlimited otherwise.
    @ivar upDelay: one-way delay client to target in seconds; L{None} for
        C{rtt / 2}, or C{rtt - downDelay} when only C{downDelay} is given.
    @ivar downDelay: one-way delay target to client, likewise.
    @ivar handshake: whether a new connection is charged the TCP handshake
        before its first byte moves.
    @ivar highWater: bytes queued in one direction above which the sending
        side is paused (resumed at half of it); L{None} for the larger of
        1 MiB and twice the bandwidth-delay product.
    @ivar granularity: pacing step in seconds: a rate-limited direction moves
        at most about one piece per step (at least one segment), so a fast
        link costs a few timers per millisecond, not one per segment.
    @ivar sharedBottleneck: whether all connections through one relay share
        each direction's C{rateBps}, as connections over one real path share
        its narrowest link; otherwise each connection gets C{rateBps} of its
        own. Each connection keeps its own handshake and congestion window
        either way.
    """

    rtt: float = field(validator=_nonNegative)
    rateBps: float | None = field(default=None, validator=_positive)
    slowStart: bool = True
    initialSegments: int = field(default=10, validator=_atLeastOne)
    mss: int = field(default=1460, validator=_atLeastOne)
    idleRestart: float = field(default=1.0, validator=_positiveOrInfinite)
    maxWindow: int | None = field(default=None, validator=_atLeastOne)
    upDelay: float | None = field(default=None, validator=_nonNegative)
    downDelay: float | None = field(default=None, validator=_nonNegative)
    handshake: bool = True
    highWater: int | None = field(default=None, validator=_atLeastOne)
    granularity: float = field(default=0.001, validator=_positive)
    sharedBottleneck: bool = False

    def __attrs_post_init__(self) -> None:
        for given in (self.upDelay, self.downDelay):
            if given is not None and given > self.rtt + 1e-9:
                raise ValueError(f"a one-way delay {given!r} exceeds rtt {self.rtt!r}")
        up, down = self.delay(Direction.UP), self.delay(Direction.DOWN)
        if abs(up + down - self.rtt) > 1e-9:
            raise ValueError(
                f"one-way delays {up!r} + {down!r} must add up to rtt {self.rtt!r}"
            )

    def delay(self, direction: Direction) -> float:
        """
        @return: the one-way delay of C{direction} in seconds.
        """
        mine: float | None
        other: float | None
        if direction is Direction.UP:
            mine, other = self.upDelay, self.downDelay
        else:
            mine, other = self.downDelay, self.upDelay
        if mine is not None:
            return mine
        if other is not None:
            return max(0.0, self.rtt - other)
        return self.rtt / 2

    def bdp(self) -> int | None:
        """
        @return: the bandwidth-delay product in bytes, or L{None} without a
            rate limit.
        """
        if self.rateBps is None:
            return None
        return math.ceil(self.rateBps * self.rtt / 8)

    def windowCap(self) -> int | None:
        """
        @return: the largest congestion window in bytes, never below the
            initial window, or L{None} for no cap.
        """
        initial = self.initialSegments * self.mss
        if self.maxWindow is not None:
            return max(initial, self.maxWindow)
        bdp = self.bdp()
        if bdp is None:
            return None
        return max(initial, math.ceil(bdp / self.mss) * self.mss)

    def queueLimit(self) -> int:
        """
        @return: the high-water mark in bytes of one direction's queue.
        """
        if self.highWater is not None:
            return self.highWater
        return max(1 << 20, 2 * (self.bdp() or 0))

    def quantum(self) -> int | None:
        """
        @return: the largest piece a rate-limited direction moves at once, or
            L{None} when there is no rate limit (a piece then leaves whole).
        """
        if self.rateBps is None:
            return None
        return max(self.mss, int(self.rateBps * self.granularity / 8))


@define
class Bottleneck:
    """
    One direction of a path's narrowest link, shared by every connection
    that crosses it: a timeline of the intervals it is busy transmitting.

    A connection asks for the earliest time, at or after the time its own
    order and congestion window allow, when the link is free for as long as
    its piece takes to transmit; the link is then busy for that interval.
    Pieces are small (about one millisecond each, see
    L{WanProfile.granularity}), so connections sending at once interleave,
    as packets from several flows do in a router's queue, and a piece
    reserved for a later slow-start round does not hold up another
    connection's piece now.

    No I/O: the times are plain numbers.
    """

    #: Disjoint busy intervals C{[start, end)}, in order.
    _busy: list[tuple[float, float]] = field(factory=list)

    def reserve(self, earliest: float, duration: float) -> float:
        """
        Book the link for C{duration} seconds, starting as soon as it is
        free at or after C{earliest}.

        @return: when the transmission starts.
        """
        busy = self._busy
        start = earliest
        index = 0
        # Skip what ends before we could start; then take the first gap
        # long enough.
        while index < len(busy) and busy[index][1] <= start + _EPSILON:
            index += 1
        while index < len(busy) and busy[index][0] < start + duration - _EPSILON:
            start = max(start, busy[index][1])
            index += 1
        # Insert, merging with touching neighbours so the list stays short.
        low, high = start, start + duration
        if index > 0 and busy[index - 1][1] >= low - _EPSILON:
            index -= 1
            low = busy[index][0]
            del busy[index]
        if index < len(busy) and busy[index][0] <= high + _EPSILON:
            high = busy[index][1]
            del busy[index]
        busy.insert(index, (low, high))
        return start

    def forget(self, before: float) -> None:
        """
        Drop the intervals that ended before C{before}: nobody can book a
        time earlier than now, so they no longer matter.
        """
        busy = self._busy
        drop = 0
        while drop < len(busy) and busy[drop][1] <= before:
            drop += 1
        if drop:
            del busy[:drop]

    @property
    def intervals(self) -> int:
        """
        How many busy intervals are remembered (for tests: stays small).
        """
        return len(self._busy)


class Release(NamedTuple):
    """
    A piece of a direction's byte stream and when it reaches the far end.
    """

    at: float
    size: int


@define
class WanPath:
    """
    The scheduling core of one direction of one connection: no I/O, only
    arithmetic on times, so it is tested with plain numbers.

    Bytes are sent in FIFO order. A piece may start "transmitting" no earlier
    than the handshake allows, than the previous piece finished (bandwidth),
    and than the congestion window allows; it arrives one-way delay after it
    finished transmitting. Slow start is round based: at most C{cwnd} bytes
    start in one round trip; a round whose window was filled doubles C{cwnd}
    (up to the cap) for the next one, which starts one RTT after it; after
    C{idleRestart} seconds without sending, C{cwnd} drops back to the initial
    window.

    Every result is decided when the bytes are handed over; arrival times
    never decrease.
    """

    _delay: float
    _rtt: float
    _rateBps: float | None
    _slowStart: bool
    _initialWindow: int
    _cap: int | None
    _idleRestart: float
    _quantum: int | None
    _gate: float
    _bottleneck: Bottleneck | None = None
    _cwnd: int = 0
    _roundStart: float | None = None
    _roundUsed: int = 0
    _linkFree: float | None = None

    def __attrs_post_init__(self) -> None:
        self._cwnd = self._initialWindow

    @classmethod
    def forDirection(
        cls,
        profile: WanProfile,
        direction: Direction,
        openedAt: float,
        bottleneck: Bottleneck | None = None,
    ) -> WanPath:
        """
        Build the path of one direction of a connection accepted at
        C{openedAt}.

        The handshake gate models a real three-way handshake: the client's
        C{connect()} returns one RTT after it started, so its first byte
        leaves at C{openedAt + rtt}; the target's application learns of the
        connection only when the client's ACK arrives, at
        C{openedAt + rtt + upDelay}, so nothing it sends can leave earlier.

        @param profile: the WAN to emulate.
        @param direction: which direction this path carries.
        @param openedAt: when the relay accepted the client's connection.
        @param bottleneck: the link this direction shares with other
            connections (see L{WanProfile.sharedBottleneck}); L{None} for a
            link of its own.
        """
        gate = openedAt
        if profile.handshake:
            gate += profile.rtt
            if direction is Direction.DOWN:
                gate += profile.delay(Direction.UP)
        return cls(
            delay=profile.delay(direction),
            rtt=profile.rtt,
            rateBps=profile.rateBps,
            slowStart=profile.slowStart,
            initialWindow=profile.initialSegments * profile.mss,
            cap=profile.windowCap(),
            idleRestart=profile.idleRestart,
            quantum=profile.quantum(),
            gate=gate,
            bottleneck=bottleneck if profile.rateBps is not None else None,
        )

    @property
    def cwnd(self) -> int:
        """
        The congestion window in bytes for the current round.
        """
        return self._cwnd

    def schedule(self, now: float, size: int) -> list[Release]:
        """
        Account for C{size} bytes handed to this direction at C{now}.

        @return: the pieces, in order, that together carry the C{size} bytes,
            each with the time it arrives at the far end; pieces arriving at
            the same instant are merged.
        """
        releases: list[Release] = []
        remaining = size
        if self._bottleneck is not None:
            self._bottleneck.forget(now)
        while remaining > 0:
            start = max(now, self._gate)
            if self._linkFree is not None:
                start = max(start, self._linkFree)
            piece = remaining
            if self._quantum is not None:
                piece = min(piece, self._quantum)
            if self._slowStart:
                start = self._admit(start)
                piece = min(piece, self._cwnd - self._roundUsed)
                self._roundUsed += piece
            finish = start
            if self._rateBps is not None:
                transmit = piece * 8 / self._rateBps
                if self._bottleneck is not None:
                    # Other connections' pieces may hold the shared link.
                    start = self._bottleneck.reserve(start, transmit)
                finish = start + transmit
            self._linkFree = finish
            at = finish + self._delay
            if releases and releases[-1].at == at:
                releases[-1] = Release(at, releases[-1].size + piece)
            else:
                releases.append(Release(at, piece))
            remaining -= piece
        return releases

    def end(self, now: float) -> float:
        """
        @return: when a FIN sent at C{now}, behind every byte scheduled so
            far, arrives at the far end.
        """
        start = max(now, self._gate)
        if self._linkFree is not None:
            start = max(start, self._linkFree)
        return start + self._delay

    def _admit(self, start: float) -> float:
        """
        Open the congestion window for a piece that could start at C{start}.

        @return: when the window lets it start; on return C{cwnd} exceeds the
            bytes used in the current round.
        """
        if (
            self._linkFree is not None
            and start - self._linkFree >= self._idleRestart - _EPSILON
        ):
            self._cwnd = min(self._cwnd, self._initialWindow)
            self._roundStart = None
        if self._roundStart is None:
            self._roundStart = start
            self._roundUsed = 0
            return start
        roundEnd = self._roundStart + self._rtt
        if self._roundUsed >= self._cwnd:
            # The whole window is in flight: the next round starts when the
            # first of it is acknowledged, with a window grown by slow start.
            self._cwnd *= 2
            if self._cap is not None:
                self._cwnd = min(self._cwnd, self._cap)
            start = max(start, roundEnd)
            self._roundStart = start
            self._roundUsed = 0
        elif start >= roundEnd - _EPSILON:
            # An application-limited round ended: TCP does not grow a window
            # it did not use.
            self._roundStart = start
            self._roundUsed = 0
        return start


@define
class WanCounters:
    """
    Bytes that crossed the emulated WAN (payload delivered to the far end,
    not counting TCP/IP headers).

    @ivar up: bytes delivered from clients to the target.
    @ivar down: bytes delivered from the target to clients.
    """

    up: int = 0
    down: int = 0

    @property
    def total(self) -> int:
        """
        Bytes in both directions.
        """
        return self.up + self.down

    def add(self, direction: Direction, size: int) -> None:
        """
        Count C{size} bytes delivered in C{direction}.
        """
        if direction is Direction.UP:
            self.up += size
        else:
            self.down += size


class _PipeState(Enum):
    #: Relaying data.
    OPEN = "open"
    #: The source ended; its queued data and then the FIN are on their way.
    ENDING = "ending"
    #: The FIN was delivered to the sink.
    DONE = "done"
    #: The sink is gone; anything queued was dropped.
    ABORTED = "aborted"


@implementer(IPushProducer)
@define(eq=False)
class _Pipe:
    """
    The glue of one direction: takes bytes from a source transport, holds
    them until their L{WanPath} time, writes them to the sink transport.

    It is the sink's registered streaming producer, so a sink whose buffer
    is full pauses it; it pauses its source when more than the high-water
    mark is queued.
    """

    _clock: IReactorTime
    _path: WanPath
    _direction: Direction
    _highWater: int
    _count: Callable[[Direction, int], None]
    _ended: Callable[[], None]
    # Transports: ITransport plus IPushProducer (source) or IConsumer (sink),
    # which no single zope interface names.
    _source: Any = None
    _sink: Any = None
    _state: _PipeState = _PipeState.OPEN
    _queue: deque[tuple[float, bytes]] = field(factory=deque)
    _queued: int = 0
    _endAt: float = 0.0
    _endFull: bool = False
    _sourcePaused: bool = False
    _sinkPaused: bool = False
    _timer: IDelayedCall | None = None

    @property
    def queued(self) -> int:
        """
        Bytes received but not yet delivered.
        """
        return self._queued

    @property
    def finished(self) -> bool:
        """
        Whether this direction carries nothing more.
        """
        return self._state in (_PipeState.DONE, _PipeState.ABORTED)

    def attachSource(self, source: Any) -> None:
        """
        Set the transport this direction reads from (paused on back-pressure).
        """
        self._source = source

    def attachSink(self, sink: Any) -> None:
        """
        Set the transport this direction writes to, and start delivering.
        """
        self._sink = sink
        sink.registerProducer(self, True)
        self._deliver()

    def receive(self, data: bytes) -> None:
        """
        Queue C{data}, handed over by the source now.
        """
        if self._state is not _PipeState.OPEN:
            # The far end is gone or was told the stream ended; TCP would
            # answer with a reset, the relay just drops it.
            return
        offset = 0
        for at, size in self._path.schedule(self._clock.seconds(), len(data)):
            self._queue.append((at, data[offset : offset + size]))
            offset += size
        self._queued += len(data)
        if (
            self._queued > self._highWater
            and not self._sourcePaused
            and self._source is not None
        ):
            self._sourcePaused = True
            self._source.pauseProducing()
        self._arm()

    def receiveEnd(self, full: bool) -> None:
        """
        The source ended its stream: deliver a FIN behind the queued data.

        @param full: the source connection is gone altogether, so the sink is
            closed entirely rather than only its write side.
        """
        self._source = None
        if self._state is _PipeState.OPEN:
            self._state = _PipeState.ENDING
            self._endAt = self._path.end(self._clock.seconds())
            self._endFull = full
            self._arm()
        elif self._state is _PipeState.ENDING:
            self._endFull = self._endFull or full

    def abort(self) -> None:
        """
        The sink is gone: drop whatever is queued and stop.
        """
        if self._state is _PipeState.ABORTED:
            return
        self._state = _PipeState.ABORTED
        self._cancelTimer()
        self._queue.clear()
        self._queued = 0
        self._source = None

    # IPushProducer, called by the sink.

    def pauseProducing(self) -> None:
        """
        The sink's buffer is full: hold data past its time until resumed.
        """
        self._sinkPaused = True
        self._cancelTimer()

    def resumeProducing(self) -> None:
        """
        The sink drained: deliver what is due and carry on.
        """
        self._sinkPaused = False
        self._deliver()

    def stopProducing(self) -> None:
        """
        The sink is closing; its protocol's C{connectionLost} aborts us.
        """
        self._sinkPaused = True
        self._cancelTimer()

    def _cancelTimer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        """
        Make sure a timer is set for the next thing to deliver.
        """
        if self._timer is not None or self._sink is None or self._sinkPaused:
            return
        if self._queue:
            at = self._queue[0][0]
        elif self._state is _PipeState.ENDING:
            at = self._endAt
        else:
            return
        self._timer = self._clock.callLater(
            max(0.0, at - self._clock.seconds()), self._fire
        )

    def _fire(self) -> None:
        self._timer = None
        self._deliver()

    def _deliver(self) -> None:
        """
        Write everything that is due, in one write; then the FIN if due.
        """
        self._cancelTimer()
        sink = self._sink
        if sink is None or self._sinkPaused or self.finished:
            return
        due = self._clock.seconds() + _EPSILON
        chunks = []
        while self._queue and self._queue[0][0] <= due:
            chunks.append(self._queue.popleft()[1])
        if chunks:
            data = b"".join(chunks)
            self._queued -= len(data)
            self._count(self._direction, len(data))
            sink.write(data)
            if self.finished:
                return
            if (
                self._sourcePaused
                and self._source is not None
                and self._queued <= self._highWater // 2
            ):
                self._sourcePaused = False
                self._source.resumeProducing()
        if not self._queue and self._state is _PipeState.ENDING and self._endAt <= due:
            self._state = _PipeState.DONE
            # A transport holding a paused producer would wait for it before
            # closing, so let go first.
            sink.unregisterProducer()
            loseWrite = getattr(sink, "loseWriteConnection", None)
            if self._endFull or loseWrite is None:
                sink.loseConnection()
            else:
                loseWrite()
            self._ended()
            return
        self._arm()


class _TargetState(Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    GONE = "gone"


@implementer(IHalfCloseableProtocol)
class WanRelayProtocol(Protocol):
    """
    The relay of one accepted client connection: it dials the target and
    moves bytes both ways through a L{WanPath} each.

    @ivar counters: bytes this connection carried across the WAN.
    """

    def __init__(self, factory: WanRelayFactory) -> None:
        self._factory = factory
        self.counters = WanCounters()
        self._up: _Pipe | None = None
        self._down: _Pipe | None = None
        self._target: ITransport | None = None
        self._targetState = _TargetState.CONNECTING
        self._connector: IConnector | None = None
        self._clientGone = False
        self._closeWaiters: list[Deferred[None]] = []

    def connectionMade(self) -> None:
        """
        Start the clock of this connection and dial the target.
        """
        factory = self._factory
        clock = factory.reactor
        openedAt = clock.seconds()
        profile = factory.profile
        limit = profile.queueLimit()

        def pipe(direction: Direction) -> _Pipe:
            return _Pipe(
                clock=clock,
                path=WanPath.forDirection(
                    profile, direction, openedAt, factory.bottleneck(direction)
                ),
                direction=direction,
                highWater=limit,
                count=self._count,
                ended=self._maybeFinish,
            )

        self._up = pipe(Direction.UP)
        self._down = pipe(Direction.DOWN)
        self._up.attachSource(self.transport)
        self._down.attachSink(self.transport)
        factory._opened(self)
        self._connector = factory.reactor.connectTCP(
            factory.targetHost,
            factory.targetPort,
            _TargetFactory(self),
            timeout=factory.connectTimeout,
        )

    def dataReceived(self, data: bytes) -> None:
        """
        Bytes from the client go up.
        """
        assert self._up is not None
        self._up.receive(data)

    def readConnectionLost(self) -> None:
        """
        The client half-closed: forward its FIN after its data.
        """
        assert self._up is not None
        self._up.receiveEnd(full=False)

    def writeConnectionLost(self) -> None:
        """
        Our FIN toward the client is out; nothing to do.
        """

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        The client is gone: what it sent still goes up (then the target is
        closed), what was coming down is dropped.
        """
        self._clientGone = True
        if self._up is not None and self._down is not None:
            self._down.abort()
            self._up.receiveEnd(full=True)
            self._maybeFinish()
        self._checkClosed()

    def abort(self) -> Deferred[None]:
        """
        Drop everything and abort both connections at once.

        @return: a L{Deferred} that fires when both connections are closed.
        """
        d = self.whenClosed()
        for pipe in (self._up, self._down):
            if pipe is not None:
                pipe.abort()
        if self._targetState is _TargetState.CONNECTING:
            if self._connector is not None:
                self._connector.stopConnecting()
        elif self._target is not None and self._targetState is _TargetState.CONNECTED:
            self._target.abortConnection()  # type: ignore[attr-defined]
        if not self._clientGone and self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]
        return d

    def whenClosed(self) -> Deferred[None]:
        """
        @return: a L{Deferred} that fires when both the client and the target
            connection are closed.
        """
        if self._clientGone and self._targetState is _TargetState.GONE:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._closeWaiters.append(d)
        return d

    def _count(self, direction: Direction, size: int) -> None:
        self.counters.add(direction, size)
        self._factory.counters.add(direction, size)

    def _targetConnected(self, transport: Any) -> None:
        assert self._up is not None and self._down is not None
        self._targetState = _TargetState.CONNECTED
        self._target = transport
        self._down.attachSource(transport)
        self._up.attachSink(transport)

    def _targetLost(self, reason: Failure, connected: bool) -> None:
        """
        The target connection closed or could not be made: what it sent
        still goes down (then the client is closed); what was going up is
        dropped.
        """
        self._targetState = _TargetState.GONE
        if not connected:
            _log.info(
                "WAN relay could not reach {host}:{port}: {reason}",
                host=self._factory.targetHost,
                port=self._factory.targetPort,
                reason=reason.getErrorMessage(),
            )
        if self._up is not None and self._down is not None:
            self._up.abort()
            self._down.receiveEnd(full=True)
            self._maybeFinish()
        self._checkClosed()

    def _maybeFinish(self) -> None:
        """
        Once neither direction carries anything more, close what is left.
        """
        assert self._up is not None and self._down is not None
        if not (self._up.finished and self._down.finished):
            return
        if not self._clientGone and self.transport is not None:
            self.transport.loseConnection()
        if self._targetState is _TargetState.CONNECTED and self._target is not None:
            self._target.loseConnection()

    def _checkClosed(self) -> None:
        if not (self._clientGone and self._targetState is _TargetState.GONE):
            return
        self._factory._closed(self)
        _log.debug(
            "WAN relay connection closed: {up} bytes up, {down} bytes down",
            up=self.counters.up,
            down=self.counters.down,
        )
        waiters, self._closeWaiters = self._closeWaiters, []
        for d in waiters:
            d.callback(None)


@implementer(IHalfCloseableProtocol)
class _TargetProtocol(Protocol):
    """
    The relay's connection to the target, reporting to its client's relay.
    """

    def __init__(self, relay: WanRelayProtocol) -> None:
        self._relay = relay
        self._down: _Pipe | None = None

    def connectionMade(self) -> None:
        self._relay._targetConnected(self.transport)
        self._down = self._relay._down

    def dataReceived(self, data: bytes) -> None:
        assert self._down is not None
        self._down.receive(data)

    def readConnectionLost(self) -> None:
        assert self._down is not None
        self._down.receiveEnd(full=False)

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._relay._targetLost(reason, connected=True)


class _TargetFactory(ClientFactory):
    """
    Dials the target for one relayed connection.
    """

    noisy = False

    def __init__(self, relay: WanRelayProtocol) -> None:
        self._relay = relay

    def buildProtocol(self, addr: IAddress | None) -> _TargetProtocol:
        return _TargetProtocol(self._relay)

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        self._relay._targetLost(reason, connected=False)


class WanRelayFactory(ServerFactory):
    """
    Accepts client connections and relays each to C{(targetHost,
    targetPort)} through an emulated WAN.

    @ivar reactor: the reactor (C{IReactorTCP} and C{IReactorTime}) used to
        dial the target and to time deliveries.
    @ivar targetHost: the target's IP address (IPv4 or IPv6) or host name.
    @ivar targetPort: the target's TCP port.
    @ivar profile: the emulated WAN.
    @ivar connectTimeout: seconds to wait for the target to accept.
    @ivar counters: bytes carried by every connection so far, closed or not.
    @ivar connections: connections accepted so far.
    """

    noisy = False

    def __init__(
        self,
        reactor: Any,
        targetHost: str,
        targetPort: int,
        profile: WanProfile,
        connectTimeout: float = 30,
    ) -> None:
        if not (IReactorTCP.providedBy(reactor) and IReactorTime.providedBy(reactor)):
            raise TypeError("reactor must provide IReactorTCP and IReactorTime")
        if not 0 < targetPort < 65536:
            raise ValueError(f"targetPort out of range: {targetPort!r}")
        self.reactor = reactor
        self.targetHost = targetHost
        self.targetPort = targetPort
        self.profile = profile
        self.connectTimeout = connectTimeout
        self.counters = WanCounters()
        self.connections = 0
        self._open: set[WanRelayProtocol] = set()
        self._bottlenecks: dict[Direction, Bottleneck] | None = None
        if profile.sharedBottleneck:
            self._bottlenecks = {d: Bottleneck() for d in Direction}

    def bottleneck(self, direction: Direction) -> Bottleneck | None:
        """
        @return: the link every connection shares in C{direction}, or L{None}
            when each connection has its own (see
            L{WanProfile.sharedBottleneck}).
        """
        if self._bottlenecks is None:
            return None
        return self._bottlenecks[direction]

    @property
    def openConnections(self) -> int:
        """
        Relayed connections not yet closed on both sides.
        """
        return len(self._open)

    def buildProtocol(self, addr: IAddress | None) -> WanRelayProtocol:
        """
        @return: a relay for a newly accepted client.
        """
        return WanRelayProtocol(self)

    def closeAll(self) -> Deferred[None]:
        """
        Abort every open relayed connection (for tear-down).

        @return: a L{Deferred} that fires once all of them are closed.
        """
        waits = [relay.abort() for relay in list(self._open)]
        return DeferredList(waits).addCallback(lambda _: None)

    def _opened(self, relay: WanRelayProtocol) -> None:
        self.connections += 1
        self._open.add(relay)

    def _closed(self, relay: WanRelayProtocol) -> None:
        self._open.discard(relay)


def listenWan(
    reactor: Any,
    listen: IStreamServerEndpoint | int,
    targetHost: str,
    targetPort: int,
    profile: WanProfile,
    interface: str = "127.0.0.1",
) -> Deferred[IListeningPort]:
    """
    Listen for clients and relay them to the target through an emulated WAN.

    To read the byte counters, build the L{WanRelayFactory} yourself and
    C{listen} on an endpoint with it; this is the shortcut.

    @param reactor: the reactor to listen, dial and time with.
    @param listen: a server endpoint, or a TCP port number on C{interface}.
    @param targetHost: the target's address.
    @param targetPort: the target's TCP port.
    @param profile: the emulated WAN.
    @param interface: the address to bind when C{listen} is a port number.
    @return: a L{Deferred} firing with the listening port.
    """
    factory = WanRelayFactory(reactor, targetHost, targetPort, profile)
    endpoint = _serverEndpoint(reactor, listen, interface)
    return endpoint.listen(factory)


def _serverEndpoint(
    reactor: Any, listen: IStreamServerEndpoint | int, interface: str
) -> IStreamServerEndpoint:
    """
    @return: C{listen} itself, or a TCP endpoint for port C{listen} on
        C{interface} (IPv6 when it contains a colon).
    """
    if not isinstance(listen, int):
        return listen
    if ":" in interface:
        return TCP6ServerEndpoint(reactor, listen, interface=interface)
    return TCP4ServerEndpoint(reactor, listen, interface=interface)


_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(us|ms|s)?\s*$")
_DURATION_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, None: 1.0}

_RATE = re.compile(
    r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([kmgt]?)(bit|bps)?\s*$",
    re.IGNORECASE,
)
_RATE_PREFIXES = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


def parseDuration(text: str) -> float:
    """
    Parse a duration such as C{100ms}, C{0.1s}, C{250us} or C{0.1} (seconds).

    @return: seconds.
    @raise ValueError: for anything else.
    """
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (try 100ms or 0.1s)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parseRate(text: str) -> float:
    """
    Parse a rate the way tc does: C{20mbit} and C{1gbit} are bits per second,
    C{2mbps} is bytes per second; a bare number is bits per second.

    @return: bits per second.
    @raise ValueError: for anything else, or a rate that is not positive.
    """
    match = _RATE.match(text)
    if match is None:
        raise ValueError(f"not a rate: {text!r} (try 20mbit or 1gbit)")
    value = float(match.group(1)) * _RATE_PREFIXES[match.group(2).lower()]
    if (match.group(3) or "").lower() == "bps":
        value *= 8
    if not value > 0:
        raise ValueError(f"rate must be positive: {text!r}")
    return value


def _parseTarget(text: str) -> tuple[str, int]:
    """
    Parse C{host:port} or C{[v6addr]:port}.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"not host:port: {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"port out of range: {text!r}")
    return host, number


def _argumentParser() -> argparse.ArgumentParser:
    def typed(parse: Callable[[str], Any]) -> Callable[[str], Any]:
        def convert(text: str) -> Any:
            try:
                return parse(text)
            except ValueError as e:
                raise argparse.ArgumentTypeError(str(e)) from None

        return convert

    parser = argparse.ArgumentParser(
        prog="python -m bench.wan",
        description="Relay TCP connections to a target through an emulated WAN.",
    )
    parser.add_argument(
        "--listen",
        required=True,
        help="port to listen on (on --interface), or a server endpoint string",
    )
    parser.add_argument(
        "--interface", default="127.0.0.1", help="address to bind (127.0.0.1)"
    )
    parser.add_argument(
        "--to", required=True, type=typed(_parseTarget), help="target host:port"
    )
    parser.add_argument(
        "--rtt", required=True, type=typed(parseDuration), help="round trip, e.g. 100ms"
    )
    parser.add_argument(
        "--rate", type=typed(parseRate), help="bandwidth each way, e.g. 20mbit"
    )
    parser.add_argument("--up-delay", type=typed(parseDuration))
    parser.add_argument("--down-delay", type=typed(parseDuration))
    parser.add_argument("--no-slow-start", action="store_true")
    parser.add_argument("--no-handshake", action="store_true")
    parser.add_argument("--initial-segments", type=int, default=10)
    parser.add_argument("--mss", type=int, default=1460)
    parser.add_argument("--max-window", type=int, help="largest cwnd in bytes")
    parser.add_argument(
        "--idle-restart", type=typed(parseDuration), default=1.0, help="default 1s"
    )
    parser.add_argument(
        "--shared-bottleneck",
        action="store_true",
        help="all connections share --rate each way (one path), instead of --rate each",
    )
    return parser


def _profileFromArguments(args: argparse.Namespace) -> WanProfile:
    """
    @raise ValueError: for values L{WanProfile} rejects.
    """
    return WanProfile(
        rtt=args.rtt,
        rateBps=args.rate,
        slowStart=not args.no_slow_start,
        initialSegments=args.initial_segments,
        mss=args.mss,
        idleRestart=args.idle_restart,
        maxWindow=args.max_window,
        upDelay=args.up_delay,
        downDelay=args.down_delay,
        handshake=not args.no_handshake,
        sharedBottleneck=args.shared_bottleneck,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """
    The command line: relay until interrupted, then print the byte counters.
    """
    parser = _argumentParser()
    args = parser.parse_args(argv)
    try:
        profile = _profileFromArguments(args)
    except ValueError as e:
        parser.error(str(e))
    host, port = args.to

    from twisted.internet import reactor
    from twisted.internet.task import react
    from twisted.logger import globalLogBeginner, textFileLogObserver

    globalLogBeginner.beginLoggingTo(
        [textFileLogObserver(sys.stdout)], redirectStandardIO=False
    )
    factory = WanRelayFactory(reactor, host, port, profile)
    if args.listen.isdigit():
        listen: int | IStreamServerEndpoint = int(args.listen)
    else:
        listen = serverFromString(reactor, args.listen)

    async def run(reactor: Any) -> None:
        endpoint = _serverEndpoint(reactor, listen, args.interface)
        listening = await endpoint.listen(factory)
        _log.info(
            "WAN relay on {address} to {host}:{port}: {profile}",
            address=listening.getHost(),
            host=host,
            port=port,
            profile=profile,
        )

        def report() -> None:
            sys.stdout.write(
                f"connections {factory.connections} bytes up "
                f"{factory.counters.up} down {factory.counters.down}\n"
            )

        reactor.addSystemEventTrigger("before", "shutdown", report)
        await Deferred()

    react(lambda reactor: Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main()
