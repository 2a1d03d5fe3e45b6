"""
Socket tuning for the connections Railgun makes and accepts.

Read size (L{tuneForVolume}): Twisted reads at most C{bufferSize} bytes per
C{recv} (64 KiB), and pauses a transport's producer once that much is
waiting to be written. For a link carrying many streams, or a large body,
that is one system call, one Python callback and one TLS slice batch per
64 KiB: raising it to 256 KiB was measured to lift bulk transfers by 15-30%
(docs/benchmarks.md). Client connections at the edge keep the default
(there are many of them, and the write threshold bounds what a slow client
can make the edge hold), except one that starts sending a body over 1 MiB
or chunked (L{railgun.edge.http.LARGE_BODY}): its reads are the upload's.

Eager writes (L{writeEagerly}): a Twisted TCP transport never sends in
C{write()}; it buffers, asks the reactor to watch the socket for
writability (an C{epoll_ctl}), sends on the next reactor turn, then stops
watching (another C{epoll_ctl}). A transport made eager sends at once when
nothing is waiting before it, as asyncio's transports do, and falls back to
Twisted's buffering for whatever the socket does not take.

No delay (L{noDelay}): links batch their frames per reactor turn
themselves, so Nagle's algorithm could only hold a small frame back until
the peer acknowledges the previous one: up to a round trip on a real WAN.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp
from twisted.internet.abstract import FileDescriptor

#: bytes read per call and buffered before back-pressure, on tuned sockets.
TUNED_BUFFER = 256 * 1024


def _socketUnder(transport: Any) -> FileDescriptor | None:
    """
    @return: the socket transport under C{transport} (through a TLS layer
        or a Twisted proxy producer, if any), or L{None} when there is none
        (in-memory transports in tests).
    """
    for _ in range(4):
        if transport is None:
            return None
        if isinstance(transport, FileDescriptor):
            return transport
        # TLSMemoryBIOProtocol wraps .transport; TransportProxyProducer
        # (an HTTP client response's transport) wraps ._producer. (Not
        # hasattr(): protocol wrappers forward unknown attributes.)
        attributes = getattr(transport, "__dict__", {})
        transport = attributes.get("transport") or attributes.get("_producer")
    return None


def tuneForVolume(transport: Any) -> None:
    """
    Raise the read/write buffer size of the socket under C{transport};
    transports that are not sockets are left alone.
    """
    socket = _socketUnder(transport)
    if socket is not None:
        socket.bufferSize = TUNED_BUFFER


def noDelay(transport: Any) -> None:
    """
    Turn Nagle's algorithm off on the TCP socket under C{transport}, if any.
    """
    socket = _socketUnder(transport)
    if isinstance(socket, tcp.Connection):
        socket.setTcpNoDelay(True)


class _EagerWrites:
    """
    Mixed into Twisted's TCP transports by L{writeEagerly}: C{write()} and
    C{writeSequence()} send at once what the socket takes when nothing is
    waiting to be sent before it, and leave the rest to Twisted's buffer.

    Not eager, and exactly Twisted's behaviour, when: TLS was started on
    the transport itself (C{startTLS}); the connection is closing, or
    half-closing; bytes are already buffered (order); a pull producer is
    registered (Twisted asks it for more only when a buffered write
    drains).
    """

    def _mayWriteNow(self: Any) -> bool:
        return bool(
            not self.TLS
            and self.connected
            and not self.disconnecting
            and not self._writeDisconnecting
            and not self._writeDisconnected
            and not self._tempDataLen
            and self.offset == len(self.dataBuffer)
            and (self.producer is None or self.streamingProducer)
        )

    def _sendNow(self: Any, data: bytes) -> bytes:
        """
        Send what the socket takes of C{data} now.

        @return: what it did not take. On an error (the peer gone), all of
            it: Twisted's own write path meets the error again on the next
            reactor turn and closes the connection as it always does,
            rather than inside this C{write()}.
        """
        size = len(data)
        view = memoryview(data)
        sent = 0
        while sent < size:
            tried = min(size - sent, self.SEND_LIMIT)
            n = self.writeSomeData(view[sent:])
            if not isinstance(n, int) or n <= 0:
                break
            sent += n
            if n < tried:
                break  # the socket is full
        if sent == 0:
            return data
        return data[sent:]

    def write(self, data: bytes) -> None:
        if isinstance(data, bytes) and data and self._mayWriteNow():
            data = self._sendNow(data)
            if not data:
                return
        super().write(data)  # type: ignore[misc]

    def writeSequence(self, iovec: Any) -> None:
        iovec = list(iovec)
        if self._mayWriteNow() and all(isinstance(part, bytes) for part in iovec):
            self.write(b"".join(iovec))
            return
        super().writeSequence(iovec)  # type: ignore[misc]


class _EagerServer(_EagerWrites, tcp.Server):
    pass


class _EagerClient(_EagerWrites, tcp.Client):
    pass


_EAGER = {tcp.Server: _EagerServer, tcp.Client: _EagerClient}

# What _EagerWrites reads of a transport; all but the last are set by
# Twisted's FileDescriptor and TCP Connection.
_EAGER_NEEDS = (
    "TLS",
    "connected",
    "disconnecting",
    "_writeDisconnecting",
    "_writeDisconnected",
    "_tempDataLen",
    "offset",
    "dataBuffer",
    "producer",
    "streamingProducer",
    "SEND_LIMIT",
    "writeSomeData",
)


def writeEagerly(transport: Any) -> bool:
    """
    Make the TCP socket transport under C{transport} (through a TLS layer,
    if any) send in C{write()} when it can (L{_EagerWrites}).

    Only Twisted's own TCP transport classes are changed, and only when
    they have every attribute the change reads (a future Twisted that
    renamed one keeps its own behaviour); others are left alone.

    @return: whether the transport now writes eagerly.
    """
    socket = _socketUnder(transport)
    if socket is None:
        return False
    if isinstance(socket, _EagerWrites):
        return True
    eager = _EAGER.get(type(socket))  # type: ignore[call-overload]
    if eager is None or not all(hasattr(socket, name) for name in _EAGER_NEEDS):
        return False
    socket.__class__ = eager
    return True
