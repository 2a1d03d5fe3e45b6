"""
Byte counters for link and stream statistics, and a transport wrapper that
counts what is written through it (the original's counting writer).
"""

from __future__ import annotations

from typing import Any

from attrs import define
from twisted.internet.interfaces import ITransport
from twisted.python.components import proxyForInterface


@define
class ByteCounters:
    """
    Bytes moved in each direction.

    @ivar sent: bytes written.
    @ivar received: bytes read.
    """

    sent: int = 0
    received: int = 0


class CountingTransport(proxyForInterface(ITransport)):  # type: ignore[misc]
    """
    Wrap a transport and count the bytes written through C{write} and
    C{writeSequence}.  Every other attribute (producers, TLS, C{abortConnection}
    ...) is the wrapped transport's.

    @ivar original: the wrapped transport.
    @ivar counters: the L{ByteCounters} whose C{sent} this increments; the
        owner adds what it reads to C{received}.
    """

    def __init__(self, original: ITransport, counters: ByteCounters | None = None):
        """
        @param original: the transport to wrap.
        @param counters: counters to share (for example with a stream's
            statistics); new ones when omitted.
        """
        super().__init__(original)
        self.counters = ByteCounters() if counters is None else counters

    @property
    def bytesWritten(self) -> int:
        """
        Bytes written through this wrapper.
        """
        return self.counters.sent

    def write(self, data: bytes) -> None:
        self.counters.sent += len(data)
        self.original.write(data)

    def writeSequence(self, seq: Any) -> None:
        seq = list(seq)
        self.counters.sent += sum(len(chunk) for chunk in seq)
        self.original.writeSequence(seq)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the ITransport proxy does not define.
        return getattr(self.original, name)
