"""
The request body of a stream, handed to treq as an L{IBodyProducer}: bytes
arriving on the link are written to the origin connection as they come,
with the origin socket's back-pressure pausing the stream (and so, through
the link's flow control, the edge's client).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

#: bytes buffered before the origin connection is ready; past this the
#: stream is paused, so a fast edge cannot make us hold a whole upload.
PRE_START_BUFFER = 64 * 1024


@implementer(IBodyProducer)
class StreamBodyProducer:
    """
    Produce a request body from the data of a link stream.

    @ivar length: the body length announced by the edge, or
        L{UNKNOWN_LENGTH} (the Agent then sends it chunked).
    """

    def __init__(
        self,
        stream: Any,
        length: int | None,
        onProgress: Callable[[], None] | None = None,
    ) -> None:
        """
        @param onProgress: called for every chunk of the body that arrives
            (the origin role's response timer counts a progressing upload
            as activity).
        """
        self._stream = stream
        self._onProgress = onProgress
        self.length = UNKNOWN_LENGTH if length is None else length
        self._consumer: IConsumer | None = None
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._finished: Deferred[None] = Deferred()
        self._ended = False
        self._stopped = False

    def dataReceived(self, data: bytes) -> None:
        """
        A chunk of the body arrived on the stream.
        """
        if self._stopped:
            return
        if self._onProgress is not None:
            self._onProgress()
        if self._consumer is not None:
            self._consumer.write(data)
            return
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered >= PRE_START_BUFFER:
            self._stream.pauseProducing()

    def bodyEnded(self) -> None:
        """
        The edge sent the end of the body.
        """
        self._ended = True
        if self._consumer is not None and not self._stopped:
            self._finished.callback(None)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        self._consumer = consumer
        buffered, self._buffer, self._buffered = self._buffer, [], 0
        for chunk in buffered:
            consumer.write(chunk)
        self._stream.resumeProducing()
        if self._ended:
            self._finished.callback(None)
        return self._finished

    def pauseProducing(self) -> None:
        self._stream.pauseProducing()

    def resumeProducing(self) -> None:
        self._stream.resumeProducing()

    def stopProducing(self) -> None:
        # The request to the origin failed or was cancelled: IBodyProducer
        # wants the startProducing Deferred never to fire after this.
        self._stopped = True
