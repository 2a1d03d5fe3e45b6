"""
A push producer passed through to a consumer, with word of when the
consumer pauses and resumes it: a body's stall timer must not count time
the consumer (a slow client) held the body back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer


@implementer(IPushProducer)
class WatchedProducer:
    """
    C{producer}, registered with a consumer in its place; C{onPause} and
    C{onResume} are called before the consumer's pause and resume are
    passed on.
    """

    def __init__(
        self, producer: Any, onPause: Callable[[], None], onResume: Callable[[], None]
    ) -> None:
        self._producer = producer
        self._onPause = onPause
        self._onResume = onResume

    def pauseProducing(self) -> None:
        self._onPause()
        self._producer.pauseProducing()

    def resumeProducing(self) -> None:
        self._onResume()
        self._producer.resumeProducing()

    def stopProducing(self) -> None:
        self._producer.stopProducing()
