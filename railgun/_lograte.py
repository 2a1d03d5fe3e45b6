"""
Rate limits for log lines that repeat: during an outage every request fails
the same way, and one line per failure (21.7 MB of edge log in 40 s of an
origin role down) buries everything else. A repeated line is logged at most
once per interval for each kind; the lines dropped in between are counted,
and the next line of that kind says how many there were.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from attrs import define, field
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel

#: Seconds between two lines of one kind.
DEFAULT_INTERVAL = 10.0

#: What is appended to a line that follows suppressed ones.
SUPPRESSED_NOTE = (
    " ({log_suppressed} similar lines suppressed in the last {log_suppressedSeconds} s)"
)


@define
class RepeatLimiter:
    """
    Decides, for each kind of event, whether one is let through: at most
    one per C{interval} seconds of C{clock}; those held back are counted.

    @ivar _clock: time source.
    @ivar _interval: minimum seconds between two events of one kind.
    @ivar _maxKinds: kinds remembered; past it, those not seen for an
        interval are forgotten first, then all (their next events get
        through at once: a bound on memory, not a hole).
    """

    _clock: IReactorTime
    _interval: float = DEFAULT_INTERVAL
    _maxKinds: int = 4096
    _last: dict[Hashable, float] = field(factory=dict, init=False)
    _suppressed: dict[Hashable, int] = field(factory=dict, init=False)

    def admit(self, kind: Hashable) -> tuple[int, float] | None:
        """
        An event of C{kind} happens now: may it be emitted?

        @return: L{None} to drop it (it is counted), else C{(suppressed,
            seconds)}: how many were dropped since the last one of this kind
            was let through, C{seconds} ago (0 and 0.0 for the first).
        """
        now = self._clock.seconds()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return None
        if last is None and len(self._last) >= self._maxKinds:
            self._forget(now)
        self._last[kind] = now
        return self._suppressed.pop(kind, 0), (0.0 if last is None else now - last)

    def _forget(self, now: float) -> None:
        stale = [k for k, t in self._last.items() if now - t >= self._interval]
        if len(stale) < len(self._last) // 2:
            stale = list(self._last)
        for kind in stale:
            del self._last[kind]
            self._suppressed.pop(kind, None)


@define
class RateLimitedLogger:
    """
    A L{Logger} for lines that can repeat once per request: each kind of
    line (its format string and the values of the C{keyFields} it has) is
    emitted at most once per C{interval} seconds. The next line of a kind
    after some were dropped ends with C{(N similar lines suppressed in the
    last S s)}, and carries the count in its C{log_suppressed} field.

    The same format with different values of a key field (a host, an
    error code) is a different kind; other fields (a request id, an error
    message) are the first line's.

    @ivar _log: where lines go.
    @ivar _keyFields: the event fields that, with the format, make a kind.
    """

    _log: Logger
    _clock: IReactorTime
    _interval: float = DEFAULT_INTERVAL
    _keyFields: tuple[str, ...] = ("host", "address", "code")
    _limiter: RepeatLimiter = field(init=False)

    def __attrs_post_init__(self) -> None:
        self._limiter = RepeatLimiter(self._clock, self._interval)

    def emit(self, level: LogLevel, format: str, **kwargs: Any) -> bool:
        """
        Log C{format} at C{level} unless a line of its kind was logged less
        than an interval ago.

        @return: whether it was logged.
        """
        kind = (format, *(str(kwargs.get(name)) for name in self._keyFields))
        admitted = self._limiter.admit(kind)
        if admitted is None:
            return False
        suppressed, seconds = admitted
        if suppressed:
            format += SUPPRESSED_NOTE
            kwargs["log_suppressedSeconds"] = round(seconds)
        self._log.emit(level, format, log_suppressed=suppressed, **kwargs)
        return True

    def info(self, format: str, **kwargs: Any) -> bool:
        """
        L{emit} at L{LogLevel.info}.
        """
        return self.emit(LogLevel.info, format, **kwargs)

    def warn(self, format: str, **kwargs: Any) -> bool:
        """
        L{emit} at L{LogLevel.warn}.
        """
        return self.emit(LogLevel.warn, format, **kwargs)

    def error(self, format: str, **kwargs: Any) -> bool:
        """
        L{emit} at L{LogLevel.error}.
        """
        return self.emit(LogLevel.error, format, **kwargs)
