"""
A client's request body as it arrives at the edge, relayed to the stream
carrying the request while it is still being received: nothing is held
but what the stream cannot take yet, and reading from the client pauses
while the stream is full (back-pressure from the origin's socket, across
the link, to the client's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

#: bytes held while no consumer takes them (before the stream is open,
#: or while it is paused) before reading from the client pauses.
HOLD_LIMIT = 64 * 1024


@implementer(IPushProducer)
class RequestBody:
    """
    The body of one client request.

    @ivar length: the length the client announced, or L{None} (chunked).
    @ivar complete: whether the whole body has been received.
    @ivar forwarded: bytes handed to consumers so far (a request whose body
        was partly forwarded cannot be sent again elsewhere).
    """

    def __init__(
        self,
        length: int | None,
        pauseReading: Callable[[], None],
        resumeReading: Callable[[], None],
    ) -> None:
        self.length = length
        self.complete = False
        self.forwarded = 0
        self._pauseReading = pauseReading
        self._resumeReading = resumeReading
        self._held: list[bytes] = []
        self._heldBytes = 0
        self._consumer: Any = None
        self._onEnd: Callable[[], None] | None = None
        self._onProgress: Callable[[], None] | None = None
        self._paused = False
        self._discarding = False
        self._readingPaused = False

    # From the HTTP channel

    def dataReceived(self, data: bytes) -> None:
        """
        A chunk of the body arrived from the client.
        """
        if self._discarding:
            return
        if self._consumer is not None and not self._paused and not self._held:
            self.forwarded += len(data)
            self._consumer.write(data)
            if self._onProgress is not None:
                self._onProgress()
            return
        self._held.append(data)
        self._heldBytes += len(data)
        if self._heldBytes >= HOLD_LIMIT:
            # Again on every chunk: something else (twisted.web resuming the
            # transport after a write) may have resumed reading meanwhile.
            self._readingPaused = True
            self._pauseReading()

    def finished(self) -> None:
        """
        The client sent the whole body.
        """
        if self._discarding:
            return  # abandoned: what ended is not the body the exchange had
        self.complete = True
        self._maybeEnd()

    # Consumers

    def attach(
        self,
        consumer: IConsumer,
        onEnd: Callable[[], None],
        onProgress: Callable[[], None] | None = None,
    ) -> None:
        """
        Relay the body (what is held, then what arrives) to C{consumer},
        which may pause this producer; call C{onEnd} once all of it went,
        and C{onProgress} whenever some of it went.
        """
        self._consumer = consumer
        self._onEnd = onEnd
        self._onProgress = onProgress
        self._paused = False
        consumer.registerProducer(self, True)
        self._flush()

    def detach(self) -> None:
        """
        Stop relaying: the exchange is over. What still arrives is dropped.
        """
        consumer, self._consumer = self._consumer, None
        self._onEnd = None
        self._onProgress = None
        self._discarding = True
        self._held, self._heldBytes = [], 0
        if consumer is not None:
            consumer.unregisterProducer()
        self._resume()

    def releaseConsumer(self) -> None:
        """
        Forget the current consumer without discarding (its stream failed
        before any byte went: the body may go to another one).
        """
        consumer, self._consumer = self._consumer, None
        self._onEnd = None
        self._onProgress = None
        if consumer is not None:
            consumer.unregisterProducer()

    # IPushProducer, for the consumer

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._flush()

    def stopProducing(self) -> None:
        # The consumer (a stream) is gone; the exchange decides whether the
        # body goes to another one or is dropped.
        self.releaseConsumer()

    def _flush(self) -> None:
        while self._held and self._consumer is not None and not self._paused:
            chunk = self._held.pop(0)
            self._heldBytes -= len(chunk)
            self.forwarded += len(chunk)
            self._consumer.write(chunk)
            if self._onProgress is not None:
                self._onProgress()
        if self._heldBytes < HOLD_LIMIT:
            self._resume()
        self._maybeEnd()

    def _resume(self) -> None:
        if self._readingPaused:
            self._readingPaused = False
            self._resumeReading()

    def _maybeEnd(self) -> None:
        if self.complete and not self._held and self._onEnd is not None:
            onEnd, self._onEnd = self._onEnd, None
            if self._consumer is not None:
                self._consumer.unregisterProducer()
                self._consumer = None
            onEnd()


@implementer(IBodyProducer)
class BodyProducer:
    """
    A L{RequestBody} as treq/Agent's L{IBodyProducer} (for the direct
    fallback).
    """

    def __init__(self, body: RequestBody) -> None:
        self._body = body
        self.length = UNKNOWN_LENGTH if body.length is None else body.length
        self._done: Deferred[None] = Deferred()

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        self._body.attach(_Unregistering(consumer), lambda: self._done.callback(None))
        return self._done

    def pauseProducing(self) -> None:
        self._body.pauseProducing()

    def resumeProducing(self) -> None:
        self._body.resumeProducing()

    def stopProducing(self) -> None:
        self._body.detach()


@implementer(IConsumer)
class _Unregistering:
    """
    An Agent's body consumer drives its producer itself (it is the
    producer's caller, not the other way round): registration is a no-op.
    """

    def __init__(self, consumer: IConsumer) -> None:
        self._consumer = consumer

    def write(self, data: bytes) -> None:
        self._consumer.write(data)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass
