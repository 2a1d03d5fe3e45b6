"""
Rate-limited warnings, so that an outage logs a few lines, not one per
request (the stores' own format, with C{{suppressed}} in their messages;
L{railgun._lograte} is the general form, and holds the counting both use).
"""

from __future__ import annotations

from typing import Any

from attrs import define, field
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from railgun._lograte import RepeatLimiter


@define
class RateLimitedLog:
    """
    Emit at most one event per C{interval} seconds for each kind of trouble.

    Events dropped in between are counted and the count is reported with the
    next event of the same kind, in its C{suppressed} field.

    @ivar _log: where events go.
    @ivar _clock: time source.
    @ivar _interval: minimum seconds between two events of one kind.
    """

    _log: Logger
    _clock: IReactorTime
    _interval: float = 30.0
    # Kinds are chosen by the stores from a small fixed set per server.
    _limiter: RepeatLimiter = field(init=False)

    def __attrs_post_init__(self) -> None:
        self._limiter = RepeatLimiter(self._clock, self._interval)

    def warn(self, kind: str, format: str, **kwargs: Any) -> bool:
        """
        Log a warning unless one of the same kind was logged recently.

        @param kind: the kind of trouble, e.g. C{"timeout 10.0.0.1:11211"}.
        @param format: a L{twisted.logger} format string; it may use
            C{{suppressed}}, the number of events dropped since the last one
            of this kind.
        @param kwargs: event fields.
        @return: C{True} if the event was emitted.
        """
        admitted = self._limiter.admit(kind)
        if admitted is None:
            return False
        self._log.warn(format, suppressed=admitted[0], kind=kind, **kwargs)
        return True
