"""
Rate-limited warnings, so that an outage logs a few lines, not one per
request.
"""

from __future__ import annotations

from typing import Any

from attrs import define, field
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger


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
    # Kinds are chosen by the stores from a small fixed set per server, so
    # these dictionaries stay small.
    _last: dict[str, float] = field(factory=dict, init=False)
    _suppressed: dict[str, int] = field(factory=dict, init=False)

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
        now = self._clock.seconds()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return False
        self._last[kind] = now
        suppressed = self._suppressed.pop(kind, 0)
        self._log.warn(format, suppressed=suppressed, kind=kind, **kwargs)
        return True
